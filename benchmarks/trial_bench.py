"""The 240,000-employee trial of issue 22, re-run as a new user would: figures and checks.

    PYTHONPATH=. .venv/bin/python benchmarks/trial_bench.py                    # 240,124 employees
    PYTHONPATH=. .venv/bin/python benchmarks/trial_bench.py --employees 5000   # a smaller world

An HR table on MariaDB (a fresh database with a ``protime_id`` write-back column), the state in a
fresh PostgreSQL schema, and ``idsync simulator --people-file`` over HTTP; every step is an
``idsync`` process configured by ``IDSYNC_*`` variables, started by a small launcher that forwards
SIGINT and reports the process's own peak RSS and CPU (``os.wait4``). The world, for N employees
(the other counts scale with N from the trial's 240,124):

* most employees match one person by employee number and have no reference yet; 2 % already
  carry their HR id (adopted); ``--orphans`` persons (500) carry HRMID values no HR row has, and
  with ``IDSYNC_REACTIONS__ORPHANED=delete`` their deletes are over ``IDSYNC_SAFETY__MAX_DELETES``
  (10): the first reconcile is blocked;
* ``--disputed`` employees (2,400) whose employee number two persons share, one with the
  employee's badge, the other with the badge one letter off; a few invalid HR rows.

Steps, each timed and checked (issue 22's points in brackets): (a) ``reconcile`` blocked, its
advice on stdout, ``plan show`` lists the deletes first and ``--action delete --all`` all of them
[6]; (b) ``apply`` of the blocked plan: Protime exactly as planned, the write-back column equal to
the map, the read line true [1, 6]; (c) a no-change run; (d) hires and terminations, then a run:
the write-back follows, ``runs show`` says what it leaves out [1, 6]; (e) ``rollback --yes`` of
that run: the hires unlinked in HR, the map and Protime at once [1, 2, 6]; (f) a re-sync; (g)
``reconcile --full`` stopped by SIGINT at 5 s and at 9 s [3]; (h) ``suggest`` ranks the person
agreeing on every key first [4]; (i) configuration mistakes: a misspelt write-back column, a
query ending in ``;``, no active column [5]. Prints the figures and checks, writes them as JSON
under ``benchmarks/results/``, and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile_bench import (  # the sibling script, found through sys.path
    CLIENT_ID,
    CLIENT_SECRET,
    IDSYNC,
    PG_URL,
    RESULTS,
    TENANT,
    byte_compile,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

TRIAL = 240_124  # the employees; the other defaults are the trial's counts at this N
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
API = "/connector/protimeapi/api/v1"
FIRST_PERSON = 1001
# The launcher: a fresh interpreter of about 10 MB that starts idsync, forwards SIGINT and
# SIGTERM to it, and writes idsync's own rusage (a child's ru_maxrss starts at what its parent
# held when forked: this script holds the world) and the seconds from a signal to its exit.
_LAUNCHER = """
import json, os, signal, sys, time
out, command = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ)
signalled = []
def forward(signum, frame):
    signalled.append(time.perf_counter())
    os.kill(pid, signum)
signal.signal(signal.SIGINT, forward)
signal.signal(signal.SIGTERM, forward)
_, status, usage = os.wait4(pid, 0)
ended = time.perf_counter()
with open(out, "w") as f:
    json.dump({
        "wall_seconds": ended - started,
        "exit_code": os.waitstatus_to_exitcode(status),
        "max_rss_kb": usage.ru_maxrss,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "signal_to_exit_seconds": ended - signalled[0] if signalled else None,
        "signal_at_seconds": signalled[0] - started if signalled else None,
    }, f)
