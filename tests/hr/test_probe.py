"""probe_hr on SQLite, PostgreSQL and MariaDB: column types from each dialect's reflection, the
query path, and the write-back permission tried and rolled back."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    insert,
    select,
)

from sync.config import HRSettings
from sync.errors import HRConfigError
from sync.hr import preflight_hr, probe_hr


def _table(hr_db) -> Table:
    metadata = MetaData()
    table = Table(
        "staff",
        metadata,
        Column("row_id", Integer, primary_key=True),
        Column("emp", String(40)),
        Column("number", Numeric(10, 0)),
        Column("rate", Float),
        Column("enabled", Boolean),
        Column("left_on", Date),
        Column("pt", Integer),
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(insert(table), [{"emp": "E1", "number": 7, "enabled": True, "pt": None}])
    return table


def _failed(checks) -> list[str]:
    return [c.detail for c in checks if not c.ok]


def test_types_are_judged_per_dialect(hr_db) -> None:
    """Text, integers, zero-scale numerics and booleans pass; a float id and a date active fail."""
    _table(hr_db)
    good = HRSettings(
        table="staff",
        id_column="emp",
        employee_number_column="number",
        active_column="enabled",
        writeback_table="staff",
        writeback_id_column="emp",
        writeback_column="pt",
    )
    checks = probe_hr(settings=good, url=hr_db.url)
    assert _failed(checks) == []
    assert any("tried and rolled back" in c.detail for c in checks)
    bad = HRSettings(
        table="staff", id_column="emp", badge_number_column="rate", active_column="left_on"
    )
    failed = _failed(probe_hr(settings=bad, url=hr_db.url))
    assert any("IDSYNC_HR__BADGE_NUMBER_COLUMN" in f for f in failed), failed
    assert any("IDSYNC_HR__ACTIVE_COLUMN" in f for f in failed), failed


def test_the_write_back_probe_changes_nothing(hr_db) -> None:
    """After the probe the write-back column holds what it held (the transaction rolled back)."""
    table = _table(hr_db)
    settings = HRSettings(
        table="staff", id_column="emp", writeback_table="staff", writeback_column="pt"
    )
    assert _failed(probe_hr(settings=settings, url=hr_db.url)) == []
    with hr_db.engine.connect() as conn:
        assert conn.execute(select(table.c.pt)).scalars().all() == [None]


def test_a_query_is_checked_by_its_columns_and_first_row(hr_db) -> None:
    """A query naming a column it lacks fails naming the variable; its first row's types count."""
    _table(hr_db)
    missing = HRSettings(query="SELECT emp FROM staff", id_column="emp", email_column="mail")
    failed = _failed(probe_hr(settings=missing, url=hr_db.url))
    assert any("IDSYNC_HR__EMAIL_COLUMN" in f for f in failed), failed
    ok = HRSettings(
        query="SELECT emp, enabled FROM staff", id_column="emp", active_column="enabled"
    )
    assert _failed(probe_hr(settings=ok, url=hr_db.url)) == []


def test_a_trailing_semicolon_is_stripped_from_the_query() -> None:
    """IDSYNC_HR__QUERY loses trailing semicolons and blanks, so the check and the read run one SQL."""
    assert HRSettings(query="SELECT 1 AS employee_id ;\n ;\n").query == "SELECT 1 AS employee_id"
    assert HRSettings(query=" ; ").query is None


def test_preflight_raises_the_first_failure_and_returns_the_warnings(hr_db) -> None:
    """The run's preflight raises HRConfigError naming the setting; without an active column it
    passes with the hr.no_active_column warning."""
    _table(hr_db)
    settings = HRSettings(table="staff", id_column="emp")
    warnings = preflight_hr(settings=settings, url=hr_db.url)
    assert [w.warning for w in warnings] == ["hr.no_active_column"]
    wrong = {"active_column": "enabled", "writeback_table": "staff", "writeback_column": "ptt"}
    misspelt = HRSettings(**settings.model_dump(exclude_none=True), **wrong)
    with pytest.raises(HRConfigError, match="IDSYNC_HR__WRITEBACK_COLUMN: column 'ptt'"):
        preflight_hr(settings=misspelt, url=hr_db.url)
    query = HRSettings(query="SELECT emp FROM staff;", id_column="emp", active_column="enabled")
    with pytest.raises(HRConfigError, match="IDSYNC_HR__ACTIVE_COLUMN"):
        preflight_hr(settings=query, url=hr_db.url)
