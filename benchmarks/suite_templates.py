"""The template rows: a streamed Jinja page against Starlette's ``TemplateResponse``.

Both sides render the same template file (``benchmarks/templates/rows.html``) with the same rows
on the same uvicorn (``benchmarks.app_templates``); the page is deterministic and the two bodies
are compared byte for byte before anything is timed. Rounds alternate sides.

Rows:

* ``template-10k-rows``: total time (curl) of a page of 10,000 table rows that already exist.
  Ratio = Starlette's time / ours; passes when ours takes at most 1.2x Starlette's time
  (ratio >= 0.83). The row also records, timed in this process without HTTP, Jinja's own cost:
  the synchronous ``render()`` Starlette uses and the ``generate_async()`` we must use (the
  async mode awaits every attribute and call), which is the floor of our side.
* ``template-ttfb``: time to the first byte of the response (raw socket, from the request sent)
  when the 10,000 rows come from an async generator in 20 batches over 1 s. Ours streams the
  head as soon as it is rendered; Starlette's side must collect the rows before rendering.
  Ratio = Starlette's TTFB / ours; passes when ours is at most 10% of Starlette's (ratio >= 10).
  Time to ``</head>`` and total times are recorded too.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
import urllib.parse
from typing import Any

from benchmarks._clients import BenchmarkError, ChunkedDecoder, curl, download
from benchmarks._server import Server, ServerError, serve

ROWS: tuple[str, ...] = ("template-10k-rows", "template-ttfb")

APP = "benchmarks.app_templates:app"
COUNT, SMOKE_COUNT = 10_000, 500
SLOW_MS, SMOKE_SLOW_MS = 1000, 200
#: Targets.
MAX_TOTAL_FACTOR = 1.2  # ours <= 1.2 x Starlette's total time
MAX_TTFB_SHARE = 0.1  # ours <= 10% of Starlette's time to first byte
#: Rounds of the in-process render timing (the best is kept: it is a floor).
RENDER_REPEATS = 5


def _row(name: str, description: str, target: str, **rest: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "target": target, "error": None, **rest}


def _failed(name: str, error: str) -> dict[str, Any]:
    return _row(name, name, "-", verified=False, error=error)


def _same_page(server: Server, ours_path: str, theirs_path: str) -> bytes:
    ours = download(server.url(ours_path))
    theirs = download(server.url(theirs_path))
    if ours != theirs:
        raise BenchmarkError(
            f"{ours_path} and {theirs_path} sent different pages ({len(ours)} and {len(theirs)} bytes)"
        )
    if not ours.rstrip().endswith(b"</html>"):
        raise BenchmarkError(f"{ours_path} sent an incomplete page ({len(ours)} bytes)")
    return ours


def timed_get(url: str, *, expected: bytes, timeout: float = 60.0) -> dict[str, float]:
    """GET ``url`` on a raw socket; seconds from the request sent to the first byte, to the end
    of the head (``</head>`` in the body) and to the end of the body, which must be ``expected``."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Stamped before sendall: a client preempted right after sending must not see a
            # response that arrived meanwhile as instantaneous.
            sent = time.perf_counter()
            sock.sendall(request.encode("ascii"))
            first: float | None = None
            head_end: float | None = None
            raw = b""
            while b"\r\n\r\n" not in raw:
                data = sock.recv(65536)
                if not data:
                    raise BenchmarkError(f"{url}: connection closed before the response head")
                first = first or time.perf_counter()
                raw += data
            head, rest = raw.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            if status_line.split(" ")[1:2] != ["200"]:
                raise BenchmarkError(f"{url} answered {status_line!r}")
            fields = {
                name.strip().lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)
            }
            decoder = ChunkedDecoder() if fields.get("transfer-encoding") == "chunked" else None
            length = None if decoder else int(fields["content-length"])
            body = b""
            data = rest
            while True:
                body += decoder.feed(data) if decoder else data
                if head_end is None and b"</head>" in body:
                    head_end = time.perf_counter()
                if (decoder is not None and decoder.done) or (length is not None and len(body) >= length):
                    break
                data = sock.recv(65536)
                if not data:
                    raise BenchmarkError(f"{url}: connection closed before the end of the body")
            done = time.perf_counter()
    except OSError as exc:
        raise BenchmarkError(f"{url}: {exc!r}") from exc
    if body != expected:
        raise BenchmarkError(f"{url}: the body differs from the verified page ({len(body)} bytes)")
    if first is None or head_end is None:
        raise BenchmarkError(f"{url}: the page has no </head>")
    return {"ttfb": first - sent, "head": head_end - sent, "total": done - sent}


