"""The template rows: a streamed Jinja page against Starlette's ``TemplateResponse``.

Both sides render the same template file (``benchmarks/templates/rows.html``) with the same rows
on the same uvicorn (``benchmarks.app_templates``); the page is deterministic and the two bodies
are compared byte for byte before anything is timed. Rounds alternate sides.

Rows:

* ``template-10k-rows``: total time (curl) of a page of 10,000 table rows that already exist
  (ours takes the thread path: nothing in the context is async). Ratio = Starlette's time /
  ours; passes when ours is no slower (ratio >= 1.0). Anchors, timed in this process without
  HTTP: Jinja's synchronous ``render()`` (the floor of both sides) and ``generate_async()``
  (what the async path would iterate).
* ``template-10k-ttfb``: time to the first byte of the same page (raw socket): ours sends the
  head as soon as it is rendered, Starlette's side after the whole page; passes when ours is at
  most 10% of Starlette's.
* ``template-concurrent-p99``: the p99 latency of a trivial request (``/ping``, one every 10 ms
  on a kept-alive connection) while 8 curl processes keep requesting the 10,000-row page on the
  same server. Rounds alternate between our pages and Starlette's; passes when ours is at most
  10 ms. (With fewer than 100 probes in a side's windows, p99 is their maximum.)
* ``template-ttfb``: time to the first byte of the response (raw socket, from the request sent)
  when the 10,000 rows come from an async generator in 20 batches over 1 s. Ours streams the
  head as soon as it is rendered; Starlette's side must collect the rows before rendering.
  Ratio = Starlette's TTFB / ours; passes when ours is at most 10% of Starlette's (ratio >= 10).
  Time to ``</head>`` and total times are recorded too.
"""

from __future__ import annotations

import asyncio
import math
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from typing import Any

from benchmarks._clients import BenchmarkError, ChunkedDecoder, curl, download
from benchmarks._server import Server, ServerError, serve

ROWS: tuple[str, ...] = ("template-10k-rows", "template-10k-ttfb", "template-ttfb", "template-concurrent-p99")

APP = "benchmarks.app_templates:app"
COUNT, SMOKE_COUNT = 10_000, 500
SLOW_MS, SMOKE_SLOW_MS = 1000, 200
#: Targets.
MAX_TOTAL_FACTOR = 1.0  # ours <= Starlette's total time
MAX_TTFB_SHARE = 0.1  # ours <= 10% of Starlette's time to first byte
MAX_P99_MS = 10.0  # a trivial request's p99 while pages render
#: The concurrency row: pages rendering at once, seconds of probing per side and round, the
#: probes' interval, and the seconds the loaders run before probing starts.
LOADERS, SMOKE_LOADERS = 8, 2
WINDOW_S, SMOKE_WINDOW_S = 3.0, 0.5
PROBE_INTERVAL_S = 0.01
WARM_UP_S = 0.5
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
    jinja = render_floor(count)
    summary = _summary("s", ours, theirs, None if smoke else ours <= MAX_TOTAL_FACTOR * theirs)
    summary["goal"] = {"value": MAX_TOTAL_FACTOR * theirs, "better": "lower"}
    return _row(
        "template-10k-rows",
        f"a page of {count} table rows: StreamingTemplates.stream vs Jinja2Templates.TemplateResponse",
        "ours no slower than TemplateResponse (ratio >= 1.0)",
        verified=True,
        bytes=len(page),
        rounds={"ours": ours_times, "baseline": theirs_times},
        jinja=jinja,
        anchors=[
            {"name": "Jinja render() alone", "value": jinja["render_sync_s"], "role": "floor"},
            {"name": "Jinja generate_async() alone", "value": jinja["generate_async_s"], "role": "reference"},
        ],
        summary=summary,
    )


