"""`idsync serve` as real processes against the Protime simulator over HTTP (issue 4, done means).

The simulator runs in this test process on a loopback port; each `serve` is a subprocess with
its settings in the environment and its client secret in a secrets directory, logging JSON at
DEBUG to a file the test reads.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_support import wait_for
from sqlalchemy import create_engine, text

from sync.simulator import ClientSpec, Simulator, SimulatorConfig, serve_in_thread
from sync.state import RunRow, StateStore, create_state_engine

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "idsync"
CLIENT_SECRET = "svc-" + secrets.token_urlsafe(18)
SLOW = 60.0  # deadline for anything a process does (start, several runs, stop)


def _clean_env(*, installed: bool) -> dict[str, str]:
    """This process's environment without IDSYNC_ settings; for an installed idsync also without
    PYTHONPATH, which could point back at a source tree."""
    drop = ("IDSYNC_", "PYTHONPATH") if installed else ("IDSYNC_",)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class World:
    """The simulator, the HR database built from its people, and the expected end state."""

    def __init__(self, tmp_path: Path, *, people: int, latency_ms: float = 0.0) -> None:
        self.sim = Simulator(
            SimulatorConfig(
                tenant="acme",
                people=people,
                seed=11,
                out_of_service_share=0.0,
                clients=(ClientSpec(CLIENT_ID, CLIENT_SECRET),),
                latency_ms=latency_ms,
            )
        )
        self.hr_path = tmp_path / "hr.db"
        self.expected: dict[str, int] = {}
        with sqlite3.connect(self.hr_path) as hr:
            hr.execute(
                "CREATE TABLE employees (employee_id TEXT PRIMARY KEY, employee_number TEXT)"
            )
            for person in self.sim.world.people_list():
                hr_id = f"E{person.id}"
                self.expected[hr_id] = person.id
                hr.execute("INSERT INTO employees VALUES (?, ?)", (hr_id, person.employee_number))
        hr.close()
        self.secrets_dir = tmp_path / "secrets"
        self.secrets_dir.mkdir()
        (self.secrets_dir / "IDSYNC_PROTIME__CLIENT_SECRET").write_text(CLIENT_SECRET + "\n")

    def references(self) -> dict[str, int]:
        return self.sim.world.references("HRMID")

    def tokens(self) -> list[str]:
        return list(self.sim._tokens)


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Any]:
    """Start a simulator over HTTP; yields a function (people, latency) -> (World, base URL)."""
    stack: list[Any] = []

    def make(*, people: int, latency_ms: float = 0.0) -> tuple[World, str]:
        world = World(tmp_path, people=people, latency_ms=latency_ms)
        server = serve_in_thread(world.sim)
        base_url = server.__enter__()
        stack.append(server)
        return world, base_url

    yield make
    for server in reversed(stack):
        server.__exit__(None, None, None)


class Serve:
    """One `idsync serve` subprocess, its port and its JSON log."""

    def __init__(
        self,
        *,
        world: World,
        base_url: str,
        state_url: str,
        workdir: Path,
        command: list[str] | None = None,
        **overrides: str,
    ) -> None:
        self.port = _free_port()
        self.log_path = workdir / f"serve-{self.port}.log"
        env = _clean_env(installed=command is not None)
        env.update(
            {
                "IDSYNC_DATABASE_URL": state_url,
                "IDSYNC_SECRETS_DIR": str(world.secrets_dir),
                "IDSYNC_HR__URL": f"sqlite:///{world.hr_path}",
                "IDSYNC_HR__TABLE": "employees",
                "IDSYNC_HR__ID_COLUMN": "employee_id",
                "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
                "IDSYNC_MATCH__RULES": "reference,employee_number",
                "IDSYNC_PROTIME__BASE_URL": base_url,
                "IDSYNC_PROTIME__TENANT": "acme",
                "IDSYNC_PROTIME__TOKEN_URL": base_url + world.sim.token_path,
                "IDSYNC_PROTIME__CLIENT_ID": CLIENT_ID,
                "IDSYNC_PROTIME__USER_AGENT_COMPANY": "Acme NV",
                "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND": "0",
                "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "1",
                "IDSYNC_SCHEDULE__SHUTDOWN_GRACE_SECONDS": "20",
                "IDSYNC_HTTP__HOST": "127.0.0.1",
                "IDSYNC_HTTP__PORT": str(self.port),
                "IDSYNC_LOG__LEVEL": "DEBUG",
                "IDSYNC_LOG__FORMAT": "json",
            }
        )
        env.update(overrides)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command or [sys.executable, "-m", "sync", "serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.process.poll() is None, self.text()
            try:
                return self.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=SLOW)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        families = text_string_to_metric_families(self.get("/metrics").text)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }

    def text(self) -> str:
        return self.log_path.read_text()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]

    def terminate(self) -> int:
        """SIGTERM, then the exit code (the test fails if it does not exit in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SLOW)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=SLOW)
        self._log.close()


