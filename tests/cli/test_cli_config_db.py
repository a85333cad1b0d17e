"""`idsync db upgrade|current`, `idsync config show|check`, `--help` everywhere, and `idsync demo`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from cli_support import run_idsync

from e2e.harness import CLIENT_SECRET
from sync.cli._main import _register, app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cli_support import CliResult

    from e2e.harness import Harness

DB_PASSWORD = "Db-Passw0rd-91c3"
HR_PASSWORD = "Hr-Passw0rd-4d7e"


def test_db_upgrade_twice_and_db_current(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """`db upgrade` migrates an empty database, a second call finds it at head; `db current`
    exits 2 before and 0 after."""
    h = served(migrated=False)
    before = idsync("db", "current", env=h.env())
    assert before.code == 2
    assert "idsync db upgrade" in before.stdout
    first = idsync("db", "upgrade", env=h.env())
    assert first.code == 0, first.output
    assert "upgraded empty ->" in first.stdout
    second = idsync("db", "upgrade", env=h.env())
    assert second.code == 0
    assert "already at head" in second.stdout
    after = idsync("db", "current", env=h.env())
    assert after.code == 0
    assert "at head" in after.stdout
    assert idsync("reconcile", env=h.env()).code == 0


def test_config_show_redacts_every_secret(
    served: Callable[..., Harness], idsync: Callable[..., CliResult], tmp_path: Path
) -> None:
    """`config show` prints the settings as JSON without the client secret or any DB password,
    whether they come from the environment or from the secrets directory."""
    h = served()
    env = h.env(
        IDSYNC_DATABASE_URL=f"postgresql+psycopg://idsync:{DB_PASSWORD}@db.example:5432/idsync",
        IDSYNC_HR__URL=f"mysql+pymysql://hr:{HR_PASSWORD}@hr.example/hr",
    )
    result = idsync("config", "show", env=env)
    assert result.code == 0, result.output
    data = json.loads(result.stdout)
    assert data["protime"]["client_secret"] == "********"
    assert data["database_url"] == "postgresql+psycopg://idsync:***@db.example:5432/idsync"
    assert data["hr"]["url"] == "mysql+pymysql://hr:***@hr.example/hr"
    for secret in (CLIENT_SECRET, DB_PASSWORD, HR_PASSWORD):
        assert secret not in result.output

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IDSYNC_PROTIME__CLIENT_SECRET").write_text("from-a-file-5e8a\n", encoding="utf-8")
    from_file = h.env(IDSYNC_SECRETS_DIR=str(secrets))
    del from_file["IDSYNC_PROTIME__CLIENT_SECRET"]
    shown = idsync("config", "show", env=from_file)
    assert shown.code == 0
    assert json.loads(shown.stdout)["protime"]["client_secret"] == "********"
    assert "from-a-file-5e8a" not in shown.output


def test_config_check_reports_each_part(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """`config check` checks the state DB, the HR table and each column, the token and a page of
    people: all ok, exit 0."""
    h = served()
    result = idsync("config", "check", env=h.env())
    assert result.code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert all(line.startswith("ok") for line in lines)
    for part in (
        "state database",
        "HR table employees",
        "IDSYNC_HR__ID_COLUMN",
        "IDSYNC_HR__ACTIVE_COLUMN",
        "HR employees",
        "Protime token endpoint",
        "token granted",
        "Protime people: first page read",
    ):
        assert part in result.stdout, part
    assert h.sim.counters.count("token", 200) == 1


def test_config_check_says_what_failed_and_exits_2(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A refused client secret, an unmigrated state DB and a missing HR table each show as FAIL
    with the reason; the configuration errors among them make it exit 2."""
    h = served(migrated=False)
    wrong = "wrong-secret-0b7d"
    env = h.env(IDSYNC_PROTIME__CLIENT_SECRET=wrong, IDSYNC_HR__TABLE="no_such_table")
    result = idsync("config", "check", env=env)
    assert result.code == 2
    assert "FAIL state database" in result.stderr
    assert "idsync db upgrade" in result.stderr
    assert "FAIL HR table no_such_table" in result.stderr
    assert "IDSYNC_HR__TABLE" in result.stderr
    assert "FAIL Protime token endpoint" in result.stderr
    assert "IDSYNC_PROTIME__CLIENT_SECRET" in result.stderr
    assert wrong not in result.output
    assert "Traceback" not in result.output

    skipped = idsync("config", "check", "--skip-protime", env=h.env())
    assert "token endpoint" not in skipped.output
    assert skipped.code == 2  # the state database is still not migrated


def _command_paths() -> Iterator[tuple[str, ...]]:
    _register()
    root = typer.main.get_command(app)

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    yield from walk(root, ())


def test_help_of_every_command_exits_0() -> None:
    """`idsync [GROUP] COMMAND --help` works for every command and group, without settings."""
    paths = list(_command_paths())
    assert ("reconcile",) in paths
    assert ("runs", "show") in paths
    assert ("config", "check") in paths
    for path in paths:
        result = run_idsync([*path, "--help"], env={})
        assert result.code == 0, (path, result.output)
        assert "Usage:" in result.stdout, path


def test_demo_runs_end_to_end_and_converges(tmp_path: Path) -> None:
    """`idsync demo --folder DIR` exits 0 and shows the second reconcile planning nothing."""
    folder = tmp_path / "demo"
    result = run_idsync(["demo", "--folder", str(folder), "--people", "24"], env={})
    assert result.code == 0, result.output
    assert "1. dry run" in result.stdout
    assert "The second reconcile planned 0 actions" in result.stdout
    assert "Protime person" in result.stdout
    assert (folder / "state.db").is_file()
    assert (folder / "hr.db").is_file()