"""


# ------------------------------------------------------------------------------------ the world


@dataclass(frozen=True, slots=True)
class Counts:
    employees: int
    orphans: int
    disputed: int
    invalid: int
    prelinked: int
    hires: int
    terminations: int
    late_hires: int

    @property
    def matched(self) -> int:
        """Employees with exactly one person of their employee number."""
        return self.employees - self.disputed - self.invalid


def _scaled(value: int | None, trial: int, employees: int, floor: int) -> int:
    return value if value is not None else max(floor, round(trial * employees / TRIAL))


def counts_for(args: argparse.Namespace) -> Counts:
    n = args.employees
    counts = Counts(
        employees=n,
        orphans=_scaled(args.orphans, 500, n, 20),
        disputed=_scaled(args.disputed, 2_400, n, 10),
        invalid=_scaled(args.invalid, 24, n, 3),
        prelinked=_scaled(None, 4_800, n, 5),
        hires=_scaled(args.hires, 3_000, n, 30),
        terminations=_scaled(args.terminations, 1_000, n, 15),
        late_hires=_scaled(None, 300, n, 10),
    )
    if counts.matched < counts.prelinked + 2 * counts.terminations:
        raise SystemExit("--employees is too small for the other counts")
    return counts


@dataclass(slots=True)
class World:
    """What the benchmark made, to compare Protime, HR and the map with."""

    people: list[dict[str, Any]] = field(default_factory=list)
    hr_rows: list[tuple[str, str | None, str | None, int]] = field(default_factory=list)
    person_of: dict[str, int] = field(default_factory=dict)  # matched HR id -> its person
    # disputed HR id -> (the person agreeing on employee number and badge, the decoy)
    disputed: dict[str, tuple[int, int]] = field(default_factory=dict)
    orphan_values: set[str] = field(default_factory=set)
    next_id: int = FIRST_PERSON

    def person(self, number: str, badge: str, reference: str | None = None) -> int:
        pid = self.next_id
        self.next_id += 1
        item: dict[str, Any] = {
            "id": pid,
            "firstName": "Trial",
            "lastName": f"Person {pid}",
            "employeeNumber": number,
            "badgeNumber": badge,
            "inServiceDate": "2020-01-01",
        }
        if reference is not None:
            item["externalReferences"] = {"HRMID": reference}
        self.people.append(item)
        return pid


def build_world(counts: Counts) -> World:
    world = World()
    for i in range(counts.matched):
        hr_id, number, badge = f"E{i:06d}", str(100_000 + i), str(2_000_000 + i)
        prelinked = hr_id if i < counts.prelinked else None
        world.person_of[hr_id] = world.person(number, badge, prelinked)
        world.hr_rows.append((hr_id, number, badge, 1))
    for j in range(counts.disputed):
        hr_id, number = f"D{j:05d}", str(9_000_000 + j)
        right, decoy = f"X{j:06d}A", f"X{j:06d}B"  # the decoy's badge: one letter off
        # Half the decoys come first by id, half after: a ranking by id cannot pass.
        if j % 2:
            good = world.person(number, right)
            bad = world.person(number, decoy)
        else:
            bad = world.person(number, decoy)
            good = world.person(number, right)
        world.disputed[hr_id] = (good, bad)
        world.hr_rows.append((hr_id, number, right, 1))
    for k in range(counts.orphans):
        value = f"GONE{k:05d}"
        world.person(str(8_000_000 + k), f"O{k:06d}", value)
        world.orphan_values.add(value)
    bad_ids = ("BAD/{}", "BAD?{}", "BAD:{}", " BAD{}")  # forbidden characters, white space
    for k in range(counts.invalid):
        world.hr_rows.append((bad_ids[k % len(bad_ids)].format(k), str(7_900_000 + k), None, 1))
    return world


def terminated_ids(counts: Counts) -> list[str]:
    """Employees linked by the first sync, spread over the table, that HR then terminates."""
    step = (counts.matched - counts.prelinked) // counts.terminations
    return [f"E{counts.prelinked + k * step:06d}" for k in range(counts.terminations)]


# --------------------------------------------------------------------------------- the databases


@dataclass(slots=True)
class Databases:
    hr_url: str
    state_url: str
    _cleanup: list[tuple[str, str]] = field(default_factory=list)

    def hr_engine(self) -> Any:
        return create_engine(self.hr_url)

    def drop(self) -> None:
        for kind, name in self._cleanup:
            if kind == "mariadb":
                admin = create_engine(MARIADB_URL)
                with admin.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            else:
                admin = create_engine(PG_URL)
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            admin.dispose()


def make_databases(mariadb: str, postgres: str) -> Databases:
    """A fresh MariaDB database for HR and a fresh PostgreSQL schema for the state."""
    suffix = uuid.uuid4().hex[:10]
    hr_name, schema = f"idsync_trial_hr_{suffix}", f"idsync_trial_{suffix}"
    admin = create_engine(mariadb)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{hr_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    admin.dispose()
    admin = create_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    hr_url = make_url(mariadb).set(database=hr_name).update_query_dict({"charset": "utf8mb4"})
    state_url = make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    return Databases(
        hr_url=hr_url.render_as_string(hide_password=False),
        state_url=state_url.render_as_string(hide_password=False),
        _cleanup=[("mariadb", hr_name), ("postgresql", schema)],
    )


def write_hr(dbs: Databases, rows: Sequence[tuple[str, str | None, str | None, int]]) -> None:
    engine = dbs.hr_engine()
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS employees (employee_id VARCHAR(64) PRIMARY KEY,"
                " employee_number VARCHAR(32), badge VARCHAR(32), email VARCHAR(128),"
                " active TINYINT NOT NULL DEFAULT 1, protime_id BIGINT NULL)"
            )
        )
        insert = text(
            "INSERT INTO employees (employee_id, employee_number, badge, active)"
            " VALUES (:i, :n, :b, :a)"
        )
        for start in range(0, len(rows), 5_000):
            chunk = rows[start : start + 5_000]
            conn.execute(insert, [{"i": i, "n": n, "b": b, "a": a} for i, n, b, a in chunk])
    engine.dispose()


def written_back(dbs: Databases) -> dict[str, int | None]:
    engine = dbs.hr_engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT employee_id, protime_id FROM employees")).all()
    engine.dispose()
    return {str(i): (None if p is None else int(p)) for i, p in rows}


def terminate(dbs: Databases, hr_ids: Sequence[str]) -> None:
    engine = dbs.hr_engine()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE employees SET active = 0 WHERE employee_id = :i"),
            [{"i": i} for i in hr_ids],
        )
    engine.dispose()


# --------------------------------------------------------------------------------- the simulator


class Simulator:
    """``idsync simulator --people-file`` on a free port, read through its admin surface."""

    def __init__(self, people_file: Path, workdir: Path, env: dict[str, str]) -> None:
        self._log = (workdir / "simulator.log").open("w")
        command = [IDSYNC, "simulator", "--people-file", str(people_file), "--port", "0"]
        command += ["--tenant", TENANT, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env, cwd=workdir
        )
        assert self.proc.stdout is not None
        self.base_url = ""
        for line in self.proc.stdout:  # the banner ends before it serves
            if "API base URL" in line:
                self.base_url = line.split(":", 1)[1].strip().removesuffix(API)
                break
        if not self.base_url:
            raise RuntimeError(f"the simulator did not start (exit {self.proc.poll()})")
        self.admin = httpx.Client(base_url=self.base_url, timeout=600)

    def counters(self) -> dict[str, int]:
        """Requests by endpoint since the last reset (every status)."""
        body = self.admin.get("/_sim/counters").raise_for_status().json()
        return {k: sum(v.values()) for k, v in body["requests"].items()}

    def reset_counters(self) -> None:
        self.admin.delete("/_sim/counters").raise_for_status()

    def references(self) -> dict[str, int]:
        """HRMID value -> person id, as Protime holds them now."""
        body = self.admin.get("/_sim/references").raise_for_status().json()
        return {
            r["value"]: int(r["internalReference"])
            for r in body["references"]
            if r["name"] == "HRMID"
        }

    def people(self) -> int:
        body = self.admin.get("/_sim/state").raise_for_status().json()
        return int(body["people"])

    def add_person(self, person: dict[str, Any]) -> None:
        self.admin.put(f"/_sim/people/{person['id']}", json=person).raise_for_status()

    def stop(self) -> None:
        self.admin.close()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------------- the steps


@dataclass(slots=True)
class Step:
    label: str
    command: str
    exit_code: int
    seconds: float
    rss_mb: float
    cpu_seconds: float
    requests: dict[str, int]
    stdout: str
    stderr: str
    signal_to_exit: float | None = None
    signal_at: float | None = None
    note: str = ""

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def log_events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == name:
                    found.append(entry)
        return found


@dataclass(slots=True)
class Check:
    point: str
    step: str
    what: str
    ok: bool
    detail: str


class Trial:
    def __init__(
        self, *, workdir: Path, sim: Simulator, dbs: Databases, env: dict[str, str]
    ) -> None:
        self.workdir = workdir
        self.sim = sim
        self.dbs = dbs
        self.env = env
        self.steps: list[Step] = []
        self.checks: list[Check] = []

    def check(self, point: str, step: str, what: str, ok: object, detail: object = "") -> bool:
        self.checks.append(Check(point, step, what, bool(ok), str(detail)[:500]))
        mark = "ok  " if ok else "FAIL"
        print(f"  [{mark}] ({point}) {what}" + (f": {detail}" if detail else ""), flush=True)
        return bool(ok)

    def idsync(
        self,
        label: str,
        *args: str,
        extra: dict[str, str] | None = None,
        drop: Sequence[str] = (),
        sigint_at: float | None = None,
        record: bool = True,
    ) -> Step:
        env = {**self.env, **(extra or {})}
        for name in drop:
            env.pop(name, None)
        self.sim.reset_counters()
        stamp = f"{len(self.steps):02d}-{label}"
        out_path, err_path = self.workdir / f"{stamp}.out", self.workdir / f"{stamp}.err"
        figures_path = self.workdir / f"{stamp}.rusage"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(figures_path), IDSYNC, *args],
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.workdir,
            )
            if sigint_at is not None:
                try:
                    proc.wait(timeout=sigint_at)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
            proc.wait()
        figures = json.loads(figures_path.read_text())
        step = Step(
            label=label,
            command="idsync " + " ".join(args),
            exit_code=int(figures["exit_code"]),
            seconds=float(figures["wall_seconds"]),
            rss_mb=figures["max_rss_kb"] / 1024,
            cpu_seconds=float(figures["cpu_seconds"]),
            requests=self.sim.counters(),
            stdout=out_path.read_text(encoding="utf-8", errors="replace"),
            stderr=err_path.read_text(encoding="utf-8", errors="replace"),
            signal_to_exit=figures["signal_to_exit_seconds"],
            signal_at=figures["signal_at_seconds"],
        )
        if record:
            self.steps.append(step)
        puts = step.requests.get("references.put", 0)
        deletes = step.requests.get("references.delete", 0)
        print(
            f"{label}: exit {step.exit_code}, {step.seconds:.1f} s, {step.total_requests} requests"
            f" ({puts} PUT, {deletes} DELETE), {step.rss_mb:.0f} MB",
            flush=True,
        )
        return step

    def json_of(self, *args: str) -> Any:
        step = self.idsync("query", *args, "--json", record=False)
        if step.exit_code != 0:
            raise RuntimeError(f"idsync {' '.join(args)}: exit {step.exit_code}: {step.stderr}")
        return json.loads(step.stdout)

    def latest_run(self) -> dict[str, Any]:
        runs: list[dict[str, Any]] = self.json_of("runs")["runs"]
        return runs[0]

    def linked_map(self) -> dict[str, int]:
        """The map's linked pairs (``idsync export``)."""
        step = self.idsync("export", "export", "--format", "csv", record=False)
        return {
            row["hr_id"]: int(row["protime_id"])
            for row in csv.DictReader(io.StringIO(step.stdout))
            if row["situation"] == "linked"
        }

    def writeback_equals_map(self, point: str, step: str) -> dict[str, int | None]:
        """Every HR row's write-back column against the map's linked pairs."""
        column, linked = written_back(self.dbs), self.linked_map()
        wrong = [i for i, value in column.items() if value != linked.get(i)]
        self.check(
            point,
            step,
            f"write-back column equals the map for every HR row ({len(column):,} rows,"
            f" {len(linked):,} linked)",
            not wrong,
            f"{len(wrong)} rows differ, e.g. {wrong[:5]}" if wrong else "",
        )
        return column


