"""`make stress`: the tests that touch processes, signals, locks and timing, N times in a row.

Runs pytest on the service, process, lock and migration tests ``--runs`` times (20 by default),
each round a fresh pytest process, and prints how many rounds every test passed: a test that
passes 19 times out of 20 is a bug to find at its cause. The PostgreSQL tests run for real
(``CI=true``). Exit code 0 only when every test passed every round.

Left out: the randomized SIGTERM test (tests/service/test_signals.py), which is 100 iterations
of its own, and the wheel test, which builds and installs a wheel (packaging, not timing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (
    "tests/service",
    "tests/state/test_lock.py",
    "tests/state/test_migrations.py",
    # Many syncs: a worker pool, run locks per sync, replicas sharing syncs over PostgreSQL.
    "tests/e2e/test_e2e_many_syncs.py",
    "tests/e2e/test_e2e_replicas.py",
)
DESELECT = (
    "tests/service/test_signals.py",
    "tests/service/test_process.py::test_the_wheel_installed_in_a_fresh_venv_upgrades_and_serves",
)


def _outcomes(report: Path) -> dict[str, str]:
    """Test id -> passed / failed / skipped, from a JUnit XML report."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - see the import
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.runs + 1):
            report = Path(tmp) / f"round-{round_}.xml"
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                *TARGETS,
                *(f"--deselect={test}" for test in DESELECT),
            ]
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ
            )
            outcomes = _outcomes(report) if report.exists() else {}
            for name, outcome in outcomes.items():
                seen[name] += 1
                passed[name] += outcome == "passed"
                skipped[name] += outcome == "skipped"
            failed = sorted(n for n, o in outcomes.items() if o == "failed")
            minutes = (time.monotonic() - started) / 60
            print(  # noqa: T201 - a command-line report
                f"round {round_}/{args.runs}: {len(outcomes)} tests, {len(failed)} failed "
                f"({minutes:.1f} min so far)",
                flush=True,
            )
            if not outcomes:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")  # noqa: T201
            for name in failed:
                print(f"  FAILED {name}", flush=True)  # noqa: T201
    print(f"\npass counts over {args.runs} rounds:")  # noqa: T201
    for name in sorted(seen):
        note = f" (skipped {skipped[name]})" if skipped[name] else ""
        print(f"  {passed[name] + skipped[name]:>3}/{args.runs}  {name}{note}")  # noqa: T201
    short = [n for n in seen if passed[n] + skipped[n] < args.runs or seen[n] < args.runs]
    total = sum(1 for n in seen if n not in short)
    print(f"\n{total}/{len(seen)} tests passed all {args.runs} rounds")  # noqa: T201
    return 1 if short or not seen else 0


if __name__ == "__main__":
    sys.exit(main())
