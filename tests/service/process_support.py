"""`idsync serve` as real processes: a simulator over HTTP, an HR database, a serve subprocess.

The simulator runs in the test process on a loopback port; each `serve` is a subprocess with its
settings in the environment and its client secret in a secrets directory, logging JSON at DEBUG
to a file the test reads. Shared by the process, signal and chaos tests.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from service_support import wait_for

from sync.simulator import ClientSpec, Simulator, SimulatorConfig
from sync.state import RunRow, StateStore, open_database

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "idsync"
CLIENT_SECRET = "svc-" + secrets.token_urlsafe(18)
SLOW = 60.0  # deadline for anything a process does (start, several runs, stop)


def clean_env(*, installed: bool) -> dict[str, str]:
    """This process's environment without IDSYNC_ settings; for an installed idsync also without
    PYTHONPATH, which could point back at a source tree."""
    drop = ("IDSYNC_", "PYTHONPATH") if installed else ("IDSYNC_",)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def free_port() -> int:
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
        self.port = free_port()
        self.log_path = workdir / f"serve-{self.port}.log"
        env = clean_env(installed=command is not None)
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
        return self.wait_exit()

    def wait_exit(self, timeout: float = SLOW) -> int:
        """The exit code, once the process has ended (the test fails if it does not in time)."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=SLOW)
        self._log.close()


def runs(state_url: str) -> list[RunRow]:
    db = open_database(state_url)
    try:
        return StateStore(db).runs.runs(limit=1000)
    finally:
        db.dispose()


def situations(state_url: str) -> dict[str, int]:
    db = open_database(state_url)
    try:
        return StateStore(db).map.counts_by_situation()
    finally:
        db.dispose()


def linked_ids(state_url: str) -> set[str]:
    db = open_database(state_url)
    try:
        return {m.hr_id for m in StateStore(db).map.iter_mappings() if m.situation == "linked"}
    finally:
        db.dispose()


def finished(rows: list[RunRow]) -> list[RunRow]:
    return [r for r in rows if r.status != "running"]
