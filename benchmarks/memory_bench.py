"""The bounded-memory benchmark of issue 12: peak RSS of idsync at N people, by kind of run.

    .venv/bin/python benchmarks/memory_bench.py                      # N = 250,000, series 50k/100k/250k
    .venv/bin/python benchmarks/memory_bench.py --people 2000 --series 1000,2000 --postgres off

Each idsync command runs as its own process through the launcher of ``reconcile_bench`` (peak RSS
from ``os.wait4``, the process alone). The world is the one the other benchmarks use: ``idsync
simulator --people N`` as its own process (no latency, no rate limit on either side), an HR SQLite
table of N employees matching their persons by employee number. Per state database (SQLite, and
PostgreSQL when it answers), fresh:

1. ``reconcile --dry-run --force --json > file``: the plan of a first sync (N writes, N records)
   printed whole;
2. ``reconcile``: the first sync itself (N writes; tables on stdout);
3. ``reconcile --json``: a no-change run (every person already linked, a full read).

Then the series: for each N of ``--series`` below the largest, a simulator of N people whose
references are set through its admin surface, one unmeasured adoption run (it writes nothing) and
one measured no-change run, so the growth of a no-change run's peak with N is seen. Results go to
``benchmarks/results/memory-<time>.json``; the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reconcile_bench  # the sibling script, found through sys.path
from reconcile_bench import (
    SimulatorProcess,
    employees_for,
    idsync_env,
    machine,
    state_db,
    write_hr,
)
from review_bench import launch

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


# A PostgreSQL schema of its own (per process): the other benchmarks, or another run of this
# one (say, the code before a change next to the code after it), may run at the same time.
reconcile_bench.PG_SCHEMA = f"idsync_memory_bench_{os.getpid()}"

TARGETS_MB = {"no_change": 300, "first_sync": 400, "dry_run_json": 400}


def _settings(concurrency: int) -> dict[str, object]:
    return {
        "protime__concurrency": concurrency,
        "protime__rate_limit_per_second": 0,
        # A first sync of N writes is what this measures: no threshold may block it.
        "safety__max_repoints": 10**9,
        "safety__max_deletes": 10**9,
    }


def _measure(
    env: dict[str, str], args: Sequence[str], *, workdir: Path, label: str, log: Callable[..., None]
) -> dict[str, Any]:
    load = os.getloadavg()[0]
    run = launch(env, args, workdir=workdir, label=label)
    written = max(workdir.glob(f"{label}-*.out"), key=lambda p: p.stat().st_mtime)
    run["stdout_mb"] = round(written.stat().st_size / 2**20, 1)
    stdout = written.read_text() if run.pop("stdout") else ""
    written.unlink()
    run["load_before"] = round(load, 2)
    run["load_after"] = round(os.getloadavg()[0], 2)
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = {}
    run["status"] = doc.get("status")
    run["situations"] = {k: v for k, v in doc.get("situations", {}).items() if v}
    run["plan_actions"] = len(doc.get("plan", ()))
    run["records"] = len(doc.get("records", ()))
    del doc, stdout
    log(
        f"  {label}: exit {run['exit_code']} {run['wall_seconds']} s, peak RSS "
        f"{run['max_rss_mb']} MB, CPU {run['cpu_seconds']} s, load {load:.2f}->{run['load_after']}"
    )
    if run["exit_code"] != 0:
        log(run["stderr_tail"])
    return run


def world(n: int, workdir: Path) -> tuple[SimulatorProcess, Path]:
    sim = SimulatorProcess(people=n, page_size=100, workdir=workdir)
    hr_path = workdir / f"hr-{n}.db"
    write_hr(hr_path, employees_for(sim.people()))
    return sim, hr_path


def full_sequence(
    n: int, kinds: Sequence[str], *, postgres: str | None, workdir: Path, concurrency: int,
    skip: frozenset[str], log: Callable[..., None],
) -> dict[str, Any]:  # fmt: skip
    """Dry run, first sync and no-change run at N, on each state database (``skip``: left out;
    without the first sync, the references are set through the simulator and adopted)."""
    results: dict[str, Any] = {}
    sim, hr_path = world(n, workdir)
    with sim:
        pairs = [(e.hr_id, e.protime_id) for e in employees_for(sim.people())]
        for kind in kinds:
            sim.clear_references()
            log(f"{kind}, N={n}:")
            with state_db(kind, workdir=workdir, name=f"full-{n}", postgres=postgres) as db:
                env = idsync_env(
                    sim=sim, db=db, hr_path=hr_path, workdir=workdir, **_settings(concurrency)
                )
                runs = results[kind] = {}
                if "dry_run_json" not in skip:
                    runs["dry_run_json"] = _measure(
                        env, ["reconcile", "--dry-run", "--force", "--json"],
                        workdir=workdir, label=f"dry-{kind}-{n}", log=log,
                    )  # fmt: skip
                if "first_sync" not in skip:
                    runs["first_sync"] = _measure(
                        env, ["reconcile"], workdir=workdir, label=f"first-{kind}-{n}", log=log
                    )
                else:
                    sim.set_references(pairs)
                    _measure(env, ["reconcile", "--json"], workdir=workdir, label="adopt", log=log)
                if "no_change" not in skip:
                    runs["no_change"] = _measure(
                        env, ["reconcile", "--json"], workdir=workdir, label=f"steady-{kind}-{n}",
                        log=log,
                    )  # fmt: skip
    return results


def no_change_at(
    n: int, kinds: Sequence[str], *, postgres: str | None, workdir: Path, log: Callable[..., None]
) -> dict[str, Any]:
    """One no-change run at N per state database: references set, one unmeasured adoption run."""
    results: dict[str, Any] = {}
    sim, hr_path = world(n, workdir)
    with sim:
        employees = employees_for(sim.people())
        sim.set_references([(e.hr_id, e.protime_id) for e in employees])
        del employees
        for kind in kinds:
            log(f"{kind}, N={n}:")
            with state_db(kind, workdir=workdir, name=f"series-{n}", postgres=postgres) as db:
                env = idsync_env(sim=sim, db=db, hr_path=hr_path, workdir=workdir, **_settings(8))
                _measure(env, ["reconcile", "--json"], workdir=workdir, label="adopt", log=log)
                results[kind] = _measure(
                    env, ["reconcile", "--json"], workdir=workdir, label=f"steady-{kind}-{n}",
                    log=log,
                )  # fmt: skip
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| run | state | N | peak RSS MB | target MB | wall s | CPU s | exit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, by_kind in results["full"].items():
        for kind, runs in by_kind.items():
            for name, run in runs.items():
                lines.append(
                    f"| {name} | {kind} | {int(n):,} | {run['max_rss_mb']} | "
                    f"{TARGETS_MB.get(name, '-')} | {run['wall_seconds']} | {run['cpu_seconds']} | "
                    f"{run['exit_code']} |"
                )
    for n, by_kind in results["series"].items():
        for kind, run in by_kind.items():
            lines.append(
                f"| no_change (series) | {kind} | {int(n):,} | {run['max_rss_mb']} | - | "
                f"{run['wall_seconds']} | {run['cpu_seconds']} | {run['exit_code']} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=250_000, help="N (default 250,000)")
    parser.add_argument(
        "--series", default="50000,100000", help="other N of the no-change series (comma-separated)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="idsync concurrency")
    parser.add_argument(
        "--postgres",
        default="auto",
        help="state on PostgreSQL too: 'auto' (when it answers), 'off', or a URL",
    )
    parser.add_argument(
        "--state",
        choices=("both", "sqlite", "postgresql"),
        default="both",
        help="state databases to measure (PostgreSQL only when it answers)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        choices=sorted(TARGETS_MB),
        default=[],
        help="leave this run out at N (repeat); the series is measured either way",
    )
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/...)")
    options = parser.parse_args(argv)
    postgres = reconcile_bench._postgres_url(options.postgres)  # noqa: SLF001 - the sibling's
    kinds = ["sqlite", "postgresql"] if postgres else ["sqlite"]
    if options.state != "both":
        kinds = [k for k in kinds if k == options.state]
    workdir = Path(tempfile.mkdtemp(prefix="idsync-memory-bench-"))
    started = time.monotonic()

    def log(*parts: object) -> None:
        print(f"{time.monotonic() - started:7.0f}s", *parts, flush=True)

    results: dict[str, Any] = {"machine": machine(), "full": {}, "series": {}}
    try:
        n = options.people
        results["full"][str(n)] = full_sequence(
            n,
            kinds,
            postgres=postgres,
            workdir=workdir,
            concurrency=options.concurrency,
            skip=frozenset(options.skip),
            log=log,
        )
        for size in sorted({int(s) for s in options.series.split(",") if s.strip()}):
            if size != n:
                results["series"][str(size)] = no_change_at(
                    size, kinds, postgres=postgres, workdir=workdir, log=log
                )
        results["series"][str(n)] = {
            k: r["no_change"] for k, r in results["full"][str(n)].items() if "no_change" in r
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = datetime.now(UTC).isoformat()
    results["total_seconds"] = round(time.monotonic() - started, 1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = options.out or reconcile_bench.RESULTS / f"memory-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
