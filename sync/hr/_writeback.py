"""The write-back: Protime ids stored in an HR column, only where the column differs.

One transaction: the key and target columns are read once, compared in Python with the pairs, and
only the rows whose value differs are written; when none does, nothing is written at all. How the
changed rows are written is the one thing that depends on the database:

* **PostgreSQL**: one ``UPDATE ... FROM unnest(keys, values)``, the changes passed as two arrays
  cast to the key's and the target's own types.
* **MariaDB/MySQL** (staged): the changes are bulk-loaded into a temporary table made with the
  key's and the target's own column types (``CREATE TEMPORARY TABLE ... AS SELECT`` of the two
  columns, no rows, so character sets and collations match), then one multi-table ``UPDATE``
  writes them all; the temporary table is dropped before the commit. An executemany UPDATE is
  one statement per row there.
* **anything else** (SQLite, SQL Server...): an executemany UPDATE, which SQLite runs in-process;
  a positional driver (SQLite's) gets the compiled statement and plain tuples.

On MariaDB a user who may update the table but not create temporary tables gets the row-by-row
path, with a warning saying what to grant.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    Column,
    Connection,
    Executable,
    MetaData,
    Table,
    bindparam,
    cast,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import Text

from sync.errors import ConfigError, HRSourceError
from sync.hr._source import _connect, _describe, _reflect, _resolve
from sync.hr._validate import id_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.sql.compiler import SQLCompiler

    from sync.config import HRSettings

_log = logging.getLogger(__name__)

STAGING_TABLE = "idsync_writeback_stage"
_READ_BATCH = 5000
_LOAD_BATCH = 10_000  # staged rows per INSERT executemany (each driver pages it further)
# The dialects whose changes go through a staging table; everything else updates row by row.
_STAGED = frozenset({"mysql", "mariadb"})
# A TEXT key can only be indexed by a prefix on MariaDB/MySQL; ids are at most this long anyway.
_TEXT_KEY_PREFIX = 255


def write_back(*, settings: HRSettings, url: str, pairs: Mapping[str, int]) -> int:
    """Store Protime ids in the configured HR column; returns how many rows changed.

    ``pairs`` maps HR id -> Protime id. Only rows whose column differs are updated, all in one
    transaction; rows for HR ids not in ``pairs`` (or not in the table) are left alone. HR ids are
    matched the way :func:`~sync.hr.read_hr` reads them (integers as decimal text). The table is
    ``IDSYNC_HR__WRITEBACK_TABLE``, keyed by ``IDSYNC_HR__WRITEBACK_ID_COLUMN`` (default: the id
    column), the target ``IDSYNC_HR__WRITEBACK_COLUMN``; text columns get the id as text.
    """
    if not settings.writeback_enabled:
        raise ConfigError(
            "write-back needs IDSYNC_HR__WRITEBACK_TABLE and IDSYNC_HR__WRITEBACK_COLUMN"
        )
    if not pairs:
        return 0
    with _connect(url) as (conn, parsed):
        try:
            table, key, target = writeback_columns(conn, settings)
            conn.rollback()  # end reflection's implicit transaction; the write gets its own
            with conn.begin():
                changes = _changes(conn, key, target, pairs)
                if not changes:
                    return 0
                return write_changes(conn, table=table, key=key, target=target, changes=changes)
        except HRSourceError:
            raise
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"IDSYNC_HR__WRITEBACK_TABLE: writing Protime ids back failed: {_describe(exc, parsed)}"
            ) from None


def writeback_columns(
    conn: Connection, settings: HRSettings
) -> tuple[Table, Column[Any], Column[Any]]:
    """The write-back table, its key column and its target column (HRConfigError naming the
    setting when one is missing)."""
    assert settings.writeback_table is not None
    assert settings.writeback_column is not None
    key_setting = "writeback_id" if settings.writeback_id_column else "id"
    table = _reflect(conn, settings.writeback_table, setting="writeback_table")
    roles = _resolve(
        list(table.c.keys()),
        {
            key_setting: settings.writeback_id_column or settings.id_column,
            "writeback": settings.writeback_column,
        },
        where=f"table {settings.writeback_table!r}",
    )
    return table, table.c[roles[key_setting]], table.c[roles["writeback"]]


def _changes(
    conn: Connection, key: Column[Any], target: Column[Any], pairs: Mapping[str, int]
) -> dict[object, object]:
    """Raw key -> the value to store, for the rows whose target differs from their pair's id."""
    as_text = _is_text(target)
    changes: dict[object, object] = {}
    # Statement-level: on the connection, the option would stream every later statement too.
    query = select(key, target).execution_options(yield_per=_READ_BATCH)
    with conn.execute(query) as result:
        for raw_id, current in result:
            hr_id, problem = id_text(raw_id, max_length=10_000)
            if problem or hr_id is None:
                continue
            wanted = pairs.get(hr_id)
            if wanted is not None and not _same(current, wanted):
                changes[raw_id] = str(wanted) if as_text else wanted
    return changes


