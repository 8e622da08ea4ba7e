"""Benchmark suites that bring their own servers and clients (SSE, files, CSV, templates).

The core rows in :mod:`benchmarks._cases` share one uvicorn server and curl. A suite is a module
``benchmarks.suite_<area>`` that measures rows needing something else (another server, nginx,
a memory probe, a client that parses events). Its contract:

* ``ROWS: tuple[str, ...]``: the names of the rows it can produce (``--case`` accepts them);
* ``run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict]``: measure the
  rows (all of them, or those in ``only``) and return one dict per row with the keys
  ``name``, ``description``, ``target`` (text), ``error`` (``None`` or why it could not be
  measured), ``verified`` (whether the bodies were checked) and ``summary`` =
  ``{"unit": "s" | "ms" | "KiB" | "MiB" | ..., "ours": float, "baseline": float | None,
  "baseline_name": str, "ratio": float | None, "passed": bool | None}`` (``passed`` is ``None``
  in smoke mode). Anything else (per-round samples) may be added for the JSON file.

Every row with a ``summary`` and no ``error`` gets a chart (``python -m benchmarks.charts
RESULTS.json``, see :mod:`benchmarks.charts`) with no code of the suite's own: a bar for
``ours``, one for ``baseline`` (labelled ``baseline_name``), and two optional keys add to it:

* ``summary["goal"] = {"value": float, "better": "lower" | "higher"}``: the target as a value
  in the row's ``unit`` (for "ours >= 20x the baseline's time": the baseline's time / 20),
  drawn as a dashed line labelled with the row's ``target`` text;
* ``"anchors": [{"name": str, "value": float, "role": "floor" | "baseline" | "reference"}]``
  at the row's top level: more bars in the same unit, for every yardstick measured in the same
  run (a raw ASGI ceiling, Jinja's render alone, the Starlette idle floor, another library).

Rounds alternate sides in the same run, on the same server and client, like the core rows.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The suite modules, in the order a run measures them.
SUITES: tuple[str, ...] = (
    "suite_sse",
    "suite_tabular",
    "suite_files",
    "suite_templates",
    "suite_compression",
    "suite_broker",
    "suite_fairness",
)


def load(name: str) -> ModuleType:
    """Import the suite module ``benchmarks.<name>``."""
    return importlib.import_module(f"benchmarks.{name}")


def row_names() -> list[str]:
    """Every row name the suites can produce."""
    return [row for name in SUITES for row in load(name).ROWS]
