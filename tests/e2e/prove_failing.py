"""Prove the e2e harness can fail: run it against Starlette's own classes and expect failures.

``python -m tests.e2e.prove_failing`` runs the end-to-end modules whose apps swap in
Starlette's ``StreamingResponse`` and ``FileResponse`` when ``STREAMING_E2E_IMPL=starlette``
(see ``tests/e2e/app.py`` and ``files_app.py``), on one server kind, and exits non-zero unless
every module listed in :data:`MUST_FAIL` has failing tests. A guarantee whose tests pass against
a class that lacks it is a test that cannot fail; ``make test`` runs this so that it stays
noticed. Tests that pass there too (a 200 with the right bytes) are fine: Starlette gets many
things right.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: One server is enough to show the tests can fail; the one where every guarantee applies.
SERVER = "uvicorn-h11"
#: The modules that test a guarantee Starlette's classes lack, with the least number of their
#: tests that must fail against them (measured: see the module docstring).
MUST_FAIL: dict[str, int] = {
    "test_bad_chunk": 6,
    "test_coalescing": 1,
    "test_disconnect": 7,
    "test_duplex": 2,
    "test_errors_after_start": 3,
    "test_files": 10,
    "test_framing": 4,
    "test_head": 3,
    "test_start": 10,
    "test_timeouts": 7,
}


def failures_by_module(report: Path) -> dict[str, int]:
    """The number of failed (or errored) tests per module in a JUnit XML report."""
    counts: dict[str, int] = collections.Counter()
    for case in ET.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            counts[(case.get("classname") or "").rsplit(".", 1)[-1]] += 1
    return counts


def main() -> int:
    env = {**os.environ, "STREAMING_E2E_IMPL": "starlette", "E2E_SERVERS": SERVER}
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            f"--junitxml={report}",
            *(f"tests/e2e/{module}.py" for module in MUST_FAIL),
        ]
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        if not report.exists():
            print("prove_failing: pytest wrote no report", file=sys.stderr)
            return 2
        counts = failures_by_module(report)
    short = {module: (counts.get(module, 0), least) for module, least in MUST_FAIL.items()}
    for module, (failed, least) in short.items():
        print(f"{module}: {failed} failed against Starlette (at least {least} must)")
    missing = [module for module, (failed, least) in short.items() if failed < least]
    if missing:
        print(f"prove_failing: these modules cannot fail as they should: {missing}", file=sys.stderr)
        return 1
    print("prove_failing: the e2e harness fails against Starlette's classes where it must")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
