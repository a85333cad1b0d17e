"""The write-back on every HR database: only differing rows, in bulk where the database can."""

from __future__ import annotations

import logging
from typing import Any, Self

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
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
# The pairs the fixture's integer column already holds (E2 holds nothing).
FILLED = {"E1": 11, "E3": 5, "E4": 44}
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
    """Rows whose id differs change and a row no pair names is cleared; equal rows and other
    columns stay."""
    table = _people(hr_db)
    pairs = {"E1": 11, "E2": 22, "E3": 33, "E9": 99}
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs=pairs) == 3
    assert _stored(hr_db, table) == {
        "E1": (11, " 11", "a"),
        "E2": (22, None, "b"),
        "E3": (33, "5", "c"),
        "E4": (None, "44", "d"),
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
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E2": 2, "E4": 4}) == 4
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == {
        "E1": None,
        "E2": 2,
        "E3": None,
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
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={**FILLED, "E2": 22}) == 1
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
        pairs = {**FILLED, "E2": 22, "E4": 4}
        assert write_back(settings=SETTINGS, url=hr_db.url, pairs=pairs) == 2
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
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"E1": 11, "E2": 22, "E3": 3}) == 3
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == {
        "E1": 11,
        "E2": 22,
        "E3": 3,
        "E4": None,
    }


def test_a_row_whose_link_is_gone_is_cleared_in_either_kind_of_column(hr_db) -> None:
    """A row the map no longer links loses its id in an integer and in a text column; a NULL,
    blank text or a NULL key is left as it is."""
    metadata = MetaData()
    table = Table(
        "people",
        metadata,
        Column("emp_id", String(20)),
        Column("pid", Integer),
        Column("pid_text", String(20)),
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {"emp_id": "KEEP", "pid": 1, "pid_text": "1"},
                {"emp_id": "GONE", "pid": 2, "pid_text": "2"},
                {"emp_id": "EMPTY", "pid": None, "pid_text": None},
                {"emp_id": "BLANK", "pid": None, "pid_text": "  "},
                {"emp_id": None, "pid": 9, "pid_text": "9"},
            ],
        )
    pairs = {"KEEP": 1}
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs=pairs) == 1
    assert write_back(settings=TEXT_SETTINGS, url=hr_db.url, pairs=pairs) == 1
    with hr_db.engine.connect() as conn:
        stored = {r.emp_id: (r.pid, r.pid_text) for r in conn.execute(select(table))}
    assert stored == {
        "KEEP": (1, "1"),
        "GONE": (None, None),
        "EMPTY": (None, None),
        "BLANK": (None, "  "),
        None: (9, "9"),
    }
    assert write_back(settings=TEXT_SETTINGS, url=hr_db.url, pairs=pairs) == 0


def test_an_empty_map_clears_every_row_that_holds_an_id(hr_db) -> None:
    """With no employee linked (a first sync rolled back), every row holding an id is cleared."""
    table = _people(hr_db)
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={}) == 3
    assert {k: v[0] for k, v in _stored(hr_db, table).items()} == dict.fromkeys(
        ("E1", "E2", "E3", "E4")
    )
    assert write_back(settings=SETTINGS, url=hr_db.url, pairs={}) == 0


def test_a_key_column_that_holds_no_linked_id_is_not_cleared(hr_db, caplog) -> None:
    """When not one key of the table is a linked HR id, the key column is taken for a wrong
    setting: nothing is cleared and a warning names IDSYNC_HR__WRITEBACK_ID_COLUMN."""
    table = _people(hr_db)
    before = _stored(hr_db, table)
    with caplog.at_level(logging.WARNING, logger="sync.hr._writeback"):
        assert write_back(settings=SETTINGS, url=hr_db.url, pairs={"X1": 1, "X2": 2}) == 0
    assert _stored(hr_db, table) == before
    assert "hr.write_back_no_key_matched" in caplog.text
    assert "IDSYNC_HR__WRITEBACK_ID_COLUMN" in caplog.text


def _many(hr_db: Any, n: int) -> Table:
    """``staff``: ``n`` rows ``S00000``..., an integer target, all NULL."""
    metadata = MetaData()
    table = Table(
        "staff", metadata, Column("emp_id", String(20), primary_key=True), Column("pid", Integer)
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(insert(table), [{"emp_id": f"S{i:05d}", "pid": None} for i in range(n)])
    return table


STAFF = HRSettings(
    table="staff", id_column="emp_id", writeback_table="staff", writeback_column="pid"
)


class _Statements:
    """The UPDATE, INSERT and DELETE statements every engine sends while listening."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"UPDATE", "INSERT", "DELETE"}:
            self.sent.append(statement)

    def __enter__(self) -> Self:
        event.listen(Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self)


def test_a_no_change_write_back_of_10000_rows_writes_nothing(hr_db) -> None:
    """At 10,000 rows a repeat touches no row and sends no write statement; a change of 200 rows
    (100 re-pointed, 100 unlinked) writes exactly those 200."""
    n = 10_000
    table = _many(hr_db, n)
    pairs = {f"S{i:05d}": 100_000 + i for i in range(n)}
    assert write_back(settings=STAFF, url=hr_db.url, pairs=pairs) == n
    with _Statements() as statements:
        assert write_back(settings=STAFF, url=hr_db.url, pairs=pairs) == 0
    assert statements.sent == []
    for i in range(100):
        pairs[f"S{i:05d}"] = 900_000 + i  # re-pointed
        del pairs[f"S{n - 1 - i:05d}"]  # unlinked (terminated, ignored, rolled back)
    assert write_back(settings=STAFF, url=hr_db.url, pairs=pairs) == 200
    with hr_db.engine.connect() as conn:
        stored = dict(conn.execute(select(table.c.emp_id, table.c.pid)).tuples().all())
    assert stored == {f"S{i:05d}": pairs.get(f"S{i:05d}") for i in range(n)}
    with _Statements() as statements:
        assert write_back(settings=STAFF, url=hr_db.url, pairs=pairs) == 0
    assert statements.sent == []


def test_changes_go_in_chunks_of_bulk_statements(hr_db, monkeypatch) -> None:
    """Writes and clears are sent a chunk at a time, each chunk one bulk statement (PostgreSQL:
    one UPDATE per chunk; MariaDB: one staged INSERT per chunk, then one UPDATE; SQLite: one
    executemany per chunk), and every row ends as the map says."""
    for name in ("_UNNEST_BATCH", "_ROW_BATCH", "_LOAD_BATCH"):
        monkeypatch.setattr(_writeback, name, 7)
    n = 50
    table = _many(hr_db, n)
    with hr_db.engine.begin() as conn:
        conn.execute(table.update().where(table.c.emp_id < "S00020").values(pid=1))
    pairs = {f"S{i:05d}": i for i in range(20, n)}  # 30 written, 20 cleared: 50 changes
    with _Statements() as statements:
        assert write_back(settings=STAFF, url=hr_db.url, pairs=pairs) == n
    chunks = -(-n // 7)
    if hr_db.dialect in STAGED:
        inserts = [s for s in statements.sent if s.lstrip().upper().startswith("INSERT")]
        updates = [s for s in statements.sent if s.lstrip().upper().startswith("UPDATE")]
        assert (len(inserts), len(updates)) == (chunks, 1)
    else:
        assert len(statements.sent) == chunks
    with hr_db.engine.connect() as conn:
        stored = dict(conn.execute(select(table.c.emp_id, table.c.pid)).tuples().all())
    assert stored == {f"S{i:05d}": pairs.get(f"S{i:05d}") for i in range(n)}
