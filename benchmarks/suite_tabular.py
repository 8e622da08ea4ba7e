"""The tabular rows: CSVResponse and JSONLinesResponse against what users write today.

Rows:

* ``csv-vs-tutorial``: 200,000 five-column rows (commas, quotes, non-ASCII) from a sync generator,
  CSVResponse against the tutorial pattern (a StringIO and a yield per row into Starlette's
  StreamingResponse), same uvicorn, curl. Both bodies must be identical bytes. Target >= 50x.
* ``csv-vs-writerows``: the same CSVResponse download against ``csv.writer.writerows`` of the same
  rows into a ``StringIO`` (and encoding it), timed in this process: the floor. Ratio =
  floor / ours; passes when ours takes at most 1.5x the floor (ratio >= 0.67).
* ``jsonl-vs-fastapi``: 100,000 small dicts from an async generator path operation,
  ``response_class=JSONLinesResponse`` against FastAPI's own JSON Lines streaming; the bodies must
  parse to the same values (FastAPI writes ``", "`` and ``": "`` separators). Target >= 5x.
* ``jsonl-dataclass-vs-fastapi`` and ``jsonl-model-vs-fastapi``: the same items as dataclass
  instances and as pydantic models, both sides annotated ``-> AsyncIterable[Item]`` as FastAPI's
  docs write a JSON Lines stream (FastAPI validates each item against it). Ratios reported.

Sides alternate within each round on one server and one client.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import time
from typing import Any

from benchmarks._clients import BenchmarkError, curl, download
from benchmarks._server import Server, ServerError, serve

#: The JSON Lines rows: (name, item form, route suffix, target; ``None``: reported).
JSONL_ROWS: tuple[tuple[str, str, str, float | None], ...] = (
    ("jsonl-vs-fastapi", "dicts", "", 5.0),
    ("jsonl-dataclass-vs-fastapi", "dataclass instances", "-dataclass", None),
    ("jsonl-model-vs-fastapi", "pydantic models", "-model", None),
)
ROWS: tuple[str, ...] = ("csv-vs-tutorial", "csv-vs-writerows", *(row[0] for row in JSONL_ROWS))

CSV_ROWS, CSV_SMOKE = 200_000, 2_000
JSONL_ITEMS, JSONL_SMOKE = 100_000, 1_000
#: The tutorial side takes ~30 s per request at full size: it gets at most this many rounds.
TUTORIAL_ROUNDS = 3


def _floor_seconds(count: int, repeats: int) -> float:
    from benchmarks.app_tabular import rows

    data = rows(count)
    best = []
    for _ in range(repeats):
        began = time.perf_counter()
        buffer = io.StringIO()
        csv.writer(buffer).writerows(data)
        buffer.getvalue().encode("utf-8")
        best.append(time.perf_counter() - began)
    return statistics.median(best)


def _row(name: str, description: str, target: str, **rest: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "target": target, "error": None, **rest}


def _summary(ours: float, baseline: float, baseline_name: str, passed: bool | None) -> dict[str, Any]:
    return {
        "unit": "s",
        "ours": ours,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": baseline / ours if ours > 0 else float("inf"),
        "passed": passed,
    }


def _measure_csv(
    server: Server, *, rounds: int, smoke: bool, only: frozenset[str] | None
) -> list[dict[str, Any]]:
    count = CSV_SMOKE if smoke else CSV_ROWS
    ours_url = server.url(f"/csv/ours?rows={count}")
    tutorial_url = server.url(f"/csv/tutorial?rows={count}")
    ours_body = download(ours_url)
    tutorial_body = download(tutorial_url)
    if ours_body != tutorial_body:
        raise BenchmarkError("CSVResponse and the tutorial pattern sent different bytes")
    expected = len(ours_body)
    results: list[dict[str, Any]] = []
    ours_times: list[float] = []
    tutorial_times: list[float] = []
    floor_times: list[float] = []
    want_tutorial = only is None or "csv-vs-tutorial" in only
    want_floor = only is None or "csv-vs-writerows" in only
    for index in range(rounds):
        ours_times.append(curl(ours_url, expected_bytes=expected))
        if want_tutorial and index < TUTORIAL_ROUNDS:
            tutorial_times.append(curl(tutorial_url, expected_bytes=expected))
        if want_floor:
            floor_times.append(_floor_seconds(count, 1))
    ours = statistics.median(ours_times)
    if want_tutorial:
        tutorial = statistics.median(tutorial_times)
        results.append(
            _row(
                "csv-vs-tutorial",
                f"{count} CSV rows, sync generator: CSVResponse vs a StringIO and a yield per row",
                ">= 50x",
                verified=True,
                bytes=expected,
                rounds={"ours": ours_times, "baseline": tutorial_times},
                summary=_summary(ours, tutorial, "tutorial", None if smoke else tutorial / ours >= 50),
            )
        )
    if want_floor:
        floor = statistics.median(floor_times)
        results.append(
            _row(
                "csv-vs-writerows",
                f"{count} CSV rows over HTTP vs csv.writer.writerows into memory (floor, in process)",
                "ours <= 1.5x floor (ratio >= 0.67)",
                verified=True,
                bytes=expected,
                rounds={"ours": ours_times, "baseline": floor_times},
                summary=_summary(ours, floor, "writerows", None if smoke else ours <= 1.5 * floor),
            )
        )
    return results


def _measure_jsonl(
    server: Server, row: tuple[str, str, str, float | None], *, rounds: int, smoke: bool
) -> dict[str, Any]:
    name, form, suffix, target = row
    count = JSONL_SMOKE if smoke else JSONL_ITEMS
    ours_url = server.url(f"/jsonl/ours{suffix}?count={count}")
    fastapi_url = server.url(f"/jsonl/fastapi{suffix}?count={count}")
    ours_body = download(ours_url)
    fastapi_body = download(fastapi_url)
    ours_values = [json.loads(line) for line in ours_body.splitlines()]
    if ours_values != [json.loads(line) for line in fastapi_body.splitlines()] or len(ours_values) != count:
        raise BenchmarkError(f"JSONLinesResponse and FastAPI's JSON Lines sent different items ({form})")
    ours_times: list[float] = []
    fastapi_times: list[float] = []
    for _ in range(rounds):
        ours_times.append(curl(ours_url, expected_bytes=len(ours_body)))
        fastapi_times.append(curl(fastapi_url, expected_bytes=len(fastapi_body)))
    ours = statistics.median(ours_times)
    baseline = statistics.median(fastapi_times)
    passed = None if smoke else (True if target is None else baseline / ours >= target)
    return _row(
        name,
        f"{count} JSON Lines items ({form}), async generator path operation: ours vs FastAPI's own",
        "reported" if target is None else f">= {target:g}x",
        verified=True,
        rounds={"ours": ours_times, "baseline": fastapi_times},
        summary=_summary(ours, baseline, "fastapi", passed),
    )


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the tabular rows (all, or those in ``only``)."""
    wanted = [row for row in ROWS if only is None or row in only]
    results: list[dict[str, Any]] = []
    try:
        with serve(app="benchmarks.app_tabular:app") as server:
            if {"csv-vs-tutorial", "csv-vs-writerows"} & set(wanted):
                print("  csv rows ...", file=sys.stderr, flush=True)
                try:
                    results.extend(_measure_csv(server, rounds=rounds, smoke=smoke, only=only))
                except BenchmarkError as exc:
                    results.extend(_failed(name, str(exc)) for name in wanted if name.startswith("csv"))
            for row in JSONL_ROWS:
                if row[0] not in wanted:
                    continue
                print(f"  {row[0]} ...", file=sys.stderr, flush=True)
                try:
                    results.append(_measure_jsonl(server, row, rounds=rounds, smoke=smoke))
                except BenchmarkError as exc:
                    results.append(_failed(row[0], str(exc)))
    except ServerError as exc:
        return [_failed(name, str(exc)) for name in wanted]
    return results


def _failed(name: str, error: str) -> dict[str, Any]:
    return _row(name, name, "-", verified=False, error=error)