def write_changes(
    conn: Connection,
    *,
    table: Table,
    key: Column[Any],
    target: Column[Any],
    changes: Mapping[object, object],
) -> int:
    """Write ``changes`` (raw key -> value) into ``target``, in the caller's transaction."""
    if conn.dialect.name == "postgresql":
        return _unnest_update(conn, table=table, key=key, target=target, changes=changes)
    if conn.dialect.name in _STAGED:
        try:
            # In a savepoint: a refused CREATE must leave the transaction usable.
            with conn.begin_nested():
                conn.execute(_CreateStaging(key, target))
        except SQLAlchemyError as exc:
            _log.warning(
                "hr.write_back_row_by_row: cannot create a temporary table (%s); grant the HR "
                "user CREATE TEMPORARY TABLES for a bulk write-back",
                _describe(exc, conn.engine.url),
            )
        else:
            try:
                written = _staged_update(conn, table=table, key=key, target=target, changes=changes)
            except BaseException:
                # MariaDB keeps a session's temporary table until it is dropped (a failed
                # statement leaves the transaction usable for that).
                with contextlib.suppress(SQLAlchemyError):
                    conn.execute(_DropStaging())
                raise
            conn.execute(_DropStaging())
            return written
    return _row_by_row_update(conn, table=table, key=key, target=target, changes=changes)


def _unnest_update(
    conn: Connection,
    *,
    table: Table,
    key: Column[Any],
    target: Column[Any],
    changes: Mapping[object, object],
) -> int:
    # Two array parameters, adapted by the driver in C, joined as a table: no temporary table,
    # no TEMP privilege, no per-row parameter handling (psycopg's executemany costs ~30 us a row).
    keys = cast(bindparam("keys", list(changes), type_=ARRAY(key.type)), ARRAY(key.type))
    values = cast(
        bindparam("values", list(changes.values()), type_=ARRAY(target.type)), ARRAY(target.type)
    )
    pairs = func.unnest(keys, values).table_valued("k", "v").render_derived(name="pairs")
    result = conn.execute(update(table).where(key == pairs.c.k).values({target: pairs.c.v}))
    return result.rowcount if result.rowcount >= 0 else len(changes)


def _staged_update(
    conn: Connection,
    *,
    table: Table,
    key: Column[Any],
    target: Column[Any],
    changes: Mapping[object, object],
) -> int:
    stage = _stage_table(key, target)
    rows = [{"k": k, "v": v} for k, v in changes.items()]
    for start in range(0, len(rows), _LOAD_BATCH):
        conn.execute(insert(stage), rows[start : start + _LOAD_BATCH])
    result = conn.execute(update(table).where(key == stage.c.k).values({target: stage.c.v}))
    return result.rowcount if result.rowcount >= 0 else len(changes)


