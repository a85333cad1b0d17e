from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import make_url

from sync.errors import ConfigError
from sync.state import _events, _outcomes, describe_error, open_database
from sync.state._database import dialect_for
from sync.state._dialect import Dialect, MySQL
from sync.state._migrate import upgrade
from sync.state._postgresql import PostgreSQL
from sync.state._sqlite import SQLite

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.sql.expression import ClauseElement


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    """Every SQLite connection runs with WAL, foreign keys on and a busy timeout."""
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000
    db.dispose()


def test_sqlite_writer_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    """A writer transaction (Database.write) holds SQLite's write lock from BEGIN, before it writes anything."""
    path = tmp_path / "s.db"
    db = open_database(f"sqlite:///{path}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with db.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once the writer committed
        other.execute("ROLLBACK")
        with db.engine.connect() as reader:  # a plain (deferred) transaction takes no write lock
            reader.execute(text("SELECT count(*) FROM t")).scalar_one()
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()


def test_sqlite_ddl_is_transactional(tmp_path: Path) -> None:
    """With the begin recipe a rolled-back CREATE TABLE leaves nothing behind."""
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    with db.engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.rollback()
        assert (
            conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 't'")).scalar_one()
            == 0
        )
    db.dispose()


def test_postgresql_engine_has_pool_pre_ping(postgres_url: str) -> None:
    """The PostgreSQL engine pings pooled connections and names itself in pg_stat_activity."""
    db = open_database(postgres_url)
    assert db.engine.pool._pre_ping  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        assert conn.execute(text("SHOW application_name")).scalar_one() == "idsync"
    db.dispose()


def test_bad_url_names_the_variable_not_the_url() -> None:
    """An unparseable URL is a ConfigError naming IDSYNC_DATABASE_URL, without echoing it."""
    with pytest.raises(ConfigError, match="IDSYNC_DATABASE_URL") as info:
        open_database("not a url with s3cr3t")
    assert "s3cr3t" not in str(info.value)


def test_error_descriptions_blank_the_password() -> None:
    """describe_error keeps the driver's first line and blanks the URL's password if echoed."""
    error = RuntimeError("login failed for hunter2-pw\nSQL: SELECT 1")
    line = describe_error(error, url="postgresql://u:hunter2-pw@h/db")
    assert line == "login failed for ***"


@pytest.mark.parametrize(
    "statement",
    [_outcomes._WRITTEN, _outcomes._WRITE_EVENTS, _events._CLOSE],
    ids=["written", "read", "close"],
)
def test_outcome_batches_find_their_events_by_primary_key(
    tmp_path: Path, statement: ClauseElement
) -> None:
    """Each per-batch statement finds its events by id on SQLite, never scanning the events table."""
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(db)
    db.dispose()
    compiled = statement.compile(dialect=sqlite.dialect())
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db")) as conn:
        plan = [
            step
            for *_, step in conn.execute(
                f"EXPLAIN QUERY PLAN {compiled}", [1] * str(compiled).count("?")
            )
        ]
    assert plan
    assert not [step for step in plan if step.startswith("SCAN")], plan
    # MariaDB has no native boolean either: the clause must not turn into "(id IN (...)) = 1".
    assert " = 1" not in str(statement.compile(dialect=mysql.dialect()))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///state.db", SQLite),
        ("postgresql+psycopg://u@h/db", PostgreSQL),
        ("mysql+pymysql://u@h/db", MySQL),
        ("mariadb+pymysql://u@h/db", MySQL),
        ("oracle://u@h/db", Dialect),
    ],
)
def test_the_dialect_is_chosen_once_from_the_url(url: str, kind: type[Dialect]) -> None:
    """Each backend's URL gets its own dialect object; any other backend the generic one."""
    assert type(dialect_for(make_url(url))) is kind


def test_the_database_keeps_the_dialect_it_was_opened_with(tmp_path: Path) -> None:
    """open_database pairs the engine with the dialect of its URL: SQLite's here."""
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(db.dialect, SQLite)
    assert not db.dialect.advisory_locks
    assert db.url.get_backend_name() == "sqlite"
    db.dispose()
