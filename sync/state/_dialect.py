"""What differs per database, asked of one object chosen once from the URL (Prefect's pattern).

:class:`Dialect` is the behaviour of a database with nothing special (SQLAlchemy's executemany,
a plain transaction for migrations, the run lock as a lease row); :class:`~sync.state._sqlite.
SQLite`, :class:`~sync.state._postgresql.PostgreSQL` and :class:`MySQL` override what their
database does better or needs. :func:`~sync.state._database.open_database` picks one; the store,
the run lock and the migrations ask it, never the dialect's name.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

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
    create_engine,
    insert,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from sqlalchemy.engine import URL
    from sqlalchemy.sql.compiler import SQLCompiler

CONNECT_TIMEOUT_SECONDS = 10


class Dialect:
    """A database idsync has nothing special for: pool pre-ping and recycling, SQLAlchemy's own
    statements, the run lock as a lease row (``run_lock``)."""

    name: ClassVar[str] = "generic"
    # Whether the run lock is a server advisory lock rather than a lease row.
    advisory_locks: ClassVar[bool] = False

    def __init__(self, *, driver: str) -> None:
        # The DBAPI driver of the URL (``psycopg``, ``pymysql``...): some tuning is per driver.
        self.driver = driver

    def engine(self, url: URL, *, timeout: float) -> Engine:
        """A new engine on ``url``; ``timeout`` bounds each statement where the driver can."""
        del timeout  # no bound this dialect knows how to set
        return create_engine(url, pool_pre_ping=True, pool_recycle=3600)

    def writer(self, conn: Connection) -> Connection:
        """``conn`` set up for a transaction that will write (SQLite: ``BEGIN IMMEDIATE``)."""
        return conn

    def missing_file(self, url: URL) -> str | None:
        """The path of a database file connecting would create; only SQLite has one."""
        del url
        return None

    def allocate_ids(self, conn: Connection, column: Column[Any], count: int) -> list[int] | None:
        """``count`` new values of an autoincrement primary key, for rows this writer transaction
        inserts with them; None where there is no cheap way (insert with RETURNING instead).

        With the ids known beforehand the rows go in as one plain executemany (RETURNING in
        order costs a statement per row on SQLite, a sorted INSERT ... SELECT on PostgreSQL).
        """
        del conn, column, count
        return None

    def ids_params(self, ids: Sequence[int], size: int) -> dict[str, Any]:
        """The parameters of an :class:`IdsIn` of ``size`` for 1 to ``size`` ids."""
        check_ids(ids, size)
        # The last id repeated to fill the list: IN does not care.
        padded = [*ids, *[ids[-1]] * (size - len(ids))]
        return {f"id_{k}": value for k, value in enumerate(padded)}

    def insert_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[Column[Any]],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` (plain tuples, one value per column of ``columns``) into ``table``.

        The bulk insert of many rows whose ids are known (:meth:`allocate_ids`); column types'
        bind conversions (UTCDateTime) apply whichever way the rows go in.
        """
        keys = [c.key for c in columns]
        conn.execute(insert(table), [dict(zip(keys, row, strict=True)) for row in rows])

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
        """Set ``columns`` of the row of each ``(key value, *values)`` in ``rows``, and
        ``constants`` (column name -> one value for every row) with them; ``scope`` (column
        name -> value) narrows every row's match further (the sync whose row it is)."""
        if not rows:
            return
        constants = constants or {}
        scope = scope or {}
        statement = (
            update(table)
            .where(key == bindparam("k_key"))
            .where(*(table.c[name] == bindparam(f"s_{name}") for name in scope))
            .values({c: bindparam(f"v_{c.key}") for c in columns})
            .values({table.c[name]: bindparam(f"k_{name}") for name in constants})
        )
        fixed = {f"k_{name}": value for name, value in constants.items()}
        fixed.update({f"s_{name}": value for name, value in scope.items()})
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
    def migration_transaction(self, conn: Connection) -> Iterator[Connection]:
        """One transaction for a whole migration, exclusive against other migrating processes."""
        with conn.begin():
            yield conn

    def alembic_options(self) -> dict[str, Any]:
        """Options of Alembic's ``context.configure`` for this database."""
        return {}


class MySQL(Dialect):
    """MySQL and MariaDB: with PyMySQL, its own socket timeouts bound each read and write."""

    name = "mysql"

    def engine(self, url: URL, *, timeout: float) -> Engine:
        if self.driver != "pymysql":
            return super().engine(url, timeout=timeout)
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_recycle=3600,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "read_timeout": timeout,
                "write_timeout": timeout,
            },
        )


def check_ids(ids: Sequence[int], size: int) -> None:
    if not ids or len(ids) > size:
        raise ValueError(f"between 1 and {size} ids, not {len(ids)}")


class IdsIn(ColumnElement[bool]):
    """``column`` is one of a batch of up to ``size`` ids, passed by :meth:`Dialect.ids_params`.

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


def binder(
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
