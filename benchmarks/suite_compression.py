"""The compression rows: our compressed streams against our identity and Starlette's GZipMiddleware.

One uvicorn runs ``benchmarks.app_compression``; curl downloads every side with ``--compressed``
and the ``Accept-Encoding`` of that side (none for the identity), so the time includes the
client's decoding and ``size_download`` is the bytes on the wire. Before timing, every side's
decoded body is checked against our identity body (the same events, items or rows). Sides
alternate within each round on the one server: identity, zstd, br, gzip, then the baseline
(Starlette's ``StreamingResponse`` behind ``GZipMiddleware``, level 9, SSE included).

Rows:

* ``compress-{sse,jsonl,csv}-{zstd,br,gzip}``: wire bytes and total time against ours
  uncompressed. Targets (CSV and JSON Lines; SSE reported): zstd at most 25% of the identity's
  bytes and 1.5x its time; br and gzip at most 30% and 2x.
* ``compress-{sse,jsonl,csv}-vs-gzip-middleware``: ours with gzip against the baseline on the
  same body: at least 3x faster. Both wire sizes are recorded.
* ``compress-latency-{zstd,br,gzip}``: the core's slow-producer row (a time stamp every 20 ms,
  raw socket) with the response compressed and decoded as it arrives: the median added latency
  at most 1 ms above ours uncompressed.
* ``compress-sse-latency-{uvicorn,hypercorn,granian}``: an event every 20 ms on each server,
  for each coding: the worst yield-to-decode time of any event at most 50 ms.
* ``compress-sse-idle-memory``: server RSS per open compressed event stream, fresh uvicorn per
  coding, idle (only the opening comment sent) and warm (64 KiB of events sent first, so the
  window and tables are touched). Target: within the bounds documented in docs/compression.md.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks._clients import BenchmarkError, ChunkedDecoder
from benchmarks._server import HOST, Server, ServerError, serve
from tests.decoders import CODINGS, StreamDecoder
from tests.sse_parser import EventStreamParser, parse_stream

APP = "benchmarks.app_compression:app"
BODIES = ("sse", "jsonl", "csv")
SERVERS = ("uvicorn", "hypercorn", "granian")
ROWS: tuple[str, ...] = (
    *(f"compress-{body}-{coding}" for body in BODIES for coding in CODINGS),
    *(f"compress-{body}-vs-gzip-middleware" for body in BODIES),
    *(f"compress-latency-{coding}" for coding in CODINGS),
    *(f"compress-sse-latency-{server}" for server in SERVERS),
    "compress-sse-idle-memory",
)

#: Full and smoke sizes of each body.
SIZES = {"sse": (100_000, 1_000), "jsonl": (100_000, 1_000), "csv": (200_000, 2_000)}
QUERY = {"sse": "n", "jsonl": "n", "csv": "rows"}
#: Wire share of the identity and time factor against it, per coding (CSV and JSON Lines).
TARGETS = {"zstd": (0.25, 1.5), "br": (0.30, 2.0), "gzip": (0.30, 2.0)}
#: Ours with gzip against Starlette's GZipMiddleware: at least this much faster.
MIDDLEWARE_FACTOR = 3.0
#: The baseline takes 3-20 s per request at full size: it gets at most this many rounds.
MIDDLEWARE_ROUNDS = 3
LATENCY_CHUNKS, LATENCY_SMOKE, LATENCY_INTERVAL_MS = 50, 5, 20
MAX_ADDED_MS = 1.0
SSE_EVENTS, SSE_SMOKE = 50, 5
MAX_EVENT_MS = 50.0
MEMORY_STREAMS, MEMORY_SMOKE = 500, 20
WARM_BYTES = 64 * 1024
#: KiB per stream this library documents (docs/compression.md), idle and warm, per coding.
#: zstd's warm bound was 240 until the uncompressed warm stream stopped holding its last
#: message (206 KiB to 22 KiB per stream): the difference then showed zstd's true warm cost.
MEMORY_BOUNDS = {"zstd": (160, 300), "br": (320, 420), "gzip": (100, 160)}


def _row(name: str, description: str, target: str, **rest: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "target": target, "error": None, **rest}


def _failed(name: str, error: str) -> dict[str, Any]:
    summary = {
        "unit": "-",
        "ours": 0.0,
        "baseline": None,
        "baseline_name": "-",
        "ratio": None,
        "passed": None,
    }
    return _row(name, name, "-", verified=False, error=error, summary=summary)


# -- clients -------------------------------------------------------------------------------------------


def curl_coded(
    url: str, coding: str | None, output: str = os.devnull, timeout: float = 300.0
) -> tuple[float, int]:
    """Download ``url`` asking for ``coding`` (``None``: identity); return (seconds, wire bytes).

    Raises :class:`BenchmarkError` unless curl exits 0 with a 200 sent with that coding.
    """
    command = ["curl", "-q", "--silent", "--show-error", "--http1.1", "--noproxy", "*", "--compressed"]
    command += ["--header", f"Accept-Encoding: {coding or 'identity'}"]
    command += ["--max-time", f"{timeout:g}", "--output", output]
    command += ["--write-out", "%{http_code} %{size_download} %{time_total} [%header{content-encoding}]", url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"curl did not finish {url} within {timeout:g}s") from None
    if done.returncode != 0:
        raise BenchmarkError(f"curl exited {done.returncode} for {url}: {done.stderr.strip()}")
    status, size, seconds, sent_coding = done.stdout.split()
    if status != "200":
        raise BenchmarkError(f"{url} answered {status}")
    if sent_coding != f"[{coding or ''}]":
        raise BenchmarkError(f"{url} was sent with Content-Encoding {sent_coding}, not {coding}")
    return float(seconds), int(size)


def _open(url: str, coding: str | None, timeout: float = 30.0) -> tuple[socket.socket, bytes]:
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname or HOST, parts.port or 80), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accept = f"Accept-Encoding: {coding}\r\n" if coding else ""
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: bench\r\n{accept}Connection: close\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise BenchmarkError(f"{url}: closed before the response head")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1:2] != ["200"]:
        raise BenchmarkError(f"{url} answered {lines[0]!r}")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
    }
    if headers.get("content-encoding") != coding:
        raise BenchmarkError(f"{url}: Content-Encoding {headers.get('content-encoding')}, expected {coding}")
    if headers.get("transfer-encoding", "").lower() != "chunked":
        raise BenchmarkError(f"{url}: expected a chunked (streamed) response, got {headers}")
    return sock, rest


def _read_decoded(url: str, coding: str | None, on_data: Callable[[bytes, int], None]) -> None:
    """Read a chunked body, decoding its coding as it arrives; ``on_data(decoded, received_ns)``."""
    sock, data = _open(url, coding)
    chunked = ChunkedDecoder()
    decoder = None if coding is None else StreamDecoder(coding)
    with sock:
        while True:
            received = time.monotonic_ns()
            body = chunked.feed(data)
            on_data(body if decoder is None else decoder.feed(body), received)
            if chunked.done:
                break
            data = sock.recv(65536)
            if not data:
                raise BenchmarkError(f"{url}: connection closed before the end of the chunked body")
    if decoder is not None and not decoder.finished:
        raise BenchmarkError(f"{url}: the {coding} stream did not end")


def stamp_latencies_ms(url: str, coding: str | None, count: int) -> list[float]:
    """Receive - stamp, in ms, of each ``_payload.stamp()`` record, decoded as it arrives."""
    pending = bytearray()
    latencies: list[float] = []

    def on_data(data: bytes, received: int) -> None:
        nonlocal pending
        *lines, tail = bytes(pending + data).split(b"\n")
        pending = bytearray(tail)
        latencies.extend((received - int(line)) / 1e6 for line in lines)

    _read_decoded(url, coding, on_data)
    if len(latencies) != count or pending:
        raise BenchmarkError(f"{url}: {len(latencies)} time stamps, expected {count}")
    return latencies


def event_latencies_ms(url: str, coding: str | None, count: int) -> list[float]:
    """Decode - make, in ms, of each event of ``/sse-latency`` (its data is the stamp)."""
    parser = EventStreamParser()
    latencies: list[float] = []

    def on_data(data: bytes, received: int) -> None:
        latencies.extend((received - int(event.data)) / 1e6 for event in parser.feed(data))

    _read_decoded(url, coding, on_data)
    if len(latencies) != count:
        raise BenchmarkError(f"{url}: {len(latencies)} events, expected {count}")
    return latencies


# -- throughput ---------------------------------------------------------------------------------------


def _reference(body: str, data: bytes) -> Any:
    """What a body means, to compare ours with the baseline (JSON separators and order aside)."""
    if body == "sse":
        return [(event.data, event.last_event_id) for event in parse_stream(data)]
    if body == "jsonl":
        import json

        return [json.loads(line) for line in data.splitlines()]
    return data


def _verify(server: Server, body: str, count: int, scratch: Path) -> dict[str, int]:
    """Download every side decoded and check it against our identity; return identity bytes."""
    query = f"?{QUERY[body]}={count}"
    saved = scratch / "identity"
    curl_coded(server.url(f"/{body}{query}"), None, str(saved))
    reference = _reference(body, saved.read_bytes())
    if body == "sse" and len(reference) != count:
        raise BenchmarkError(f"/sse sent {len(reference)} events, expected {count}")
    for side, path, coding in [
        *((coding, f"/{body}{query}", coding) for coding in CODINGS),
        ("middleware", f"/mw/{body}{query}", "gzip"),
    ]:
        target = scratch / side
        curl_coded(server.url(path), coding, str(target))
        if _reference(body, target.read_bytes()) != reference:
            raise BenchmarkError(f"{path} with {coding} decoded to another body than our identity")
    return {"identity_bytes": saved.stat().st_size}


def _throughput(server: Server, body: str, *, rounds: int, smoke: bool) -> list[dict[str, Any]]:
    count = SIZES[body][1 if smoke else 0]
    query = f"?{QUERY[body]}={count}"
    ours = server.url(f"/{body}{query}")
    middleware = server.url(f"/mw/{body}{query}")
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as scratch:
        _verify(server, body, count, Path(scratch))
    samples: list[dict[str, tuple[float, int]]] = []
    for index in range(rounds):
        sample = {"identity": curl_coded(ours, None)}
        for coding in CODINGS:
            sample[coding] = curl_coded(ours, coding)
        if index < MIDDLEWARE_ROUNDS:
            sample["middleware"] = curl_coded(middleware, "gzip")
        samples.append(sample)
    seconds = {
        side: statistics.median(sample[side][0] for sample in samples if side in sample)
        for side in samples[0]
    }
    wire = {
        side: statistics.median(sample[side][1] for sample in samples if side in sample)
        for side in samples[0]
    }
    noun = {"sse": "SSE events", "jsonl": "JSON Lines items", "csv": "CSV rows"}[body]
    common = {"verified": True, "seconds": seconds, "wire_bytes": wire, "rounds": samples}
    results = []
    for coding in CODINGS:
        share, factor = TARGETS[coding]
        judged = body != "sse" and not smoke
        passed = wire[coding] <= share * wire["identity"] and seconds[coding] <= factor * seconds["identity"]
        results.append(
            _row(
                f"compress-{body}-{coding}",
                f"{count:,} {noun}, {coding}: wire {wire[coding] / wire['identity']:.1%} of identity, "
                f"time {seconds[coding] / seconds['identity']:.2f}x ours uncompressed",
                f"wire <= {share:.0%}, time <= {factor:g}x" if body != "sse" else "reported",
                wire_share=wire[coding] / wire["identity"],
                **common,
                summary={
                    "unit": "s",
                    "ours": seconds[coding],
                    "baseline": seconds["identity"],
                    "baseline_name": "ours uncompressed",
                    "ratio": seconds["identity"] / seconds[coding],
                    "passed": passed if judged else None,
                },
            )
        )
    ratio = seconds["middleware"] / seconds["gzip"]
    results.append(
        _row(
            f"compress-{body}-vs-gzip-middleware",
            f"{count:,} {noun}: ours gzip (wire {wire['gzip'] / wire['identity']:.1%}) vs Starlette "
            f"StreamingResponse + GZipMiddleware (wire {wire['middleware'] / wire['identity']:.1%})",
            f">= {MIDDLEWARE_FACTOR:g}x",
            **common,
            summary={
                "unit": "s",
                "ours": seconds["gzip"],
                "baseline": seconds["middleware"],
                "baseline_name": "GZipMiddleware",
                "ratio": ratio,
                "passed": None if smoke else ratio >= MIDDLEWARE_FACTOR,
            },
        )
    )
    return results


# -- latency ----------------------------------------------------------------------------------------------


def _latency(server: Server, *, rounds: int, smoke: bool) -> list[dict[str, Any]]:
    count = LATENCY_SMOKE if smoke else LATENCY_CHUNKS
    url = server.url(f"/latency?chunks={count}&interval_ms={LATENCY_INTERVAL_MS}")
    sides: list[str | None] = [None, *CODINGS]
    samples: dict[str | None, list[float]] = {side: [] for side in sides}
    for side in sides:  # warm-up
        stamp_latencies_ms(url, side, count)
    for _ in range(rounds):
        for side in sides:
            samples[side].extend(stamp_latencies_ms(url, side, count))
    identity = statistics.median(samples[None])
    results = []
    for coding in CODINGS:
        median = statistics.median(samples[coding])
        results.append(
            _row(
                f"compress-latency-{coding}",
                f"added latency (receive - yield), a chunk every {LATENCY_INTERVAL_MS} ms, {coding} "
                "decoded on arrival vs ours uncompressed",
                f"<= uncompressed + {MAX_ADDED_MS:g} ms",
                verified=True,
                latency_ms={"identity": samples[None], coding: samples[coding]},
                summary={
                    "unit": "ms",
                    "ours": median,
                    "baseline": identity,
                    "baseline_name": "ours uncompressed",
                    "ratio": None,
                    "passed": None if smoke else median <= identity + MAX_ADDED_MS,
                },
            )
        )
    return results


def _sse_latency(kind: str, *, rounds: int, smoke: bool) -> dict[str, Any]:
    """Every coding on one server kind: the worst yield-to-decode time of any event."""
    from tests.e2e.servers import start_server

    name = kind.split("-")[0]
    count = SSE_SMOKE if smoke else SSE_EVENTS
    server = start_server(kind, app=APP)
    try:
        url = server.url(f"/sse-latency?n={count}&interval_ms={LATENCY_INTERVAL_MS}")
        samples: dict[str, list[float]] = {coding: [] for coding in ("identity", *CODINGS)}
        for side in samples:  # warm-up
            event_latencies_ms(url, None if side == "identity" else side, count)
        for _ in range(rounds):
            for side, values in samples.items():
                values.extend(event_latencies_ms(url, None if side == "identity" else side, count))
    finally:
        server.stop()
    worst = max(max(samples[coding]) for coding in CODINGS)
    return _row(
        f"compress-sse-latency-{name}",
        f"an event every {LATENCY_INTERVAL_MS} ms on {name}, each coding decoded on arrival: the worst "
        "yield-to-decode time of any event (ours uncompressed as the baseline)",
        f"<= {MAX_EVENT_MS:g} ms",
        verified=True,
        latency_ms=samples,
        medians_ms={side: statistics.median(values) for side, values in samples.items()},
        max_ms={side: max(values) for side, values in samples.items()},
        p99_ms={side: statistics.quantiles(values, n=100)[98] for side, values in samples.items()},
        summary={
            "unit": "ms",
            "ours": worst,
            "baseline": max(samples["identity"]),
            "baseline_name": "uncompressed, worst",
            "ratio": None,
            "passed": None if smoke else worst <= MAX_EVENT_MS,
        },
    )


# -- memory ------------------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def _streams(port: int, path: str, coding: str | None, count: int) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock, _rest = _open(f"http://{HOST}:{port}{path}", coding, timeout=10)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _per_stream_kib(coding: str | None, warm: int, count: int) -> float:
    """RSS growth of a fresh uvicorn per open event stream, after ``warm`` bytes of events each."""
    path = f"/idle?warm={warm}"
    with serve(app=APP) as server:
        with _streams(server.port, path, coding, min(20, count)):
            pass
        time.sleep(0.5)
        before = _rss_kib(server.pid)
        with _streams(server.port, path, coding, count):
            time.sleep(1.0)
            after = _rss_kib(server.pid)
    return (after - before) / count


def _memory(*, smoke: bool) -> dict[str, Any]:
    count = MEMORY_SMOKE if smoke else MEMORY_STREAMS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 200), hard))
    figures: dict[str, dict[str, float]] = {}
    for side in ("identity", *CODINGS):
        coding = None if side == "identity" else side
        figures[side] = {
            "idle": _per_stream_kib(coding, 0, count),
            "warm": _per_stream_kib(coding, WARM_BYTES, count),
        }
    within = all(
        figures[coding]["idle"] - figures["identity"]["idle"] <= MEMORY_BOUNDS[coding][0]
        and figures[coding]["warm"] - figures["identity"]["warm"] <= MEMORY_BOUNDS[coding][1]
        for coding in CODINGS
    )
    worst = max(figures[coding]["warm"] for coding in CODINGS)
    bounds = ", ".join(f"{coding} {idle}/{warm}" for coding, (idle, warm) in MEMORY_BOUNDS.items())
    return _row(
        "compress-sse-idle-memory",
        f"server RSS per open event stream, {count} streams, fresh uvicorn per side, idle and after "
        f"{WARM_BYTES // 1024} KiB of events (ours = the worst coding, warm)",
        f"compressor <= {bounds} KiB (idle/warm)",
        verified=True,
        per_stream_kib=figures,
        summary={
            "unit": "KiB",
            "ours": worst,
            "baseline": figures["identity"]["warm"],
            "baseline_name": "uncompressed, warm",
            "ratio": None,
            "passed": None if smoke else within,
        },
    )


def _one(measure: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return [measure(*args, **kwargs)]


# -- the suite ------------------------------------------------------------------------------------------


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the compression rows (all, or those in ``only``); see the module docstring."""
    wanted = [row for row in ROWS if only is None or row in only]
    results: list[dict[str, Any]] = []

    def attempt(names: list[str], measure: Callable[[], list[dict[str, Any]]]) -> None:
        if not any(name in wanted for name in names):
            return
        print(f"  {names[0]} ...", file=sys.stderr, flush=True)
        try:
            measured = measure()
        except (BenchmarkError, ServerError, OSError, subprocess.SubprocessError) as exc:
            results.extend(_failed(name, str(exc)) for name in names if name in wanted)
            return
        results.extend(row for row in measured if row["name"] in wanted)

    try:
        with serve(app=APP) as server:
            for body in BODIES:
                names = [f"compress-{body}-{coding}" for coding in CODINGS]
                names.append(f"compress-{body}-vs-gzip-middleware")
                attempt(names, functools.partial(_throughput, server, body, rounds=rounds, smoke=smoke))
            attempt(
                [f"compress-latency-{coding}" for coding in CODINGS],
                lambda: _latency(server, rounds=rounds, smoke=smoke),
            )
    except ServerError as exc:
        results.extend(_failed(name, str(exc)) for name in wanted if not name.startswith("compress-sse-"))
    for kind in ("uvicorn-httptools", "hypercorn", "granian"):
        name = f"compress-sse-latency-{kind.split('-')[0]}"
        attempt([name], functools.partial(_one, _sse_latency, kind, rounds=rounds, smoke=smoke))
    attempt(["compress-sse-idle-memory"], lambda: [_memory(smoke=smoke)])
    order = {name: index for index, name in enumerate(ROWS)}
    return sorted(results, key=lambda row: order[row["name"]])