def _row_by_row_update(
    conn: Connection,
    *,
    table: Table,
    key: Column[Any],
    target: Column[Any],
    changes: Mapping[object, object],
) -> int:
    statement = (
        update(table).where(key == bindparam("k_id")).values({target.name: bindparam("v_value")})
    )
    if conn.dialect.positional:
        # A positional driver (SQLite's qmark) gets the compiled statement and plain tuples:
        # SQLAlchemy would build and process a parameter dict per row (about 4 us of CPU a row).
        compiled = statement.compile(dialect=conn.dialect)
        order = tuple(compiled.positiontup or ())
        if order in {("k_id", "v_value"), ("v_value", "k_id")}:
            to_key = key.type.bind_processor(conn.dialect) or _as_is
            to_value = target.type.bind_processor(conn.dialect) or _as_is
            if order[0] == "k_id":
                rows = [(to_key(k), to_value(v)) for k, v in changes.items()]
            else:
                rows = [(to_value(v), to_key(k)) for k, v in changes.items()]
            result = conn.exec_driver_sql(compiled.string, rows)
            return result.rowcount if result.rowcount >= 0 else len(changes)
    result = conn.execute(statement, [{"k_id": k, "v_value": v} for k, v in changes.items()])
    return result.rowcount if result.rowcount >= 0 else len(changes)


def _as_is(value: object) -> object:
    return value


def _stage_table(key: Column[Any], target: Column[Any]) -> Table:
    """The staging table as SQLAlchemy sees it: the key's and the target's types, for binding."""
    return Table(STAGING_TABLE, MetaData(), Column("k", key.type), Column("v", target.type))


class _CreateStaging(Executable, ClauseElement):
    """``CREATE TEMPORARY TABLE <stage> AS SELECT key AS k, target AS v ... WHERE false``."""

    inherit_cache = False

    def __init__(self, key: Column[Any], target: Column[Any]) -> None:
        self.key = key
        self.query = select(key.label("k"), target.label("v")).where(false())


class _DropStaging(Executable, ClauseElement):
    """``DROP TABLE`` of the staging table, in a form that never ends the transaction."""

    inherit_cache = False


@compiles(_CreateStaging)
def _create_staging(element: _CreateStaging, compiler: SQLCompiler, **_kw: Any) -> str:
    name = compiler.preparer.quote(STAGING_TABLE)
    return f"CREATE TEMPORARY TABLE {name} AS {compiler.process(element.query, literal_binds=True)}"


@compiles(_CreateStaging, "mysql")
@compiles(_CreateStaging, "mariadb")
def _create_staging_mysql(element: _CreateStaging, compiler: SQLCompiler, **_kw: Any) -> str:
    # MariaDB joins by nested loops: the staged keys get an index (the HR key may have none).
    # It is declared inline: a CREATE INDEX would commit the transaction.
    name = compiler.preparer.quote(STAGING_TABLE)
    prefix = f"({_TEXT_KEY_PREFIX})" if isinstance(element.key.type, Text) else ""
    query = compiler.process(element.query, literal_binds=True)
    return f"CREATE TEMPORARY TABLE {name} (INDEX (k{prefix})) AS {query}"


@compiles(_DropStaging)
def _drop_staging(_element: _DropStaging, compiler: SQLCompiler, **_kw: Any) -> str:
    return f"DROP TABLE {compiler.preparer.quote(STAGING_TABLE)}"


@compiles(_DropStaging, "mysql")
@compiles(_DropStaging, "mariadb")
def _drop_staging_mysql(_element: _DropStaging, compiler: SQLCompiler, **_kw: Any) -> str:
    # Without TEMPORARY, MariaDB's DROP TABLE commits the transaction.
    return f"DROP TEMPORARY TABLE {compiler.preparer.quote(STAGING_TABLE)}"


def _same(current: object, wanted: int) -> bool:
    if current is None or isinstance(current, bool):
        return False
    try:
        return int(str(current).strip()) == wanted
    except ValueError:
        return False


def _is_text(column: Column[Any]) -> bool:
    try:
        return issubclass(column.type.python_type, str)
    except NotImplementedError:
        return False
