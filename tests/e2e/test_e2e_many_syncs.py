"""Many syncs under one `idsync serve`, over HTTP with the installed CLI (issue 21): three syncs on
two tenants of one simulator process (a second reference name on one tenant, from another HR
column) converge together; a tenant with a wrong secret fails alone while the others converge;
`idsync syncs --json` and `/syncs` tell each sync's state."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from contracts_support import validate
from e2e.harness import migrate
from sync.simulator import ClientSpec, MultiSimulator, SimulatorConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

PEOPLE = {"acme": 30, "globex": 20}
SECRETS = {"acme": "acme-S3cret-1", "globex": "globex-S3cret-2"}
DEADLINE = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _idsync() -> list[str]:
    script = Path(sys.executable).parent / "idsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sync"]


@dataclass
class Installation:
    multi: MultiSimulator
    base: str
    folder: Path
    config: Path
    port: int

    def write_config(self, *, globex_secret: str, globex_protime: str = "") -> None:
        """The settings file: acme-hr and acme-payroll on tenant acme (HRMID from employee_id,
        PAYROLL from payroll_id, the one people delta read by acme-hr only), globex on globex."""
        acme, globex = self.multi.urls("acme", self.base), self.multi.urls("globex", self.base)
        (self.folder / "globex-secret").write_text(globex_secret + "\n", encoding="utf-8")
        hr = f"sqlite:///{self.folder / 'hr.db'}"
        self.config.write_text(
            f"""
database_url = "sqlite:///{self.folder / "state.db"}"
max_concurrent_runs = 2
[http]
host = "127.0.0.1"
port = {self.port}
[log]
format = "json"

[defaults.protime]
user_agent_company = "idsync e2e"
rate_limit_per_second = 0
[defaults.hr]
url = "{hr}"
employee_number_column = "employee_number"
active_column = "active"
[defaults.schedule]
interval_seconds = 2
full_read_every = "0"

[syncs.acme-hr.protime]
base_url = "{acme.base_url}"
token_url = "{acme.token_url}"
tenant = "acme"
client_id = "acme-client"
client_secret = "{SECRETS["acme"]}"
[syncs.acme-hr.hr]
table = "acme_staff"
id_column = "employee_id"

[syncs.acme-payroll.protime]
base_url = "{acme.base_url}"
token_url = "{acme.token_url}"
tenant = "acme"
client_id = "acme-client"
client_secret = "{SECRETS["acme"]}"
reference_name = "PAYROLL"
delta = "off"
[syncs.acme-payroll.hr]
table = "acme_staff"
id_column = "payroll_id"