def render_floor(count: int) -> dict[str, float]:
    """Best-of seconds for Jinja alone, in this process: sync ``render()`` and ``generate_async()``."""
    import jinja2

    from benchmarks.app_templates import DIRECTORY, TEMPLATE, rows

    def url_for(name: str, **params: Any) -> str:
        return "/static/site.css"

    context = {"title": f"{count} rows", "rows": rows(count), "url_for": url_for}
    loader = jinja2.FileSystemLoader(DIRECTORY)
    sync = jinja2.Environment(loader=loader, autoescape=True).get_template(TEMPLATE)
    agen = jinja2.Environment(loader=loader, autoescape=True, enable_async=True).get_template(TEMPLATE)

    async def generate() -> None:
        async for _ in agen.generate_async(context):
            pass

    sync_times: list[float] = []
    async_times: list[float] = []
    for _ in range(RENDER_REPEATS):
        began = time.perf_counter()
        sync.render(context)
        sync_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        asyncio.run(generate())
        async_times.append(time.perf_counter() - began)
    return {"render_sync_s": min(sync_times), "generate_async_s": min(async_times)}


def _summary(unit: str, ours: float, baseline: float, passed: bool | None) -> dict[str, Any]:
    return {
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "baseline_name": "starlette",
        "ratio": baseline / ours if ours > 0 else float("inf"),
        "passed": passed,
    }


def _measure_total(server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    count = SMOKE_COUNT if smoke else COUNT
    ours_path, theirs_path = f"/rows/ours?count={count}", f"/rows/starlette?count={count}"
    page = _same_page(server, ours_path, theirs_path)
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for index in range(rounds):
        sides = [(ours_path, ours_times), (theirs_path, theirs_times)]
        for path, times in sides if index % 2 == 0 else sides[::-1]:
            times.append(curl(server.url(path), expected_bytes=len(page)))
    ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
    return _row(
        "template-10k-rows",
        f"a page of {count} table rows: StreamingTemplates.stream vs Jinja2Templates.TemplateResponse",
        "ours <= 1.2x Starlette's time (ratio >= 0.83)",
        verified=True,
        bytes=len(page),
        rounds={"ours": ours_times, "baseline": theirs_times},
        jinja=render_floor(count),
        summary=_summary("s", ours, theirs, None if smoke else ours <= MAX_TOTAL_FACTOR * theirs),
    )


def _measure_ttfb(server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    count, ms = (SMOKE_COUNT, SMOKE_SLOW_MS) if smoke else (COUNT, SLOW_MS)
    ours_path, theirs_path = f"/slow/ours?count={count}&ms={ms}", f"/slow/starlette?count={count}&ms={ms}"
    page = _same_page(server, ours_path, theirs_path)
    ours_rounds: list[dict[str, float]] = []
    theirs_rounds: list[dict[str, float]] = []
    for index in range(rounds):
        sides = [(ours_path, ours_rounds), (theirs_path, theirs_rounds)]
        for path, measured in sides if index % 2 == 0 else sides[::-1]:
            measured.append(timed_get(server.url(path), expected=page))

    def median(measured: list[dict[str, float]], key: str) -> float:
        return statistics.median(sample[key] * 1000 for sample in measured)

    ours, theirs = median(ours_rounds, "ttfb"), median(theirs_rounds, "ttfb")
    return _row(
        "template-ttfb",
        f"time to first byte, {count} rows arriving over {ms} ms: streamed head vs whole page",
        "ours <= 10% of Starlette's TTFB (ratio >= 10)",
        verified=True,
        bytes=len(page),
        rounds={"ours": ours_rounds, "baseline": theirs_rounds},
        head_ms={"ours": median(ours_rounds, "head"), "baseline": median(theirs_rounds, "head")},
        total_ms={"ours": median(ours_rounds, "total"), "baseline": median(theirs_rounds, "total")},
        summary=_summary("ms", ours, theirs, None if smoke else ours <= MAX_TTFB_SHARE * theirs),
    )


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the template rows (all, or those in ``only``)."""
    wanted = [row for row in ROWS if only is None or row in only]
    measures = {"template-10k-rows": _measure_total, "template-ttfb": _measure_ttfb}
    results: list[dict[str, Any]] = []
    try:
        with serve(app=APP) as server:
            for name in wanted:
                print(f"  {name} ...", file=sys.stderr, flush=True)
                try:
                    results.append(measures[name](server, rounds=rounds, smoke=smoke))
                except BenchmarkError as exc:
                    results.append(_failed(name, str(exc)))
    except ServerError as exc:
        return [_failed(name, str(exc)) for name in wanted]
    return results
