"""Charts of results JSONs: ``python -m benchmarks.charts RESULTS.json [MORE.json ...] [--out DIR]``.

One SVG per measured row, ``DIR/<row name>.svg`` (default ``docs/charts/``): a horizontal bar
for ours, one for the baseline and one for each anchor the row reports, on the row's unit, with
the target drawn as a dashed line where the row gives one. Nothing here knows a row by name:
whatever a suite returns in the shape that :mod:`benchmarks._suites` documents gets a chart, and a
row with an ``error`` gets none. The footer says which run (date, load, machine) the figures
come from; the command also prints that line, for the page that shows the charts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "charts"
#: Bars whose largest value is more than this many times the smallest get a log scale.
LOG_SPAN = 30.0
#: Colours of the bars by role: ours stands out, the rest are the yardsticks it is measured by.
COLOURS = {"ours": "#1f6feb", "baseline": "#8c959f", "floor": "#2da44e", "reference": "#bf8700"}


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: a label, a value in the row's unit and its role (the colour)."""

    label: str
    value: float
    role: str


@dataclass(frozen=True)
class Chart:
    """What one row's chart shows, as plain data (tested without drawing)."""

    name: str
    title: str
    unit: str
    bars: tuple[Bar, ...]
    goal: float | None
    goal_label: str
    log: bool


def chart_of(row: dict[str, Any]) -> Chart | None:
    """The chart of one result row, or ``None`` when the row has no figure to draw.

    >>> chart = chart_of({"name": "r", "description": "d", "target": "<= 1 ms", "error": None,
    ...     "summary": {"unit": "ms", "ours": 0.5, "baseline": 2.0, "baseline_name": "x",
    ...                 "goal": {"value": 1.0, "better": "lower"}}})
    >>> [(bar.label, bar.value) for bar in chart.bars], chart.goal
    ([('ours', 0.5), ('x', 2.0)], 1.0)
    """
    summary = row.get("summary")
    if row.get("error") or not isinstance(summary, dict) or not _number(summary.get("ours")):
        return None
    bars = [Bar("ours", float(summary["ours"]), "ours")]
    if _number(summary.get("baseline")):
        bars.append(
            Bar(str(summary.get("baseline_name") or "baseline"), float(summary["baseline"]), "baseline")
        )
    for anchor in row.get("anchors") or ():
        if isinstance(anchor, dict) and _number(anchor.get("value")):
            role = anchor.get("role") if anchor.get("role") in COLOURS else "reference"
            bars.append(Bar(str(anchor.get("name")), float(anchor["value"]), str(role)))
    goal = summary.get("goal")
    goal_value = float(goal["value"]) if isinstance(goal, dict) and _number(goal.get("value")) else None
    values = [bar.value for bar in bars if bar.value > 0] + ([goal_value] if goal_value else [])
    log = bool(values) and max(values) / min(values) > LOG_SPAN
    return Chart(
        name=str(row["name"]),
        title=f"{row['name']}: {row.get('description', '')}",
        unit=str(summary.get("unit", "")),
        bars=tuple(bars),
        goal=goal_value,
        goal_label=f"target: {row.get('target', '')}",
        log=log,
    )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_line(report: dict[str, Any]) -> str:
    """The run the figures come from, in one line: date, mode, rounds, load, machine."""
    machine = report.get("machine", {})
    load = machine.get("loadavg_start") or [float("nan")]
    load_end = machine.get("loadavg_end") or [float("nan")]
    return (
        f"{report.get('started', '?')} {report.get('mode', '?')} run, {report.get('rounds', '?')} rounds; "
        f"{machine.get('cpu_count', '?')} CPUs, load {load[0]:.2f} at start and {load_end[0]:.2f} at end; "
        f"{machine.get('platform', '?')}, Python {machine.get('python', '?')}"
    )


def _wrapped(text: str, width: int = 80) -> str:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _label(value: float, unit: str) -> str:
    if unit == "s" and value < 1:
        return f"{value * 1000:,.3g} ms"
    return f"{value:,.4g} {unit}" if value >= 1000 else f"{value:.3g} {unit}"


def draw(chart: Chart, footer: str, path: Path) -> None:
    """Write ``chart`` as an SVG file at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "streaming-responses"  # the same figures give the same file
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small files, searchable
    figure, axes = plt.subplots(figsize=(8, 1.3 + 0.45 * len(chart.bars)))
    labels = [bar.label for bar in chart.bars][::-1]
    values = [bar.value for bar in chart.bars][::-1]
    colours = [COLOURS[bar.role] for bar in chart.bars][::-1]
    axes.barh(labels, values, color=colours, height=0.6)
    ours = chart.bars[0].value
    for index, value in enumerate(values):
        note = _label(value, chart.unit)
        if value > 0 and ours > 0 and index != len(values) - 1:
            multiple = value / ours
            note += f"  ({multiple:,.0f}x ours)" if multiple >= 1000 else f"  ({multiple:.3g}x ours)"
        axes.annotate(
            note, (value, index), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    title = _wrapped(chart.title)
    if chart.goal is not None:
        axes.axvline(chart.goal, color="#cf222e", linestyle="--", linewidth=1.2)
        title += f"\n{chart.goal_label} (dashed line)"
    if chart.log:
        axes.set_xscale("log")
    low, high = axes.get_xlim()
    axes.set_xlim(low, high * (40 if chart.log else 1.45))  # room for the value labels
    axes.set_xlabel(chart.unit)
    axes.set_title(title, fontsize=9, loc="left")
    figure.text(0.01, 0.01, _wrapped(footer, 110), fontsize=6, color="#57606a", va="bottom")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def write_charts(report: dict[str, Any], out: Path) -> list[Path]:
    """Draw every row of ``report`` that has figures; return the files written."""
    footer = "Run: " + run_line(report)
    written = []
    for row in report.get("cases", ()):
        chart = chart_of(row)
        if chart is not None:
            path = out / f"{chart.name}.svg"
            draw(chart, footer, path)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, draw the charts, print what was written and the run line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by python -m benchmarks")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"folder for the SVG files ({DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    for results in args.results:
        report = json.loads(results.read_text())
        for path in write_charts(report, args.out):
            print(path)
        print(f"{results}: {run_line(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
