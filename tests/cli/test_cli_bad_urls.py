"""Every command against bad URLs ends with a short message and exit 1 or 2: never a traceback,
never a secret (issue 9)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
from cli_support import run_idsync

if TYPE_CHECKING:
    from pathlib import Path

DB_PASSWORD = "Sekr3tPw-db"
URL_PASSWORD = "UrlPassw0rd"
CLIENT_SECRET = "cl1ent-S3cret-value"
SECRETS = (DB_PASSWORD, URL_PASSWORD, CLIENT_SECRET)

COMMANDS: list[list[str]] = [
    ["status"],
    ["show", "H1"],
    ["runs"],
    ["runs", "show", "abcd1234"],
    ["export"],
    ["link", "H1", "5"],
    ["unlink", "H1"],
    ["ignore", "H1"],
    ["unignore", "H1"],
    ["retry"],
    ["reconcile"],
    ["reconcile", "--dry-run"],
    ["db", "upgrade"],
    ["db", "current"],
    ["config", "check", "--skip-protime"],
    ["config", "check"],
    ["serve"],
    ["plan"],
    ["plans"],
    ["apply", "abcd1234"],
    ["rollback", "abcd1234"],
    ["suggest"],
]

BAD_STATE_URLS = {
    "refused": f"postgresql+psycopg://idsync:{DB_PASSWORD}@127.0.0.1:1/test",
    "bad-option": f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:5432/test?sslmode=bogus",
    "no-such-role": f"postgresql+psycopg://nosuchrole:{DB_PASSWORD}@127.0.0.1:5432/test",
    "bad-password": f"mysql+pymysql://root:{DB_PASSWORD}@127.0.0.1:3306/test",
    "unknown-dialect": f"nosuchdb://user:{DB_PASSWORD}@host/db",
    "unknown-driver": f"postgresql+nosuchdriver://user:{DB_PASSWORD}@host/db",
    "refused-mariadb": f"mysql+pymysql://root:{DB_PASSWORD}@127.0.0.1:1/test",
}


def _env(**extra: str) -> dict[str, str]:
    return {
        "IDSYNC_HR__TABLE": "employees",
        "IDSYNC_PROTIME__BASE_URL": f"http://user:{URL_PASSWORD}@127.0.0.1:1",
        "IDSYNC_PROTIME__TOKEN_URL": f"http://client:{URL_PASSWORD}@127.0.0.1:1/connect/token",
        "IDSYNC_PROTIME__TENANT": "acme",
        "IDSYNC_PROTIME__CLIENT_ID": "idsync",
        "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
        "IDSYNC_PROTIME__RETRY_ATTEMPTS": "1",
        "IDSYNC_PROTIME__CONNECT_TIMEOUT_SECONDS": "2",
        "IDSYNC_LOG__LEVEL": "DEBUG",
        "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "3600",
        "IDSYNC_SCHEDULE__RUN_AT_START": "false",
        "IDSYNC_HTTP__HOST": "127.0.0.1",
        "IDSYNC_HTTP__PORT": "0",
        **extra,
    }


def _clean(output: str, code: int) -> None:
    assert code in (1, 2), output
    assert "Traceback" not in output, output
    assert 'File "' not in output, output
    for secret in SECRETS:
        assert secret not in output, output


@pytest.mark.parametrize("case", sorted(BAD_STATE_URLS))
def test_every_command_ends_a_bad_state_url_with_one_line(case: str) -> None:
    """Each command, given a state URL that cannot work, says so without traceback or secret."""
    url = BAD_STATE_URLS[case]
    for args in COMMANDS:
        result = run_idsync(args, _env(IDSYNC_DATABASE_URL=url))
        _clean(result.output, result.code)
        if args[0] != "config":
            lines = [line for line in result.stderr.splitlines() if line.startswith("idsync:")]
            assert len(lines) == 1, (args, result.output)
        if case.startswith("unknown"):
            assert result.code == 2, (args, result.output)
            assert "IDSYNC_DATABASE_URL" in result.output, (args, result.output)


def _good_state(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    assert run_idsync(["db", "upgrade"], {"IDSYNC_DATABASE_URL": url}).code == 0
    return url


@pytest.mark.parametrize("case", sorted(BAD_STATE_URLS))
def test_a_bad_hr_url_ends_a_run_with_one_line(case: str, tmp_path: Path) -> None:
    """The HR URL goes through the same sweep for the commands that read HR."""
    env = _env(IDSYNC_DATABASE_URL=_good_state(tmp_path), IDSYNC_HR__URL=BAD_STATE_URLS[case])
    for args in (["reconcile"], ["reconcile", "--dry-run"], ["config", "check"]):
        result = run_idsync(args, env)
        _clean(result.output, result.code)


def test_credentials_in_protime_urls_are_masked_everywhere(tmp_path: Path) -> None:
    """user:password@ in the base or token URL never reaches config show, check, errors or logs."""
    env = _env(IDSYNC_DATABASE_URL=_good_state(tmp_path))
    # An HR table that passes the check before the run, so the run reaches Protime.
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("CREATE TABLE employees (employee_id TEXT)")
    conn.close()
    shown = run_idsync(["config", "show"], env)
    assert shown.code == 0
    assert "***@127.0.0.1:1" in shown.stdout
    for secret in SECRETS:
        assert secret not in shown.output
    for args in (["config", "check"], ["reconcile"]):
        result = run_idsync(args, env)
        _clean(result.output, result.code)
        assert "***@127.0.0.1:1" in result.output or "127.0.0.1" in result.output


def test_a_bare_token_as_url_user_is_masked(tmp_path: Path) -> None:
    """A token given as the user name alone (https://TOKEN@host) is masked as well."""
    env = _env(
        IDSYNC_DATABASE_URL=_good_state(tmp_path),
        IDSYNC_PROTIME__TOKEN_URL=f"http://{URL_PASSWORD}@127.0.0.1:1/connect/token",
    )
    for args in (["config", "show"], ["config", "check"], ["reconcile"]):
        result = run_idsync(args, env)
        assert URL_PASSWORD not in result.output
        assert "Traceback" not in result.output
