"""One engine factory per dialect for the state database, in the style of Prefect's database layer.

Every dialect branch of the state layer lives in this module — the engine factories, the kind of
run lock (:func:`uses_advisory_locks`), the migration transaction and the bulk inserts
(:func:`allocate_ids`, :func:`insert_rows`, :func:`update_rows`) — so the store, the lock and the migrations never ask
which database they talk to:

* **SQLite** — every connection gets ``busy_timeout`` (set first, so the other pragmas wait for a
  busy file instead of failing), ``journal_mode=WAL`` (readers never block the writer; see
  :func:`_ensure_wal` for two processes switching a new file at once),
  ``synchronous=NORMAL`` (safe with WAL) and ``foreign_keys=ON``. pysqlite's own transaction
  handling is switched off and SQLAlchemy's ``begin`` event emits ``BEGIN`` itself — the recipe of
  the SQLAlchemy pysqlite documentation ("Serializable isolation / Savepoints / Transactional DDL").
  A connection carrying the execution option ``sqlite_begin_mode="IMMEDIATE"`` (see
  :func:`write_transaction`) begins with ``BEGIN IMMEDIATE``: a writer takes the write lock when
  its transaction starts, so two writers queue on ``busy_timeout`` instead of one failing with
  "database is locked" when it upgrades a read lock half-way through.
  An in-memory SQLite URL gives each thread its own empty database (SQLAlchemy's per-thread pool),
  so the lock heartbeat and worker threads would not see the schema: use a file, even in tests.
* **PostgreSQL** — ``pool_pre_ping`` (a replica survives a database restart), a bounded pool,
  connections recycled every 30 minutes, an ``application_name`` for ``pg_stat_activity``.
* **anything else** — ``pool_pre_ping`` and recycling only.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from sync.config import driver_hint
from sync.errors import ConfigError, StateError
from sync.state._watchdog import WATCHDOG

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from sqlalchemy.sql.compiler import SQLCompiler

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
# The longest one state-database statement may take (IDSYNC_STATE_TIMEOUT_SECONDS).
DEFAULT_STATE_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10
# The client waits this much longer than the server's statement_timeout before it gives up.
_CLIENT_MARGIN_SECONDS = 5.0
_BEGIN_MODE = "sqlite_begin_mode"
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
# Where a PostgreSQL connection's record keeps its client-side bound (see _postgresql_engine).
_BOUND_KEY = "idsync_statement_bound"


def create_state_engine(url: str, *, timeout: float = DEFAULT_STATE_TIMEOUT_SECONDS) -> Engine:
    """An :class:`~sqlalchemy.Engine` for the state database, tuned for its dialect.

    ``timeout`` bounds every statement (``IDSYNC_STATE_TIMEOUT_SECONDS``; see
    docs/operations.md, "Bounds"). Raises :class:`~sync.errors.ConfigError` (naming
    ``IDSYNC_DATABASE_URL``, never the URL itself, which may hold a password) when the URL cannot
    be parsed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "IDSYNC_DATABASE_URL is not a database URL SQLAlchemy understands"
        ) from None
    try:
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        if backend == "postgresql":
            return _postgresql_engine(parsed, timeout=timeout)
        if backend in {"mysql", "mariadb"} and parsed.get_driver_name() == "pymysql":
            # PyMySQL's own socket timeouts bound every read and write of a statement.
            return create_engine(
                parsed,
                pool_pre_ping=True,
                pool_recycle=3600,
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "read_timeout": timeout,
                    "write_timeout": timeout,
                },
            )
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
    except (ArgumentError, ImportError) as exc:
        # An unknown dialect (NoSuchModuleError is an ArgumentError), a driver not installed,
        # or a URL option the dialect refuses: a configuration error, said in one line.
        hint = driver_hint(url) if isinstance(exc, ImportError) else ""
        raise ConfigError(
            f"IDSYNC_DATABASE_URL: cannot use {parsed.render_as_string(hide_password=True)}: "
            f"{describe_error(exc, url=parsed)}{hint}"
        ) from None


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url,
        # pysqlite's own busy wait; the PRAGMA below covers connections made by other means.
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own BEGIN; pysqlite's implicit BEGIN is deferred
        # and skipped before DDL, which breaks both write locking and transactional DDL.
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


def _postgresql_engine(url: URL, *, timeout: float) -> Engine:
    connect_args: dict[str, Any] = {}
    psycopg = url.get_driver_name() == "psycopg"
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
    if not psycopg:
        return engine
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
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a writer transaction, committed on success and rolled back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``; elsewhere the option is inert.
    """
    with engine.connect() as conn:
        writer = conn.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})
        with writer.begin():
            yield writer


def immediate(conn: Connection) -> Connection:
    """``conn`` with writer begin mode; for callers that manage the transaction themselves."""
    return conn.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})


def describe_error(exc: BaseException, *, url: URL | str | None = None) -> str:
    """One line about a database error, fit for a user: the driver's message, no SQL, no password.

    SQLAlchemy's own text appends the statement and its parameters; the driver's first line says
    what went wrong. The URL's password is blanked out should a driver ever echo it.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    password = None
    if url is not None:
        try:
            password = make_url(url).password if isinstance(url, str) else url.password
        except ArgumentError:
            password = None
    if password:
        line = line.replace(str(password), "***")
    return line


