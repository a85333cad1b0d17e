"""One bad HR row never stops a run (issue 9): undecodable bytes and over-long ids make their row
`invalid` with a stored, exported reason (keyed by row when the id is unusable); a column whose type
cannot hold an id is refused by the check before the run (issue 22); messages carry no HR data
beyond the id; control and bidi characters are escaped in every human output."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from typing import TYPE_CHECKING

from cli_support import COUNT, everyone

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness

SECRET_NAME = "Zorglub-Private"  # HR data that is not an id: must appear nowhere
BIDI_ID = "E\u202eX1"  # a right-to-left override: a valid id, printed escaped
LONG_ID = "L" * 300


def _spoil(h: Harness) -> None:
    """Add hostile rows to the HR table, and a DATETIME column one row holds garbage in."""
    with sqlite3.connect(h.hr_path) as conn:
        conn.execute("ALTER TABLE employees ADD COLUMN hired DATETIME")
        conn.execute(
            "INSERT INTO employees (employee_id, employee_number) "
            "VALUES (CAST(X'45FF4E' AS TEXT), ?)",
            (SECRET_NAME,),
        )
        conn.execute("INSERT INTO employees (employee_id) VALUES (?)", (LONG_ID,))
        conn.execute("INSERT INTO employees (employee_id) VALUES (?)", (BIDI_ID,))
        conn.execute(
            "INSERT INTO employees (employee_id, email) VALUES ('BADMAIL', CAST(X'FFFE' AS TEXT))"
        )
        conn.execute("UPDATE employees SET hired = 'garbage' WHERE employee_id = 'E001'")
    conn.close()


def _no_leak(output: str) -> None:
    assert "Traceback" not in output
    assert SECRET_NAME not in output
    assert "\u202e" not in output


def test_hostile_rows_are_invalid_with_stored_exported_reasons(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """The run succeeds for the good rows; each bad row is invalid, stored, exported, escaped."""
    h = served(rows=everyone)
    _spoil(h)
    # A DATETIME column cannot be an id: the check before the run refuses it (exit 2, nothing read).
    dates = idsync("reconcile", env=h.env(IDSYNC_HR__BADGE_NUMBER_COLUMN="hired"))
    assert dates.code == 2, dates.output
    assert "IDSYNC_HR__BADGE_NUMBER_COLUMN: column 'hired' holds datetime" in dates.stderr
    _no_leak(dates.output)
    assert "garbage" not in dates.output
    env = h.env(IDSYNC_LOG__LEVEL="DEBUG")
    result = idsync("reconcile", env=env)
    _no_leak(result.output)
    assert result.code in (0, 4), result.output

    exported = idsync("export", "--format", "json", env=env)
    assert exported.code == 0
    rows = {r["hr_id"]: r for r in json.loads(exported.stdout)["mappings"]}
    invalid = {k: r["reason"] for k, r in rows.items() if r["situation"] == "invalid"}
    undecodable = [k for k, why in invalid.items() if "the id is not valid UTF-8" in why]
    long = [k for k, why in invalid.items() if "longer than 255 characters (300)" in why]
    assert len(undecodable) == 1
    assert undecodable[0].startswith("<row ")
    assert len(long) == 1
    assert long[0].startswith("<row ")
    assert "the e-mail is not valid UTF-8" in invalid["BADMAIL"]
    assert SECRET_NAME not in exported.stdout
    written = [k for k, r in rows.items() if r["situation"] in ("linked", "unlinked")]
    assert len(written) == COUNT  # every good row

    csv_out = idsync("export", env=env)
    table = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert {r["hr_id"] for r in table} >= {*undecodable, *long, "BADMAIL"}

    for args in (["status"], ["runs"], ["show", BIDI_ID], ["show", undecodable[0]]):
        shown = idsync(*args, env=env)
        assert shown.code == 0, (args, shown.output)
        _no_leak(shown.output)
    show_bidi = idsync("show", BIDI_ID, env=env)
    assert "E\\u202eX1" in show_bidi.stdout
    run_id = json.loads(idsync("runs", "--json", env=env).stdout)["runs"][0]["run_id"]
    run_show = idsync("runs", "show", run_id, env=env)
    _no_leak(run_show.output)


def test_an_active_column_of_dates_ends_reconcile_with_exit_2(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A DATETIME active column is a configuration error: one line, exit 2, with the hint."""
    h = served(rows=everyone)
    _spoil(h)
    result = idsync("reconcile", env=h.env(IDSYNC_HR__ACTIVE_COLUMN="hired"))
    assert result.code == 2, result.output
    assert "IDSYNC_HR__ACTIVE_COLUMN" in result.stderr
    assert "termination_date IS NULL AS active" in result.stderr
    assert "Traceback" not in result.output
    assert "garbage" not in result.output
