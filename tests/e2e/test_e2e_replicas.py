"""Two `idsync serve` replicas share 20 syncs through one PostgreSQL state database, over HTTP with
the installed CLI (issue 21): the simulator's request records show no sync ever running on both at
once, both replicas running syncs, and the survivor running every sync once the other is killed."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e2e.harness import migrate
from sync.simulator import ClientSpec, MultiSimulator, SimulatorConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sync.simulator import RequestRecord

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SYNCS = 20
PEOPLE = 30
REPLICAS = ("replica-a", "replica-b")
# Every sync reads its tenant's rows of one HR table (the tenant's name is appended, quoted).
QUERY = "SELECT employee_id, employee_number FROM staff WHERE tenant = '"
DEADLINE = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tenants() -> list[str]:
    return [f"t{n:02d}" for n in range(SYNCS)]


def _settings_file(folder: Path, multi: MultiSimulator, base: str, state_url: str) -> Path:
    """20 syncs, one per tenant, each reading its rows of one shared HR table."""
    lines = [
        f'database_url = "{state_url}"',
        "max_concurrent_runs = 2",
        '[log]\nformat = "json"',
        "[defaults.protime]\nrate_limit_per_second = 0",
        'client_id = "idsync"\nclient_secret = "s3cret"',
        f'[defaults.hr]\nurl = "sqlite:///{folder / "hr.db"}"',
        'employee_number_column = "employee_number"',
        "[defaults.schedule]\ninterval_seconds = 2",
    ]
    for tenant in _tenants():
        urls = multi.urls(tenant, base)
        lines += [
            f"[syncs.{tenant}.protime]",
            f'tenant = "{tenant}"\nbase_url = "{urls.base_url}"\ntoken_url = "{urls.token_url}"',
            f"[syncs.{tenant}.hr]",
            f'query = "{QUERY}{tenant}\'"',
        ]
    path = folder / "idsync.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _hr(path: Path, multi: MultiSimulator) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE staff (tenant TEXT, employee_id TEXT, employee_number TEXT)")
        conn.executemany(
            "INSERT INTO staff VALUES (?, ?, ?)",
            [
                (tenant, f"{tenant}-E{i:03d}", person.employee_number)
                for tenant in _tenants()
                for i, person in enumerate(multi.tenant(tenant).world.people_list())
            ],
        )
    conn.close()


@pytest.fixture
def world(tmp_path: Path, pg_schema_url: str) -> Iterator[tuple[MultiSimulator, Path]]:
    multi = MultiSimulator(
        {
            tenant: SimulatorConfig(
                tenant=tenant,
                people=PEOPLE,
                seed=n + 1,
                out_of_service_share=0.0,
                clients=(ClientSpec("idsync", "s3cret"),),
            )
            for n, tenant in enumerate(_tenants())
        }
    )
    _hr(tmp_path / "hr.db", multi)
    migrate(pg_schema_url)
    with serve_in_thread(multi) as base:
        yield multi, _settings_file(tmp_path, multi, base, pg_schema_url)


def _replica(config: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).parent / "idsync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sync"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(
        IDSYNC_PROTIME__USER_AGENT_COMPANY=name,  # tells the replicas apart in the records
        IDSYNC_HTTP__HOST="127.0.0.1",
        IDSYNC_HTTP__PORT=str(_free_port()),
    )
    with log.open("wb") as sink:
        return subprocess.Popen(
            [*command, "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def _replica_of(record: RequestRecord) -> str:
    return next((name for name in REPLICAS if name in record.caller), record.caller)


def _runs(records: list[RequestRecord]) -> list[list[RequestRecord]]:
    """One tenant's requests cut into runs: each run of idsync starts with a token request."""
    runs: list[list[RequestRecord]] = []
    for record in sorted(records, key=lambda r: r.started):
        if (record.method == "POST" and record.path.endswith("/token")) or not runs:
            runs.append([])
        runs[-1].append(record)
    return runs


def _wait(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.5)


def _callers_after(multi: MultiSimulator, moment: float) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for tenant in _tenants():
        for record in multi.request_records(tenant):
            if record.started > moment:
                seen[tenant].add(_replica_of(record))
    return seen


def test_two_replicas_share_the_syncs_and_the_survivor_takes_them_all(
    world: tuple[MultiSimulator, Path], tmp_path: Path
) -> None:
    """No tenant's runs ever interleave between the replicas; both run syncs; after replica-a is
    killed, replica-b runs every one of the 20 syncs."""
    multi, config = world
    processes = {name: _replica(config, name, tmp_path / f"{name}.log") for name in REPLICAS}
    try:
        _wait(
            lambda: all(
                len(multi.tenant(t).world.references("HRMID")) == PEOPLE for t in _tenants()
            ),
            "every tenant converged",
        )
        _wait(
            lambda: {_replica_of(r) for r in multi.request_records()} >= set(REPLICAS),
            "both replicas ran syncs",
        )
        killed_at = time.time()
        processes["replica-a"].send_signal(signal.SIGKILL)
        processes["replica-a"].wait(30)
        _wait(
            lambda: (
                all(
                    "replica-b" in callers and len(callers) == 1
                    for callers in _callers_after(multi, killed_at + 1.0).values()
                )
                and len(_callers_after(multi, killed_at + 1.0)) == SYNCS
            ),
            "replica-b ran every sync after replica-a died",
        )
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert processes["replica-b"].returncode == 0
    ran_by: dict[str, set[str]] = defaultdict(set)
    for tenant in _tenants():
        runs = _runs(multi.request_records(tenant))
        for run in runs:
            callers = {_replica_of(r) for r in run}
            assert len(callers) == 1, f"{tenant}: one run's requests came from {callers}"
            ran_by[next(iter(callers))].add(tenant)
        for before, after in itertools.pairwise(runs):
            # One run at a time per tenant: the next starts after the last answer of this one
            # (a killed replica's cut-off run excepted: its last request may never have ended).
            if _replica_of(before[0]) != "replica-a" or before[-1].ended < killed_at:
                assert after[0].started >= max(r.ended for r in before), tenant
    assert ran_by["replica-a"]
    assert ran_by["replica-b"]
