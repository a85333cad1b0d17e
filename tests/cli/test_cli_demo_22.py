"""Carrying on after `idsync demo`, the simulator's banner as settings, and `config check` on a
host name that does not resolve (issue 22, point 7)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_support import run_idsync

from e2e.harness import row_for, write_hr
from sync.simulator._people import generate_people

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cli_support import CliResult


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the simulator exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def serve() -> Iterator[list[subprocess.Popen[str]]]:
    """Simulator processes started by a test, stopped at its end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        _stop(process)


def _idsync_process(argv: Sequence[str]) -> subprocess.Popen[str]:
    """``idsync ARGV`` as its own process (this interpreter, so the venv's package)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    return subprocess.Popen(
        [sys.executable, "-m", "sync", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        values[name] = value
    return values


def _plan(result: CliResult) -> list[object]:
    assert result.code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert isinstance(plan, list)
    return plan


@pytest.mark.slow
def test_demo_folder_restarts_the_same_tenant_and_a_reconcile_plans_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: list[subprocess.Popen[str]]
) -> None:
    """The command `idsync demo` prints serves the saved tenant again, and a reconcile with the
    demo's env file, from another directory, plans nothing."""
    port = _free_port()
    demo = run_idsync(["demo", "--folder", "demo", "--people", "24", "--port", str(port)], env={})
    assert demo.code == 0, demo.output
    folder = tmp_path / "demo"
    env_file, people_file = folder / "idsync.env", folder / "protime.json"
    assert f"source {env_file}" in demo.stdout
    commands = [line.strip() for line in demo.stdout.splitlines() if "idsync simulator" in line]
    assert len(commands) == 1, demo.stdout
    argv = shlex.split(commands[0])
    # The idsync a new terminal finds: `idsync` on the PATH, else this one's full path.
    assert Path(argv[0]).name == "idsync"
    assert argv[1] == "simulator"
    assert str(people_file) in argv

    env = _read_env_file(env_file)
    assert env["IDSYNC_PROTIME__BASE_URL"] == f"http://127.0.0.1:{port}"
    for name in ("IDSYNC_DATABASE_URL", "IDSYNC_HR__URL"):
        assert env[name].startswith(f"sqlite:///{folder}/"), env[name]  # absolute paths

    serve.append(_idsync_process(argv[1:]))
    _wait_for_port(serve[0], port)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _plan(run_idsync(["reconcile", "--json"], env=env)) == []
    status = run_idsync(["show", "E1001"], env=env)
    assert status.code == 0, status.output
    assert list(elsewhere.iterdir()) == []


def _banner_settings(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    settings: dict[str, str] = {}
    for line in process.stdout:
        if line.strip().startswith("IDSYNC_"):
            name, _, value = shlex.split(line.strip())[0].partition("=")
            settings[name] = value
        if line.startswith("Press Ctrl+C"):
            return settings
    raise AssertionError("the simulator did not print its banner")


@pytest.mark.slow
def test_simulator_banner_prints_the_values_the_settings_want(
    tmp_path: Path, serve: list[subprocess.Popen[str]]
) -> None:
    """The IDSYNC_PROTIME__* lines of `idsync simulator`'s banner, used as they are, make a
    reconcile succeed (the base URL is the host, not the API path)."""
    serve.append(
        _idsync_process(
            ["simulator", "--port", "0", "--people", "25", "--client-id", "banner-client"]
        )
    )
    settings = _banner_settings(serve[0])
    assert settings["IDSYNC_PROTIME__CLIENT_ID"] == "banner-client"
    assert settings["IDSYNC_PROTIME__BASE_URL"].count("/") == 2  # scheme://host:port only
    people = generate_people(25, seed=7)
    write_hr(tmp_path / "hr.db", [row_for(p, f"E{i:03d}") for i, p in enumerate(people[:10])])
    env = {
        "IDSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "IDSYNC_HR__URL": f"sqlite:///{tmp_path / 'hr.db'}",
        "IDSYNC_HR__TABLE": "employees",
        "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
        **settings,
    }
    assert run_idsync(["db", "upgrade"], env=env).code == 0
    plan = _plan(run_idsync(["reconcile", "--json"], env=env))
    assert len(plan) == 10
    assert _plan(run_idsync(["reconcile", "--json"], env=env)) == []


@pytest.mark.parametrize("token_url_set", [True, False])
def test_config_check_does_not_retry_a_host_that_does_not_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_url_set: bool
) -> None:
    """A token host that does not resolve is looked up once, never retried, and the failure
    names IDSYNC_PROTIME__TOKEN_URL (also when the URL was derived from the tenant)."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, bytes):
            host = host.decode()
        if isinstance(host, str) and (host.endswith(".invalid") or "myprotime" in host):
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    write_hr(tmp_path / "hr.db", [])
    env = {
        "IDSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'hr.db'}",
        "IDSYNC_HR__TABLE": "employees",
        "IDSYNC_PROTIME__BASE_URL": "http://127.0.0.1:9",
        "IDSYNC_PROTIME__TENANT": "acme",
        "IDSYNC_PROTIME__CLIENT_ID": "c",
        "IDSYNC_PROTIME__CLIENT_SECRET": "s",
    }
    if token_url_set:
        env["IDSYNC_PROTIME__TOKEN_URL"] = "https://auth.example.invalid/connect/token"
    result = run_idsync(["config", "check"], env=env)
    assert result.code != 0
    line = next(x for x in result.stderr.splitlines() if "Protime token endpoint" in x)
    assert "does not resolve" in line
    assert "IDSYNC_PROTIME__TOKEN_URL" in line
    if not token_url_set:
        assert "IDSYNC_PROTIME__TENANT" in line
    assert len(lookups) == 1, lookups
