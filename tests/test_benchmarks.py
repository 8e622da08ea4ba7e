"""The benchmark harness runs end to end and reports every row; it never judges the timings here.

The timings of a shared, loaded test machine mean nothing, so these tests check only that the
harness measures what it claims: every row, the right sizes, numbers where numbers belong.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import benchmarks.__main__
from benchmarks import _payload, _suites, charts
from benchmarks._cases import CASES, SIDES, Latency, Throughput
from benchmarks._clients import BenchmarkError, ChunkedDecoder, curl, read_stamps
from benchmarks._run import exit_status, render_table
from benchmarks._server import serve

ROOT = Path(__file__).resolve().parent.parent


def _is_duration(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value >= 0


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(output.read_text())
    return report


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_smoke_run_reports_every_case_with_verified_sizes_and_numeric_timings(
    smoke_report: dict[str, Any],
) -> None:
    assert smoke_report["mode"] == "smoke"
    assert smoke_report["rounds"] == 1
    core_results = smoke_report["cases"][: len(CASES)]
    assert [case["name"] for case in core_results] == [case.name for case in CASES]
    for case, result in zip(CASES, core_results, strict=True):
        assert result["error"] is None
        assert result["verified"] is True
        assert len(result["rounds"]) == 1
        summary = result["summary"]
        assert summary["passed"] is None  # smoke mode never judges targets
        assert _is_duration(summary["ours"])
        assert _is_duration(summary["baseline"])
        for measured in result["rounds"]:
            assert set(measured) == set(SIDES)
            for side in SIDES:
                if isinstance(case, Throughput):
                    assert measured[side]["bytes"] == case.smoke_chunks * case.chunk_bytes
                    assert result["expected_bytes"] == case.smoke_chunks * case.chunk_bytes
                    assert _is_duration(measured[side]["seconds"])
                else:
                    assert len(measured[side]["latency_ms"]) == case.smoke_chunks
                    assert all(_is_duration(ms) for ms in measured[side]["latency_ms"])


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_smoke_run_reports_every_suite_row_measured_and_unjudged(smoke_report: dict[str, Any]) -> None:
    suite_results = smoke_report["cases"][len(CASES) :]
    assert [result["name"] for result in suite_results] == _suites.row_names()
    for result in suite_results:
        assert result["error"] is None, result
        assert result["verified"] is True, result
        summary = result["summary"]
        assert summary["passed"] is None  # smoke mode never judges targets
        assert math.isfinite(summary["ours"]), result
        assert summary["unit"]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_smoke_run_benchmarks_our_class_against_starlettes_on_a_quiet_server(
    smoke_report: dict[str, Any],
) -> None:
    server = smoke_report["server"]
    assert server["classes"] == {
        "ours": "streaming_responses._streaming.StreamingResponse",
        "starlette": "starlette.responses.StreamingResponse",
    }
    assert "--http" in server["command"]
    assert server["log"] == ""
    assert smoke_report["machine"]["cpu_count"] >= 1
    assert smoke_report["machine"]["versions"]["starlette"]


@pytest.mark.e2e
def test_a_wrong_size_or_status_is_an_error_not_a_number_and_the_server_is_stopped() -> None:
    case = next(case for case in CASES if isinstance(case, Throughput))
    with serve() as server:
        url = server.url(case.path("ours", smoke=True))
        size = case.expected_bytes(smoke=True)
        assert curl(url, expected_bytes=size) >= 0
        with pytest.raises(BenchmarkError, match=f"sent {size} bytes, expected {size + 1}"):
            curl(url, expected_bytes=size + 1)
        with pytest.raises(BenchmarkError, match="answered 404"):
            curl(server.url("/async/nobody?chunks=1&size=1"), expected_bytes=1)
        with pytest.raises(BenchmarkError, match="answered"):
            read_stamps(server.url("/latency/ours?chunks=1"))
        pid = server.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_command_line_picks_cases_rounds_and_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(
        cases: list[Any], *, rounds: int, smoke: bool, output: Path, only: frozenset[str] | None = None
    ) -> int:
        names = [case.name for case in cases]
        calls.append({"cases": names, "rounds": rounds, "smoke": smoke, "output": output})
        return 0

    monkeypatch.setattr(benchmarks.__main__, "run", fake_run)
    argv = ["--case", "latency", "--case", "sync", "--output", str(tmp_path / "x")]
    assert benchmarks.__main__.main(argv) == 0
    assert benchmarks.__main__.main(["--smoke"]) == 0
    assert calls[0] == {"cases": ["sync", "latency"], "rounds": 5, "smoke": False, "output": tmp_path / "x"}
    assert calls[1]["cases"] == [case.name for case in CASES]
    assert calls[1]["rounds"] == 1
    assert calls[1]["output"].name == "smoke.json"


def test_case_names_are_unique_and_smoke_sizes_are_smaller() -> None:
    assert len({case.name for case in CASES}) == len(CASES)
    for case in CASES:
        assert 0 < case.smoke_chunks < case.chunks
        assert case.path("ours", smoke=True) != case.path("baseline", smoke=True)


def test_payload_chunks_are_distinct_and_exactly_sized() -> None:
    chunks = _payload.chunks(1200, 3)
    assert all(len(chunk) == 3 for chunk in chunks)
    assert chunks[:2] == (b".0\n", b".1\n")
    assert len(_payload.body(1200, 3)) == 3600
    assert len(set(_payload.chunks(1000, 32))) == 1000


def test_chunked_decoder_decodes_a_body_fed_one_byte_at_a_time() -> None:
    wire = b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n"
    decoder = ChunkedDecoder()
    body = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert body == b"abc0123456789"
    assert decoder.done


def test_chunked_decoder_rejects_broken_framing() -> None:
    with pytest.raises(BenchmarkError, match="CRLF"):
        ChunkedDecoder().feed(b"3\r\nabcX\r\n")
    with pytest.raises(BenchmarkError, match="chunk size"):
        ChunkedDecoder().feed(b"zz\r\n")


def test_a_row_that_could_not_be_measured_fails_the_run_and_shows_in_the_table() -> None:
    latency: dict[str, Any] = {
        "name": "latency",
        "target": "<= 1 ms",
        "error": None,
        "summary": {"unit": "ms", "ours": 0.3, "baseline": 0.2, "ratio": None, "passed": True},
    }
    broken: dict[str, Any] = {"name": "async", "target": ">= 20x", "error": "sent 3 bytes, expected 6400000"}
    report: dict[str, Any] = {
        "mode": "full",
        "rounds": 5,
        "machine": {"cpu_count": 2, "loadavg_start": (0.5, 0.5, 0.5), "python": "3.11"},
        "server": {"loop": "uvloop", "classes": {"ours": "ours.Class"}},
        "cases": [broken, latency],
    }
    table = render_table(report)
    assert "ERROR" in table
    assert "sent 3 bytes" in table
    assert "0.300 ms" in table
    assert exit_status([broken, latency]) == 2
    assert exit_status([latency]) == 0
    latency["summary"]["passed"] = False
    assert exit_status([latency]) == 1


def test_latency_rows_ask_for_time_stamps_at_their_interval() -> None:
    latency = next(case for case in CASES if isinstance(case, Latency))
    assert latency.path("ours", smoke=False) == (
        f"{latency.ours}?chunks={latency.chunks}&interval_ms={latency.interval_ms}"
    )


# -- charts ----------------------------------------------------------------------------------


def _row(name: str, **extra: Any) -> dict[str, Any]:
    """A row in the shape every suite returns (benchmarks._suites), as another suite would."""
    summary = {"unit": "s", "ours": 0.1, "baseline": 2.0, "baseline_name": "theirs", "ratio": 20.0}
    summary.update(extra.pop("summary", {}))
    return {"name": name, "description": "d", "target": ">= 10x", "error": None, "summary": summary, **extra}


def test_a_chart_shows_ours_the_baseline_every_anchor_and_the_goal() -> None:
    row = _row(
        "x",
        summary={"goal": {"value": 0.2, "better": "lower"}},
        anchors=[
            {"name": "ceiling", "value": 0.08, "role": "floor"},
            {"name": "odd", "value": 1.0, "role": "?"},
        ],
    )
    chart = charts.chart_of(row)
    assert chart is not None
    assert [(bar.label, bar.value, bar.role) for bar in chart.bars] == [
        ("ours", 0.1, "ours"),
        ("theirs", 2.0, "baseline"),
        ("ceiling", 0.08, "floor"),
        ("odd", 1.0, "reference"),
    ]
    assert chart.goal == 0.2
    assert chart.goal_label == "target: >= 10x"
    assert not chart.log
    assert charts.chart_of(_row("wide", summary={"baseline": 100.0})).log  # type: ignore[union-attr]


def test_rows_without_figures_get_no_chart() -> None:
    assert charts.chart_of({**_row("broken"), "error": "sent 3 bytes"}) is None
    assert charts.chart_of(_row("nan", summary={"ours": float("nan")})) is None
    assert charts.chart_of({"name": "bare", "error": None}) is None
    no_baseline = charts.chart_of(_row("alone", summary={"baseline": None}))
    assert no_baseline is not None
    assert [bar.label for bar in no_baseline.bars] == ["ours"]


def test_the_chart_command_writes_one_svg_per_measured_row_of_any_suite(tmp_path: Path) -> None:
    report = {
        "started": "2026-11-30T05:00:00+00:00",
        "mode": "full",
        "rounds": 5,
        "machine": {
            "cpu_count": 2,
            "loadavg_start": [1.5],
            "loadavg_end": [1.7],
            "platform": "Linux",
            "python": "3.11",
        },
        "cases": [
            _row("jsonl-from-another-suite", anchors=[{"name": "floor", "value": 0.05}]),
            _row("x", error="no"),
        ],
    }
    results = tmp_path / "results.json"
    results.write_text(json.dumps(report))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.charts", str(results), "--out", str(tmp_path / "charts")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = sorted((tmp_path / "charts").iterdir())
    assert [path.name for path in written] == ["jsonl-from-another-suite.svg"]
    svg = written[0].read_text()
    assert svg.startswith("<?xml")
    for text in ("ours", "theirs", "floor", "2026-11-30", "load 1.50"):
        assert text in svg
    assert "2 CPUs, load 1.50 at start and 1.70 at end" in done.stdout
