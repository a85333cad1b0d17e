"""A tenant of a million people (issue 12): wall time, requests, peak RSS and seconds per phase.

    .venv/bin/python benchmarks/million_bench.py                      # N=1,000,000, SQLite and PostgreSQL
    .venv/bin/python benchmarks/million_bench.py --people 2000 --state sqlite   # a smoke check

The simulator (``idsync simulator``, over HTTP, no latency, no rate limit) generates N people; an
HR SQLite table holds one employee per person. ``--prelinked`` of the people already carry their
HR id as the custom reference (the tenant an operator adopts: ids written by an earlier tool or
by hand), the rest are written by the first run. Per state database, in order:

1. ``first``: the first run (full read, classify and save N, write the rest);
2. ``full``: a no-change run that reads everyone (``--full``);
3. ``incremental``: a no-change run between full reads (the delta feed);
4. ``changed``: 1 % of the people change in Protime as in incremental_bench.py (40 % of them new
   hires with an HR row, each one PUT; 30 % new badge numbers; 30 % removed), then an incremental
   run.

Each run is ``idsync reconcile --json`` as its own process (the launcher of reconcile_bench.py, so
the peak RSS is idsync's own), with the client-side limit off as in the other steady-state
scenarios and full reads every 24 h (the default). The seconds per phase come from the ``phase_seconds`` of the run's ``run.finish`` line.
Results: a table on stdout and ``benchmarks/results/million-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from incremental_bench import INCREMENTAL
from incremental_bench import _change as change_people  # the same 1 % change as that benchmark
from reconcile_bench import (  # the sibling scripts, found through sys.path
    PG_URL,
    RESULTS,
    Run,
    SimulatorProcess,
    employees_for,
    idsync_env,
    run_idsync,
    state_db,
    write_hr,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

RUNS = ("first", "full", "incremental", "changed")
CHANGED_SHARE = 0.01


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--people", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument(
        "--prelinked",
        type=float,
        default=0.99,
        help="share of people that already carry their reference (default 0.99; 0: write all)",
    )
    parser.add_argument(
        "--state",
        action="append",
        choices=("sqlite", "postgresql"),
        help="state databases (repeat; default both)",
    )
    parser.add_argument("--postgres", default=PG_URL, help="PostgreSQL URL for the state")
    parser.add_argument("--page-size", type=int, default=100)
    return parser.parse_args(argv)


def _row(label: str, run: Run) -> str:
    phases = " ".join(f"{k}={v:.1f}" for k, v in run.phases.items() if k.startswith("phase:"))
    return (
        f"{label:<12} {run.status:<10} wall {run.wall_seconds:8.1f}s  requests {run.requests:>8}"
        f" (reads {run.reads}, writes {run.writes})  peak RSS {run.max_rss_mb:7.0f} MB"
        f"  CPU {run.cpu_seconds:7.1f}s  {phases}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    states = args.state or ["sqlite", "postgresql"]
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_at_start": os.getloadavg(),
        },
        "people": args.people,
        "prelinked": args.prelinked,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="idsync-million-") as tmp:
        workdir = Path(tmp)
        for state in states:
            results["runs"][state] = runs = {}
            with SimulatorProcess(
                people=args.people, page_size=args.page_size, workdir=workdir
            ) as sim:
                people = sim.people()
                employees = employees_for(people)
                hr = workdir / f"hr-{state}.db"
                write_hr(hr, employees)
                linked = int(len(employees) * args.prelinked)
                sim.set_references([(e.hr_id, e.protime_id) for e in employees[:linked]])
                print(f"[{state}] {len(people)} people, {linked} already linked", flush=True)
                with state_db(state, workdir=workdir, name="million", postgres=args.postgres) as db:
                    env = idsync_env(sim=sim, db=db, hr_path=hr, workdir=workdir, **INCREMENTAL)
                    for label in RUNS:
                        extra: list[str] = []
                        if label == "full":
                            extra = ["--full"]
                        if label == "changed":
                            hires = change_people(sim, hr, employees, CHANGED_SHARE)
                            runs["changed_expected_writes"] = hires
                        run = run_idsync(
                            env, sim=sim, workdir=workdir, label=f"{state}-{label}", extra=extra
                        )
                        runs[label] = asdict(run)
                        print(f"[{state}] {_row(label, run)}", flush=True)
    results["load_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"million-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
