"""Every run checks the configuration before it reads or writes (issue 22, point 5): the same HR
checks `config check` makes, so a setting `config check` refuses ends a dry run, a plan and a real
run with exit 2 naming it, before one call to Protime's references; warnings show in both."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness

MISSPELT = {"IDSYNC_HR__WRITEBACK_TABLE": "employees", "IDSYNC_HR__WRITEBACK_COLUMN": "protime_idd"}


def _reference_calls(h: Harness) -> int:
    """Every call to Protime's references the simulator answered (PUT, DELETE)."""
    return h.writes()


def _events(stderr: str) -> list[str]:
    events = []
    for line in stderr.splitlines():
        try:
            events.append(json.loads(line)["event"])
        except (ValueError, KeyError, TypeError):
            continue
    return events


@pytest.mark.parametrize(
    "args", [("reconcile", "--dry-run"), ("reconcile",), ("plan",)], ids=["dry", "real", "plan"]
)
def test_a_misspelt_write_back_column_stops_every_run_before_any_write(
    served: Callable[..., Harness], idsync: Callable[..., CliResult], args: tuple[str, ...]
) -> None:
    """A write-back column config check refuses ends the run with exit 2 naming
    IDSYNC_HR__WRITEBACK_COLUMN, with no reference call made and no row written back."""
    h = served()
    check = idsync("config", "check", "--skip-protime", env=h.env(**MISSPELT))
    assert check.code == 2, check.output
    result = idsync(*args, env=h.env(**MISSPELT))
    assert result.code == 2, result.output
    assert "IDSYNC_HR__WRITEBACK_COLUMN" in result.stderr
    assert "protime_idd" in result.stderr
    assert _reference_calls(h) == 0
    assert h.sim.counters.count("references.put") == 0
    assert "Traceback" not in result.output


def test_a_query_ending_in_a_semicolon_passes_the_check_and_the_dry_run(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A query with a trailing `;` (and blank lines) is the same SQL for config check and the run:
    both exit 0."""
    h = served()
    env = h.env(
        IDSYNC_HR__QUERY=(
            "SELECT employee_id, employee_number, badge, email, active FROM employees ;\n\n"
        )
    )
    del env["IDSYNC_HR__TABLE"]
    check = idsync("config", "check", "--skip-protime", env=env)
    assert check.code == 0, check.output
    assert "IDSYNC_HR__QUERY" in check.stdout
    dry = idsync("reconcile", "--dry-run", env=env)
    assert dry.code == 0, dry.output
    assert h.writes() == 0


def test_a_missing_active_column_is_a_warning_in_the_check_and_the_run_log(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Without IDSYNC_HR__ACTIVE_COLUMN, config check passes with a warn line naming it, and a
    run logs hr.no_active_column once and goes on."""
    h = served()
    env = h.env()
    del env["IDSYNC_HR__ACTIVE_COLUMN"]
    check = idsync("config", "check", "--skip-protime", env=env)
    assert check.code == 0, check.output
    warned = [line for line in check.stdout.splitlines() if line.startswith("warn")]
    assert any("IDSYNC_HR__ACTIVE_COLUMN" in line for line in warned), check.stdout
    dry = idsync("reconcile", "--dry-run", env=env)
    assert dry.code == 0, dry.output
    assert _events(dry.stderr).count("hr.no_active_column") == 1, dry.stderr
    quiet = idsync("reconcile", "--dry-run", env=h.env())
    assert "hr.no_active_column" not in _events(quiet.stderr)


def test_a_query_config_check_refuses_fails_the_dry_run_the_same_way(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A query naming a column that does not exist: exit 2 naming IDSYNC_HR__QUERY from both."""
    h = served()
    env = h.env(IDSYNC_HR__QUERY="SELECT employee_id, nope FROM employees")
    del env["IDSYNC_HR__TABLE"]
    check = idsync("config", "check", "--skip-protime", env=env)
    dry = idsync("reconcile", "--dry-run", env=env)
    for result in (check, dry):
        assert result.code == 2, result.output
        assert "IDSYNC_HR__QUERY" in result.stderr


def _wrong_urls(request: pytest.FixtureRequest) -> tuple[str, int]:
    kind = request.param
    if kind == "sqlite-missing":
        return "sqlite:////nonexistent/dir/hr.db", 2
    if kind == "postgres-port":
        url = request.getfixturevalue("postgres_url")
        host = url.rsplit("@", 1)[0]
        return f"{host}@127.0.0.1:1/test", 1
    if kind == "postgres-database":
        url = request.getfixturevalue("postgres_url")
        return url.rsplit("/", 1)[0] + "/idsync_no_such_database", 2
    url = request.getfixturevalue("mariadb_url")
    scheme, rest = url.split("://", 1)
    user = rest.split("@", 1)[0].split(":", 1)[0]
    return f"{scheme}://{user}:wrong-Pw-5x@{rest.split('@', 1)[1]}", 2


@pytest.fixture(
    params=[
        "sqlite-missing",
        pytest.param("postgres-port", marks=pytest.mark.postgres),
        pytest.param("postgres-database", marks=pytest.mark.postgres),
        pytest.param("mariadb-password", marks=pytest.mark.mariadb),
    ]
)
def wrong_url(request: pytest.FixtureRequest) -> tuple[str, int]:
    """An HR URL that cannot be used, and the exit code it gets (1: unreachable, 2: a setting)."""
    return _wrong_urls(request)


def test_a_wrong_hr_url_names_its_variable_in_the_check_and_the_run(
    served: Callable[..., Harness],
    idsync: Callable[..., CliResult],
    wrong_url: tuple[str, int],
) -> None:
    """A wrong port, database or password names IDSYNC_HR__URL (password masked) in config
    check and in the dry run, with the same exit code: 2 for a refused login or an unknown
    database, 1 for a server that does not answer."""
    url, code = wrong_url
    h = served()
    env = h.env(IDSYNC_HR__URL=url)
    check = idsync("config", "check", "--skip-protime", env=env)
    dry = idsync("reconcile", "--dry-run", env=env)
    for result in (check, dry):
        assert result.code == code, result.output
        assert "IDSYNC_HR__URL" in result.stderr, result.stderr
        assert "wrong-Pw-5x" not in result.output
        assert "Traceback" not in result.output
