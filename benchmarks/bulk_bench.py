"""Bulk state and HR writes at scale (issue 12): what a first sync of N employees costs to record.

The state-database calls a run makes, timed directly (no Protime, no simulator), with the real
store on a fresh SQLite file or PostgreSQL schema:

* **saving (new map)**: ``save_classifications`` of N new employees (a first run);
* **saving (unchanged)**: the same classifications again (a steady run);
* **record_pending**: N ``pending`` write events, as the apply step records them before any call;
* **record_outcomes**: N outcomes (all succeeded) in the apply step's batches (``FLUSH_EVERY``), one
  transaction each, as a whole run's worth;
* **saving (all changed)**: the next run's classifications, every row now ``linked``.

Then the write-back (``IDSYNC_HR__WRITEBACK_*``) of those N linked rows into an HR table of N
employees on SQLite, PostgreSQL and MariaDB, the way a run does it after its writes: **first** (every
row changes), **unchanged** (a run after it: nothing to write), **1 % changed** (1 % of the HR
column cleared by hand).

    .venv/bin/python benchmarks/bulk_bench.py                  # N = 250,000, every database found
    .venv/bin/python benchmarks/bulk_bench.py -n 20000 --state sqlite --hr sqlite,mariadb

Prints a table, writes ``benchmarks/results/bulk_bench.json``. No figure is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile_bench import PG_URL, _postgres_url, machine, state_db

from sync.config import HRSettings
from sync.domain import Action, ActionKind, Classification, Outcome, Precondition, Rule, Situation
from sync.hr import write_back
from sync.reconcile._apply import FLUSH_EVERY
from sync.reconcile._steps import _write_back
from sync.state import ActionOutcome, StateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
HR_DATABASE = "idsync_bulk_bench"
# Not reconcile_bench's schema: the two benchmarks may run side by side.
STATE_SCHEMA = "idsync_bulk_state"
RESULTS = Path(__file__).resolve().parent / "results"


def _hr_id(i: int) -> str:
    return f"E{i:07d}"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(figures: dict[str, Any], name: str, call: Callable[[], object]) -> object:
    load = _load()
    start, cpu = time.perf_counter(), time.process_time()
    result = call()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # CPU: this process's (idsync's side); on a busy machine it moves far less than wall time.
    figures[name] = {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "load_before": load,
    }
    print(f"  {name:<28} {seconds:8.2f} s  {cpu:8.2f} s CPU  (load {load})", flush=True)
    return result


# ------------------------------------------------------------------------------------ the state


def state_phases(store: StateStore, n: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    unlinked = [
        Classification(
            hr_id=_hr_id(i),
            situation=Situation.UNLINKED,
            protime_id=i + 1,
            rule=Rule.EMPLOYEE_NUMBER,
            evidence=f"employee_number {i}",
            reason=f"employee_number {i} matched person {i + 1}",
        )
        for i in range(n)
    ]

    def save(classifications: list[Classification]) -> None:
        store.map.save_classifications(
            run_id=run_id, classifications=classifications, now=datetime.now(UTC), prune=True
        )

    _timed(figures, "saving (new map)", lambda: save(unlinked))
    _timed(figures, "saving (unchanged)", lambda: save(unlinked))
    actions = [
        Action(
            kind=ActionKind.WRITE,
            hr_id=c.hr_id,
            protime_id=i + 1,
            value=c.hr_id,
            situation=Situation.UNLINKED,
            reason=c.reason,
        )
        for i, c in enumerate(unlinked)
    ]
    preconditions = [Precondition(expect_value=None, expect_holder=None)] * n
    ids = _timed(
        figures,
        "record_pending",
        lambda: store.events.record_pending(
            run_id=run_id, actions=actions, preconditions=preconditions
        ),
    )
    assert isinstance(ids, list)
    assert len(ids) == n

    def outcomes() -> None:
        for start in range(0, n, FLUSH_EVERY):
            store.events.record_outcomes(
                [
                    ActionOutcome(
                        event_id=ids[i],
                        action=actions[i],
                        outcome=Outcome.SUCCEEDED,
                        http_status=201,
                    )
                    for i in range(start, min(n, start + FLUSH_EVERY))
                ]
            )

    _timed(figures, "record_outcomes", outcomes)
    linked = [
        Classification(
            hr_id=c.hr_id,
            situation=Situation.LINKED,
            protime_id=c.protime_id,
            rule=Rule.REFERENCE,
            evidence=f"HRMID {c.hr_id}",
            reason=f"person {c.protime_id} holds HRMID {c.hr_id}",
            protime_value=c.hr_id,
        )
        for c in unlinked
    ]
    _timed(figures, "saving (all changed)", lambda: save(linked))
    return figures


# --------------------------------------------------------------------------------------- the HR


@dataclass(frozen=True, slots=True)
class BenchHR:
    """The HR port of a run, on one HR database, write-back on."""

    url: str
    settings: HRSettings

    @property
    def writeback_enabled(self) -> bool:
        return True

    def read(self, *, strings: Any = None) -> Any:
        raise NotImplementedError

    def write_back(self, pairs: Mapping[str, int]) -> int:
        return write_back(settings=self.settings, url=self.url, pairs=pairs)


@contextlib.contextmanager
def hr_database(kind: str, *, workdir: Path, postgres: str | None) -> Iterator[str]:
    """A fresh, empty HR database of ``kind``; dropped afterwards."""
    if kind == "sqlite":
        path = workdir / "hr.db"
        path.unlink(missing_ok=True)
        path.touch()
        yield f"sqlite:///{path}"
        return
    if kind == "postgresql":
        assert postgres is not None
        admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {HR_DATABASE} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {HR_DATABASE}"))
        sep = "&" if "?" in postgres else "?"
        try:
            yield f"{postgres}{sep}options=-csearch_path%3D{HR_DATABASE}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {HR_DATABASE} CASCADE"))
            admin.dispose()
        return
    admin = create_engine(MARIADB_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {HR_DATABASE}"))
        conn.execute(text(f"CREATE DATABASE {HR_DATABASE} CHARACTER SET utf8mb4"))
    try:
        yield MARIADB_URL.rsplit("/", 1)[0] + f"/{HR_DATABASE}?charset=utf8mb4"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {HR_DATABASE}"))
        admin.dispose()


def _employees(n: int) -> tuple[Table, list[dict[str, Any]]]:
    table = Table(
        "employees",
        MetaData(),
        Column("employee_id", String(32), primary_key=True),
        Column("employee_number", String(32)),
        Column("protime_id", Integer),
    )
    return table, [{"employee_id": _hr_id(i), "employee_number": str(i)} for i in range(n)]


def writeback_phases(store: StateStore, url: str, n: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    table, rows = _employees(n)
    engine = create_engine(url)
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            for start in range(0, n, 10_000):
                conn.execute(insert(table), rows[start : start + 10_000])
        hr = BenchHR(
            url=url,
            settings=HRSettings(
                table="employees", writeback_table="employees", writeback_column="protime_id"
            ),
        )
        _timed(figures, "write_back (first)", lambda: _write_back(hr=hr, store=store))
        _timed(figures, "write_back (unchanged)", lambda: _write_back(hr=hr, store=store))
        with engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.employee_id.in_([_hr_id(i) for i in range(0, n, 100)]))
                .values(protime_id=None)
            )
        _timed(figures, "write_back (1 % changed)", lambda: _write_back(hr=hr, store=store))
        with engine.connect() as conn:
            wrong = conn.execute(
                text("SELECT COUNT(*) FROM employees WHERE protime_id IS NULL")
            ).scalar_one()
        assert wrong == 0, f"{wrong} rows without their Protime id after the write-back"
    finally:
        engine.dispose()
    return figures


# ------------------------------------------------------------------------------------- the report


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    return "unknown"


def _cells(figure: dict[str, Any]) -> str:
    return f"{figure['seconds']:.2f} | {figure['cpu_seconds']:.2f} | {figure['load_before']}"


def table(results: dict[str, Any]) -> str:
    lines = ["| state | HR | step | s | CPU s | load |", "|---|---|---|---|---|---|"]
    for state, part in results["state"].items():
        for step, figure in part["steps"].items():
            lines.append(f"| {state} | - | {step} | {_cells(figure)} |")
        for hr_kind, steps in part["write_back"].items():
            for step, figure in steps.items():
                lines.append(f"| {state} | {hr_kind} | {step} | {_cells(figure)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=250_000, help="employees (default 250,000)")
    parser.add_argument("--state", default="sqlite,postgresql", help="state databases")
    parser.add_argument("--hr", default="sqlite,postgresql,mariadb", help="HR databases")
    parser.add_argument("--postgres", default="auto", help=f"'auto' ({PG_URL}), 'off' or a URL")
    parser.add_argument("--out", type=Path, default=RESULTS / "bulk_bench.json")
    args = parser.parse_args(argv)
    postgres = _postgres_url(args.postgres)
    states = [s for s in args.state.split(",") if s and (s != "postgresql" or postgres)]
    hrs = [h for h in args.hr.split(",") if h and (h != "postgresql" or postgres)]
    if "mariadb" in hrs:
        try:
            engine = create_engine(MARIADB_URL)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # a benchmark runs with what the machine has
            print(f"MariaDB not reachable at {MARIADB_URL} ({exc}): HR without it", file=sys.stderr)
            hrs.remove("mariadb")
    results: dict[str, Any] = {
        "n": args.n,
        "commit": _commit(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_at_start": _load(),
        "state": {},
    }
    with tempfile.TemporaryDirectory(prefix="idsync-bulk-") as folder:
        workdir = Path(folder)
        for kind in states:
            print(f"state on {kind}, N = {args.n:,}", flush=True)
            with state_db(
                kind, workdir=workdir, name="bulk", postgres=postgres, schema=STATE_SCHEMA
            ) as state:
                state_url = state.url
                store = StateStore.open(state_url)
                try:
                    part: dict[str, Any] = {"steps": state_phases(store, args.n), "write_back": {}}
                    for hr_kind in hrs:
                        print(f" write-back into {hr_kind} HR", flush=True)
                        with hr_database(hr_kind, workdir=workdir, postgres=postgres) as url:
                            part["write_back"][hr_kind] = writeback_phases(store, url, args.n)
                finally:
                    store.close()
                results["state"][kind] = part
    results["machine"] = machine()
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    markdown = table(results)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