# ---------------------------------------------------------------- dialect-specific behaviour
# The only places outside the engine factories that differ per dialect: the run lock's kind, the
# migration transaction, how ids are allocated for a bulk insert and how its rows go in. Callers ask these
# functions, never the dialect's name.

MIGRATION_LOCK_NAME = "migrate"


def uses_advisory_locks(engine: Engine) -> bool:
    """Whether the run lock is a server advisory lock (PostgreSQL) rather than a lease row."""
    return engine.dialect.name == "postgresql"


def advisory_key(conn: Connection, name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key for ``name`` in the connection's schema."""
    schema = conn.execute(select(func.current_schema())).scalar_one()
    digest = hashlib.blake2b(f"idsync:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def allocate_ids(conn: Connection, column: Column[Any], count: int) -> list[int] | None:
    """``count`` new values of an autoincrement primary key, for rows this writer transaction
    inserts with them; None where the dialect has no cheap way (insert with RETURNING instead).

    Inserting many rows with RETURNING in their order costs one statement per row on SQLite and
    a sorted INSERT ... SELECT per page on PostgreSQL; with the ids known beforehand the rows go
    in as one plain executemany.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # The writer transaction (BEGIN IMMEDIATE) holds the file's write lock until it ends, so
        # no other insert takes these ids; SQLite itself would give max(rowid) + 1 too.
        top = conn.execute(select(func.max(column))).scalar()
        start = int(top or 0) + 1
        return list(range(start, start + count))
    if dialect == "postgresql":
        sequence = func.pg_get_serial_sequence(column.table.fullname, column.name)
        query = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        return [int(i) for i in conn.execute(query).scalars()]
    return None


class IdsIn(ColumnElement[bool]):
    """``column`` is one of a batch of up to ``size`` ids, passed by :func:`ids_params`.

    For the statements run once per batch of outcomes, compiled once (the cache key below):
    PostgreSQL gets ``column = ANY(:ids)``, one array parameter (psycopg parses a query again at
    every execution past 50 parameters); elsewhere a fixed ``IN`` list of ``size`` parameters,
    where an expanding ``IN`` would be rendered again at every execution (~10 µs an id).
    """

    type = Boolean()
    # A comparison, not a boolean column: without this, a backend with no native boolean (SQLite,
    # MariaDB) gets ``(id IN (...)) = 1`` in a WHERE, which no index serves, so every batch
    # scanned the whole events table (record_outcomes at 250,000 on SQLite: 54 s).
    _is_implicitly_boolean = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's cache key declaration
        ("column", InternalTraversal.dp_clauseelement),
        ("size", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, column: ColumnElement[Any], size: int) -> None:
        self.column = column
        self.size = size


@compiles(IdsIn)
def _ids_in_list(element: IdsIn, compiler: SQLCompiler, **kw: Any) -> str:
    slots = [bindparam(f"id_{k}", type_=element.column.type) for k in range(element.size)]
    return compiler.process(element.column.in_(slots), **kw)


@compiles(IdsIn, "postgresql")
def _ids_any(element: IdsIn, compiler: SQLCompiler, **kw: Any) -> str:
    ids = bindparam("ids", type_=ARRAY(element.column.type))
    return compiler.process(element.column == any_(ids), **kw)


def ids_params(conn: Connection, ids: Sequence[int], size: int) -> dict[str, Any]:
    """The parameters of an :class:`IdsIn` of ``size`` for 1 to ``size`` ids."""
    if not ids or len(ids) > size:
        raise ValueError(f"between 1 and {size} ids, not {len(ids)}")
    if conn.dialect.name == "postgresql":
        return {"ids": list(ids)}
    # The last id repeated to fill the list: IN does not care.
    padded = [*ids, *[ids[-1]] * (size - len(ids))]
    return {f"id_{k}": value for k, value in enumerate(padded)}


def _binder(
    conn: Connection, columns: Sequence[Column[Any]]
) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """A row's values converted by their columns' bind processors, as SQLAlchemy would."""
    # The dialect's own implementation of each type, as SQLAlchemy binds it: a TypeDecorator's
    # generic impl (DateTime) has no processor of its own, SQLite's DATETIME has.
    processors = [c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for c in columns]
    converted = [i for i, p in enumerate(processors) if p is not None]

    # The last value converted per column and its result: a bulk's rows share their timestamp,
    # whose conversion (to UTC, then SQLite's text) would cost a few µs a row.
    last: dict[int, tuple[Any, Any]] = {}

    def bound(row: Sequence[Any]) -> Sequence[Any]:
        if not converted:
            return row
        values = list(row)
        for i in converted:
            value = values[i]
            previous = last.get(i)
            if previous is not None and previous[0] is value:
                values[i] = previous[1]
                continue
            values[i] = processors[i](value)  # type: ignore[misc]
            last[i] = (value, values[i])
        return values

    return bound


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[Column[Any]], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert ``rows`` (plain tuples, one value per column of ``columns``) into ``table``.

    The bulk insert of many rows whose ids are known (see :func:`allocate_ids`), without
    SQLAlchemy compiling a dict per row (about 30 µs of CPU a row): PostgreSQL (psycopg) loads
    them with ``COPY ... FROM STDIN``, SQLite with the driver's executemany of tuples; other
    databases get SQLAlchemy's executemany. Column types' bind conversions (UTCDateTime) apply
    as they would through SQLAlchemy, so the rows are the same whichever way they went in.
    """
    bound = _binder(conn, columns)
    dialect = conn.dialect.name
    driver = conn.dialect.driver
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c.name) for c in columns)
    target = preparer.format_table(table)
    if dialect == "postgresql" and driver == "psycopg":
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
        return
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        # Identifiers of our own tables, quoted by the dialect; every value is a parameter.
        statement = f"INSERT INTO {target} ({names}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(statement, [tuple(bound(r)) for r in rows])
        return
    keys = [c.key for c in columns]
    conn.execute(insert(table), [dict(zip(keys, row, strict=True)) for row in rows])


