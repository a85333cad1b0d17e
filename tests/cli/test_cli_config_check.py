"""`config check` checks everything a run touches and creates nothing; configuration errors, from
the check or from a run, name their variable and exit 2."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from contracts_support import validate

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cli_support import CliResult

    from e2e.harness import Harness


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nothing_set_in_an_empty_folder_names_each_setting_and_creates_nothing(
    tmp_path: Path, idsync: Callable[..., CliResult]
) -> None:
    """No settings: exit 2, every missing variable named, no `None`, no ./idsync.db left behind."""
    result = idsync("config", "check", env={})
    assert result.code == 2
    for variable in ("IDSYNC_DATABASE_URL", "IDSYNC_HR__TABLE", "IDSYNC_PROTIME__TENANT"):
        assert variable in result.stderr, variable
    assert "None" not in result.output
    assert "Traceback" not in result.output
    status = idsync("status", env={})
    assert status.code == 2
    assert "idsync db upgrade" in status.stderr
    assert list(tmp_path.iterdir()) == []


def _alter_hr(h: Harness, *statements: str) -> None:
    with sqlite3.connect(h.hr_path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(
    "case",
    [
        (
            {
                "IDSYNC_HR__WRITEBACK_TABLE": "employees",
                "IDSYNC_HR__WRITEBACK_COLUMN": "protime_idd",
            },
            (),
            "IDSYNC_HR__WRITEBACK_COLUMN",
            "protime_idd",
        ),
        (
            {"IDSYNC_HR__ACTIVE_COLUMN": "left_on"},
            ("ALTER TABLE employees ADD COLUMN left_on DATE",),
            "IDSYNC_HR__ACTIVE_COLUMN",
            "termination_date IS NULL AS active",
        ),
        (
            {"IDSYNC_HR__ACTIVE_COLUMN": "state"},
            (
                "ALTER TABLE employees ADD COLUMN state TEXT",
                "UPDATE employees SET state = 'Terminated' WHERE row_id % 2 = 0",
                "UPDATE employees SET state = 'yes' WHERE row_id % 2 = 1",
            ),
            "IDSYNC_HR__ACTIVE_COLUMN",
            "'Terminated'",
        ),
        (
            {"IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "rate"},
            ("ALTER TABLE employees ADD COLUMN rate REAL",),
            "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN",
            "text or an integer",
        ),
        ({"IDSYNC_HR__BADGE_NUMBER_COLUMN": "badg"}, (), "IDSYNC_HR__BADGE_NUMBER_COLUMN", "badg"),
    ],
    ids=[
        "writeback-misspelt",
        "active-date",
        "active-unclear-text",
        "number-real",
        "badge-misspelt",
    ],
)
def test_a_wrong_hr_column_fails_the_check_naming_the_variable(
    served: Callable[..., Harness],
    idsync: Callable[..., CliResult],
    case: tuple[dict[str, str], tuple[str, ...], str, str],
) -> None:
    """Each wrong column setting is a FAIL line naming the variable, exit 2; the HR file is unchanged."""
    extra, statements, variable, words = case
    h = served()
    _alter_hr(h, *statements)
    before = _digest(h.hr_path)
    result = idsync("config", "check", "--skip-protime", env=h.env(**extra))
    assert result.code == 2, result.output
    fail = [line for line in result.stderr.splitlines() if line.startswith("FAIL")]
    assert fail, result.output
    assert any(variable in line and words in line for line in fail), fail
    assert _digest(h.hr_path) == before


def test_write_back_is_tried_in_a_rolled_back_transaction(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A writable write-back column passes and the HR data is unchanged; a read-only one fails."""
    h = served()
    _alter_hr(h, "UPDATE employees SET protime_id = 7")
    before = _digest(h.hr_path)
    env = h.env(IDSYNC_HR__WRITEBACK_TABLE="employees", IDSYNC_HR__WRITEBACK_COLUMN="protime_id")
    result = idsync("config", "check", "--skip-protime", env=env)
    assert result.code == 0, result.output
    assert "writable (tried and rolled back)" in result.stdout
    assert _digest(h.hr_path) == before
    read_only = {**env, "IDSYNC_HR__URL": f"sqlite:///file:{h.hr_path}?mode=ro&uri=true"}
    refused = idsync("config", "check", "--skip-protime", env=read_only)
    assert refused.code == 2, refused.output
    assert "IDSYNC_HR__WRITEBACK_TABLE: cannot write" in refused.stderr


def test_json_gives_every_check_and_the_exit_code_of_the_text_form(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """--json prints one schema-valid document whose checks and exit code are the text form's:
    all ok is 0; a misspelt column is a failed check marked as a configuration error, exit 2."""
    h = served()
    good = idsync("config", "check", "--json", env=h.env())
    assert good.code == 0, good.output
    document = validate(json.loads(good.stdout))
    assert document["ok"] is True
    assert document["exit_code"] == 0
    names = [c["name"] for c in document["checks"]]
    assert any(name.startswith("state database") for name in names)
    assert any(name.startswith("Protime token endpoint") for name in names)
    assert "Protime people" in names
    assert all(c["ok"] and not c["config_error"] for c in document["checks"])

    bad = idsync(
        "config",
        "check",
        "--json",
        "--skip-protime",
        env=h.env(IDSYNC_HR__BADGE_NUMBER_COLUMN="badgee"),
    )
    assert bad.code == 2, bad.output
    document = validate(json.loads(bad.stdout))
    assert (document["ok"], document["exit_code"]) == (False, 2)
    failed = [c for c in document["checks"] if not c["ok"]]
    assert failed
    assert all(c["config_error"] for c in failed)
    assert any("IDSYNC_HR__BADGE_NUMBER_COLUMN" in c["detail"] for c in failed)
    assert not any(c["name"].startswith("Protime") for c in document["checks"])


def test_a_run_with_a_wrong_table_or_column_exits_2_naming_it(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """`reconcile` with an unknown table, or column, exits 2 (not 1) naming the variable."""
    h = served()
    table = idsync("reconcile", env=h.env(IDSYNC_HR__TABLE="staff"))
    assert table.code == 2, table.output
    assert "IDSYNC_HR__TABLE" in table.stderr
    column = idsync("reconcile", env=h.env(IDSYNC_HR__ID_COLUMN="emp_id"))
    assert column.code == 2, column.output
    assert "IDSYNC_HR__ID_COLUMN" in column.stderr
    assert h.writes() == 0


def test_a_url_without_its_driver_says_the_form_that_works(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """`mysql://` (MySQLdb not installed) for HR or state: exit 2 with the mysql+pymysql:// form."""
    h = served()
    hr = idsync("reconcile", env=h.env(IDSYNC_HR__URL="mysql://reader@127.0.0.1:3306/hr"))
    assert hr.code == 2, hr.output
    assert "mysql+pymysql://" in hr.stderr
    assert "IDSYNC_HR__URL" in hr.stderr
    state = idsync("status", env=h.env(IDSYNC_DATABASE_URL="mysql://root@127.0.0.1:3306/test"))
    assert state.code == 2
    assert "mysql+pymysql://" in state.stderr
