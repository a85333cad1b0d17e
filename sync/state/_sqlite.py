"""SQLite as the state database: one file, WAL, and writers that queue instead of failing.

Every connection gets ``busy_timeout`` (set first, so the other pragmas wait for a busy file
instead of failing), ``journal_mode=WAL`` (readers never block the writer; see :func:`_ensure_wal`
for two processes switching a new file at once), ``synchronous=NORMAL`` (safe with WAL) and
``foreign_keys=ON``. pysqlite's own transaction handling is switched off and SQLAlchemy's
``begin`` event emits ``BEGIN`` itself — the recipe of the SQLAlchemy pysqlite documentation
("Serializable isolation / Savepoints / Transactional DDL"). A connection from
:meth:`SQLite.writer` begins with ``BEGIN IMMEDIATE``: a writer takes the write lock when its
transaction starts, so two writers queue on ``busy_timeout`` instead of one failing with
"database is locked" when it upgrades a read lock half-way through.

An in-memory SQLite URL gives each thread its own empty database (SQLAlchemy's per-thread pool),
so the lock heartbeat and worker threads would not see the schema: use a file, even in tests.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Engine, Table, create_engine, event, func, select

from sync.errors import StateError
from sync.state._dialect import Dialect, binder

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sqlalchemy.engine import URL

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
_BEGIN_MODE = "sqlite_begin_mode"
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


class SQLite(Dialect):
    """A SQLite file (``sqlite:///path``)."""

    name = "sqlite"

    def engine(self, url: URL, *, timeout: float) -> Engine:
        # busy_timeout, not the statement bound, is what a SQLite statement waits for.
        del timeout
        engine = create_engine(
            url,
            # pysqlite's own busy wait; the PRAGMA below covers connections made by other means.
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below own BEGIN; pysqlite's implicit BEGIN is
            # deferred and skipped before DDL, which breaks both write locking and transactional
            # DDL.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
                if not in_memory:
                    _ensure_wal(cursor)
                    cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get(_BEGIN_MODE)
            if mode is None:
                connection.exec_driver_sql("BEGIN")
                return
            if mode not in _BEGIN_MODES:
                raise ValueError(f"unknown {_BEGIN_MODE} {mode!r}")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def writer(self, conn: Connection) -> Connection:
        return conn.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})

    def missing_file(self, url: URL) -> str | None:
        database = url.database or ""
        if (
            database not in ("", ":memory:")
            and not database.startswith("file:")
            and url.query.get("mode") != "memory"
            and not Path(database).exists()
            # A missing folder fails to connect on its own ("unreachable"); only a missing file
            # in an existing folder would be created by connecting.
            and Path(database).parent.is_dir()
        ):
            return database
        return None

    def allocate_ids(self, conn: Connection, column: Column[Any], count: int) -> list[int] | None:
        # The writer transaction (BEGIN IMMEDIATE) holds the file's write lock until it ends, so
        # no other insert takes these ids; SQLite itself would give max(rowid) + 1 too.
        top = conn.execute(select(func.max(column))).scalar()
        start = int(top or 0) + 1
        return list(range(start, start + count))

    def insert_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[Column[Any]],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        # The driver's executemany of plain tuples: SQLAlchemy compiling a dict per row costs
        # about 30 µs of CPU a row.
        bound = binder(conn, columns)
        preparer = conn.dialect.identifier_preparer
        names = ", ".join(preparer.quote(c.name) for c in columns)
        marks = ", ".join("?" for _ in columns)
        # Identifiers of our own tables, quoted by the dialect; every value is a parameter.
        statement = f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(statement, [tuple(bound(r)) for r in rows])

    def update_rows(
        self,
        conn: Connection,
        table: Table,
        key: Column[Any],
        columns: Sequence[Column[Any]],
        rows: Sequence[Sequence[Any]],
        *,
        constants: dict[str, Any] | None = None,
        scope: dict[str, Any] | None = None,
    ) -> None:
        if not rows:
            return
        constants = constants or {}
        scope = scope or {}
        preparer = conn.dialect.identifier_preparer
        fixed_columns = [table.c[name] for name in constants]
        scope_columns = [table.c[name] for name in scope]
        sets = ", ".join(f"{preparer.quote(c.name)} = ?" for c in [*columns, *fixed_columns])
        matches = " AND ".join(f"{preparer.quote(c.name)} = ?" for c in [key, *scope_columns])
        # Identifiers of our own tables, quoted by the dialect; every value is a parameter.
        statement_text = f"UPDATE {preparer.format_table(table)} SET {sets} WHERE {matches}"  # noqa: S608
        bound = binder(conn, [*columns, *fixed_columns, key, *scope_columns])
        tail = list(constants.values())
        scoped = list(scope.values())
        conn.exec_driver_sql(
            statement_text, [tuple(bound([*row[1:], *tail, row[0], *scoped])) for row in rows]
        )

    @contextmanager
    def migration_transaction(self, conn: Connection) -> Iterator[Connection]:
        # Batch migrations rebuild tables; SQLite only lets foreign keys be switched off outside
        # a transaction, hence the raw driver connection (autocommit under the begin recipe).
        raw = conn.connection.driver_connection
        if raw is None:  # pragma: no cover - a closed connection
            raise StateError("the state database connection is closed")
        raw.execute("PRAGMA foreign_keys = OFF")
        try:
            writer = self.writer(conn)
            with writer.begin():
                yield writer
                problems = writer.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise StateError(f"migration broke foreign keys: {problems[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys = ON")

    def alembic_options(self) -> dict[str, Any]:
        # Batch mode rebuilds tables (SQLite's ALTER is narrow); the engine's begin recipe makes
        # SQLite DDL transactional: one migration, one transaction.
        return {"render_as_batch": True, "transactional_ddl": True}


def _ensure_wal(cursor: Any) -> None:
    """Switch the database file to WAL once, safely when another process does the same.

    The switch reads the file header, then upgrades that read transaction to a write one, and
    SQLite never runs the busy handler for such an upgrade (it could deadlock): when two processes
    open a new state database at the same moment (two replicas starting, or a migration next to
    a CLI command), the loser got "database is locked" at once, whatever ``busy_timeout`` said.
    So: nothing to do when the file is in WAL already (it stays so); otherwise try, and on that
    immediate "locked" look again after a short pause, within the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    pause = 0.005
    while True:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        else:
            return  # WAL now, or a file system without WAL support: the answer stands
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
