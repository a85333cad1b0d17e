"""The HR database: one streamed read of the configured table or query, and the optional write-back.

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

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Select,
    Table,
    TextClause,
    bindparam,
    create_engine,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from sync.errors import ConfigError, HRSourceError
from sync.hr._validate import SnapshotBuilder, id_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from sync.config import HRSettings
    from sync.domain import HRSnapshot

_STREAM_BATCH = 2000
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


@contextmanager
def _connect(url: str) -> Iterator[tuple[Connection, URL]]:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("IDSYNC_HR__URL is not a database URL SQLAlchemy understands") from None
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    # SQLite would create an empty file for a mistyped path; say what is wrong instead.
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).is_file()
    ):
        raise HRSourceError(f"the HR database {shown} does not exist (IDSYNC_HR__URL)")
    try:
        engine: Engine = create_engine(parsed, poolclass=NullPool)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"IDSYNC_HR__URL: cannot use {shown}: {exc}") from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"the HR database {shown} could not be reached: {_describe(exc, parsed)}"
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
            raise HRSourceError(f"{_setting(setting)}: table {name!r} not found in the HR database")
        table_name = folded[0]
    try:
        return Table(table_name, MetaData(), schema=schema, autoload_with=conn)
    except NoSuchTableError:
        raise HRSourceError(
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
            raise HRSourceError(
                f"{_setting(role + '_column')}: column {column!r} is not in {where} "
                f"(columns: {shown})"
            )
        resolved[role] = found
    return resolved


def _table_statement(conn: Connection, settings: HRSettings) -> Select[Any]:
    assert settings.table is not None
    table = _reflect(conn, settings.table, setting="table")
    roles = _resolve(
        list(table.c.keys()), _configured_columns(settings), where=f"table {settings.table!r}"
    )
    statement = select(*(table.c[column].label(role) for role, column in roles.items()))
    # Primary-key order makes row numbers (in "duplicate id, rows 3, 7") stable from run to run.
    return statement.order_by(*table.primary_key.columns)


def read_hr(*, settings: HRSettings, url: str, max_value_length: int = 255) -> HRSnapshot:
    """Read every HR row once and validate it (rules in :mod:`sync.hr._validate`).

    ``url`` is the HR database (``Settings.hr_url``). Raises :class:`HRSourceError` for an unreachable
    database, an unknown table or column, or a failing query; :class:`ConfigError` when neither
    ``IDSYNC_HR__TABLE`` nor ``IDSYNC_HR__QUERY`` is set.
    """
    if not settings.table and not settings.query:
        raise ConfigError("set IDSYNC_HR__TABLE or IDSYNC_HR__QUERY to say where the employees are")
    builder = SnapshotBuilder(max_value_length=max_value_length)
    failing = "IDSYNC_HR__TABLE" if settings.table else "IDSYNC_HR__QUERY"
    with _connect(url) as (conn, parsed):
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
    if settings.table:
        statement = _table_statement(conn, settings)
    else:
        assert settings.query is not None
        statement = text(settings.query)
    # A server-side cursor (PostgreSQL, MariaDB) must be closed even when we stop early.
    with conn.execution_options(yield_per=_STREAM_BATCH).execute(statement) as result:
        if not result.returns_rows:
            raise HRSourceError("IDSYNC_HR__QUERY: the query returns no rows (is it a SELECT?)")
        if settings.table:
            positions = {role: i for i, role in enumerate(result.keys())}
        else:
            names = list(result.keys())
            roles = _resolve(names, _configured_columns(settings), where="the query's result")
            positions = {role: names.index(column) for role, column in roles.items()}
        get = _getter(positions)
        for number, row in enumerate(result, start=1):
            builder.add(
                number,
                row[positions["id"]],
                employee_number=get(row, "employee_number"),
                badge_number=get(row, "badge_number"),
                email=get(row, "email"),
                active=get(row, "active"),
            )


def _getter(positions: dict[str, int]) -> Any:
    def get(row: Any, role: str) -> object:
        index = positions.get(role)
        return None if index is None else row[index]

    return get


def _same(current: object, wanted: int) -> bool:
    if current is None or isinstance(current, bool):
        return False
    try:
        return int(str(current).strip()) == wanted
    except ValueError:
        return False


def write_back(*, settings: HRSettings, url: str, pairs: Mapping[str, int]) -> int:
    """Store Protime ids in the configured HR column; returns how many rows changed.

    ``pairs`` maps HR id -> Protime id. Only rows whose column differs are updated, all in one
    transaction; rows for HR ids not in ``pairs`` (or not in the table) are left alone. HR ids are
    matched the way :func:`read_hr` reads them (integers as decimal text). The table is
    ``IDSYNC_HR__WRITEBACK_TABLE``, keyed by ``IDSYNC_HR__WRITEBACK_ID_COLUMN`` (default: the id
    column), the target ``IDSYNC_HR__WRITEBACK_COLUMN``; text columns get the id as text.
    """
    if not settings.writeback_enabled:
        raise ConfigError(
            "write-back needs IDSYNC_HR__WRITEBACK_TABLE and IDSYNC_HR__WRITEBACK_COLUMN"
        )
    if not pairs:
        return 0
    assert settings.writeback_table is not None
    assert settings.writeback_column is not None
    key_setting = "writeback_id" if settings.writeback_id_column else "id"
    with _connect(url) as (conn, parsed):
        try:
            table = _reflect(conn, settings.writeback_table, setting="writeback_table")
            where = f"table {settings.writeback_table!r}"
            roles = _resolve(
                list(table.c.keys()),
                {
                    key_setting: settings.writeback_id_column or settings.id_column,
                    "writeback": settings.writeback_column,
                },
                where=where,
            )
            key: Column[Any] = table.c[roles[key_setting]]
            target: Column[Any] = table.c[roles["writeback"]]
            as_text = _is_text(target)
            conn.rollback()  # end reflection's implicit transaction; the write gets its own
            with conn.begin():
                changes: dict[object, object] = {}
                for raw_id, current in conn.execute(select(key, target)).all():
                    hr_id, problem = id_text(raw_id, max_length=10_000)
                    if problem or hr_id is None or hr_id not in pairs:
                        continue
                    wanted = pairs[hr_id]
                    if not _same(current, wanted):
                        changes[raw_id] = str(wanted) if as_text else wanted
                if not changes:
                    return 0
                result = conn.execute(
                    update(table)
                    .where(key == bindparam("k_id"))
                    .values({target.name: bindparam("v_value")}),
                    [{"k_id": k, "v_value": v} for k, v in changes.items()],
                )
                return result.rowcount if result.rowcount >= 0 else len(changes)
        except HRSourceError:
            raise
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"IDSYNC_HR__WRITEBACK_TABLE: writing Protime ids back failed: {_describe(exc, parsed)}"
            ) from None


def _is_text(column: Column[Any]) -> bool:
    try:
        return issubclass(column.type.python_type, str)
    except NotImplementedError:
        return False
