"""The server-sent events rows: throughput against sse-starlette and FastAPI, and idle-stream memory.

This suite serves :mod:`benchmarks.app_sse` with the harness's uvicorn
(:func:`benchmarks._server.serve`). The rule that keeps the numbers honest: before anything is
timed, each side's whole body is parsed with the WHATWG parser of the tests
(``tests/sse_parser.py``) and must give exactly the expected events (data ``i``, id ``i``, in
order); every timed download is then checked by curl for its status and its size; the sides
alternate within each round on the same server and client; the summary is the median.

Rows:

* ``sse-vs-sse-starlette``: 100,000 events, ours against ``sse_starlette.EventSourceResponse``;
  ratio = sse-starlette's time / ours.
* ``sse-vs-fastapi``: the same against FastAPI's native SSE (a generator path operation with
  ``response_class=fastapi.sse.EventSourceResponse``); ratio = FastAPI's time / ours.
* ``sse-idle-memory``: the growth of the server's VmRSS per idle open stream (1,000 streams
  opened with raw sockets, each read up to the end of its headers), ours and sse-starlette's,
  each side on a fresh uvicorn; ratio = sse-starlette's KiB / ours.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import socket
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from benchmarks._clients import BenchmarkError, curl
from benchmarks._server import HOST, ServerError, serve
from tests.sse_parser import ParsedEvent, parse_stream

ROWS: tuple[str, ...] = ("sse-vs-sse-starlette", "sse-vs-fastapi", "sse-idle-memory")

APP = "benchmarks.app_sse:app"
EVENTS = 100_000
SMOKE_EVENTS = 1_000
STREAMS = 1_000
SMOKE_STREAMS = 20
#: Streams opened and closed on a fresh server before its baseline RSS is read (warm-up).
WARM_STREAMS = 10
#: Seconds the server may settle after the last stream opened, before its RSS is read.
SETTLE_SECONDS = 1.0
MIN_RATIO_VS_SSE_STARLETTE = 20.0
MIN_RATIO_VS_FASTAPI = 50.0
MAX_KIB_PER_STREAM = 15.0

#: Row name -> (baseline side, its label, minimum ratio).
THROUGHPUT: dict[str, tuple[str, str, float]] = {
    "sse-vs-sse-starlette": ("sse-starlette", "sse-starlette 3.7", MIN_RATIO_VS_SSE_STARLETTE),
    "sse-vs-fastapi": ("fastapi", "fastapi.sse", MIN_RATIO_VS_FASTAPI),
}


def expected_events(count: int) -> list[ParsedEvent]:
    """What a browser must see from ``/events/<side>?n=count``: data ``i``, id ``i``.

    >>> expected_events(1)
    [ParsedEvent(type='message', data='0', last_event_id='0')]
    """
    return [ParsedEvent(type="message", data=str(i), last_event_id=str(i)) for i in range(count)]


def _row(name: str, description: str, target: str) -> dict[str, Any]:
    return {"name": name, "description": description, "target": target, "error": None, "verified": False}


# --- throughput ----------------------------------------------------------------------------


def verify_events(url: str, count: int) -> int:
    """Download ``url`` once, check its events with the WHATWG parser; return its size in bytes."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=300) as response:
            if response.status != 200:
                raise BenchmarkError(f"{url} answered {response.status}, expected 200")
            body = response.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise BenchmarkError(f"{url}: {exc!r}") from exc
    size = len(body)
    events = parse_stream(body)
    expected = expected_events(count)
    if events != expected:
        first_bad = next(
            (i for i, (got, want) in enumerate(zip(events, expected, strict=False)) if got != want),
            min(len(events), len(expected)),
        )
        raise BenchmarkError(
            f"{url} sent {len(events)} events, expected {count}; first difference at event {first_bad}: "
            f"{events[first_bad : first_bad + 1]} != {expected[first_bad : first_bad + 1]}"
        )
    return size


