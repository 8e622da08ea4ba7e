"""Running the rows and reporting them: the table on stdout and the JSON file.

Rounds alternate sides (ours, baseline, ours, baseline, ...) on one server with one client, so
drift in machine load hits both sides alike. Before the timed rounds each side answers one
untimed request whose body is checked byte for byte; it doubles as the warm-up.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _payload, _suites
from benchmarks._cases import SIDES, Case, Latency, Throughput
from benchmarks._clients import BenchmarkError, curl, read_stamps
from benchmarks._server import Server, serve

SCHEMA = 1
PACKAGES = ("streaming-responses", "starlette", "uvicorn", "httptools", "uvloop", "anyio")


def run(
    cases: Sequence[Case],
    *,
    rounds: int,
    smoke: bool,
    output: Path,
    only: frozenset[str] | None = None,
) -> int:
    """Run ``cases`` and the suites' rows, print the table, write the JSON; return the exit status.

    ``only`` limits the suites to the named rows (``None``: all of them).

    0: every row measured and (outside smoke mode) met its target; 1: a target was missed;
    2: a row could not be measured (wrong response, server error).
    """
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "smoke" if smoke else "full",
        "rounds": rounds,
        "machine": machine_info(),
    }
    results: list[dict[str, Any]] = []
    with serve() as server:
        report["server"] = {"command": list(server.command), "pid": server.pid, **server.get_json("/info")}
        for case in cases:
            print(
                f"{case.name}: {case.description}, {case.count(smoke)} chunks ...",
                file=sys.stderr,
                flush=True,
            )
            try:
                result = measure(case, server, rounds=rounds, smoke=smoke)
            except BenchmarkError as exc:
                result = {**describe(case, server, smoke), "error": str(exc)}
            results.append(result)
        report["server"]["log"] = server.log()
    for name in _suites.SUITES:
        suite = _suites.load(name)
        wanted = None if only is None else only & frozenset(suite.ROWS)
        if wanted is not None and not wanted:
            continue
        print(f"suite {name} ...", file=sys.stderr, flush=True)
        results.extend(suite.run(rounds=rounds, smoke=smoke, only=wanted))
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["cases"] = results
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(render_table(report))
    if report["server"]["log"]:
        print("\nserver output:\n" + report["server"]["log"], file=sys.stderr)
    print(f"\nwrote {output}")
    return exit_status(results)


def exit_status(results: Sequence[dict[str, Any]]) -> int:
    """Return 2 if a row failed to measure, 1 if a target was missed, else 0."""
    if any(result["error"] for result in results):
        return 2
    if any(result["summary"]["passed"] is False for result in results):
        return 1
    return 0


def describe(case: Case, server: Server, smoke: bool) -> dict[str, Any]:
    """Return the part of a row's JSON that does not depend on measuring it."""
    described: dict[str, Any] = {
        "name": case.name,
        "kind": "throughput" if isinstance(case, Throughput) else "latency",
        "description": case.description,
        "target": case.target(),
        "chunks": case.count(smoke),
        "urls": {side: server.url(case.path(side, smoke)) for side in SIDES},
        "error": None,
    }
    if isinstance(case, Throughput):
        described["chunk_bytes"] = case.chunk_bytes
        described["expected_bytes"] = case.expected_bytes(smoke)
    else:
        described["interval_ms"] = case.interval_ms
    return described


