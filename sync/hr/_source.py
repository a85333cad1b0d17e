"""The HR database: one streamed read of the configured table or query (the write-back: _writeback).

Any SQLAlchemy URL works (SQLite, PostgreSQL, MariaDB/MySQL, SQL Server with the ``mssql`` extra).
A table is reflected and its columns selected through SQLAlchemy, so identifiers are quoted by the
dialect and no SQL is ever built from strings; a query (``IDSYNC_HR__QUERY``) runs as written and its
result columns are picked by name. The read never commits: its transaction is rolled back, so even
a query with side effects leaves the HR database as it was. Rows are streamed (server-side cursor
where the driver has one) and turned into the snapshot as they arrive.

Errors are :class:`~sync.errors.HRSourceError` naming the setting at fault (``IDSYNC_HR__TABLE``,
``IDSYNC_HR__ID_COLUMN``...) and, for connection trouble, the URL with its password hidden.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Interval,
    LargeBinary,
    MetaData,
    Select,
    Table,
    TextClause,
    Time,
    create_engine,
    inspect,
    null,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import NullType

from sync.config import driver_hint
from sync.contract import MAX_VALUE_LENGTH
from sync.errors import ConfigError, HRConfigError, HRSourceError
from sync.hr._validate import ColumnTypeRefused, SnapshotBuilder, decode_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from sync.config import HRSettings
    from sync.domain import HRSnapshot
    from sync.strings import StringPool

_STREAM_BATCH = 2000
# The values SnapshotBuilder.add takes after the row number, in its order.
_ROLES = ("id", "employee_number", "badge_number", "email", "active")
_PREFIX = "IDSYNC_HR__"


def _setting(name: str) -> str:
    return f"{_PREFIX}{name.upper()}"


def _describe(exc: BaseException, url: URL) -> str:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    line = message.splitlines()[0] if message else type(exc).__name__
    if url.password:
        line = line.replace(str(url.password), "***")
    return line


# A refused login or an unknown database is a setting to change, not an outage: MariaDB/MySQL
# error numbers (access denied to the database, to the user; unknown database) and PostgreSQL
# SQLSTATEs (invalid authorization, invalid password, unknown database).
_LOGIN_REFUSED_CODES = frozenset({1044, 1045, 1049})
_LOGIN_REFUSED_STATES = frozenset({"28000", "28P01", "3D000"})
_LOGIN_REFUSED_WORDS = ("password authentication failed", "does not exist", "access denied")


def _login_refused(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    args = getattr(orig, "args", ())
    if args and args[0] in _LOGIN_REFUSED_CODES:
        return True
    if getattr(orig, "sqlstate", None) in _LOGIN_REFUSED_STATES:
        return True
    message = str(orig).lower()
    return any(words in message for words in _LOGIN_REFUSED_WORDS)


@contextmanager
def _connect(url: str, variable: str = "IDSYNC_HR__URL") -> Iterator[tuple[Connection, URL]]:
    """A connection to the HR database at ``url``; errors name ``variable``, the setting the URL
    comes from (``IDSYNC_DATABASE_URL`` when the HR database is the state database)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{variable} is not a database URL SQLAlchemy understands") from None
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    # SQLite would create an empty file for a mistyped path; say what is wrong instead.
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).is_file()
    ):
        raise HRConfigError(f"the HR database {shown} does not exist ({variable})")
    try:
        engine: Engine = create_engine(parsed, poolclass=NullPool)
    except (ArgumentError, ImportError) as exc:
        hint = driver_hint(url) if isinstance(exc, ImportError) else ""
        raise ConfigError(f"{variable}: cannot use {shown}: {exc}{hint}") from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            error = HRConfigError if _login_refused(exc) else HRSourceError
            raise error(
                f"{variable}: the HR database {shown} could not be reached: {_describe(exc, parsed)}"
            ) from None
        with conn:
            yield conn, parsed
    finally:
        engine.dispose()