def _read_line(step: Step) -> str:
    found = re.search(r"Protime read: .*", step.stdout)
    return found.group(0).strip() if found else ""


def _pages(step: Step) -> int:
    """People pages the simulator answered during the step (full read or delta)."""
    r = step.requests
    return sum(r.get(k, 0) for k in ("people.list", "people.delta_start", "people.delta_page"))


def _listed_kinds(stdout: str) -> list[str]:
    return re.findall(r"│\s*\d+\s*│\s*(write|delete)\s*│", stdout)


# ------------------------------------------------------------------------------------ the trial


@dataclass(slots=True)
class Scenario:
    """The world and what the steps pass on to the next ones."""

    counts: Counts
    world: World
    sigints: Sequence[float]
    expected: dict[str, int] = field(default_factory=dict)  # HR id -> person, in Protime
    plan_id: str = ""
    hires: dict[str, int] = field(default_factory=dict)
    leavers: list[str] = field(default_factory=list)
    change_run_id: str = ""

    @property
    def limit(self) -> dict[str, str]:
        # The leavers' references are orphans, deleted with the delete reaction: runs after the
        # first raise the delete limit to their number (the first run keeps the default 10).
        return {"IDSYNC_SAFETY__MAX_DELETES": str(self.counts.terminations)}


def step_a(t: Trial, sc: Scenario) -> None:
    """(a) the first reconcile: blocked, its advice on stdout, its plan reviewed (point 6)."""
    orphans = sc.counts.orphans
    print("(a) the first reconcile, blocked", flush=True)
    first = t.idsync("a-reconcile", "reconcile")
    t.check("6", "a", "first reconcile is blocked (exit 3)", first.exit_code == 3, first.exit_code)
    found = re.search(r"`idsync plan show (\w+)`", first.stdout)
    advice = re.search(r"`idsync apply (\w+)`", first.stdout)
    t.check(
        "6",
        "a",
        "the next step (plan show, apply) is on stdout",
        found is not None and advice is not None,
        "" if found else first.stdout[-600:],
    )
    if found is None:
        raise RuntimeError("no plan id in the blocked run's output")
    plan_id = found.group(1)
    sc.plan_id = (advice or found).group(1)
    shown = t.idsync("a-plan-show", "plan", "show", plan_id)
    listed = _listed_kinds(shown.stdout)
    first_deletes = min(orphans, len(listed))
    t.check(
        "6",
        "a",
        f"`plan show` lists the deletes first ({listed[:first_deletes].count('delete')} deletes"
        f" first of {len(listed)} listed)",
        bool(listed) and listed[:first_deletes] == ["delete"] * first_deletes,
        {k: listed.count(k) for k in set(listed)},
    )
    more = re.search(r"\.\.\. and ([\d,]+) more", shown.stdout)
    t.check("6", "a", "`plan show` says how many it leaves out", more is not None, more and more[0])
    deletes = t.idsync("a-plan-deletes", "plan", "show", plan_id, "--action", "delete", "--all")
    listed = _listed_kinds(deletes.stdout)
    t.check(
        "6",
        "a",
        f"`plan show --action delete --all` lists every delete ({len(listed)} of {orphans})",
        listed == ["delete"] * orphans,
        {k: listed.count(k) for k in set(listed)},
    )


