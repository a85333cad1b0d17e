"""PostgreSQL as the state database: a bounded pool, bounded statements, advisory locks.

``pool_pre_ping`` (a replica survives a database restart), a bounded pool, connections recycled
every 30 minutes, an ``application_name`` for ``pg_stat_activity``. With psycopg every statement
is bounded twice: by the server (``statement_timeout``) and by the client, which gives up on a
connection silent past the bound (:mod:`sync.state._watchdog`).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    Column,
    Connection,
    Engine,
    Table,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
    update,
)

from sync.errors import StateError
from sync.state._dialect import CONNECT_TIMEOUT_SECONDS, Dialect, binder, check_ids
from sync.state._watchdog import WATCHDOG

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sqlalchemy.engine import URL

# The client waits this much longer than the server's statement_timeout before it gives up.
_CLIENT_MARGIN_SECONDS = 5.0
# Where a connection's record keeps its client-side bound (see PostgreSQL.engine).
_BOUND_KEY = "idsync_statement_bound"
MIGRATION_LOCK_NAME = "migrate"


class PostgreSQL(Dialect):
    """PostgreSQL (psycopg 3 is the driver idsync tunes for)."""

    name = "postgresql"
    advisory_locks = True

    def engine(self, url: URL, *, timeout: float) -> Engine:
        connect_args: dict[str, Any] = {}
        psycopg = self.driver == "psycopg"
        if psycopg:
            connect_args = {
                "application_name": "idsync",
                # libpq: the whole connection set-up, authentication included.
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                # A peer that stopped acknowledging (host gone, cable cut) ends the connection:
                # keepalives when it is idle, tcp_user_timeout when data waits for an ACK.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": int(timeout * 1000),
            }
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            pool_timeout=30,
            pool_recycle=1800,
            connect_args=connect_args,
        )
        if psycopg:
            _bound_statements(engine, timeout=timeout)
        return engine

    def allocate_ids(self, conn: Connection, column: Column[Any], count: int) -> list[int] | None:
        sequence = func.pg_get_serial_sequence(column.table.fullname, column.name)
        query = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        return [int(i) for i in conn.execute(query).scalars()]

    def ids_params(self, ids: Sequence[int], size: int) -> dict[str, Any]:
        check_ids(ids, size)
        return {"ids": list(ids)}

    def insert_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[Column[Any]],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        if self.driver != "psycopg":
            super().insert_rows(conn, table, columns, rows)
            return
        # COPY ... FROM STDIN: SQLAlchemy compiling a dict per row costs about 30 µs a row.
        bound = binder(conn, columns)
        preparer = conn.dialect.identifier_preparer
        names = ", ".join(preparer.quote(c.name) for c in columns)
        target = preparer.format_table(table)
        raw = conn.connection.driver_connection
        if raw is None:  # pragma: no cover - a closed connection
            raise StateError("the state database connection is closed")
        limit = conn.connection.info.get(_BOUND_KEY)
        # COPY runs on the driver's cursor, outside the engine's cursor events: bounded here.
        if limit is not None:
            WATCHDOG.begin(raw, limit)
        try:
            with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(bound(row))
        finally:
            if limit is not None:
                WATCHDOG.end(raw)

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
        # One UPDATE ... FROM unnest(...) of one array per column, cast to the columns' own
        # types: psycopg's executemany costs about 30 µs of CPU a row.
        if not rows:
            return
        constants = constants or {}
        targets = [key, *columns]
        arrays = [
            cast(bindparam(f"a{i}", [row[i] for row in rows], type_=ARRAY(c.type)), ARRAY(c.type))
            for i, c in enumerate(targets)
        ]
        names = [f"c{i}" for i in range(len(targets))]
        source = func.unnest(*arrays).table_valued(*names).render_derived(name="source")
        values: dict[Any, Any] = {c: source.c[f"c{i + 1}"] for i, c in enumerate(columns)}
        values.update({table.c[name]: value for name, value in constants.items()})
        matches = [table.c[name] == value for name, value in (scope or {}).items()]
        conn.execute(update(table).where(key == source.c.c0, *matches).values(values))

    @contextmanager
    def migration_transaction(self, conn: Connection) -> Iterator[Connection]:
        with conn.begin():
            key = advisory_key(conn, MIGRATION_LOCK_NAME)
            conn.execute(select(func.pg_advisory_xact_lock(key)))
            yield conn


def advisory_key(conn: Connection, name: str) -> int:
    """The signed 64-bit advisory lock key for ``name`` in the connection's schema."""
    schema = conn.execute(select(func.current_schema())).scalar_one()
    digest = hashlib.blake2b(f"idsync:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _bound_statements(engine: Engine, *, timeout: float) -> None:
    """Bound every statement on ``engine``: by the server, and by the client a little later."""
    bound = timeout + _CLIENT_MARGIN_SECONDS

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # For statements run on the driver's own cursor (insert_rows' COPY), outside the events.
        record.info[_BOUND_KEY] = bound
        # The server ends a statement it runs for longer than the bound (a lock wait, a slow
        # plan); committed, since a SET rolled back is undone.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(timeout * 1000)}")
        dbapi_connection.commit()

    # The client gives up on a connection silent past the bound (sync/state/_watchdog.py).
    @event.listens_for(engine, "before_cursor_execute")
    def _begin(_conn: Any, cursor: Any, *_args: Any) -> None:
        WATCHDOG.begin(cursor.connection, bound)

    @event.listens_for(engine, "after_cursor_execute")
    def _end(_conn: Any, cursor: Any, *_args: Any) -> None:
        WATCHDOG.end(cursor.connection)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        cursor = getattr(context, "cursor", None)  # absent when the connect itself failed
        if cursor is not None:
            WATCHDOG.end(cursor.connection)
            return
        conn = getattr(context, "connection", None)
        # The private attribute: the public one would reconnect an invalidated connection.
        fairy = getattr(conn, "_dbapi_connection", None) if conn is not None else None
        dbapi = getattr(fairy, "dbapi_connection", None) if fairy is not None else None
        if dbapi is not None:
            WATCHDOG.end(dbapi)

    ping = engine.dialect.do_ping

    def _bounded_ping(dbapi_connection: Any) -> bool:
        # The pool's pre-ping runs outside the cursor events: a pooled connection gone silent
        # would block the checkout for ever.
        WATCHDOG.begin(dbapi_connection, CONNECT_TIMEOUT_SECONDS)
        try:
            return bool(ping(dbapi_connection))
        finally:
            WATCHDOG.end(dbapi_connection)

    engine.dialect.do_ping = _bounded_ping  # type: ignore[method-assign]
