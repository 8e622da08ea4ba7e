"""Broker fan-out rows: 1,000 SSE subscribers on two uvicorn workers and one Redis.

Both sides run in the same two uvicorn processes (``benchmarks.app_broker``) on the same Redis
(started here on a free port, no persistence, stopped by its pid), with the same load
(``benchmarks.fanout``: two receiver processes holding 500 subscribers on each worker, one
publisher POSTing to the two workers in turn). Ours is ``EventBroker.from_url("redis://...")``
with our ``EventSourceResponse``; the baseline is what a user picks today: encode's
``broadcaster`` (Redis backend) feeding ``sse_starlette.EventSourceResponse``, with its
startup-subscription bug worked around in the app (see ``benchmarks/app_broker.py``). Sides
alternate; the latency of every delivery (publish POST sent to event parsed) counts.

* ``broker-fanout-redis-50``: p50/p99 at 50 events/s; target p99 < 50 ms, every event delivered;
* ``broker-fanout-redis-max``: the highest rate (of a fixed ladder) at which every event is
  delivered once with p99 under 100 ms; target >= 200 events/s and >= 3x broadcaster;
* ``broker-fanout-memory-50``: the in-process broker on one worker, 50 events/s (no target).

Each row also records the workers' CPU time per delivery, which is what bounds the rates on a
small machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._server import Server, serve

APP = "benchmarks.app_broker:app"
ROWS: tuple[str, ...] = ("broker-fanout-redis-50", "broker-fanout-redis-max", "broker-fanout-memory-50")
SIDES = {"ours": "/ours", "baseline": "/broadcaster"}
LADDER = (50, 100, 200, 300, 400, 600, 800, 1000)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load(
    servers: Sequence[Server], prefix: str, *, rate: float, events: int, subscribers: int
) -> dict[str, Any]:
    """One fan-out measurement: ``subscribers`` spread over ``servers``, ``events`` at ``rate``."""
    command = [sys.executable, "-m", "benchmarks.fanout", "--rate", str(rate), "--events", str(events)]
    if subscribers < 100:  # a smoke run: a shorter wait for late deliveries
        command.append("--smoke")
    for server in servers:
        command += ["--subscribe", f"{server.port}{prefix}/events*{subscribers // len(servers)}"]
        command += ["--publish", f"{server.port}{prefix}/publish"]
    before = sum(_cpu_seconds(server.pid) for server in servers)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    cpu = sum(_cpu_seconds(server.pid) for server in servers) - before
    if done.returncode != 0:
        raise RuntimeError(f"the fan-out load failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    latencies = result.pop("latencies_ms")
    result["p50_ms"] = _quantile(latencies, 0.50)
    result["p99_ms"] = _quantile(latencies, 0.99)
    result["delivered_fraction"] = result["delivered"] / result["expected"]
    result["worker_cpu_us_per_delivery"] = cpu / max(1, result["delivered"]) * 1e6
    return result


def _clean(result: dict[str, Any]) -> bool:
    """Every event delivered to every subscriber exactly once."""
    return bool(result["delivered"] == result["expected"] and result["duplicates"] == 0)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set what the uvicorn processes started inside inherit (serve() passes the environment on)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _error_row(name: str, description: str, target: str, error: str, unit: str) -> dict[str, Any]:
    summary = {"unit": unit, "ours": 0.0, "baseline": None, "baseline_name": "broadcaster", "ratio": None}
    return {
        "name": name,
        "description": description,
        "target": target,
        "error": error,
        "verified": False,
        "summary": {**summary, "passed": None},
    }


def _at_50(servers: Sequence[Server], *, rounds: int, smoke: bool, subscribers: int) -> dict[str, Any]:
    events = 20 if smoke else 500
    samples = [
        {
            side: _load(servers, prefix, rate=50, events=events, subscribers=subscribers)
            for side, prefix in SIDES.items()
        }
        for _ in range(rounds)
    ]
    ours = statistics.median(sample["ours"]["p99_ms"] for sample in samples)
    baseline = statistics.median(sample["baseline"]["p99_ms"] for sample in samples)
    clean = all(_clean(sample["ours"]) for sample in samples)
    return {
        "name": "broker-fanout-redis-50",
        "description": f"{subscribers:,} SSE subscribers, 2 uvicorn workers, one Redis, 50 events/s: p99",
        "target": "p99 < 50 ms, all delivered",
        "error": None,
        "verified": clean,
        "rounds": samples,
        "summary": {
            "unit": "ms",
            "ours": ours,
            "baseline": baseline,
            "baseline_name": "broadcaster + sse-starlette",
            "ratio": baseline / ours if ours > 0 else None,
            "passed": None if smoke else (ours < 50 and clean),
        },
    }


def _max_rate(servers: Sequence[Server], *, smoke: bool, subscribers: int) -> dict[str, Any]:
    seconds = 1 if smoke else 4
    ladder = LADDER[:1] if smoke else LADDER
    best = dict.fromkeys(SIDES, 0)
    steps: list[dict[str, Any]] = []
    alive = set(SIDES)
    for rate in ladder:
        for side in [side for side in SIDES if side in alive]:
            result = _load(servers, SIDES[side], rate=rate, events=rate * seconds, subscribers=subscribers)
            result["side"] = side
            steps.append(result)
            if _clean(result) and result["p99_ms"] < 100:
                best[side] = rate
            else:
                alive.discard(side)
        if not alive:
            break
    ours, baseline = best["ours"], best["baseline"]
    ratio = ours / baseline if baseline else None
    return {
        "name": "broker-fanout-redis-max",
        "description": f"{subscribers:,} subscribers, 2 workers, one Redis: highest events/s, p99 < 100 ms",
        "target": ">= 200 events/s and >= 3x broadcaster",
        "error": None,
        "verified": True,
        "steps": steps,
        "summary": {
            "unit": "events/s",
            "ours": float(ours),
            "baseline": float(baseline),
            "baseline_name": "broadcaster + sse-starlette",
            "ratio": ratio,
            "passed": None if smoke else (ours >= 200 and (ratio is None or ratio >= 3)),
        },
    }


def _memory(*, rounds: int, smoke: bool, subscribers: int) -> dict[str, Any]:
    events = 20 if smoke else 500
    with _environment(BROKER_URL="memory://"), serve(app=APP) as server:
        samples = [
            {
                side: _load([server], prefix, rate=50, events=events, subscribers=subscribers)
                for side, prefix in (("ours", "/ours"), ("floor", "/floor"))
            }
            for _ in range(rounds)
        ]
    ours = statistics.median(sample["ours"]["p99_ms"] for sample in samples)
    floor = statistics.median(sample["floor"]["p99_ms"] for sample in samples)
    return {
        "name": "broker-fanout-memory-50",
        "description": f"{subscribers:,} subscribers, in-process broker, 1 uvicorn worker, 50 events/s: p99",
        "target": "-",
        "error": None,
        "verified": all(_clean(sample["ours"]) for sample in samples),
        "rounds": samples,
        # The raw ASGI fan-out on the same server: what the server and the kernel cost alone.
        "anchors": [{"name": "raw ASGI fan-out", "value": floor, "role": "floor"}],
        "summary": {
            "unit": "ms",
            "ours": ours,
            "baseline": None,
            "baseline_name": "",
            "ratio": None,
            "passed": None,
        },
    }


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the broker rows (all, or those in ``only``); see the module docstring."""
    from tests.redis_server import REDIS_SERVER, start_redis

    wanted = set(ROWS if only is None else only)
    subscribers = 20 if smoke else 1000
    rounds = min(rounds, 3)
    results: list[dict[str, Any]] = []
    redis_rows = [row for row in ROWS[:2] if row in wanted]
    if redis_rows:
        if REDIS_SERVER is None:
            for row in redis_rows:
                results.append(
                    _error_row(row, "fan-out on Redis", "-", "redis-server is not installed", "ms")
                )
        else:
            with (
                start_redis() as redis,
                _environment(
                    BROKER_URL=redis.url, REDIS_URL=redis.url, BROKER_PREFIX=f"bench-{uuid.uuid4().hex[:6]}:"
                ),
                serve(app=APP) as first,
                serve(app=APP) as second,
            ):
                servers = [first, second]
                try:
                    if "broker-fanout-redis-50" in wanted:
                        results.append(_at_50(servers, rounds=rounds, smoke=smoke, subscribers=subscribers))
                    if "broker-fanout-redis-max" in wanted:
                        results.append(_max_rate(servers, smoke=smoke, subscribers=subscribers))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    results.append(_error_row(redis_rows[-1], "fan-out on Redis", "-", str(exc), "ms"))
    if "broker-fanout-memory-50" in wanted:
        try:
            results.append(_memory(rounds=rounds, smoke=smoke, subscribers=subscribers))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            results.append(_error_row("broker-fanout-memory-50", "in-process fan-out", "-", str(exc), "ms"))
    return results