def _throughput_row(name: str, server_url: Any, rounds: int, smoke: bool) -> dict[str, Any]:
    baseline_side, baseline_name, min_ratio = THROUGHPUT[name]
    count = SMOKE_EVENTS if smoke else EVENTS
    row = _row(
        name,
        f"{count:,} events with data and id, ours against {baseline_name}, curl on uvicorn",
        f">= {min_ratio:g}x",
    )
    sides = {"ours": "ours", "baseline": baseline_side}
    urls = {side: server_url(f"/events/{path}?n={count}") for side, path in sides.items()}
    row["urls"] = urls
    row["events"] = count
    try:
        sizes = {side: verify_events(url, count) for side, url in urls.items()}
        row["bytes"] = sizes
        row["verified"] = True
        timings = []
        for _ in range(rounds):
            timings.append(
                {
                    side: {"seconds": curl(urls[side], expected_bytes=sizes[side]), "bytes": sizes[side]}
                    for side in ("ours", "baseline")
                }
            )
    except BenchmarkError as exc:
        row["error"] = str(exc)
        return row
    ours = statistics.median(timing["ours"]["seconds"] for timing in timings)
    baseline = statistics.median(timing["baseline"]["seconds"] for timing in timings)
    ratio = baseline / ours if ours > 0 else float("inf")
    row["rounds"] = timings
    row["summary"] = {
        "unit": "s",
        "ours": ours,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "passed": None if smoke else ratio >= min_ratio,
    }
    return row


# --- idle memory ---------------------------------------------------------------------------


def vm_rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS line in /proc/{pid}/status")


def open_stream(port: int, path: str, timeout: float = 10.0) -> socket.socket:
    """Open an event stream with a raw socket and read its head; return the open socket."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise BenchmarkError(f"{path}: connection closed before the response head")
            head += data
        status_line, _, rest = head.partition(b"\r\n")
        if status_line.split(b" ")[1:2] != [b"200"]:
            raise BenchmarkError(f"{path} answered {status_line!r}, expected 200")
        if b"text/event-stream" not in rest.split(b"\r\n\r\n")[0].lower():
            raise BenchmarkError(f"{path}: not an event stream: {head!r}")
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _open_streams(port: int, path: str, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(open_stream(port, path))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _raise_file_limit(needed: int) -> None:
    # The client holds one descriptor per stream and the server (which inherits this limit)
    # one more; raise the soft limit toward the hard one if it is too low.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def kib_per_idle_stream(side: str, streams: int) -> float:
    """On a fresh uvicorn, the VmRSS growth per open idle stream of ``side``, in KiB."""
    path = f"/idle/{side}"
    with serve(app=APP) as server:
        with _open_streams(server.port, path, WARM_STREAMS):
            pass
        time.sleep(0.3)
        before = vm_rss_kib(server.pid)
        with _open_streams(server.port, path, streams):
            time.sleep(SETTLE_SECONDS)
            after = vm_rss_kib(server.pid)
            if os.waitpid(server.pid, os.WNOHANG) != (0, 0):
                raise BenchmarkError(f"the server died while {streams} streams were open:\n{server.log()}")
    return (after - before) / streams


def _memory_row(rounds: int, smoke: bool) -> dict[str, Any]:
    streams = SMOKE_STREAMS if smoke else STREAMS
    row = _row(
        "sse-idle-memory",
        f"server VmRSS growth per idle open stream, {streams:,} streams, ours against sse-starlette",
        f"<= {MAX_KIB_PER_STREAM:g} KiB",
    )
    row["streams"] = streams
    _raise_file_limit(streams)
    samples = []
    try:
        for _ in range(rounds):
            samples.append({side: kib_per_idle_stream(side, streams) for side in ("ours", "sse-starlette")})
    except (BenchmarkError, ServerError, OSError) as exc:
        row["error"] = str(exc)
        return row
    ours = statistics.median(sample["ours"] for sample in samples)
    baseline = statistics.median(sample["sse-starlette"] for sample in samples)
    row["verified"] = True  # every stream answered 200 text/event-stream before it counted
    row["rounds"] = samples
    row["summary"] = {
        "unit": "KiB",
        "ours": ours,
        "baseline": baseline,
        "baseline_name": "sse-starlette 3.7",
        "ratio": baseline / ours if ours > 0 else None,
        "passed": None if smoke else ours <= MAX_KIB_PER_STREAM,
    }
    return row


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the rows in ``only`` (all when ``None``); see the module docstring."""
    wanted = [name for name in ROWS if only is None or name in only]
    results: list[dict[str, Any]] = []
    throughput = [name for name in wanted if name in THROUGHPUT]
    if throughput:
        try:
            with serve(app=APP) as server:
                results.extend(_throughput_row(name, server.url, rounds, smoke) for name in throughput)
        except ServerError as exc:
            results.extend({**_row(name, "", ""), "error": str(exc)} for name in throughput)
    if "sse-idle-memory" in wanted:
        results.append(_memory_row(rounds, smoke))
    return results