def step_b(t: Trial, sc: Scenario) -> None:
    """(b) apply the reviewed plan: Protime as planned, the write-back as the map (points 1, 6)."""
    counts, orphans, expected = sc.counts, sc.counts.orphans, sc.expected
    print("(b) apply the reviewed plan", flush=True)
    applied = t.idsync("b-apply", "apply", sc.plan_id)
    t.check("6", "b", "apply exits 0", applied.exit_code == 0, applied.stderr[-400:])
    read = _read_line(applied)
    t.check("6", "b", "apply's read line is true", "(--full)" not in read and "full" in read, read)
    held = t.sim.references()
    t.check(
        "1",
        "b",
        f"Protime holds exactly the planned references ({len(held):,})",
        held == expected,
        f"{len(set(held) - set(expected))} extra, {len(set(expected) - set(held))} missing,"
        f" {sum(1 for k in held if k in expected and held[k] != expected[k])} elsewhere",
    )
    t.check(
        "1",
        "b",
        "writes = planned",
        applied.requests.get("references.put", 0) == counts.matched - counts.prelinked
        and applied.requests.get("references.delete", 0) == orphans,
        applied.requests,
    )
    column = t.writeback_equals_map("1", "b")
    t.check(
        "1",
        "b",
        "write-back holds every matched employee's person",
        all(column.get(i) == p for i, p in expected.items()),
    )


