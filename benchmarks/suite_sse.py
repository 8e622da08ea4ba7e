"""Server-sent events rows: throughput against sse-starlette and FastAPI's native SSE, idle memory.

Throughput: one uvicorn server runs ``benchmarks.app_sse``; each side streams the same N events
(``data`` and ``id``) from the same generator; curl downloads the body, sides alternate, the
median of the rounds counts. Before timing, each side's body is parsed with the WHATWG parser
of the tests and must give the same N events (comments and pings ignored; FastAPI JSON-quotes
string data, which is decoded before comparing). Memory: a fresh uvicorn process per side,
1,000 idle streams held open on raw sockets, ``VmRSS`` growth divided by the stream count.

Rows:

* ``sse-throughput-vs-sse-starlette``: the harness's form (a constant payload), both sides fed
  event objects; >= 20x.
* ``sse-objects-vs-sse-starlette``: the form users write, ``ServerSentEvent(data="payload-" +
  str(i), id=str(i))`` built per item, against sse-starlette fed dicts; >= 20x. Anchor: the raw
  ASGI ceiling (the same generator, its bytes sent by a bare ASGI app).
* ``sse-dicts-vs-sse-starlette``: sse-starlette's dicts moved to ours unchanged
  (``dicts="fields"``); reported, with the same ceiling.
* ``sse-fastapi-returned-response``: a FastAPI path operation returning ours, against a
  ``fastapi.sse`` generator endpoint; >= 50x.
* ``sse-fastapi-generator-endpoint``: ours as ``response_class=`` of a generator endpoint, whose
  items FastAPI hands over with an ``anyio.sleep(0)`` each; reported.
* ``sse-idle-memory``: RSS per idle stream; <= the Starlette idle floor + 5 KiB, measured in the
  same run (anchors: the floor, a bare connection, sse-starlette, ``fastapi.sse``).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._clients import BenchmarkError
from benchmarks._server import HOST, Server, serve
from tests.sse_parser import parse_stream

APP = "benchmarks.app_sse:app"
ROWS: tuple[str, ...] = (
    "sse-throughput-vs-sse-starlette",
    "sse-objects-vs-sse-starlette",
    "sse-dicts-vs-sse-starlette",
    "sse-fastapi-returned-response",
    "sse-fastapi-generator-endpoint",
    "sse-idle-memory",
)
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


def _harness_data(i: int) -> str:
    return PAYLOAD


def _item_data(i: int) -> str:
    return "payload-" + str(i)


def _verify(url: str, n: int, decode: Callable[[str], str], data: Callable[[int], str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as scratch:
        saved = str(Path(scratch) / "body")
        _curl(url, saved)
        events = parse_stream(Path(saved).read_bytes())
    got = [(decode(e.data), e.last_event_id, e.type) for e in events]
    want = [(data(i), str(i), "message") for i in range(n)]
    if got != want:
        raise BenchmarkError(f"{url}: {len(got)} events parsed, not the {n} expected ones: {got[:3]}...")


@dataclass(frozen=True)
class Pair:
    """One throughput row: ours against a baseline on the same server, with optional anchors."""

    name: str
    description: str
    ours: str
    baseline: str
    baseline_name: str
    #: The least ratio (baseline / ours) ours must reach, or ``None``: reported only.
    target: float | None
    data: Callable[[int], str] = _harness_data
    decode_baseline: Callable[[str], str] = str
    #: Other endpoints timed in the same rounds: name -> (path, role for the chart).
    anchors: tuple[tuple[str, str, str], ...] = ()


PAIRS: tuple[Pair, ...] = (
    Pair(
        "sse-throughput-vs-sse-starlette",
        "events with data and id, both sides fed event objects",
        "/sse/ours",
        "/sse/sse-starlette",
        "sse-starlette",
        20,
    ),
    Pair(
        "sse-objects-vs-sse-starlette",
        "events, each a ServerSentEvent(data=..., id=...) built per item, against sse-starlette fed dicts",
        "/sse/objects/ours",
        "/sse/dicts/sse-starlette",
        "sse-starlette (dicts)",
        20,
        data=_item_data,
        anchors=(("raw ASGI ceiling", "/sse/ceiling", "floor"),),
    ),
    Pair(
        "sse-dicts-vs-sse-starlette",
        "events as sse-starlette's dicts of fields on both sides (ours with dicts='fields')",
        "/sse/dicts/ours",
        "/sse/dicts/sse-starlette",
        "sse-starlette (dicts)",
        None,
        data=_item_data,
        anchors=(("raw ASGI ceiling", "/sse/ceiling", "floor"),),
    ),
    Pair(
        "sse-fastapi-returned-response",
        "events from a FastAPI path operation returning ours, against a fastapi.sse generator endpoint",
        "/fastapi/ours-return",
        "/fastapi/native",
        "fastapi.sse",
        50,
        decode_baseline=json.loads,
    ),
    Pair(
        "sse-fastapi-generator-endpoint",
        "events, ours as response_class= of a FastAPI generator endpoint (an anyio.sleep(0) per item)",
        "/fastapi/ours",
        "/fastapi/native",
        "fastapi.sse",
        None,
        decode_baseline=json.loads,
    ),
)


def _throughput(server: Server, pair: Pair, *, n: int, rounds: int, smoke: bool) -> dict[str, Any]:
    paths = {"ours": pair.ours, "baseline": pair.baseline}
    paths.update({name: path for name, path, _ in pair.anchors})
    urls = {side: server.url(f"{path}?n={n}") for side, path in paths.items()}
    result: dict[str, Any] = {
        "name": pair.name,
        "description": f"{n:,} {pair.description}, uvicorn, curl",
        "target": "reported" if pair.target is None else f">= {pair.target:g}x {pair.baseline_name}",
        "error": None,
        "verified": False,
        "urls": urls,
    }
    try:
        for side, url in urls.items():
            _verify(url, n, pair.decode_baseline if side == "baseline" else str, pair.data)
        samples = [{side: _curl(url)[0] for side, url in urls.items()} for _ in range(rounds)]
    except (BenchmarkError, OSError, subprocess.SubprocessError) as exc:
        result["error"] = str(exc)
        result["summary"] = {
            "unit": "s",
            "ours": 0.0,
            "baseline": None,
            "baseline_name": pair.baseline_name,
            "ratio": None,
            "passed": None,
        }
        return result
    medians = {side: statistics.median(sample[side] for sample in samples) for side in urls}
    ours_s, base_s = medians["ours"], medians["baseline"]
    ratio = base_s / ours_s if ours_s > 0 else float("inf")
    result["verified"] = True
    result["rounds"] = samples
    result["anchors"] = [
        {"name": name, "value": medians[name], "role": role} for name, _, role in pair.anchors
    ]
    result["summary"] = {
        "unit": "s",
        "ours": ours_s,
        "baseline": base_s,
        "baseline_name": pair.baseline_name,
        "ratio": ratio,
        "passed": None if smoke or pair.target is None else ratio >= pair.target,
    }
    if pair.target is not None:
        result["summary"]["goal"] = {"value": base_s / pair.target, "better": "lower"}
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


def _memory(*, smoke: bool, above_floor: float) -> dict[str, Any]:
    count = 50 if smoke else 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 200), hard))
    result: dict[str, Any] = {
        "name": "sse-idle-memory",
        "description": f"server RSS per idle open stream, {count} streams, fresh uvicorn per side",
        "target": f"<= the Starlette idle floor + {above_floor:g} KiB per stream",
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
    limit = figures["starlette-floor"] + above_floor
    result["anchors"] = [
        {"name": "Starlette idle floor", "value": figures["starlette-floor"], "role": "floor"},
        {"name": "bare connection", "value": figures["bare-connection"], "role": "floor"},
        {"name": "fastapi.sse", "value": figures["fastapi-native"], "role": "reference"},
    ]
    result["summary"] = {
        "unit": "KiB",
        "ours": ours,
        "baseline": base,
        "baseline_name": "sse-starlette",
        "ratio": base / ours if ours > 0 else None,
        "passed": None if smoke else ours <= limit,
        "goal": {"value": limit, "better": "lower"},
    }
    return result


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the SSE rows (all, or those in ``only``); see the module docstring."""
    wanted = set(ROWS if only is None else only)
    n = 1_000 if smoke else 100_000
    results: list[dict[str, Any]] = []
    pairs = [pair for pair in PAIRS if pair.name in wanted]
    if pairs:
        with serve(app=APP) as server:
            results.extend(_throughput(server, pair, n=n, rounds=rounds, smoke=smoke) for pair in pairs)
    if "sse-idle-memory" in wanted:
        results.append(_memory(smoke=smoke, above_floor=5))
    return results
