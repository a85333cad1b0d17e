"""Every HR column type has a defined result on SQLite, PostgreSQL and MariaDB (issue 9): ids and
match keys of integer, zero-scale decimal, UUID and text types are read as text; every other type
makes its row invalid with a reason naming it, while the good rows sync; an active column that
cannot say yes or no is a configuration error."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from sync.config import HRSettings
from sync.errors import ConfigError
from sync.hr import read_hr

if TYPE_CHECKING:
    from conftest import HRDatabase

# (column type DDL, SQL literal of the value, expected: the id text, or "!" + a reason fragment).
TYPES: dict[str, list[tuple[str, str, str]]] = {
    "sqlite": [
        ("INTEGER", "42", "42"),
        ("BIGINT", "9007199254740993", "9007199254740993"),
        ("NUMERIC(10,0)", "42", "42"),
        ("VARCHAR(20)", "'E1'", "E1"),
        ("TEXT", "'E1'", "E1"),
        ("DATE", "'2024-01-02'", "!'v' is DATE"),
        ("DATETIME", "'garbage'", "!'v' is DATETIME"),  # the driver cannot even convert it
        ("TIME", "'10:00'", "!'v' is TIME"),
        ("FLOAT", "1.5", "!not a string/integer (float)"),
        ("FLOAT", "2.0", "2"),
        ("DECIMAL(10,2)", "4.25", "!not a string/integer (float)"),
        ("BOOLEAN", "1", "!'v' is BOOLEAN"),
        ("BLOB", "X'4531'", "!'v' is BLOB"),
        ("JSON", "'[1]'", "!'v' is JSON"),
        ("TEXT", "CAST(X'45FF31' AS TEXT)", "!is not valid UTF-8 (3 bytes)"),
        ("TEXT", "'" + "x" * 300 + "'", "!longer than 255 characters (300)"),
    ],
    "postgresql": [
        ("integer", "42", "42"),
        ("bigint", "9007199254740993", "9007199254740993"),
        ("numeric(10,0)", "42", "42"),
        ("varchar(20)", "'E1'", "E1"),
        ("text", "'E1'", "E1"),
        ("uuid", "'00000000-0000-0000-0000-00000000002a'", "00000000-0000-0000-0000-00000000002a"),
        ("date", "'2024-01-02'", "!'v' is DATE"),
        ("date", "'infinity'", "!'v' is DATE"),  # psycopg cannot convert it to a Python date
        ("timestamp", "'2024-01-02 10:00'", "!'v' is TIMESTAMP"),
        ("timestamptz", "'2024-01-02 10:00+00'", "!'v' is TIMESTAMP WITH TIME ZONE"),
        ("time", "'10:00'", "!'v' is TIME"),
        ("interval", "'1 day'", "!'v' is INTERVAL"),
        ("double precision", "1.5", "!not a string/integer (float)"),
        ("double precision", "2.0", "2"),
        ("numeric(5,2)", "4.25", "!not a string/integer (Decimal)"),
        ("boolean", "true", "!'v' is BOOLEAN"),
        ("bytea", "'\\x4531'", "!'v' is BYTEA"),
        ("json", "'[1]'", "!'v' is JSON"),
        ("jsonb", "'[1]'", "!'v' is JSONB"),
        ("integer[]", "'{1,2}'", "!'v' is INTEGER[]"),
        ("varchar(400)", "'" + "x" * 300 + "'", "!longer than 255 characters (300)"),
    ],
    "mysql": [
        ("INT", "42", "42"),
        ("BIGINT", "9007199254740993", "9007199254740993"),
        ("DECIMAL(10,0)", "42", "42"),
        ("VARCHAR(20)", "'E1'", "E1"),
        ("TEXT", "'E1'", "E1"),
        ("UUID", "'00000000-0000-0000-0000-00000000002a'", "00000000-0000-0000-0000-00000000002a"),
        ("DATE", "'2024-01-02'", "!'v' is DATE"),
        ("DATETIME", "'2024-01-02 10:00'", "!'v' is DATETIME"),
        ("TIMESTAMP", "'2024-01-02 10:00'", "!'v' is TIMESTAMP"),
        ("TIME", "'10:00'", "!'v' is TIME"),
        ("DOUBLE", "1.5", "!not a string/integer (float)"),
        ("DOUBLE", "2.0", "2"),
        ("DECIMAL(5,2)", "4.25", "!not a string/integer (Decimal)"),
        # MariaDB's BOOLEAN is TINYINT(1): an integer, read as one.
        ("BOOLEAN", "1", "1"),
        ("BLOB", "X'4531'", "!'v' is BLOB"),
        # MariaDB's JSON is LONGTEXT: text, judged by the value rules (':' is forbidden).
        ("JSON", "'{\"a\": 1}'", "!forbidden character(s) :"),
        ("VARCHAR(400)", "'" + "x" * 300 + "'", "!longer than 255 characters (300)"),
    ],
}


def _table(hr_db: HRDatabase, name: str, column_type: str, literal: str) -> None:
    """Row 1: the value; row 2: NULL (empty). Key columns get a good id on every row."""
    with hr_db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(
            text(f"CREATE TABLE {name} (n INTEGER PRIMARY KEY, k VARCHAR(10), v {column_type})")
        )
        # Built from this file's constants only.
        insert = f"INSERT INTO {name} (n, k, v) VALUES "  # noqa: S608
        conn.execute(text(insert + f"(1, 'K1', {literal})"))
        conn.execute(text(insert + "(2, 'K2', NULL)"))
        conn.execute(text(insert + "(3, 'K3', NULL)"))


def _cases(hr_db: HRDatabase) -> list[tuple[str, str, str]]:
    return TYPES[hr_db.dialect]


def test_every_id_column_type_has_a_defined_result(hr_db: HRDatabase) -> None:
    """As the id column: each type gives the id text, or an invalid row naming the type."""
    for i, (column_type, literal, expected) in enumerate(_cases(hr_db)):
        name = f"id_types_{i}"
        _table(hr_db, name, column_type, literal)
        snap = read_hr(settings=HRSettings(table=name, id_column="v"), url=hr_db.url)
        where = (hr_db.dialect, column_type, literal[:40])
        empty = [r for r in snap.invalid if r.row_number in (2, 3)]
        assert [r.reason for r in empty] == ["empty", "empty"], where
        if expected.startswith("!"):
            assert [e.hr_id for e in snap.employees] == [], where
            (row,) = [r for r in snap.invalid if r.row_number == 1]
            assert expected[1:] in row.reason, (where, row)
            # Undecodable, over-long or refused-type ids are keyed by row, never shown.
            assert row.hr_id is None or len(row.hr_id) <= 255, where
        else:
            assert [e.hr_id for e in snap.employees] == [expected], (where, snap.invalid)


def test_every_key_column_type_has_a_defined_result(hr_db: HRDatabase) -> None:
    """As the badge column: good ids sync; a value of a refused type makes only its row invalid."""
    for i, (column_type, literal, expected) in enumerate(_cases(hr_db)):
        if "longer than" in expected:
            continue  # a long badge is just a long badge
        name = f"key_types_{i}"
        _table(hr_db, name, column_type, literal)
        settings = HRSettings(table=name, id_column="k", badge_number_column="v")
        snap = read_hr(settings=settings, url=hr_db.url)
        where = (hr_db.dialect, column_type, literal[:40])
        by_id = {e.hr_id: e for e in snap.employees}
        assert {"K2", "K3"} <= by_id.keys(), where
        assert by_id["K2"].badge_number is None
        if expected.startswith("!") and "forbidden" not in expected:
            assert "K1" not in by_id, where
            (row,) = snap.invalid
            assert row.hr_id == "K1"
            fragment = expected[1:].replace("not a string/integer", "is not text or an integer")
            fragment = fragment.replace("is not valid UTF-8", "badge number is not valid UTF-8")
            assert fragment.split(" (")[0] in row.reason, (where, row)
            assert literal.strip("'") not in row.reason or literal in ("1", "true"), where
        elif not expected.startswith("!"):
            assert by_id["K1"].badge_number == expected, where


@pytest.mark.parametrize("kind", ["table", "query"])
def test_an_active_column_of_dates_is_a_config_error_with_a_hint(
    hr_db: HRDatabase, kind: str
) -> None:
    """A DATE active column (typed, or date values from a query) is IDSYNC_HR__ACTIVE_COLUMN's error."""
    with hr_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS staff_dates"))
        conn.execute(
            text("CREATE TABLE staff_dates (n INTEGER PRIMARY KEY, k VARCHAR(10), left_on DATE)")
        )
        conn.execute(text("INSERT INTO staff_dates (n, k, left_on) VALUES (1, 'K1', NULL)"))
        conn.execute(text("INSERT INTO staff_dates (n, k, left_on) VALUES (2, 'K2', '2024-01-02')"))
    if kind == "table":
        settings = HRSettings(table="staff_dates", id_column="k", active_column="left_on")
    else:
        if hr_db.dialect == "sqlite":
            pytest.skip("SQLite hands dates to a query as text: no type to judge")
        settings = HRSettings(
            query="SELECT k, left_on FROM staff_dates ORDER BY n",
            id_column="k",
            active_column="left_on",
        )
    with pytest.raises(ConfigError) as info:
        read_hr(settings=settings, url=hr_db.url)
    message = str(info.value)
    assert "IDSYNC_HR__ACTIVE_COLUMN" in message
    assert "termination_date IS NULL AS active" in message
    assert "2024" not in message
