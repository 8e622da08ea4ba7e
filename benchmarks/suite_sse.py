"""Server-sent events rows: throughput against sse-starlette and FastAPI's native SSE, idle memory.

Throughput: one uvicorn server runs ``benchmarks.app_sse``; each side streams the same N events
(``data`` and ``id``) from the same generator; curl downloads the body, sides alternate, the
median of the rounds counts. Before timing, each side's body is parsed with the WHATWG parser
of the tests and must give the same N events (comments and pings ignored; FastAPI JSON-quotes
string data, which is decoded before comparing). Memory: a fresh uvicorn process per side,
1,000 idle streams held open on raw sockets, ``VmRSS`` growth divided by the stream count.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._clients import BenchmarkError
from benchmarks._server import HOST, Server, serve
from tests.sse_parser import parse_stream

APP = "benchmarks.app_sse:app"
ROWS: tuple[str, ...] = ("sse-throughput-vs-sse-starlette", "sse-throughput-vs-fastapi", "sse-idle-memory")
PAYLOAD = "x" * 20


def _curl(url: str, output: str = os.devnull, timeout: float = 300.0) -> tuple[float, int]:
    command = ["curl", "-q", "--silent", "--show-error", "--http1.1", "--noproxy", "*"]
    command += ["--max-time", f"{timeout:g}", "--output", output]
    command += ["--write-out", "%{http_code} %{size_download} %{time_total}", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"curl exited {done.returncode} for {url}: {done.stderr.strip()}")
    status, size, seconds = done.stdout.split()
    if status != "200":
        raise BenchmarkError(f"{url} answered {status}")
    return float(seconds), int(size)


def _verify(url: str, n: int, decode: Callable[[str], str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as scratch:
        saved = str(Path(scratch) / "body")
        _curl(url, saved)
        events = parse_stream(Path(saved).read_bytes())
    got = [(decode(e.data), e.last_event_id, e.type) for e in events]
    want = [(PAYLOAD, str(i), "message") for i in range(n)]
    if got != want:
        raise BenchmarkError(f"{url}: {len(got)} events parsed, not the {n} expected ones: {got[:3]}...")


def _throughput(
    server: Server,
    name: str,
    ours: str,
    baseline: str,
    baseline_name: str,
    *,
    n: int,
    rounds: int,
    smoke: bool,
    target: float,
    decode_baseline: Callable[[str], str],
) -> dict[str, Any]:
    urls = {"ours": server.url(f"{ours}?n={n}"), "baseline": server.url(f"{baseline}?n={n}")}
    result: dict[str, Any] = {
        "name": name,
        "description": f"{n:,} events with data and id, ours vs {baseline_name}, uvicorn, curl",
        "target": f">= {target:g}x {baseline_name}",
        "error": None,
        "verified": False,
        "urls": urls,
    }
    try:
        _verify(urls["ours"], n, str)
        _verify(urls["baseline"], n, decode_baseline)
        samples = [{side: _curl(url)[0] for side, url in urls.items()} for _ in range(rounds)]
    except (BenchmarkError, OSError, subprocess.SubprocessError) as exc:
        result["error"] = str(exc)
        result["summary"] = {
            "unit": "s",
            "ours": 0.0,
            "baseline": None,
            "baseline_name": baseline_name,
            "ratio": None,
            "passed": None,
        }
        return result
    ours_s = statistics.median(s["ours"] for s in samples)
    base_s = statistics.median(s["baseline"] for s in samples)
    ratio = base_s / ours_s if ours_s > 0 else float("inf")
    result["verified"] = True
    result["rounds"] = samples
    result["summary"] = {
        "unit": "s",
        "ours": ours_s,
        "baseline": base_s,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "passed": None if smoke else ratio >= target,
    }
    return result


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for pid {pid}")


def _open_idle(port: int, path: str | None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    if path is not None:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                raise BenchmarkError(f"{path}: closed before the response head")
            head += data
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchmarkError(f"{path}: {head[:80]!r}")
    return sock


def _per_stream_kib(path: str | None, count: int) -> float:
    """RSS growth of a fresh uvicorn per stream held open on ``path`` (``None``: a bare connection)."""
    with serve(app=APP) as server:
        warm = [_open_idle(server.port, path) for _ in range(min(20, count))]
        for sock in warm:
            sock.close()
        time.sleep(0.5)
        before = _rss_kib(server.pid)
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                socks.append(_open_idle(server.port, path))
            time.sleep(1.0 if path is None else 0.5)
            after = _rss_kib(server.pid)
        finally:
            for sock in socks:
                sock.close()
    return (after - before) / count


def _memory(*, smoke: bool, target: float) -> dict[str, Any]:
    count = 50 if smoke else 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 200), hard))
    result: dict[str, Any] = {
        "name": "sse-idle-memory",
        "description": f"server RSS per idle open stream, {count} streams, fresh uvicorn per side",
        "target": f"<= {target:g} KiB per stream",
        "error": None,
        "verified": True,
    }
    try:
        figures = {
            "ours": _per_stream_kib("/idle/ours", count),
            "sse-starlette": _per_stream_kib("/idle/sse-starlette", count),
            "fastapi-native": _per_stream_kib("/fastapi/idle", count),
            "starlette-floor": _per_stream_kib("/idle/floor", count),
            "bare-connection": _per_stream_kib(None, count),
        }
    except (BenchmarkError, OSError) as exc:
        result["error"] = str(exc)
        result["verified"] = False
        result["summary"] = {
            "unit": "KiB",
            "ours": 0.0,
            "baseline": None,
            "baseline_name": "sse-starlette",
            "ratio": None,
            "passed": None,
        }
        return result
    result["per_stream_kib"] = figures
    ours = figures["ours"]
    base = figures["sse-starlette"]
    result["summary"] = {
        "unit": "KiB",
        "ours": ours,
        "baseline": base,
        "baseline_name": "sse-starlette",
        "ratio": base / ours if ours > 0 else None,
        "passed": None if smoke else ours <= target,
    }
    return result


def _with_return_style(server: Server, *, n: int, rounds: int, row: dict[str, Any]) -> dict[str, Any]:
    """Add the figure of a FastAPI path operation that *returns* our response.

    FastAPI wraps a generator path operation's async generator in one that awaits
    ``anyio.sleep(0)`` after every item (fastapi/routing.py, "To allow for cancellation"), one
    event-loop round trip per event that no response class can avoid; returning
    ``EventSourceResponse(gen())`` from a plain path operation skips that wrapper.
    """
    if row["error"] is None:
        url = server.url(f"/fastapi/ours-return?n={n}")
        _verify(url, n, str)
        seconds = statistics.median(_curl(url)[0] for _ in range(rounds))
        baseline = row["summary"]["baseline"]
        row["ours_returning_the_response"] = {"seconds": seconds, "ratio": baseline / seconds}
    return row


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the SSE rows (all, or those in ``only``); see the module docstring."""
    wanted = set(ROWS if only is None else only)
    n = 1_000 if smoke else 100_000
    results: list[dict[str, Any]] = []
    if wanted & {"sse-throughput-vs-sse-starlette", "sse-throughput-vs-fastapi"}:
        with serve(app=APP) as server:
            if "sse-throughput-vs-sse-starlette" in wanted:
                results.append(
                    _throughput(
                        server,
                        "sse-throughput-vs-sse-starlette",
                        "/sse/ours",
                        "/sse/sse-starlette",
                        "sse-starlette",
                        n=n,
                        rounds=rounds,
                        smoke=smoke,
                        target=20,
                        decode_baseline=str,
                    )
                )
            if "sse-throughput-vs-fastapi" in wanted:
                results.append(
                    _with_return_style(
                        server,
                        n=n,
                        rounds=rounds,
                        row=_throughput(
                            server,
                            "sse-throughput-vs-fastapi",
                            "/fastapi/ours",
                            "/fastapi/native",
                            "fastapi.sse",
                            n=n,
                            rounds=rounds,
                            smoke=smoke,
                            target=50,
                            decode_baseline=json.loads,
                        ),
                    )
                )
    if "sse-idle-memory" in wanted:
        results.append(_memory(smoke=smoke, target=15))
    return results
