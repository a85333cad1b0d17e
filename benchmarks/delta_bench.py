"""Protime's delta as published, at scale: adds, corrections, removals and an expired link.

idsync runs as its own process (``idsync reconcile --json``) against ``idsync simulator
--delta-order ORDER`` over HTTP (helpers from ``reconcile_bench.py``). Per state database and
delta order:

1. adoption: Protime already holds every reference; the first run reads in full (a new delta
   round) and must write nothing;
2. a no-change run: incremental, at most 5 requests;
3. a change of ``--change-share`` of the people: new hires (a person and an HR row: one PUT each),
   corrections (a new person changed twice, first to a wrong employee number, then to its HR
   row's: one PUT each, only if the newest version holds), removals (a linked person leaves:
   its reference goes with it, no call); the run must read incrementally and write exactly the
   hires and corrections;
4. the link expires (the simulator's clock moves 73 h) and a few badges change: the run reads in
   full ("the delta token expired (410)") and writes nothing;
5. a no-change run through the new link.

After every run, exactness: the references Protime holds are those the HR rows call for, and the
snapshot in the state database (id, keys, reference, change version) equals the simulator's
people.

    .venv/bin/python benchmarks/delta_bench.py                        # N = 100,000, every order
    .venv/bin/python benchmarks/delta_bench.py --n 2000 --postgres off   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reconcile_bench as rb
from sqlalchemy import text

from sync.state import open_database

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reconcile_bench import Run, SimulatorProcess, StateDB

rb.PG_SCHEMA = "idsync_bench_delta"
INCREMENTAL = {"protime__rate_limit_per_second": 0, "schedule__full_read_every": "24h"}
ORDERS = ("chronological", "newest-first", "shuffled")


def log(text_: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text_}", file=sys.stderr, flush=True)


def _expected(people: list[dict[str, Any]], hr: Path) -> dict[str, int]:
    holders: dict[str, list[int]] = {}
    for p in people:
        holders.setdefault(p["employeeNumber"], []).append(p["id"])
    with contextlib.closing(sqlite3.connect(hr)) as conn:
        rows = conn.execute("SELECT employee_id, employee_number FROM employees WHERE active = 1")
        return {hid: holders[num][0] for hid, num in rows if len(holders.get(num, [])) == 1}


def _exact(sim: SimulatorProcess, db: StateDB, hr: Path) -> dict[str, Any]:
    """Whether Protime and the snapshot are what they should be, with the differences counted."""
    dump = sim.admin.get("/_sim/people").json()["people"]
    refs = {
        r["value"]: int(r["internalReference"])
        for r in sim.admin.get("/_sim/references").json()["references"]
        if r["name"] == rb.REFERENCE
    }
    expected = _expected(dump, hr)
    world = {
        p["id"]: (
            p["employeeNumber"],
            p["badgeNumber"],
            p["externalReferences"].get(rb.REFERENCE),
            p["changeVersion"],
        )
        for p in dump
    }
    state = open_database(db.url)
    try:
        with state.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, employee_number, badge_number, reference, change_version "
                    "FROM protime_people"
                )
            )
            snapshot = {r[0]: tuple(r[1:]) for r in rows}
    finally:
        state.dispose()
    wrong_refs = len(set(refs.items()) ^ set(expected.items()))
    wrong_rows = len(set(world.items()) ^ set(snapshot.items()))
    return {
        "protime_references": len(refs),
        "references_wrong": wrong_refs,
        "snapshot_rows": len(snapshot),
        "snapshot_rows_wrong": wrong_rows,
        "exact": wrong_refs == 0 and wrong_rows == 0,
    }


def _run(
    env: dict[str, str],
    sim: SimulatorProcess,
    db: StateDB,
    hr: Path,
    workdir: Path,
    *,
    label: str,
) -> dict[str, Any]:
    run: Run = rb.run_idsync(env, sim=sim, workdir=workdir, label=label)
    if run.exit_code != 0:
        raise RuntimeError(f"{label}: exit {run.exit_code} ({run.status})")
    exact = _exact(sim, db, hr)
    counters = sim.counters()
    sim.reset_counters()
    result = {
        "label": label,
        "status": run.status,
        "wall_seconds": round(run.wall_seconds, 2),
        "requests": run.requests,
        "pages": run.reads,
        "writes": run.writes,
        "actions": run.actions,
        "max_rss_mb": round(run.max_rss_mb, 1),
        "rounds_started": counters.get("people.delta_start:200", 0),
        "changes_pages": counters.get("delta.changes:200", 0),
        "refused_410": counters.get("delta.changes:410", 0),
        **exact,
    }
    log(
        f"{label}: {run.status} {run.wall_seconds:.1f}s, {run.requests} requests, "
        f"{run.reads} pages, {run.writes} writes, RSS {run.max_rss_mb:.0f} MB, "
        f"exact={exact['exact']} ({exact['references_wrong']} refs, "
        f"{exact['snapshot_rows_wrong']} rows wrong)"
    )
    return result


def _change(sim: SimulatorProcess, hr: Path, employees: list[rb.Employee], share: float) -> int:
    """Hires, corrections (two versions each) and removals; returns the writes a run needs."""
    total = max(3, round(len(employees) * share))
    hires, corrections = total * 4 // 10, total * 3 // 10
    removed = total - hires - corrections
    next_id = max(e.protime_id for e in employees) + 1
    rows = []
    for i in range(hires):
        pid = next_id + i
        person = {"id": pid, "firstName": "New", "lastName": f"Hire {i}"}
        sim.put_person({**person, "employeeNumber": f"N-{i:06d}", "badgeNumber": f"BN-{i:06d}"})
        rows.append((f"H-{i:06d}", f"N-{i:06d}", f"BN-{i:06d}"))
    for i in range(corrections):
        pid = next_id + hires + i
        person = {"id": pid, "firstName": "Cor", "lastName": f"Rected {i}"}
        sim.put_person({**person, "employeeNumber": f"WRONG-{i:06d}", "badgeNumber": f"BC-{i:06d}"})
        sim.put_person({**person, "employeeNumber": f"C-{i:06d}", "badgeNumber": f"BC-{i:06d}"})
        rows.append((f"K-{i:06d}", f"C-{i:06d}", f"BC-{i:06d}"))
    for e in employees[:removed]:
        sim.admin.delete(f"/_sim/people/{e.protime_id}").raise_for_status()
    with contextlib.closing(sqlite3.connect(hr)) as conn, conn:
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?, ?, NULL, 1)", [(h, n, b) for h, n, b in rows]
        )
    log(f"changed: {hires} hires, {corrections} corrections (two versions), {removed} removed")
    return hires + corrections


def bench(
    *, state: str, order: str, n: int, share: float, workdir: Path, postgres: str | None
) -> dict[str, Any]:
    tag = f"{state}, {order}"
    with (
        rb.SimulatorProcess(
            people=n, page_size=100, workdir=workdir, extra=["--delta-order", order]
        ) as sim,
        rb.state_db(state, workdir=workdir, name=f"delta-{state}", postgres=postgres) as db,
    ):
        employees = rb.employees_for(sim.people())
        hr = workdir / f"hr-delta-{state}.db"
        rb.write_hr(hr, employees)
        sim.set_references([(e.hr_id, e.protime_id) for e in employees])
        env = rb.idsync_env(sim=sim, db=db, hr_path=hr, workdir=workdir, **INCREMENTAL)
        sim.reset_counters()
        runs = [_run(env, sim, db, hr, workdir, label=f"adopt[{tag}]")]
        runs.append(_run(env, sim, db, hr, workdir, label=f"no-change[{tag}]"))
        needed = _change(sim, hr, employees, share)
        runs.append(_run(env, sim, db, hr, workdir, label=f"changes[{tag}]"))
        runs[-1]["writes_needed"] = needed
        sim.admin.post("/_sim/clock", json={"advance": 73 * 3600}).raise_for_status()
        for e in employees[-5:]:
            sim.put_person(
                {
                    "id": e.protime_id,
                    "firstName": "Late",
                    "lastName": "Badge",
                    "employeeNumber": e.employee_number,
                    "badgeNumber": f"LATE-{e.protime_id}",
                }
            )
        runs.append(_run(env, sim, db, hr, workdir, label=f"expired[{tag}]"))
        runs.append(_run(env, sim, db, hr, workdir, label=f"after[{tag}]"))
    checks = {
        "all exact": all(r["exact"] for r in runs),
        "adoption writes nothing, one round": runs[0]["writes"] == 0
        and runs[0]["rounds_started"] == 1,
        "no-change: <= 5 requests, no round": runs[1]["requests"] <= 5
        and runs[1]["rounds_started"] == 0,
        "changes: writes == hires + corrections": runs[2]["writes"] == needed
        and runs[2]["rounds_started"] == 0,
        "expired: one 410, one new round, no write": runs[3]["refused_410"] == 1
        and runs[3]["rounds_started"] == 1
        and runs[3]["writes"] == 0,
        "after: incremental, no round": runs[4]["rounds_started"] == 0 and runs[4]["requests"] <= 5,
    }
    for name, ok in checks.items():
        log(f"{'PASS' if ok else 'MISS'} {name} [{tag}]")
    return {"state": state, "order": order, "n": n, "runs": runs, "checks": checks}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="people (and employees)")
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--postgres", default="auto", help="auto, off, or a SQLAlchemy URL")
    parser.add_argument("--out", type=Path, default=rb.RESULTS / "delta.json")
    args = parser.parse_args(argv)
    postgres = rb._postgres_url(args.postgres)  # noqa: SLF001 - the benchmarks' one resolver
    states = ["sqlite"] + (["postgresql"] if postgres else [])
    with tempfile.TemporaryDirectory(prefix="idsync-delta-") as tmp:
        results = [
            bench(
                state=state,
                order=order,
                n=args.n,
                share=args.change_share,
                workdir=Path(tmp),
                postgres=postgres,
            )
            for state in states
            for order in args.orders.split(",")
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    ok = all(all(r["checks"].values()) for r in results)
    log(f"{'all checks pass' if ok else 'SOME CHECKS MISS'}; figures in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
