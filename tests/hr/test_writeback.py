"""The write-back on every HR database: only differing rows, in bulk where the database can."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    literal_column,
    select,
)

from sync.config import HRSettings
from sync.errors import HRSourceError
from sync.hr import _writeback, write_back
from sync.hr._writeback import STAGING_TABLE, write_changes

STAGED = ("mysql", "mariadb")  # MariaDB through mysql+pymysql is "mysql"
PATHS = {"postgresql": "_unnest_update", "mysql": "_staged_update", "sqlite": "_row_by_row_update"}
SETTINGS = HRSettings(
    table="people", id_column="emp_id", writeback_table="people", writeback_column="pid"
)
TEXT_SETTINGS = HRSettings(
    table="people", id_column="emp_id", writeback_table="people", writeback_column="pid_text"
)


def _people(hr_db: Any, *, text_key: bool = False) -> Table:
    """``people``: a key, an integer target (at most 999 by a CHECK) and a text target."""
    metadata = MetaData()
    table = Table(
        "people",
        metadata,
        Column("emp_id", String(20) if not text_key else Text, primary_key=not text_key),
        Column("pid", Integer),
        Column("pid_text", String(20)),
        Column("other", String(20)),
        CheckConstraint("pid < 1000", name="pid_small"),
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {"emp_id": "E1", "pid": 11, "pid_text": " 11", "other": "a"},
                {"emp_id": "E2", "pid": None, "pid_text": None, "other": "b"},
                {"emp_id": "E3", "pid": 5, "pid_text": "5", "other": "c"},
                {"emp_id": "E4", "pid": 44, "pid_text": "44", "other": "d"},
            ],
        )
    return table


def _stored(hr_db: Any, table: Table) -> dict[str, tuple[Any, ...]]:
    with hr_db.engine.connect() as conn:
        rows = conn.execute(select(table.c.emp_id, table.c.pid, table.c.pid_text, table.c.other))
        return {emp_id: tuple(rest) for emp_id, *rest in rows}


def _staging_exists(conn: Any) -> bool:
    return bool(inspect(conn).has_table(STAGING_TABLE))


def test_only_differing_rows_are_written(hr_db) -> None:
    """Rows whose id differs change; equal rows, rows without a pair and other columns stay."""
    table = _people(hr_db)
    pairs = {"E1": 11, "E2": 22, "E3": 33, "E9": 99}
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs=pairs) == 2
    assert _stored(hr_db, table) == {
        "E1": (11, " 11", "a"),
        "E2": (22, None, "b"),
        "E3": (33, "5", "c"),
        "E4": (44, "44", "d"),
    }
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs=pairs) == 0


def test_a_text_column_gets_text_and_keeps_equal_values_as_written(hr_db) -> None:
    """A text target receives the id as text; ' 11' already means 11 and is not rewritten."""
    table = _people(hr_db)
    pairs = {"E1": 11, "E2": 22, "E3": 6, "E4": 44}
    assert write_back(settings=TEXT_SETTINGS, url=hr_db.url, pairs=pairs) == 2
    stored = _stored(hr_db, table)
    assert {k: v[1] for k, v in stored.items()} == {"E1": " 11", "E2": "22", "E3": "6", "E4": "44"}
    assert {k: v[0] for k, v in stored.items()} == {"E1": 11, "E2": None, "E3": 5, "E4": 44}


def test_an_unindexed_text_key_is_matched(hr_db) -> None:
    """A key column of type TEXT without an index is joined too (MariaDB indexes a prefix)."""
    table = _people(hr_db, text_key=True)
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E2": 2, "E4": 4}) == 2
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == {
        "E1": 11,
        "E2": 2,
        "E3": 5,
        "E4": 4,
    }


def test_a_failure_mid_write_back_names_the_setting_and_changes_nothing(hr_db) -> None:
    """A value the table refuses (its CHECK) fails the write-back as a whole: no row changes."""
    table = _people(hr_db)
    before = _stored(hr_db, table)
    with pytest.raises(
        HRSourceError, match="IDSYNC_HR__WRITEBACK_TABLE: writing Protime ids back failed"
    ):
        write_back(settings=SETTINGS, url=hr_db.url, pairs={"E2": 22, "E3": 33, "E4": 4444})
    assert _stored(hr_db, table) == before


@pytest.mark.parametrize("fails", [False, True], ids=["written", "failed"])
def test_the_staging_table_is_gone_after_the_write(hr_db, fails: bool) -> None:
    """After a write, and after a failed one rolled back, the connection holds no staging table."""
    if hr_db.dialect not in STAGED:
        pytest.skip("no staging table on this database")
    table = _people(hr_db)
    changes: dict[object, object] = {"E2": 22, "E4": 4444 if fails else 4}
    with hr_db.engine.connect() as conn:
        try:
            with conn.begin():
                written = write_changes(
                    conn, table=table, key=table.c.emp_id, target=table.c.pid, changes=changes
                )
                assert not _staging_exists(conn)
        except Exception:
            assert fails
        else:
            assert not fails
            assert written == 2
        assert not _staging_exists(conn)


def test_the_staged_path_is_taken_where_the_database_has_one(hr_db, monkeypatch) -> None:
    """PostgreSQL writes from two arrays, MariaDB through the staging table, SQLite row by row."""
    calls: list[str] = []
    for name in set(PATHS.values()):
        real = getattr(_writeback, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> int:
            calls.append(_name)
            return int(_real(*args, **kwargs))

        monkeypatch.setattr(_writeback, name, spy)
    _people(hr_db)
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E2": 22}) == 1
    assert calls == [PATHS[hr_db.dialect]]


def test_a_refused_staging_table_falls_back_to_row_by_row(hr_db, monkeypatch, caplog) -> None:
    """When the temporary table cannot be made, rows are updated one by one, with a warning."""
    if hr_db.dialect not in STAGED:
        pytest.skip("no staging table on this database")

    class Refused(_writeback._CreateStaging):
        inherit_cache = False

        def __init__(self, key: Any, target: Any) -> None:
            super().__init__(key, target)
            self.query = select(literal_column("no_such_column"))

    monkeypatch.setattr(_writeback, "_CreateStaging", Refused)
    table = _people(hr_db)
    with caplog.at_level(logging.WARNING, logger="sync.hr._writeback"):
        assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E2": 22, "E4": 4}) == 2
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == {
        "E1": 11,
        "E2": 22,
        "E3": 5,
        "E4": 4,
    }
    assert "CREATE TEMPORARY TABLES" in caplog.text


def test_the_row_by_row_path_writes_only_differing_rows(hr_db, monkeypatch) -> None:
    """The portable path (any other database) gives the same result on every database."""
    monkeypatch.setattr(_writeback, "_STAGED", frozenset())
    table = _people(hr_db)
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E1": 11, "E2": 22, "E3": 3}) == 2
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == {
        "E1": 11,
        "E2": 22,
        "E3": 3,
        "E4": 44,
    }
