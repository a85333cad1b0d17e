"""Incremental runs at scale: a full read vs the people delta, with nothing changed and with 1 %.

idsync runs as its own process (``idsync reconcile --json``) against ``idsync simulator`` over
HTTP, as in ``reconcile_bench.py`` (whose helpers this imports). Per state database:

1. an unmeasured adoption run (Protime already holds every reference; it stores the snapshot);
2. ``--runs`` no-change runs reading in full (``IDSYNC_SCHEDULE__FULL_READ_EVERY=0``);
3. ``--runs`` no-change runs reading the delta (the default ``24h``);
4. one run after 1 % of the people changed in Protime (40 % new hires with an HR row: one PUT
   each; 30 % with a new badge number: no call; 30 % removed from Protime: their employees become
   unmatched, no call), then one full read that must write nothing (the snapshot was right).

With ``--latency-ms`` > 0 the no-change comparison is repeated on SQLite against a simulator that
answers every request that much later (a real tenant is not on loopback), also ``--runs`` times. Checks: a no-change
incremental run makes at most 5 requests and takes under 10 % of the full read's wall time; the
1 % run reads at most ceil(changed / page size) + 5 pages and writes exactly the hires.

    .venv/bin/python benchmarks/incremental_bench.py                 # N = 100,000, SQLite + PostgreSQL
    .venv/bin/python benchmarks/incremental_bench.py --n 2000 --postgres off   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reconcile_bench as rb

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reconcile_bench import Run, SimulatorProcess

# Its own schema: reconcile_bench.py may run on the same server at the same time.
rb.PG_SCHEMA = "idsync_bench_incremental"
FULL = {"protime__rate_limit_per_second": 0, "schedule__full_read_every": "0"}
INCREMENTAL = {"protime__rate_limit_per_second": 0, "schedule__full_read_every": "24h"}
MAX_NO_CHANGE_REQUESTS = 5


def log(text: str) -> None:
    load = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')} load {load:.2f}] {text}", file=sys.stderr, flush=True)


def _run(
    env: dict[str, str],
    sim: SimulatorProcess,
    workdir: Path,
    label: str,
    extra: Sequence[str] = (),
) -> Run:
    run = rb.run_idsync(env, sim=sim, workdir=workdir, label=label, extra=extra)
    log(
        f"{label}: {run.status} wall {run.wall_seconds:.2f}s (run {run.run_seconds:.2f}s), "
        f"{run.requests} requests, {run.reads} pages, {run.writes} writes, "
        f"RSS {run.max_rss_mb:.0f} MB"
    )
    if run.exit_code != 0:
        raise RuntimeError(f"{label}: exit {run.exit_code} ({run.status})")
    return run


def _summary(runs: Sequence[Run]) -> dict[str, Any]:
    def median(values: Sequence[float]) -> float:
        return float(statistics.median(values))

    return {
        "runs": len(runs),
        "wall_seconds": median([r.wall_seconds for r in runs]),
        "run_seconds": median([r.run_seconds for r in runs]),
        "max_rss_mb": median([r.max_rss_mb for r in runs]),
        "cpu_seconds": median([r.cpu_seconds for r in runs]),
        "requests": max(r.requests for r in runs),
        "pages": max(r.reads for r in runs),
        "writes": max(r.writes for r in runs),
        "phases": runs[len(runs) // 2].phases,
        "api_requests": runs[-1].api_requests,
    }


def _change(sim: SimulatorProcess, hr: Path, employees: list[rb.Employee], share: float) -> int:
    """Change ``share`` of the people in Protime; returns the PUTs a run must make (the hires)."""
    total = max(3, round(len(employees) * share))
    hires, rebadged = total * 4 // 10, total * 3 // 10
    removed = total - hires - rebadged
    next_id = max(e.protime_id for e in employees) + 1
    new = []
    for i in range(hires):
        pid, number, badge = next_id + i, f"N-{i:06d}", f"BN-{i:06d}"
        sim.put_person(
            {
                "id": pid,
                "firstName": "New",
                "lastName": f"Hire {i}",
                "employeeNumber": number,
                "badgeNumber": badge,
            }
        )
        new.append(rb.Employee(f"H-{i:06d}", number, badge, None, 1, pid))
    for i, e in enumerate(employees[:rebadged]):
        sim.put_person(
            {
                "id": e.protime_id,
                "firstName": "Re",
                "lastName": "Badged",
                "employeeNumber": e.employee_number,
                "badgeNumber": f"BR-{i:06d}",
            }
        )
    for e in employees[rebadged : rebadged + removed]:
        sim.admin.delete(f"/_sim/people/{e.protime_id}").raise_for_status()
    with contextlib.closing(sqlite3.connect(hr)) as conn, conn:
        conn.executemany(
            "UPDATE employees SET badge_number = ? WHERE employee_id = ?",
            [(f"BR-{i:06d}", e.hr_id) for i, e in enumerate(employees[:rebadged])],
        )
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
            [(e.hr_id, e.employee_number, e.badge_number, e.email, e.active) for e in new],
        )
    log(f"changed in Protime: {hires} new hires, {rebadged} new badges, {removed} removed")
    return hires


def _check(checks: list[dict[str, Any]], name: str, ok: bool, detail: str) -> None:
    checks.append({"check": name, "ok": ok, "detail": detail})
    log(f"{'PASS' if ok else 'MISS'} {name}: {detail}")


def bench_state(
    *,
    state: str,
    n: int,
    runs: int,
    page_size: int,
    share: float,
    workdir: Path,
    postgres: str | None,
    latency_ms: float = 0.0,
    change: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One state database: full vs incremental no-change runs, then the 1 % change."""
    checks: list[dict[str, Any]] = []
    tag = f"{state}" + (f", {latency_ms:g} ms" if latency_ms else "")
    with (
        rb.SimulatorProcess(
            people=n, page_size=page_size, workdir=workdir, latency_ms=latency_ms
        ) as sim,
        rb.state_db(state, workdir=workdir, name=f"incr-{state}", postgres=postgres) as db,
    ):
        employees = rb.employees_for(sim.people())
        hr = workdir / f"hr-incr-{state}.db"
        rb.write_hr(hr, employees)
        sim.set_references([(e.hr_id, e.protime_id) for e in employees])

        def env(settings: dict[str, object]) -> dict[str, str]:
            return rb.idsync_env(sim=sim, db=db, hr_path=hr, workdir=workdir, **settings)

        adopt = _run(env(FULL), sim, workdir, f"adopt[{tag}]")
        full = [_run(env(FULL), sim, workdir, f"full[{tag}]") for _ in range(runs)]
        # The steady state: each no-change run after a run that had nothing to do is settled
        # (docs/protime-client.md, "Settled runs").
        incremental = [
            _run(env(INCREMENTAL), sim, workdir, f"incremental[{tag}]") for _ in range(runs)
        ]
        # For comparison, a no-change incremental run that plans: an --only run before it means
        # it cannot take the settled run's plan.
        _run(env(INCREMENTAL), sim, workdir, f"only[{tag}]", extra=["--only", employees[0].hr_id])
        planned = _run(env(INCREMENTAL), sim, workdir, f"incremental-planned[{tag}]")
        result: dict[str, Any] = {
            "state": state,
            "n": n,
            "latency_ms": latency_ms,
            "adoption": asdict(adopt),
            "full": _summary(full),
            "incremental": _summary(incremental),
            "incremental_planned": _summary([planned]),
        }
        ratio = result["incremental"]["wall_seconds"] / result["full"]["wall_seconds"]
        result["wall_ratio"] = ratio
        most = result["incremental"]["requests"]
        _check(
            checks,
            f"no-change incremental requests [{tag}]",
            most <= MAX_NO_CHANGE_REQUESTS,
            f"{most} requests (limit {MAX_NO_CHANGE_REQUESTS})",
        )
        settled = sum(1 for r in incremental if r.settled_since)
        _check(
            checks,
            f"no-change incremental runs settled [{tag}]",
            settled == len(incremental) and planned.settled_since is None,
            f"{settled} of {len(incremental)} settled; the one after --only planned:"
            f" {planned.settled_since is None}",
        )
        _check(
            checks,
            f"no-change incremental wall < 10 % of full [{tag}]",
            ratio < 0.10,
            f"{result['incremental']['wall_seconds']:.2f}s vs "
            f"{result['full']['wall_seconds']:.2f}s = {ratio:.1%}",
        )
        if change:
            hires = _change(sim, hr, employees, share)
            changed = max(3, round(len(employees) * share))
            run = _run(env(INCREMENTAL), sim, workdir, f"change[{tag}]")
            limit = math.ceil(changed / page_size) + 5
            _check(
                checks,
                f"1 % change pages [{tag}]",
                run.reads <= limit,
                f"{run.reads} pages for {changed} changed people (limit {limit})",
            )
            _check(
                checks,
                f"1 % change writes [{tag}]",
                run.writes == hires and run.actions == {"write:succeeded": hires},
                f"{run.writes} writes, {hires} needed ({run.actions})",
            )
            verify = _run(env(FULL), sim, workdir, f"verify-full[{tag}]")
            _check(
                checks,
                f"a full read after it writes nothing [{tag}]",
                verify.writes == 0,
                f"{verify.writes} writes",
            )
            result["change"] = {
                **asdict(run),
                "changed_people": changed,
                "pages_limit": limit,
                "expected_writes": hires,
            }
            result["verify_full"] = {"writes": verify.writes, "status": verify.status}
    return result, checks


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=rb.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| state | latency | N | read | runs | wall s | run s | RSS MB | requests | pages | writes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["states"]:
        for kind in ("full", "incremental", "incremental_planned"):
            s = r[kind]
            name = {
                "incremental": "incremental (settled)",
                "incremental_planned": "incremental, planned",
            }.get(kind, kind)
            lines.append(
                f"| {r['state']} | {r['latency_ms']:g} ms | {r['n']:,} | {name}, no change |"
                f" {s['runs']} | {s['wall_seconds']:.2f} | {s['run_seconds']:.2f} |"
                f" {s['max_rss_mb']:.0f} | {s['requests']} | {s['pages']} | {s['writes']} |"
            )
        if "change" in r:
            c = r["change"]
            lines.append(
                f"| {r['state']} | {r['latency_ms']:g} ms | {r['n']:,} | incremental, 1 % changed"
                f" ({c['changed_people']} people) | 1 | {c['wall_seconds']:.2f} |"
                f" {c['run_seconds']:.2f} | {c['max_rss_mb']:.0f} | {c['requests']} |"
                f" {c['reads']} (limit {c['pages_limit']}) | {c['writes']}"
                f" (needed {c['expected_writes']}) |"
            )
    lines.append("")
    lines.extend(
        f"- {'PASS' if c['ok'] else 'MISS'} {c['check']}: {c['detail']}" for c in results["checks"]
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="people (and employees)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each no-change kind")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--postgres", default="auto", help="auto, off, or a SQLAlchemy URL")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        help="also compare no-change runs at this simulator latency (SQLite; 0: skip)",
    )
    parser.add_argument("--out", type=Path, default=rb.RESULTS / "incremental.json")
    o = parser.parse_args(argv)
    postgres = rb._postgres_url(o.postgres)  # noqa: SLF001 - the same server choice as reconcile_bench
    workdir = Path(tempfile.mkdtemp(prefix="idsync-incr-"))
    (workdir / "no-secrets").mkdir()
    started = time.perf_counter()
    load_before = os.getloadavg()
    states: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    try:
        for state in ["sqlite"] + (["postgresql"] if postgres else []):
            result, found = bench_state(
                state=state,
                n=o.n,
                runs=o.runs,
                page_size=o.page_size,
                share=o.change_share,
                workdir=workdir,
                postgres=postgres,
            )
            states.append(result)
            checks.extend(found)
        if o.latency_ms:
            result, found = bench_state(
                state="sqlite",
                n=o.n,
                runs=o.runs,
                page_size=o.page_size,
                share=o.change_share,
                workdir=workdir,
                postgres=None,
                latency_ms=o.latency_ms,
                change=False,
            )
            states.append(result)
            checks.extend(found)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "commit": _commit(),
        "machine": {**rb.machine(), "load_average_at_start": load_before},
        "elapsed_seconds": time.perf_counter() - started,
        "states": states,
        "checks": checks,
    }
    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"\nresults: {o.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
