"""The CLI with a settings file of several syncs: `--sync` picks one (and is needed), each sync's
state is its own, `idsync syncs` lists them all, `config check` checks each, naming it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from cli_support import run_idsync

from contracts_support import validate
from e2e.harness import migrate

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Two syncs (acme, globex) on one SQLite state database, HR tables that exist."""
    import sqlite3

    with sqlite3.connect(tmp_path / "hr.db") as conn:
        for table in ("acme_staff", "globex_staff"):
            conn.execute(f"CREATE TABLE {table} (employee_id TEXT, employee_number TEXT)")
    conn.close()
    migrate(f"sqlite:///{tmp_path / 'state.db'}")
    path = tmp_path / "idsync.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "state.db"}"
[defaults.protime]
base_url = "http://127.0.0.1:9"
client_id = "idsync"
client_secret = "s3cret-value"
[defaults.hr]
url = "sqlite:///{tmp_path / "hr.db"}"
employee_number_column = "employee_number"
[syncs.acme.protime]
tenant = "acme"
[syncs.acme.hr]
table = "acme_staff"
[syncs.globex.protime]
tenant = "globex"
[syncs.globex.hr]
table = "globex_staff"
[syncs.globex.schedule]
interval_seconds = 900
""",
        encoding="utf-8",
    )
    return path


def test_a_command_on_one_sync_needs_sync_when_there_are_several(config: Path) -> None:
    """Without --sync, a command on one sync exits 2 naming the syncs; an unknown name too."""
    done = run_idsync(["status", "--config", str(config)], env={})
    assert done.code == 2
    assert "acme, globex" in done.stderr
    unknown = run_idsync(["status", "--config", str(config), "--sync", "nope"], env={})
    assert unknown.code == 2
    assert "no sync named 'nope'" in unknown.stderr


def test_each_sync_sees_only_its_own_map(config: Path) -> None:
    """A manual link made for acme is in acme's map and not in globex's."""
    linked = run_idsync(["link", "E1", "42", "--sync", "acme", "--config", str(config)], env={})
    assert linked.code == 0, linked.stderr
    acme = run_idsync(
        ["export", "--format", "json", "--sync", "acme", "--config", str(config)], env={}
    )
    globex = run_idsync(
        ["export", "--format", "json", "--sync", "globex", "--config", str(config)], env={}
    )
    assert [m["hr_id"] for m in json.loads(acme.stdout)["mappings"]] == ["E1"]
    assert json.loads(globex.stdout)["mappings"] == []


def test_syncs_lists_every_sync_with_its_schedule(config: Path) -> None:
    """`idsync syncs --json` gives both syncs in file order, never run, with their schedules."""
    done = run_idsync(["syncs", "--json", "--config", str(config)], env={})
    assert done.code == 0, done.stderr
    syncs = validate(json.loads(done.stdout))["syncs"]
    assert [(s["name"], s["tenant"]) for s in syncs] == [("acme", "acme"), ("globex", "globex")]
    assert syncs[0]["last_run"] is None
    assert syncs[0]["next_run_at"] is None  # no schedule: only run by hand
    assert syncs[1]["schedule"]["interval_seconds"] == 900
    assert syncs[1]["next_run_at"] is not None
    table = run_idsync(["syncs", "--config", str(config)], env={})
    assert "globex" in table.stdout
    assert "never run" in table.stdout


def test_config_check_checks_every_sync_and_names_it(config: Path) -> None:
    """`config check` checks the shared state database once and each sync's HR source, every
    line naming its sync; a missing table fails that sync only, exit 2."""
    import sqlite3

    with sqlite3.connect(config.parent / "hr.db") as conn:
        conn.execute("DROP TABLE globex_staff")
    conn.close()
    done = run_idsync(
        ["config", "check", "--skip-protime", "--json", "--config", str(config)], env={}
    )
    assert done.code == 2
    checks = validate(json.loads(done.stdout))["checks"]
    failed = [c["name"] for c in checks if not c["ok"]]
    assert failed
    assert all(name.startswith("[globex] ") for name in failed)
    assert any(c["name"].startswith("[acme] ") and c["ok"] for c in checks)
    assert sum(c["name"].startswith("state database") for c in checks) == 1
    assert "s3cret-value" not in done.stdout + done.stderr