def step_c(t: Trial, _sc: Scenario) -> None:
    """(c) a run with nothing to do."""
    print("(c) a no-change run", flush=True)
    same = t.idsync("c-no-change", "reconcile")
    run = t.latest_run()
    writes = same.requests.get("references.put", 0) + same.requests.get("references.delete", 0)
    t.check(
        "-",
        "c",
        f"no-change run: exit 0, no writes ({same.total_requests} requests,"
        f" read {run['protime_read']}: {run['protime_read_reason']})",
        same.exit_code == 0 and writes == 0,
        same.requests,
    )


def step_d(t: Trial, sc: Scenario) -> None:
    """(d) hires and terminations, then a run: the write-back follows (points 1, 6)."""
    counts, world = sc.counts, sc.world
    print("(d) hires and terminations", flush=True)
    hires: dict[str, int] = {}
    hire_rows = []
    for h in range(counts.hires):
        hr_id, number, badge = f"H{h:05d}", str(7_000_000 + h), f"H{h:06d}"
        pid = world.next_id
        world.next_id += 1
        t.sim.add_person(
            {
                "id": pid,
                "firstName": "Trial",
                "lastName": f"Hire {h}",
                "employeeNumber": number,
                "badgeNumber": badge,
                "inServiceDate": "2026-12-01",
            }
        )
        hires[hr_id] = pid
        hire_rows.append((hr_id, number, badge, 1))
    write_hr(t.dbs, hire_rows)
    leavers = terminated_ids(counts)
    terminate(t.dbs, leavers)
    change = t.idsync("d-change", "reconcile", extra=sc.limit)
    change_run = t.latest_run()
    sc.hires, sc.leavers, sc.change_run_id = hires, leavers, change_run["run_id"]
    t.check("-", "d", "the change run exits 0", change.exit_code == 0, change.stderr[-400:])
    t.check(
        "-",
        "d",
        "it writes the hires and deletes the leavers' references",
        change.requests.get("references.put", 0) == counts.hires
        and change.requests.get("references.delete", 0) == counts.terminations,
        change.requests,
    )
    column = t.writeback_equals_map("1", "d")
    t.check(
        "1",
        "d",
        f"terminated rows' write-back cleared ({counts.terminations})",
        all(column[i] is None for i in leavers),
        sum(1 for i in leavers if column[i] is not None),
    )
    t.check(
        "1",
        "d",
        f"hires' write-back filled ({counts.hires})",
        all(column[i] == p for i, p in hires.items()),
    )
    total_events = counts.hires + counts.terminations
    some = t.idsync("d-runs-show", "runs", "show", change_run["run_id"])
    every = t.idsync("d-runs-show-all", "runs", "show", change_run["run_id"], "--all")
    said = re.search(r"showing the latest ([\d,]+) of ([\d,]+) events", some.stdout)
    t.check(
        "6",
        "d",
        f"`runs show` says what it leaves out ({total_events:,} events)",
        total_events <= 1_000
        or (said is not None and said[2].replace(",", "") == str(total_events)),
        said and said[0],
    )
    shown_all = t.json_of("runs", "show", change_run["run_id"], "--all")
    t.check(
        "6",
        "d",
        "`runs show --all` lists every event",
        len(shown_all["events"]) == total_events and every.exit_code == 0,
        len(shown_all["events"]),
    )