@pytest.fixture
def processes() -> Iterator[list[Serve]]:
    """Every serve a test starts is killed at the end if it is still running."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


def _runs(state_url: str) -> list[RunRow]:
    engine = create_state_engine(state_url)
    try:
        return StateStore(engine).runs(limit=1000)
    finally:
        engine.dispose()


def _situations(state_url: str) -> dict[str, int]:
    engine = create_state_engine(state_url)
    try:
        return StateStore(engine).counts_by_situation()
    finally:
        engine.dispose()


def _linked_ids(state_url: str) -> set[str]:
    engine = create_state_engine(state_url)
    try:
        return {m.hr_id for m in StateStore(engine).iter_mappings() if m.situation == "linked"}
    finally:
        engine.dispose()


def _finished(rows: list[RunRow]) -> list[RunRow]:
    return [r for r in rows if r.status != "running"]


def test_serve_runs_on_schedule_probes_and_metrics_agree_and_sigterm_exits_0(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """Several scheduled runs over HTTP; /healthz, /readyz, /metrics agree with the run table; exit 0."""
    world, base_url = world_factory(people=40)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    serve = Serve(world=world, base_url=base_url, state_url=state_url, workdir=tmp_path)
    processes.append(serve)
    serve.wait_healthy()
    wait_for(lambda: sum(r.status == "succeeded" for r in _runs(state_url)) >= 3, timeout=SLOW)

    assert serve.get("/healthz").json() == {"alive": True}
    assert serve.get("/readyz").json() == {"ready": True}

    def agree() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        before = serve.metrics()
        table = Counter(r.status for r in _finished(_runs(state_url)))
        after = serve.metrics()
        counted = {
            dict(labels)["status"]: int(value)
            for (name, labels), value in after.items()
            if name == "idsync_runs_total" and value
        }
        return after if before == after and counted == dict(table) else None

    metrics = wait_for(agree, timeout=SLOW)
    assert world.references() == world.expected  # every employee linked in Protime
    assert metrics[("idsync_mappings", (("situation", "linked"),))] == len(world.expected)
    assert _situations(state_url) == {"linked": len(world.expected)}
    writes = metrics[("idsync_writes_total", (("action", "write"), ("outcome", "succeeded")))]
    assert writes == len(world.expected)  # the first run wrote them all, later runs nothing
    assert metrics[("idsync_last_success_timestamp_seconds", ())] > 0
    assert metrics[("idsync_api_requests_total", (("kind", "people"), ("status", "200")))] >= 3

    assert serve.terminate() == 0
    events = serve.events()
    assert events[-1]["event"] == "service.stop"
    assert events[-1]["clean"] is True
    # Secrets: the client secret and every token the simulator issued never reach a log line,
    # with httpx and httpcore logging at DEBUG.
    log_text = serve.text()
    assert {"httpx", "httpcore.http11"} <= {e["logger"] for e in events}
    tokens = world.tokens()
    assert tokens
    for secret in [CLIENT_SECRET, *tokens]:
        assert secret not in log_text


def test_sigterm_mid_run_leaves_a_consistent_state_and_the_next_run_converges(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """SIGTERM during the writes: exit 0, run interrupted, state matches Protime; a new serve converges."""
    world, base_url = world_factory(people=150, latency_ms=30)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    first = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=tmp_path,
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
        IDSYNC_PROTIME__CONCURRENCY="2",
    )
    processes.append(first)
    wait_for(lambda: len(world.references()) >= 10, timeout=SLOW)
    assert first.terminate() == 0
    assert first.named("service.stop")[0]["clean"] is True

    (cut,) = _runs(state_url)  # the one run, cut short
    written = world.references()
    assert 10 <= len(written) < len(world.expected)  # really cut short
    # Consistent: what the state says is linked is exactly what Protime holds, nothing pending.
    assert _linked_ids(state_url) == set(written)

    world.sim.set_faults(latency_ms=0.0)
    second = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=tmp_path,
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
    )
    processes.append(second)
    wait_for(lambda: any(r.status == "succeeded" for r in _runs(state_url)), timeout=SLOW)
    assert second.terminate() == 0
    assert world.references() == world.expected
    assert _linked_ids(state_url) == set(world.expected)
    assert cut.status == "interrupted"


def _pg_state_url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_two_serve_processes_on_one_postgresql_never_overlap(
    tmp_path: Path, world_factory: Any, processes: list[Serve], postgres_url: str
) -> None:
    """Two replicas, one PostgreSQL state: no two runs overlap, and every tick ran or was skipped."""
    world, base_url = world_factory(people=30, latency_ms=150)
    schema = f"idsync_svc_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        state_url = _pg_state_url(postgres_url, schema)
        common = {
            "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "2",
            "IDSYNC_SCHEDULE__RUN_AT_START": "false",
        }
        replicas = [
            Serve(world=world, base_url=base_url, state_url=state_url, workdir=tmp_path, **common)
            for _ in range(2)
        ]
        processes.extend(replicas)
        for replica in replicas:
            replica.wait_healthy()

        def enough() -> bool:
            rows = _finished(_runs(state_url))
            return (
                sum(r.status != "skipped" for r in rows) >= 4
                and sum(r.status == "skipped" for r in rows) >= 3
            )

        wait_for(enough, timeout=SLOW)
        # Stop between two ticks (ticks fall on even seconds), so no tick meets the shutdown.
        wait_for(lambda: 0.8 <= time.time() % 2 <= 1.2, timeout=5)
        assert [replica.terminate() for replica in replicas] == [0, 0]

        rows = _finished(_runs(state_url))
        assert not [r for r in _runs(state_url) if r.status == "running"]
        worked = sorted((r for r in rows if r.status != "skipped"), key=lambda r: r.started_at)
        for earlier, later in itertools.pairwise(worked):
            assert earlier.finished_at is not None
            assert earlier.finished_at <= later.started_at, (earlier.id, later.id)
        assert {r.status for r in worked} <= {"succeeded"}
        for replica in replicas:
            mine = [r for r in rows if r.pid == replica.pid]
            ticks = replica.named("scheduler.tick")
            assert not replica.named("scheduler.tick_coalesced")
            assert len(mine) == len(ticks) == len(replica.named("scheduler.run_finished"))
        # Each tick fell on both replicas: one of them ran it, the other was skipped as locked.
        by_status = Counter(r.status for r in rows)
        assert by_status["skipped"] == by_status["succeeded"]
        assert world.references() == world.expected
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_the_wheel_installed_in_a_fresh_venv_upgrades_and_serves(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """The built wheel, installed outside the checkout, carries its migrations and serves."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("protime_idsync-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", str(wheel)],
        check=True,
        timeout=600,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import sync; print(sync.__file__)"],
        cwd=workdir,
        env=_clean_env(installed=True),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv)  # not the checkout

    world, base_url = world_factory(people=10)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    env = _clean_env(installed=True)
    upgrade = subprocess.run(
        [str(venv / "bin" / "idsync"), "db", "upgrade"],
        cwd=workdir,
        env={**env, "IDSYNC_DATABASE_URL": state_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    serve = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=workdir,
        command=[str(venv / "bin" / "idsync"), "serve"],
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
    )
    processes.append(serve)
    serve.wait_healthy()
    wait_for(lambda: any(r.status == "succeeded" for r in _runs(state_url)), timeout=SLOW)
    assert serve.get("/readyz").status_code == 200
    assert serve.terminate() == 0
    assert world.references() == world.expected