def measure(case: Case, server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    """Measure one row; raise :class:`BenchmarkError` if either side answers wrongly."""
    if isinstance(case, Throughput):
        return measure_throughput(case, server, rounds=rounds, smoke=smoke)
    return measure_latency(case, server, rounds=rounds, smoke=smoke)


def measure_throughput(case: Throughput, server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    """Time both sides of a throughput row with curl, ``rounds`` times each, alternating."""
    result = describe(case, server, smoke)
    urls: dict[str, str] = result["urls"]
    expected_bytes = case.expected_bytes(smoke)
    expected_body = _payload.body(case.count(smoke), case.chunk_bytes)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for side in SIDES:
            saved = os.path.join(scratch, side)
            curl(urls[side], expected_bytes=expected_bytes, output=saved)
            if Path(saved).read_bytes() != expected_body:
                raise BenchmarkError(f"{urls[side]} sent {expected_bytes} bytes, but not the expected ones")
    timings: list[dict[str, Any]] = []
    for _ in range(rounds):
        timings.append(
            {
                side: {"seconds": curl(urls[side], expected_bytes=expected_bytes), "bytes": expected_bytes}
                for side in SIDES
            }
        )
    ours = statistics.median(timing["ours"]["seconds"] for timing in timings)
    baseline = statistics.median(timing["baseline"]["seconds"] for timing in timings)
    ratio = baseline / ours if ours > 0 else float("inf")
    result["verified"] = True
    result["rounds"] = timings
    result["summary"] = {
        "unit": "s",
        "ours": ours,
        "baseline": baseline,
        "baseline_name": "Starlette",
        "ratio": ratio,
        "passed": None if smoke else ratio >= case.min_ratio,
        "goal": {"value": baseline / case.min_ratio, "better": "lower"},
    }
    return result


def measure_latency(case: Latency, server: Server, *, rounds: int, smoke: bool) -> dict[str, Any]:
    """Read both sides' time stamps ``rounds`` times each, alternating; one warm-up each first."""
    result = describe(case, server, smoke)
    urls: dict[str, str] = result["urls"]
    for side in SIDES:
        added_latency_ms(urls[side], case.count(smoke))
    samples: list[dict[str, Any]] = []
    for _ in range(rounds):
        round_samples = {}
        for side in SIDES:
            latencies = added_latency_ms(urls[side], case.count(smoke))
            round_samples[side] = {"latency_ms": latencies, "median_ms": statistics.median(latencies)}
        samples.append(round_samples)
    medians = {
        side: statistics.median(ms for round_samples in samples for ms in round_samples[side]["latency_ms"])
        for side in SIDES
    }
    result["verified"] = True
    result["rounds"] = samples
    result["summary"] = {
        "unit": "ms",
        "ours": medians["ours"],
        "baseline": medians["baseline"],
        "baseline_name": "Starlette",
        "ratio": None,
        "passed": None if smoke else medians["ours"] <= case.max_ms,
        "goal": {"value": case.max_ms, "better": "lower"},
    }
    return result


def added_latency_ms(url: str, count: int) -> list[float]:
    """Return receive - yield, in milliseconds, for each of the ``count`` records of ``url``."""
    records = read_stamps(url)
    if len(records) != count:
        raise BenchmarkError(f"{url} sent {len(records)} time stamps, expected {count}")
    stamps = [stamped for stamped, _ in records]
    if stamps != sorted(stamps):
        raise BenchmarkError(f"{url} sent time stamps out of order")
    latencies = [(received - stamped) / 1e6 for stamped, received in records]
    if min(latencies, default=0.0) < 0:
        raise BenchmarkError(f"{url}: a time stamp is later than its arrival; is CLOCK_MONOTONIC shared?")
    return latencies


def machine_info() -> dict[str, Any]:
    """Return what the numbers depend on: CPUs, load, Python, library and curl versions."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    curl_version = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": os.getloadavg(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": versions,
        "curl": curl_version.stdout.splitlines()[0] if curl_version.stdout else None,
    }


def render_table(report: dict[str, Any]) -> str:
    """Return the results as a plain-text table."""
    smoke = report["mode"] == "smoke"
    header = ("case", "ours", "baseline", "ratio", "target", "result")
    rows = [header]
    for case in report["cases"]:
        if case["error"]:
            rows.append((case["name"], "-", "-", "-", case["target"], "ERROR"))
            continue
        summary = case["summary"]
        unit = summary["unit"]
        ratio = "-" if summary["ratio"] is None else f"{summary['ratio']:.1f}x"
        baseline = "-" if summary["baseline"] is None else _quantity(summary["baseline"], unit)
        if summary.get("baseline_name"):
            baseline = f"{baseline} ({summary['baseline_name']})"
        if smoke:
            verdict = "smoke"
        elif summary["passed"] is None:
            verdict = "-"  # a row reported for information, with no target
        else:
            verdict = "PASS" if summary["passed"] else "FAIL"
        rows.append(
            (
                case["name"],
                _quantity(summary["ours"], unit),
                baseline,
                ratio,
                case["target"],
                verdict,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    machine = report["machine"]
    lines.append("")
    lines.append(
        f"{report['mode']} run, {report['rounds']} round(s), {machine['cpu_count']} CPUs, "
        f"load {machine['loadavg_start'][0]:.2f}, Python {machine['python']}, "
        f"loop {report['server']['loop']}, ours = {report['server']['classes']['ours']}"
    )
    lines.extend(f"{case['name']}: {case['error']}" for case in report["cases"] if case["error"])
    return "\n".join(lines)


def _quantity(value: float, unit: str) -> str:
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.3f} {unit}"