def step_e(t: Trial, sc: Scenario) -> None:
    """(e) rollback of the change run: unlinked in HR, the map and Protime at once (points 1, 2, 6)."""
    counts, hires = sc.counts, sc.hires
    change_run = {"run_id": sc.change_run_id}
    print("(e) rollback of the change run", flush=True)
    undo = t.idsync(
        "e-rollback",
        "rollback",
        change_run["run_id"][:8],
        "--yes",
        extra={"IDSYNC_SAFETY__MAX_DELETES": str(counts.hires)},
    )
    t.check("2", "e", "rollback --yes exits 0", undo.exit_code == 0, undo.stderr[-400:])
    read = _read_line(undo)
    t.check("6", "e", "rollback's read line is true", "(--full)" not in read, read)
    undo_run = t.latest_run()
    column = written_back(t.dbs)
    t.check(
        "1",
        "e",
        f"hires' write-back cleared by the rollback itself ({counts.hires})",
        all(column[i] is None for i in hires),
        sum(1 for i in hires if column[i] is not None),
    )
    t.writeback_equals_map("1", "e")
    status = t.json_of("status")
    t.check(
        "2",
        "e",
        f"`status` counts the hires unlinked (unlinked {status['situations'].get('unlinked')})",
        status["situations"].get("unlinked") == counts.hires,
        status["situations"],
    )
    sample = list(hires)[:: max(1, counts.hires // 20)]
    reasons = []
    for hr_id in sample:
        mapping = t.json_of("show", hr_id)["mappings"][0]
        reasons.append(
            mapping["situation"] == "unlinked"
            and mapping["protime_value"] is None
            and mapping["reason"].startswith(f"rolled back by run {undo_run['run_id'][:8]}")
        )
    human = t.idsync("e-show", "show", next(iter(hires)))
    t.check(
        "2",
        "e",
        f"`show <hire>` says unlinked, the rollback as reason ({len(sample)} hires asked)",
        all(reasons) and "unlinked" in human.stdout and "rolled back by run" in human.stdout,
        f"{reasons.count(False)} wrong",
    )
    held = t.sim.references()
    t.check(
        "2",
        "e",
        "Protime holds none of the hires' references",
        not set(hires) & set(held),
        len(set(hires) & set(held)),
    )


def step_f(t: Trial, sc: Scenario) -> None:
    """(f) a re-sync after the rollback."""
    counts, hires, leavers, limit = sc.counts, sc.hires, sc.leavers, sc.limit
    expected = sc.expected
    print("(f) re-sync", flush=True)
    resync = t.idsync("f-resync", "reconcile", extra=limit)
    t.check(
        "-",
        "f",
        "re-sync exits 0 and writes the hires again",
        resync.exit_code == 0 and resync.requests.get("references.put", 0) == counts.hires,
        resync.requests,
    )
    expected = {k: v for k, v in expected.items() if k not in set(leavers)} | hires
    sc.expected = expected
    held = t.sim.references()
    t.check("-", "f", "Protime as HR says", held == expected, len(set(held) ^ set(expected)))
    t.writeback_equals_map("1", "f")


def step_g(t: Trial, sc: Scenario) -> None:
    """(g) `reconcile --full` stopped by SIGINT while it reads (point 3)."""
    print("(g) SIGINT while reading", flush=True)
    for at in sc.sigints:
        stopped = t.idsync(f"g-sigint-{at:g}s", "reconcile", "--full", sigint_at=at)
        run = t.latest_run()
        pages, of = _pages(stopped), -(-t.sim.people() // 100)
        stopped.note = f"{pages:,} of {of:,} people pages read"
        t.check(
            "3",
            "g",
            f"SIGINT at {at:g} s: exit {stopped.exit_code}, {run['status']},"
            f" {stopped.signal_to_exit or 0:.2f} s from SIGINT to exit, {stopped.note}",
            stopped.exit_code == 1
            and run["status"] == "interrupted"
            and stopped.signal_to_exit is not None
            and stopped.signal_to_exit < 5
            and pages < of,
            f"exit {stopped.exit_code}, message {run.get('message')}"
            if stopped.signal_at is not None and pages < of
            else "the read was over before the signal: a world too small for --sigint-at",
        )
        after = t.idsync(f"g-after-{at:g}s", "reconcile")
        run = t.latest_run()
        t.check(
            "3",
            "g",
            f"the next run succeeds ({run['status']})",
            after.exit_code == 0 and run["status"] == "succeeded",
        )


def step_h(t: Trial, sc: Scenario) -> None:
    """(h) `suggest` ranks the person agreeing on every key first (point 4)."""
    world, disputed = sc.world, sc.counts.disputed
    print("(h) suggest", flush=True)
    suggest_file = t.workdir / "suggestions.json"
    suggested = t.idsync("h-suggest", "suggest", "--format", "json", "--out", str(suggest_file))
    document = json.loads(suggest_file.read_text())
    firsts = {
        s["hr_id"]: s["candidates"][0] if s["candidates"] else None
        for s in document["suggestions"]
        if s["situation"] == "disputed"
    }
    wrong = [
        i
        for i, (good, _) in world.disputed.items()
        if (first := firsts.get(i)) is None
        or first["protime_id"] != good
        or first["differ"]
        or len(first["agree"]) < 2  # employee number and badge
    ]
    second = [
        (s["candidates"][1]["protime_id"], s["candidates"][1]["differ"])
        for s in document["suggestions"]
        if s["hr_id"] in world.disputed and len(s["candidates"]) > 1
    ]
    decoys = sum(1 for pid, differ in second if differ and pid in _decoys(world))
    t.check(
        "4",
        "h",
        f"rank 1 agrees on every key for every disputed employee ({len(firsts):,} of"
        f" {disputed:,}; the decoy whose badge differs by one letter rank 2 for {decoys:,})",
        suggested.exit_code == 0 and not wrong and len(firsts) == disputed,
        f"{len(wrong)} wrong, e.g. {[(i, firsts.get(i)) for i in wrong[:2]]}",
    )


def _decoys(world: World) -> set[int]:
    return {bad for _, bad in world.disputed.values()}


def step_i(t: Trial, sc: Scenario) -> None:
    """(i) configuration mistakes are found before any write (point 5)."""
    counts, world = sc.counts, sc.world
    print("(i) configuration mistakes", flush=True)
    late: dict[str, int] = {}
    late_rows = []
    for h in range(counts.late_hires):
        hr_id, number = f"L{h:05d}", str(6_000_000 + h)
        pid = world.next_id
        world.next_id += 1
        t.sim.add_person(
            {"id": pid, "firstName": "Trial", "lastName": f"Late {h}", "employeeNumber": number,
             "badgeNumber": f"L{h:06d}", "inServiceDate": "2026-12-07"}
        )  # fmt: skip
        late[hr_id] = pid
        late_rows.append((hr_id, number, f"L{h:06d}", 1))
    write_hr(t.dbs, late_rows)
    typo = {"IDSYNC_HR__WRITEBACK_COLUMN": "protime_idd"}
    dry = t.idsync("i-typo-dry-run", "reconcile", "--dry-run", extra=typo)
    t.check("5", "i", "misspelt write-back column: dry run exits 2", dry.exit_code == 2, dry.stdout)
    real = t.idsync("i-typo-reconcile", "reconcile", extra=typo)
    t.check(
        "5",
        "i",
        f"misspelt write-back column: reconcile exits 2 with 0 PUTs ({counts.late_hires} to do)",
        real.exit_code == 2 and real.requests.get("references.put", 0) == 0,
        f"exit {real.exit_code}, requests {real.requests}",
    )
    message = (real.stdout + real.stderr).replace("\n", " ")
    t.check("5", "i", "the message names the variable", "IDSYNC_HR__WRITEBACK_COLUMN" in message)
    query = {
        "IDSYNC_HR__QUERY": "SELECT employee_id, employee_number, badge, active FROM employees;",
        "IDSYNC_HR__WRITEBACK_ID_COLUMN": "employee_id",
    }
    checked = t.idsync(
        "i-query-config-check", "config", "check", extra=query, drop=["IDSYNC_HR__TABLE"]
    )
    t.check(
        "5",
        "i",
        "query ending in `;`: config check exits 0",
        checked.exit_code == 0,
        checked.stdout[-400:],
    )
    queried = t.idsync("i-query-reconcile", "reconcile", extra=query, drop=["IDSYNC_HR__TABLE"])
    t.check(
        "5",
        "i",
        "query ending in `;`: the run succeeds and writes the late hires",
        queried.exit_code == 0 and queried.requests.get("references.put", 0) == counts.late_hires,
        f"exit {queried.exit_code}, {queried.requests}",
    )
    column = t.writeback_equals_map("5", "i")
    t.check(
        "5", "i", "the late hires are written back", all(column[i] == p for i, p in late.items())
    )
    no_active = t.idsync(
        "i-no-active-dry-run", "reconcile", "--dry-run", drop=["IDSYNC_HR__ACTIVE_COLUMN"]
    )
    warned = no_active.log_events("hr.no_active_column")
    t.check(
        "5",
        "i",
        "no active column: `hr.no_active_column` in the run's log",
        len(warned) == 1 and no_active.exit_code == 0,
        f"{len(warned)} warnings, exit {no_active.exit_code}",
    )
    checked = t.idsync("i-no-active-check", "config", "check", drop=["IDSYNC_HR__ACTIVE_COLUMN"])
    t.check(
        "5",
        "i",
        "no active column: `config check` warns",
        "IDSYNC_HR__ACTIVE_COLUMN" in checked.stdout,
        next((ln for ln in checked.stdout.splitlines() if "ACTIVE_COLUMN" in ln), ""),
    )


def run_trial(t: Trial, sc: Scenario) -> None:
    for step in (step_a, step_b, step_c, step_d, step_e, step_f, step_g, step_h, step_i):
        step(t, sc)


# ----------------------------------------------------------------------------------- the report


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _requests(step: Step) -> str:
    r = step.requests
    reads = r.get("people.list", 0) + r.get("people.delta_start", 0) + r.get("people.delta_page", 0)
    reads += r.get("delta.changes", 0)
    return (
        f"{step.total_requests:,} ({reads:,} pages, {r.get('references.put', 0):,} PUT,"
        f" {r.get('references.delete', 0):,} DELETE)"
    )


def report(t: Trial, meta: dict[str, Any]) -> str:
    lines = [
        "| step | command | exit | s | requests | peak RSS MB | CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in t.steps:
        seconds = f"{s.seconds:.1f}"
        if s.signal_to_exit is not None:
            seconds += f" (SIGINT at {s.signal_at:.1f}, exit {s.signal_to_exit:.2f} later)"
        lines.append(
            f"| {s.label} | `{s.command}` | {s.exit_code} | {seconds} | {_requests(s)} |"
            f" {s.rss_mb:.0f} | {s.cpu_seconds:.1f} |"
        )
    lines += ["", "| point | step | check | result |", "|---|---|---|---|"]
    for c in t.checks:
        result = "ok" if c.ok else f"**FAILED** {c.detail}"
        lines.append(f"| {c.point} | {c.step} | {c.what} | {result} |")
    lines.append("")
    lines.append(f"load average before: {meta['load_before']}, after: {meta['load_after']}")
    return "\n".join(lines)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--employees", type=int, default=TRIAL, help="HR rows (default 240,124)")
    parser.add_argument("--orphans", type=int, help="persons with an HRMID no HR row has (500)")
    parser.add_argument("--disputed", type=int, help="employees two persons claim (2,400)")
    parser.add_argument("--invalid", type=int, help="invalid HR rows (24)")
    parser.add_argument("--hires", type=int, help="hires of step (d) (3,000)")
    parser.add_argument("--terminations", type=int, help="terminations of step (d) (1,000)")
    parser.add_argument(
        "--sigint-at",
        default="5,9",
        help="seconds into `reconcile --full` to send SIGINT (default 5,9: the trial's; a small"
        " world's read is over sooner, e.g. 1.0 at 5,000 employees)",
    )
    parser.add_argument("--mariadb", default=MARIADB_URL, help="MariaDB server for the HR database")
    parser.add_argument("--postgres", default=PG_URL, help="PostgreSQL for the state schema")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    counts = counts_for(args)
    sigints = [float(x) for x in args.sigint_at.split(",") if x]
    started = datetime.now(UTC)
    meta: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "counts": asdict(counts),
        "machine": _machine(),
        "load_before": _load(),
    }
    print(f"trial: {counts}", flush=True)
    print(f"machine: {meta['machine']}, load {meta['load_before']}", flush=True)
    byte_compile()
    workdir = Path(tempfile.mkdtemp(prefix="idsync-trial-"))
    world = build_world(counts)
    people_file = workdir / "people.json"
    people_file.write_text(json.dumps({"people": world.people}))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    base_env["PYTHONDONTWRITEBYTECODE"] = "1"
    base_env["COLUMNS"] = "200"  # the tables of `plan show` one action a line
    dbs = make_databases(args.mariadb, args.postgres)
    sim = None
    try:
        write_hr(dbs, world.hr_rows)
        sim = Simulator(people_file, workdir, base_env)
        env = {
            **base_env,
            "IDSYNC_SECRETS_DIR": str(workdir / "no-secrets"),
            "IDSYNC_DATABASE_URL": dbs.state_url,
            "IDSYNC_HR__URL": dbs.hr_url,
            "IDSYNC_HR__TABLE": "employees",
            "IDSYNC_HR__ID_COLUMN": "employee_id",
            "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
            "IDSYNC_HR__BADGE_NUMBER_COLUMN": "badge",
            "IDSYNC_HR__ACTIVE_COLUMN": "active",
            "IDSYNC_HR__WRITEBACK_TABLE": "employees",
            "IDSYNC_HR__WRITEBACK_COLUMN": "protime_id",
            "IDSYNC_PROTIME__BASE_URL": sim.base_url,
            "IDSYNC_PROTIME__TENANT": TENANT,
            "IDSYNC_PROTIME__TOKEN_URL": f"{sim.base_url}/tenants/{TENANT}/connect/token",
            "IDSYNC_PROTIME__CLIENT_ID": CLIENT_ID,
            "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
            "IDSYNC_PROTIME__USER_AGENT_COMPANY": "idsync trial",
            # The simulator sets no limit; the client's default 50/s would pace 232,000 writes
            # over 77 minutes.
            "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND": "0",
            "IDSYNC_REACTIONS__ORPHANED": "delete",
            "IDSYNC_LOG__FORMAT": "json",
        }
        trial = Trial(workdir=workdir, sim=sim, dbs=dbs, env=env)
        migrated = trial.idsync("db-upgrade", "db", "upgrade", record=False)
        if migrated.exit_code != 0:
            raise RuntimeError(f"idsync db upgrade: {migrated.stderr}")
        try:
            run_trial(trial, Scenario(counts, world, sigints, expected=dict(world.person_of)))
        except Exception as error:  # a step that cannot go on: reported as a failed check
            trial.check("-", "?", "the trial ran to its end", ok=False, detail=repr(error))
    finally:
        if sim is not None:
            sim.stop()
        if not args.keep:
            dbs.drop()
    meta["load_after"] = _load()
    meta["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    table = report(trial, meta)
    print()
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"trial-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                **meta,
                "steps": [
                    {k: v for k, v in asdict(s).items() if k not in ("stdout", "stderr")}
                    for s in trial.steps
                ],
                "checks": [asdict(c) for c in trial.checks],
            },
            indent=2,
        )
    )
    if args.keep:
        print(f"\nthe databases and {workdir} are kept")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nresults {out}; {meta['seconds']} s in all")
    return 0 if all(c.ok for c in trial.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