def _reflect(conn: Connection, name: str, *, setting: str) -> Table:
    """The table called ``name`` (``schema.table`` accepted), matched case-insensitively if need be."""
    inspector = inspect(conn)
    schema: str | None = None
    table_name = name
    if not inspector.has_table(name) and "." in name:
        schema, table_name = name.rsplit(".", 1)
    if not inspector.has_table(table_name, schema=schema):
        try:
            folded = [
                t
                for t in inspector.get_table_names(schema=schema)
                if t.lower() == table_name.lower()
            ]
        except SQLAlchemyError:
            folded = []
        if len(folded) != 1:
            raise HRConfigError(f"{_setting(setting)}: table {name!r} not found in the HR database")
        table_name = folded[0]
    try:
        return Table(table_name, MetaData(), schema=schema, autoload_with=conn)
    except NoSuchTableError:
        raise HRConfigError(
            f"{_setting(setting)}: table {name!r} not found in the HR database"
        ) from None


def _pick(available: list[str], wanted: str) -> str | None:
    if wanted in available:
        return wanted
    folded = [name for name in available if name.lower() == wanted.lower()]
    return folded[0] if len(folded) == 1 else None


def _configured_columns(settings: HRSettings) -> dict[str, str]:
    """Role -> configured column name, for the columns that are set (the id always is)."""
    roles = {
        "id": settings.id_column,
        "employee_number": settings.employee_number_column,
        "badge_number": settings.badge_number_column,
        "email": settings.email_column,
        "active": settings.active_column,
    }
    return {role: column for role, column in roles.items() if column}


def _resolve(available: list[str], wanted: dict[str, str], *, where: str) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for role, column in wanted.items():
        found = _pick(available, column)
        if found is None:
            shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")  # noqa: PLR2004
            raise HRConfigError(
                f"{_setting(role + '_column')}: column {column!r} is not in {where} "
                f"(columns: {shown})"
            )
        resolved[role] = found
    return resolved


# Column types that never hold an id or a match key: a row with a value there is invalid, and the
# value itself is never fetched (a driver may not even convert it: SQLite DATETIME 'garbage').
_REFUSED_KEY_TYPES = (Date, DateTime, Time, Interval, Boolean, LargeBinary, JSON, ARRAY)
# An active column of these types cannot say yes or no.
_REFUSED_ACTIVE_TYPES = (Date, DateTime, Time, Interval, LargeBinary, JSON, ARRAY)
_REFUSED_KEY_PYTHON = (dt.date, dt.time, dt.timedelta, bool, bytes, dict, list)
_REFUSED_ACTIVE_PYTHON = (dt.date, dt.time, dt.timedelta, bytes, dict, list)
ACTIVE_HINT = (
    "use a column that says yes or no (boolean, 0/1, 'active'/'inactive'), or set "
    "IDSYNC_HR__QUERY with an expression such as `termination_date IS NULL AS active`"
)


def _refused(column: Column[Any], types: tuple[type, ...], python_types: tuple[type, ...]) -> bool:
    # By SQLAlchemy's generic type, or by the Python type a dialect's own type stands for
    # (PostgreSQL's INTERVAL is no sqlalchemy.Interval, but its python_type is timedelta).
    if isinstance(column.type, types):
        return True
    try:
        return issubclass(column.type.python_type, python_types)
    except NotImplementedError:
        return False


def _type_name(column: Column[Any], conn: Connection) -> str:
    try:
        return str(column.type.compile(dialect=conn.dialect))
    except Exception:  # a vendor type without a compiler for this dialect
        return type(column.type).__name__.upper()


def _table_statement(conn: Connection, settings: HRSettings) -> tuple[Select[Any], dict[str, str]]:
    """The SELECT of the configured columns, and the roles whose column type is refused.

    Every column is read raw (no SQLAlchemy result processing): what the driver gives is judged
    per row by :mod:`sync.hr._validate`, so one unconvertible value cannot end the read. A column
    whose type can never be a key is not read at all: only whether it holds a value.
    """
    assert settings.table is not None
    table = _reflect(conn, settings.table, setting="table")
    roles = _resolve(
        list(table.c.keys()), _configured_columns(settings), where=f"table {settings.table!r}"
    )
    refused: dict[str, str] = {}
    selected: list[Any] = []
    for role, name in roles.items():
        column = table.c[name]
        if role == "active":
            if _refused(column, _REFUSED_ACTIVE_TYPES, _REFUSED_ACTIVE_PYTHON):
                raise ConfigError(
                    f"IDSYNC_HR__ACTIVE_COLUMN: column {name!r} is "
                    f"{_type_name(column, conn)}, which cannot say whether an employee is "
                    f"active; {ACTIVE_HINT}"
                )
            selected.append(type_coerce(column, NullType()).label(role))
        elif _refused(column, _REFUSED_KEY_TYPES, _REFUSED_KEY_PYTHON):
            refused[role] = f"{_setting(role + '_column')} {name!r} is {_type_name(column, conn)}"
            selected.append(column.is_not(None).label(role))
        else:
            selected.append(type_coerce(column, NullType()).label(role))
    # A role not configured is read as NULL: every row then has all the roles, picked in one call.
    selected.extend(null().label(role) for role in _ROLES if role not in roles)
    # Primary-key order makes row numbers (in "duplicate id, rows 3, 7") stable from run to run.
    return select(*selected).order_by(*table.primary_key.columns), refused


