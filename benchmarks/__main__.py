"""Command line: ``python -m benchmarks [--smoke] [--rounds N] [--case NAME ...] [--output PATH]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import _suites
from benchmarks._cases import CASES
from benchmarks._run import run

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen rows and return the exit status (see ``_run.run``)."""
    names = [case.name for case in CASES] + _suites.row_names()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="every row at tiny size, 1 round, no targets judged"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per side (default 5, smoke 1)")
    parser.add_argument(
        "--case", action="append", choices=names, dest="cases", help="run only this row (repeatable)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="JSON file to write (default benchmarks/results/latest.json, smoke: smoke.json)",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.smoke else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = [case for case in CASES if args.cases is None or case.name in args.cases]
    output = args.output or RESULTS / ("smoke.json" if args.smoke else "latest.json")
    only = None if args.cases is None else frozenset(args.cases)
    return run(chosen, rounds=rounds, smoke=args.smoke, output=output, only=only)


if __name__ == "__main__":
    sys.exit(main())