[syncs.globex.protime]
base_url = "{globex.base_url}"
token_url = "{globex.token_url}"
tenant = "globex"
client_id = "globex-client"
client_secret_file = "globex-secret"
{globex_protime}
[syncs.globex.hr]
table = "globex_staff"
id_column = "employee_id"
""",
            encoding="utf-8",
        )

    def idsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
        return subprocess.run(
            [*_idsync(), *args, "--config", str(self.config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _hr(path: Path, multi: MultiSimulator) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE acme_staff (employee_id TEXT, payroll_id TEXT, employee_number TEXT,"
            " active INTEGER)"
        )
        conn.execute(
            "CREATE TABLE globex_staff (employee_id TEXT, employee_number TEXT, active INTEGER)"
        )
        conn.executemany(
            "INSERT INTO acme_staff VALUES (?, ?, ?, 1)",
            [
                (f"A{i:03d}", f"P{i:03d}", p.employee_number)
                for i, p in enumerate(multi.tenant("acme").world.people_list())
            ],
        )
        conn.executemany(
            "INSERT INTO globex_staff VALUES (?, ?, 1)",
            [
                (f"G{i:03d}", p.employee_number)
                for i, p in enumerate(multi.tenant("globex").world.people_list())
            ],
        )
    conn.close()


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[Installation]:
    multi = MultiSimulator(
        {
            name: SimulatorConfig(
                tenant=name,
                people=count,
                seed=seed,
                out_of_service_share=0.0,
                clients=(ClientSpec(f"{name}-client", SECRETS[name]),),
            )
            for seed, (name, count) in enumerate(PEOPLE.items(), start=3)
        }
    )
    _hr(tmp_path / "hr.db", multi)
    migrate(f"sqlite:///{tmp_path / 'state.db'}")
    with serve_in_thread(multi) as base:
        yield Installation(multi, base, tmp_path, tmp_path / "idsync.toml", _free_port())


def _serve(installation: Installation) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    return subprocess.Popen(
        [*_idsync(), "serve", "--config", str(installation.config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _syncs(installation: Installation) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{installation.port}/syncs", timeout=10)
    answer.raise_for_status()
    return {s["name"]: s for s in validate(answer.json())["syncs"]}


def _wait(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            value = check()
        except (httpx.HTTPError, KeyError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-3000:]
    return err


def _converged(installation: Installation) -> bool:
    acme, globex = installation.multi.tenant("acme"), installation.multi.tenant("globex")
    return (
        len(acme.world.references("HRMID")) == PEOPLE["acme"]
        and len(acme.world.references("PAYROLL")) == PEOPLE["acme"]
        and len(globex.world.references("HRMID")) == PEOPLE["globex"]
    )


def test_three_syncs_on_two_tenants_converge_under_one_serve(installation: Installation) -> None:
    """One serve writes HRMID and PAYROLL on acme and HRMID on globex for every employee; the
    syncs document of the CLI and of /syncs shows each sync succeeded."""
    installation.write_config(globex_secret=SECRETS["globex"])
    process = _serve(installation)
    try:
        _wait(lambda: _converged(installation), "every reference written")
        _wait(
            lambda: all(
                s["last_run"] and s["last_run"]["status"] == "succeeded"
                for s in _syncs(installation).values()
            ),
            "every sync's last run succeeded",
        )
        assert (
            httpx.get(f"http://127.0.0.1:{installation.port}/readyz", timeout=10).status_code == 200
        )
    finally:
        log = _stop(process)
    acme = installation.multi.tenant("acme").world
    assert sorted(acme.references("PAYROLL")) == [f"P{i:03d}" for i in range(PEOPLE["acme"])]
    done = installation.idsync("syncs", "--json")
    assert done.returncode == 0, done.stderr
    listed = validate(json.loads(done.stdout))["syncs"]
    assert [s["name"] for s in listed] == ["acme-hr", "acme-payroll", "globex"]
    assert all(s["situations"]["linked"] == PEOPLE[s["tenant"]] for s in listed)
    assert "Traceback" not in log


def test_a_tenant_with_a_wrong_secret_fails_alone(installation: Installation) -> None:
    """globex's wrong secret fails globex's runs; acme's two syncs converge, the service stays
    ready, and /syncs and the metrics say which sync fails."""
    installation.write_config(globex_secret="not-the-secret")
    process = _serve(installation)
    try:
        _wait(
            lambda: (
                len(installation.multi.tenant("acme").world.references("PAYROLL")) == PEOPLE["acme"]
                and len(installation.multi.tenant("acme").world.references("HRMID"))
                == PEOPLE["acme"]
            ),
            "acme converged",
        )
        syncs = _wait(
            lambda: (s := _syncs(installation))["globex"]["last_run"] and s,
            "globex ran",
        )
        assert syncs["globex"]["last_run"]["status"] == "failed"
        assert (
            "secret" in syncs["globex"]["last_run"]["message"].lower()
            or "401" in str(syncs["globex"]["last_run"]["message"])
            or "invalid_client" in str(syncs["globex"]["last_run"]["message"])
        )
        metrics = httpx.get(f"http://127.0.0.1:{installation.port}/metrics", timeout=10).text
        assert 'idsync_runs_total{status="failed",sync="globex"}' in metrics
        assert (
            httpx.get(f"http://127.0.0.1:{installation.port}/readyz", timeout=10).status_code == 200
        )
    finally:
        log = _stop(process)
    assert installation.multi.tenant("globex").world.references("HRMID") == {}
    assert "not-the-secret" not in log


def test_a_tenant_in_a_5xx_storm_slows_and_fails_alone(installation: Installation) -> None:
    """Every globex request answers 503: globex's runs retry and fail on one worker while acme's
    two syncs converge on the other; globex's failures are counted under its own label."""
    # Its retries bounded, so that a run of it ends (and says so) within the test.
    installation.write_config(
        globex_secret=SECRETS["globex"],
        globex_protime="retry_attempts = 2\nretry_timeout_seconds = 5",
    )
    installation.multi.tenant("globex").set_faults(fault_rate_503=1.0)
    process = _serve(installation)
    try:
        _wait(
            lambda: (
                len(installation.multi.tenant("acme").world.references("PAYROLL")) == PEOPLE["acme"]
                and len(installation.multi.tenant("acme").world.references("HRMID"))
                == PEOPLE["acme"]
            ),
            "acme converged",
        )
        syncs = _wait(lambda: (s := _syncs(installation))["globex"]["last_run"] and s, "globex ran")
        assert syncs["globex"]["last_run"]["status"] == "failed"
        assert syncs["acme-hr"]["last_run"]["status"] == "succeeded"
        metrics = httpx.get(f"http://127.0.0.1:{installation.port}/metrics", timeout=10).text
        assert 'idsync_runs_total{status="failed",sync="acme-hr"} 0.0' in metrics
        assert (
            httpx.get(f"http://127.0.0.1:{installation.port}/readyz", timeout=10).status_code == 200
        )
    finally:
        _stop(process)
    assert installation.multi.tenant("globex").world.references("HRMID") == {}