def read_hr(
    *,
    settings: HRSettings,
    url: str,
    max_value_length: int = MAX_VALUE_LENGTH,
    strings: StringPool | None = None,
) -> HRSnapshot:
    """Read every HR row once and validate it (rules in :mod:`sync.hr._validate`).

    ``url`` is the HR database (``Settings.hr_url``). ``strings``: the run's pool, shared with the
    Protime read (:mod:`sync.strings`). Raises :class:`HRSourceError` for an unreachable
    database, an unknown table or column, or a failing query; :class:`ConfigError` when neither
    ``IDSYNC_HR__TABLE`` nor ``IDSYNC_HR__QUERY`` is set.
    """
    if not settings.table and not settings.query:
        raise ConfigError("set IDSYNC_HR__TABLE or IDSYNC_HR__QUERY to say where the employees are")
    builder = SnapshotBuilder(max_value_length=max_value_length, strings=strings)
    failing = "IDSYNC_HR__TABLE" if settings.table else "IDSYNC_HR__QUERY"
    with _connect(url, settings.url_variable) as (conn, parsed):
        try:
            _read_rows(conn, settings, builder)
        except HRSourceError:
            raise
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"{failing}: reading the HR employees failed: {_describe(exc, parsed)}"
            ) from None
    return builder.snapshot()


def _read_rows(conn: Connection, settings: HRSettings, builder: SnapshotBuilder) -> None:
    statement: Select[Any] | TextClause
    refused: dict[str, str] = {}
    if settings.table:
        statement, refused = _table_statement(conn, settings)
    else:
        assert settings.query is not None
        statement = text(settings.query)
    _raw_text_values(conn)
    # A server-side cursor (PostgreSQL, MariaDB) must be closed even when we stop early.
    with conn.execution_options(yield_per=_STREAM_BATCH).execute(statement) as result:
        if not result.returns_rows:
            raise HRConfigError("IDSYNC_HR__QUERY: the query returns no rows (is it a SELECT?)")
        if settings.table:
            positions = {role: i for i, role in enumerate(result.keys())}
        else:
            names = list(result.keys())
            roles = _resolve(names, _configured_columns(settings), where="the query's result")
            positions = {role: names.index(column) for role, column in roles.items()}
        pick = _picker(positions, refused)
        add = builder.add
        for number, row in enumerate(result, start=1):
            add(number, *pick(row))


def _raw_text_values(conn: Connection) -> None:
    """Have text values that are not UTF-8 arrive as bytes to judge per row, where possible.

    pysqlite decodes every TEXT value itself and raises for invalid UTF-8 -- ending the whole
    read, with the offending text in its message. Its ``text_factory`` hook lets the row be
    marked invalid instead. Other drivers decode by the column's declared character set.
    """
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is not None and hasattr(dbapi_connection, "text_factory"):
        dbapi_connection.text_factory = decode_text


def _picker(
    positions: dict[str, int], refused: dict[str, str]
) -> Callable[[Any], Sequence[object]]:
    """A function from a result row to :data:`_ROLES`' values (None for a role not configured)."""
    if not refused and all(role in positions for role in _ROLES):
        # Every role read as is, the usual table: one C call per row.
        return itemgetter(*(positions[role] for role in _ROLES))

    def pick(row: Any) -> Sequence[object]:
        values: list[object] = []
        for role in _ROLES:
            index = positions.get(role)
            value = None if index is None else row[index]
            if role in refused:
                # Only "holds a value" was read: a value there makes the row invalid.
                value = ColumnTypeRefused(refused[role]) if value else None
            values.append(value)
        return values

    return pick