def update_rows(
    conn: Connection,
    table: Table,
    key: Column[Any],
    columns: Sequence[Column[Any]],
    rows: Sequence[Sequence[Any]],
    *,
    constants: dict[str, Any] | None = None,
) -> None:
    """Set ``columns`` of the row of each ``(key value, *values)`` in ``rows``, and ``constants``
    (column name -> one value for every row) with them.

    PostgreSQL gets one ``UPDATE ... FROM unnest(...)`` of one array per column, cast to the
    columns' own types (psycopg's executemany costs about 30 µs of CPU a row); SQLite the
    driver's executemany of plain tuples; others SQLAlchemy's executemany. Bind conversions
    apply as they would through SQLAlchemy.
    """
    if not rows:
        return
    constants = constants or {}
    if conn.dialect.name == "postgresql":
        targets = [key, *columns]
        arrays = [
            cast(bindparam(f"a{i}", [row[i] for row in rows], type_=ARRAY(c.type)), ARRAY(c.type))
            for i, c in enumerate(targets)
        ]
        names = [f"c{i}" for i in range(len(targets))]
        source = func.unnest(*arrays).table_valued(*names).render_derived(name="source")
        values: dict[Any, Any] = {c: source.c[f"c{i + 1}"] for i, c in enumerate(columns)}
        values.update({table.c[name]: value for name, value in constants.items()})
        conn.execute(update(table).where(key == source.c.c0).values(values))
        return
    if conn.dialect.name == "sqlite":
        preparer = conn.dialect.identifier_preparer
        fixed_columns = [table.c[name] for name in constants]
        sets = ", ".join(f"{preparer.quote(c.name)} = ?" for c in [*columns, *fixed_columns])
        # Identifiers of our own tables, quoted by the dialect; every value is a parameter.
        statement_text = (
            f"UPDATE {preparer.format_table(table)} SET {sets}"  # noqa: S608
            f" WHERE {preparer.quote(key.name)} = ?"
        )
        bound = _binder(conn, [*columns, *fixed_columns, key])
        tail = list(constants.values())
        conn.exec_driver_sql(
            statement_text, [tuple(bound([*row[1:], *tail, row[0]])) for row in rows]
        )
        return
    statement = (
        update(table)
        .where(key == bindparam("k_key"))
        .values({c: bindparam(f"v_{c.key}") for c in columns})
        .values({table.c[name]: bindparam(f"k_{name}") for name in constants})
    )
    fixed = {f"k_{name}": value for name, value in constants.items()}
    conn.execute(
        statement,
        [
            {
                "k_key": row[0],
                **fixed,
                **{f"v_{c.key}": v for c, v in zip(columns, row[1:], strict=True)},
            }
            for row in rows
        ],
    )


@contextmanager
def migration_transaction(conn: Connection) -> Iterator[Connection]:
    """One transaction for a whole migration, exclusive against other migrating processes."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # Batch migrations rebuild tables; SQLite only lets foreign keys be switched off outside
        # a transaction, hence the raw driver connection (autocommit under the begin recipe).
        raw = conn.connection.driver_connection
        if raw is None:  # pragma: no cover - a closed connection
            raise StateError("the state database connection is closed")
        raw.execute("PRAGMA foreign_keys = OFF")
        try:
            writer = immediate(conn)
            with writer.begin():
                yield writer
                problems = writer.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise StateError(f"migration broke foreign keys: {problems[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys = ON")
    elif dialect == "postgresql":
        with conn.begin():
            key = advisory_key(conn, MIGRATION_LOCK_NAME)
            conn.execute(select(func.pg_advisory_xact_lock(key)))
            yield conn
    else:
        with conn.begin():
            yield conn
