"""The write-back and the map say what Protime holds, over real HTTP with the installed CLI.

An installation as in the 240,124-employee trial: the HR table (and its write-back column) on
PostgreSQL or MariaDB, the state on PostgreSQL, the simulator served over HTTP, every step an
``idsync`` process. Terminations, lost links, ignores, re-points and rollbacks change or clear the
HR column in the same run; a rollback leaves the map and the snapshot of Protime as true as
Protime without a reconcile.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select, text

from contracts_support import validate
from db_support import fresh_mariadb_database, fresh_postgres_schema
from e2e.harness import Harness, migrate, sim_config, store_engine
from sync.simulator import Simulator, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy import Engine

    from sync.config import Settings
    from sync.simulator import SimPerson

WRITEBACK = {"writeback_table": "employees", "writeback_column": "protime_id"}
EMPLOYEES = 12


def _employees() -> Table:
    return Table(
        "employees",
        MetaData(),
        Column("employee_id", String(32), primary_key=True),
        Column("employee_number", String(32)),
        Column("badge", String(32)),
        Column("email", String(128)),
        Column("active", Integer),
        Column("protime_id", Integer),
    )


@dataclass
class ServerHarness(Harness):
    """An installation whose HR table lives on a database server (``hr_url``), not SQLite."""

    hr_url: str = ""

    @property
    def settings(self) -> Settings:
        base = super().settings
        hr = base.hr.model_copy(update={"url": SecretStr(self.hr_url)})
        return base.model_copy(update={"hr": hr})

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(
            IDSYNC_HR__URL=self.hr_url,
            IDSYNC_HR__WRITEBACK_TABLE="employees",
            IDSYNC_HR__WRITEBACK_COLUMN="protime_id",
            **extra,
        )

    def hr_engine(self) -> Engine:
        return create_engine(self.hr_url)

    def add_employees(self, people: Iterable[tuple[str, SimPerson]]) -> None:
        """HR rows (active, no Protime id yet) matching ``people`` by employee number."""
        rows = [
            {"employee_id": hr_id, "employee_number": p.employee_number, "active": 1}
            for hr_id, p in people
        ]
        engine = self.hr_engine()
        try:
            with engine.begin() as conn:
                conn.execute(insert(_employees()), rows)
        finally:
            engine.dispose()

    def update_employee(self, hr_id: str, **values: Any) -> None:
        table = _employees()
        engine = self.hr_engine()
        try:
            with engine.begin() as conn:
                conn.execute(table.update().where(table.c.employee_id == hr_id).values(values))
        finally:
            engine.dispose()

    def written_back(self) -> dict[str, int | None]:
        """HR id -> the Protime id in the write-back column."""
        table = _employees()
        engine = self.hr_engine()
        try:
            with engine.connect() as conn:
                query = select(table.c.employee_id, table.c.protime_id)
                return dict(conn.execute(query).tuples().all())
        finally:
            engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def installation(
    request: pytest.FixtureRequest, pg_schema_url: str, tmp_path: Path
) -> Iterator[ServerHarness]:
    """The simulator served over HTTP, HR on PostgreSQL or MariaDB, the state on PostgreSQL."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            base = request.getfixturevalue("postgres_url")
            hr_url = stack.enter_context(fresh_postgres_schema(base, prefix="idsync_hr"))
        else:
            base = request.getfixturevalue("mariadb_url")
            hr_url = stack.enter_context(fresh_mariadb_database(base, prefix="idsync_hr"))
        engine = create_engine(hr_url)
        _employees().metadata.create_all(engine)
        engine.dispose()
        migrate(pg_schema_url)
        sim = Simulator(sim_config())
        h = ServerHarness(
            sim=sim,
            hr_path=tmp_path / "unused-hr.db",
            state_url=pg_schema_url,
            hr=dict(WRITEBACK),
            hr_url=hr_url,
        )
        h.base_url = stack.enter_context(serve_in_thread(sim))
        h.add_employees((f"E{i:03d}", p) for i, p in enumerate(sim.world.people_list()[:EMPLOYEES]))
        yield h