def _measure_page_ttfb(server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    count = SMOKE_COUNT if smoke else COUNT
    ours_path, theirs_path = f"/rows/ours?count={count}", f"/rows/starlette?count={count}"
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
    summary = _summary("ms", ours, theirs, None if smoke else ours <= MAX_TTFB_SHARE * theirs)
    summary["goal"] = {"value": MAX_TTFB_SHARE * theirs, "better": "lower"}
    return _row(
        "template-10k-ttfb",
        f"time to first byte of the page of {count} rows that already exist (ours: the thread path)",
        "ours <= 10% of Starlette's TTFB",
        verified=True,
        bytes=len(page),
        rounds={"ours": ours_rounds, "baseline": theirs_rounds},
        total_ms={"ours": median(ours_rounds, "total"), "baseline": median(theirs_rounds, "total")},
        summary=summary,
    )


def p99(samples: list[float]) -> float:
    """The 99th percentile by nearest rank (the maximum of fewer than 100 samples).

    >>> p99([float(n) for n in range(1, 201)]), p99([3.0, 1.0])
    (198.0, 3.0)
    """
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def probe_latencies(port: int, seconds: float) -> list[float]:
    """Milliseconds of each ``GET /ping`` sent every ``PROBE_INTERVAL_S`` for ``seconds``, on
    one kept-alive connection (a probe that takes longer delays the next one)."""
    request = b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n"
    latencies: list[float] = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                began = time.perf_counter()
                sock.sendall(request)
                answer = b""
                while not answer.endswith(b"\r\n\r\nok"):
                    data = sock.recv(4096)
                    if not data:
                        raise BenchmarkError("/ping: connection closed")
                    answer += data
                latencies.append((time.perf_counter() - began) * 1000)
                time.sleep(PROBE_INTERVAL_S)
    except OSError as exc:
        raise BenchmarkError(f"/ping: {exc!r}") from exc
    return latencies


def _under_load(server: Server, path: str, loaders: int, window: float) -> list[float]:
    """Probe latencies while ``loaders`` curl processes keep requesting ``path``."""
    url = server.url(f"{path}&repeat=[1-1000000]")  # curl's URL glob: the same page, again and again
    command = ["curl", "-q", "--silent", "--http1.1", "--noproxy", "*", url]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(loaders)]
    try:
        time.sleep(WARM_UP_S)
        for process in processes:
            if process.poll() is not None:
                raise BenchmarkError(f"a loader of {path} exited with {process.returncode}")
        return probe_latencies(server.port, window)
    finally:
        # Only the processes started here, by their own pids.
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _measure_concurrent(server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    count = SMOKE_COUNT if smoke else COUNT
    loaders, window = (SMOKE_LOADERS, SMOKE_WINDOW_S) if smoke else (LOADERS, WINDOW_S)
    ours_path, theirs_path = f"/rows/ours?count={count}", f"/rows/starlette?count={count}"
    _same_page(server, ours_path, theirs_path)
    samples: dict[str, list[float]] = {"ours": [], "baseline": []}
    for index in range(rounds):
        sides = [("ours", ours_path), ("baseline", theirs_path)]
        for side, path in sides if index % 2 == 0 else sides[::-1]:
            samples[side].extend(_under_load(server, path, loaders, window))
    ours, theirs = p99(samples["ours"]), p99(samples["baseline"])
    summary = _summary("ms", ours, theirs, None if smoke else ours <= MAX_P99_MS)
    summary["goal"] = {"value": MAX_P99_MS, "better": "lower"}
    return _row(
        "template-concurrent-p99",
        f"p99 latency of a trivial request while {loaders} pages of {count} rows render at once",
        f"ours <= {MAX_P99_MS:g} ms",
        verified=True,
        probes={side: len(values) for side, values in samples.items()},
        median_ms={side: statistics.median(values) for side, values in samples.items()},
        latencies_ms=samples,
        summary=summary,
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
    summary = _summary("ms", ours, theirs, None if smoke else ours <= MAX_TTFB_SHARE * theirs)
    summary["goal"] = {"value": MAX_TTFB_SHARE * theirs, "better": "lower"}
    return _row(
        "template-ttfb",
        f"time to first byte, {count} rows arriving over {ms} ms: streamed head vs whole page",
        "ours <= 10% of Starlette's TTFB (ratio >= 10)",
        verified=True,
        bytes=len(page),
        rounds={"ours": ours_rounds, "baseline": theirs_rounds},
        head_ms={"ours": median(ours_rounds, "head"), "baseline": median(theirs_rounds, "head")},
        total_ms={"ours": median(ours_rounds, "total"), "baseline": median(theirs_rounds, "total")},
        summary=summary,
    )


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the template rows (all, or those in ``only``)."""
    wanted = [row for row in ROWS if only is None or row in only]
    measures = {
        "template-10k-rows": _measure_total,
        "template-10k-ttfb": _measure_page_ttfb,
        "template-ttfb": _measure_ttfb,
        "template-concurrent-p99": _measure_concurrent,
    }
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
