"""The review-and-approve benchmark of issue 10: plan / apply against one reconcile, at N people.

    .venv/bin/python benchmarks/review_bench.py                  # N = 250,000 (about 20 minutes)
    .venv/bin/python benchmarks/review_bench.py --people 2000    # a quick check

A first sync, as a user runs it: ``idsync simulator --people N`` as its own process (no latency, no
rate limit), an HR SQLite table of N employees matching their persons by employee number, no
reference in Protime yet, so every run has N writes to decide or make. Each idsync command runs as
its own process through the launcher of ``reconcile_bench`` (its peak RSS and wall time from
``os.wait4``). In order, on fresh state databases:

1. ``idsync reconcile --json`` (the baseline: one run that reads, plans and writes N values);
2. the references cleared, a new state database: ``idsync reconcile --dry-run`` (a plain dry run:
   tables on stdout), then ``idsync plan --out FILE --json``, then ``idsync apply PLAN --json``.

It reports the peak RSS of ``plan --out`` against the dry run's, and the wall time of the
plan/apply pair against the reconcile's. Results go to ``benchmarks/results/review-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile_bench import (  # the sibling script, found through sys.path
    _LAUNCHER,
    IDSYNC,
    RESULTS,
    SimulatorProcess,
    employees_for,
    idsync_env,
    machine,
    state_db,
    write_hr,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def launch(
    env: dict[str, str], args: Sequence[str], *, workdir: Path, label: str
) -> dict[str, Any]:
    """One idsync command as its own process: exit code, wall seconds, peak RSS MB, stdout."""
    stamp = time.monotonic_ns()
    figures_path = workdir / f"{label}-{stamp}.rusage"
    out_path, err_path = workdir / f"{label}-{stamp}.out", workdir / f"{label}-{stamp}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(figures_path),
                shutil.which(IDSYNC) or IDSYNC,
                *args,
            ],
            stdout=out,
            stderr=err,
            env=env,
            cwd=workdir,
            check=False,
        )
    figures = json.loads(figures_path.read_text())
    return {
        "command": "idsync " + " ".join(args),
        "exit_code": int(figures["exit_code"]),
        "wall_seconds": round(float(figures["wall_seconds"]), 2),
        "max_rss_mb": round(figures["max_rss_kb"] / 1024, 1),
        "cpu_seconds": round(float(figures["cpu_seconds"]), 2),
        "stdout": out_path.read_text()[-200_000:],
        "stderr_tail": err_path.read_text()[-2000:],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=250_000, help="N (default 250,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="idsync concurrency")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/...)")
    options = parser.parse_args(argv)
    n = options.people
    workdir = Path(tempfile.mkdtemp(prefix="idsync-review-bench-"))
    log = print
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "people": n, "runs": {}}
    settings = {
        "protime__concurrency": options.concurrency,
        "protime__rate_limit_per_second": 0,
        "safety__max_writes": "",
    }
    with SimulatorProcess(people=n, page_size=100, workdir=workdir) as sim:
        hr_path = workdir / "hr.db"
        write_hr(hr_path, employees_for(sim.people()))
        log(
            f"{time.monotonic() - started:.0f}s: simulator and HR ready ({n} people), load {os.getloadavg()[0]:.2f}"
        )
        with state_db("sqlite", workdir=workdir, name="reconcile", postgres=None) as db:
            env = idsync_env(sim=sim, db=db, hr_path=hr_path, workdir=workdir, **settings)
            env.pop("IDSYNC_SAFETY__MAX_WRITES")
            run = launch(env, ["reconcile", "--json"], workdir=workdir, label="reconcile")
            results["runs"]["reconcile"] = run
            log(
                f"reconcile: exit {run['exit_code']} {run['wall_seconds']} s {run['max_rss_mb']} MB, load {os.getloadavg()[0]:.2f}"
            )
        sim.clear_references()
        with state_db("sqlite", workdir=workdir, name="review", postgres=None) as db:
            env = idsync_env(sim=sim, db=db, hr_path=hr_path, workdir=workdir, **settings)
            env.pop("IDSYNC_SAFETY__MAX_WRITES")
            dry = launch(env, ["reconcile", "--dry-run"], workdir=workdir, label="dry")
            results["runs"]["dry_run"] = dry
            log(f"dry run: exit {dry['exit_code']} {dry['wall_seconds']} s {dry['max_rss_mb']} MB")
            plan_file = workdir / "plan.json"
            planned = launch(
                env, ["plan", "--out", str(plan_file), "--json"], workdir=workdir, label="plan"
            )
            results["runs"]["plan"] = planned
            log(
                f"plan --out: exit {planned['exit_code']} {planned['wall_seconds']} s {planned['max_rss_mb']} MB"
            )
            plan_id = json.loads(planned["stdout"])["plan_id"]
            results["plan_file_mb"] = round(plan_file.stat().st_size / 2**20, 1)
            applied = launch(env, ["apply", plan_id, "--json"], workdir=workdir, label="apply")
            results["runs"]["apply"] = applied
            log(
                f"apply: exit {applied['exit_code']} {applied['wall_seconds']} s {applied['max_rss_mb']} MB, load {os.getloadavg()[0]:.2f}"
            )
    for run in results["runs"].values():
        run.pop("stdout", None)
    r = results["runs"]
    pair = r["plan"]["wall_seconds"] + r["apply"]["wall_seconds"]
    results["figures"] = {
        "plan_out_rss_minus_dry_run_rss_mb": round(
            r["plan"]["max_rss_mb"] - r["dry_run"]["max_rss_mb"], 1
        ),
        "plan_apply_wall_seconds": round(pair, 2),
        "reconcile_wall_seconds": r["reconcile"]["wall_seconds"],
        "pair_over_reconcile": round(pair / r["reconcile"]["wall_seconds"], 3),
        "total_seconds": round(time.monotonic() - started, 1),
        "finished_at": datetime.now(UTC).isoformat(),
    }
    out = options.out or RESULTS / f"review-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    log(json.dumps(results["figures"], indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