def _idsync(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "idsync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sync"]
    return subprocess.run(
        [*command, *args],
        env={**os.environ, **h.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    done = _idsync(h, *args)
    assert done.returncode == 0, f"idsync {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def _rows_changed(done: subprocess.CompletedProcess[str]) -> int:
    """The ``rows_changed`` of the run's ``run.write_back`` log line (JSON logs on stderr)."""
    for line in done.stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "run.write_back":
                return int(entry["rows_changed"])
    raise AssertionError(f"no run.write_back line in the run's log: {done.stderr}")


def _reconcile(h: Harness) -> subprocess.CompletedProcess[str]:
    return _ok(h, "reconcile", "--json")


def test_the_hr_column_follows_terminations_lost_links_ignores_and_repoints(
    installation: ServerHarness,
) -> None:
    """In the run after a termination, a lost link, an ignore and a re-point, the HR column of
    exactly those four rows is cleared or changed, and a run with nothing new rewrites no row."""
    h = installation
    people = h.sim.world.people_list()
    first = _reconcile(h)
    assert _rows_changed(first) == EMPLOYEES
    linked = {f"E{i:03d}": people[i].id for i in range(EMPLOYEES)}
    assert h.written_back() == linked

    h.update_employee("E001", active=0)  # terminated: out of HR's scope
    h.sim.world.delete_reference("E002")  # its link gone in Protime, and no rule finds it again
    h.update_employee("E002", employee_number="NO-SUCH-NUMBER")
    _ok(h, "ignore", "E003")
    moved_to = people[EMPLOYEES + 3].id
    _ok(h, "link", "E004", str(moved_to), "--force")  # re-pointed by an admin

    change = _reconcile(h)
    report = validate(json.loads(change.stdout))
    assert report["actions"] == {"write": {"succeeded": 1}}  # the re-point
    assert h.references()["E004"] == moved_to
    assert _rows_changed(change) == 4
    assert h.written_back() == {
        **linked,
        "E001": None,
        "E002": None,
        "E003": None,
        "E004": moved_to,
    }

    again = _reconcile(h)
    assert _rows_changed(again) == 0
    assert h.written_back()["E004"] == moved_to


def test_a_rollback_unlinks_clears_the_hr_column_and_the_snapshot_at_once(
    installation: ServerHarness,
) -> None:
    """`rollback --yes` of a hires run clears the hires' HR column in that run, and `status`,
    `show`, `export` and the snapshot of Protime say unlinked with no reference at once, the
    rollback run named as the reason."""
    h = installation
    people = h.sim.world.people_list()
    _reconcile(h)
    hires = {f"H{i:03d}": people[EMPLOYEES + i] for i in range(3)}
    h.add_employees(hires.items())
    hired = _reconcile(h)
    hires_run = validate(json.loads(hired.stdout))["run_id"]
    assert {k: v for k, v in h.written_back().items() if k in hires} == {
        k: p.id for k, p in hires.items()
    }

    undo = _ok(h, "rollback", hires_run[:8], "--yes")
    assert _rows_changed(undo) == len(hires)
    assert not set(hires) & set(h.references())
    column = h.written_back()
    assert {k: column[k] for k in hires} == dict.fromkeys(hires)
    assert {k: column[k] for k in column if k not in hires} == {
        f"E{i:03d}": people[i].id for i in range(EMPLOYEES)
    }
    runs = validate(json.loads(_ok(h, "runs", "--json").stdout))["runs"]
    assert runs[0]["trigger"] == "rollback"
    reason = f"rolled back by run {runs[0]['run_id'][:8]}: rollback of run {hires_run[:8]}"

    status = validate(json.loads(_ok(h, "status", "--json").stdout))
    assert (status["situations"]["linked"], status["situations"]["unlinked"]) == (EMPLOYEES, 3)

    for hr_id, person in hires.items():
        shown = validate(json.loads(_ok(h, "show", hr_id, "--json").stdout))
        (mapping,) = shown["mappings"]
        assert (mapping["situation"], mapping["protime_id"], mapping["protime_value"]) == (
            "unlinked",
            person.id,
            None,
        )
        assert mapping["reason"].startswith(reason), mapping["reason"]
    human = _ok(h, "show", "H000").stdout
    assert "unlinked" in human
    assert "rolled back by run" in human

    exported = csv.DictReader(io.StringIO(_ok(h, "export", "--format", "csv").stdout))
    by_id = {row["hr_id"]: row for row in exported}
    for hr_id in hires:
        assert by_id[hr_id]["situation"] == "unlinked"
        assert by_id[hr_id]["reason"].startswith(reason)

    with h.store() as store, store_engine(store).connect() as conn:
        snapshot = dict(conn.execute(text("SELECT id, reference FROM protime_people")).all())
    assert {snapshot[p.id] for p in hires.values()} == {None}
    assert {snapshot[people[i].id] for i in range(EMPLOYEES)} == {
        f"E{i:03d}" for i in range(EMPLOYEES)
    }
