"""The write-back: the HR column says what Protime holds, written only where it differs.

The column's whole desired state is the map's linked pairs: a linked employee's row holds its
Protime id, every other row holds nothing (NULL). One transaction: the key and target columns are
read once, compared in Python with that state, and only the rows whose value differs are written
(a new or changed link gets its id, a row whose link is gone is cleared); when none differs,
nothing is written at all. How the changed rows are written is the one thing that depends on the
database:

* **PostgreSQL**: ``UPDATE ... FROM unnest(keys, values)`` per 50,000 changed rows, the changes
  passed as two arrays cast to the key's and the target's own types (a cleared row's value is a
  NULL element).
* **MariaDB/MySQL** (staged): the changes are bulk-loaded into a temporary table made with the
  key's and the target's own column types (``CREATE TEMPORARY TABLE ... AS SELECT`` of the two
  columns, no rows, so character sets and collations match), then one multi-table ``UPDATE``
  writes them all; the temporary table is dropped before the commit. An executemany UPDATE is
  one statement per row there.
* **anything else** (SQLite, SQL Server...): an executemany UPDATE per 10,000 changed rows, which
  SQLite runs in-process; a positional driver (SQLite's) gets the compiled statement and plain
  tuples.

On MariaDB a user who may update the table but not create temporary tables gets the row-by-row
path, with a warning saying what to grant.

One guard: when there are linked employees but not one key of the table is the HR id of any of
them, the key column is taken for a misconfiguration (``IDSYNC_HR__WRITEBACK_ID_COLUMN``) and
nothing is cleared, with the warning ``hr.write_back_no_key_matched``: clearing would empty the
column of a table idsync cannot tell apart from a wrong one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

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

    from sqlalchemy import CursorResult
    from sqlalchemy.sql.compiler import SQLCompiler

    from sync.config import HRSettings

_log = logging.getLogger(__name__)

STAGING_TABLE = "idsync_writeback_stage"
_READ_BATCH = 5000
_LOAD_BATCH = 10_000  # staged rows per INSERT executemany (each driver pages it further)
_UNNEST_BATCH = 50_000  # changed rows per PostgreSQL UPDATE ... FROM unnest
_ROW_BATCH = 10_000  # changed rows per executemany UPDATE
# The dialects whose changes go through a staging table; everything else updates row by row.
_STAGED = frozenset({"mysql", "mariadb"})
# A TEXT key can only be indexed by a prefix on MariaDB/MySQL; ids are at most this long anyway.
_TEXT_KEY_PREFIX = 255


def write_back(*, settings: HRSettings, url: str, pairs: Mapping[str, int]) -> int:
    """Make the configured HR column say what Protime holds; returns how many rows changed.

    ``pairs`` maps HR id -> Protime id for every linked employee: the column's whole desired
    state. A row whose HR id is in ``pairs`` gets that id; every other row that holds a value
    (anything but NULL or blank text) gets NULL: an employee unlinked, terminated, ignored or
    rolled back loses its id. Only rows whose column differs are updated, all in one transaction;
    ``pairs`` empty clears every row. HR ids are matched the way :func:`~sync.hr.read_hr` reads
    them (integers as decimal text). The table is ``IDSYNC_HR__WRITEBACK_TABLE``, keyed by
    ``IDSYNC_HR__WRITEBACK_ID_COLUMN`` (default: the id column), the target
    ``IDSYNC_HR__WRITEBACK_COLUMN``; text columns get the id as text.
    """
    if not settings.writeback_enabled:
        raise ConfigError(
            "write-back needs IDSYNC_HR__WRITEBACK_TABLE and IDSYNC_HR__WRITEBACK_COLUMN"
        )
    with _connect(url, settings.url_variable) as (conn, parsed):
        try:
            written, diff = _write(conn, settings, pairs)
        except HRSourceError:
            raise
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"IDSYNC_HR__WRITEBACK_TABLE: writing Protime ids back failed: {_describe(exc, parsed)}"
            ) from None
    if diff.changes:
        _log.info(
            "hr.write_back: %d row(s) given their Protime id, %d cleared",
            len(diff.changes) - diff.clears,
            diff.clears,
        )
    return written


def _write(conn: Connection, settings: HRSettings, pairs: Mapping[str, int]) -> tuple[int, _Diff]:
    """The write-back in one transaction: the rows written, and what differed."""
    table, key, target = writeback_columns(conn, settings)
    conn.rollback()  # end reflection's implicit transaction; the write gets its own
    with conn.begin():
        diff = _changes(conn, key, target, pairs)
        if diff.clears and pairs and not diff.matched:
            _log.warning(
                "hr.write_back_no_key_matched: none of the %d linked HR id(s) is a key of"
                " table %r (column %r): check IDSYNC_HR__WRITEBACK_ID_COLUMN; the %d"
                " row(s) holding a value are not cleared",
                len(pairs),
                settings.writeback_table,
                key.name,
                diff.clears,
            )
            diff.drop_clears()
        if not diff.changes:
            return 0, diff
        return write_changes(conn, table=table, key=key, target=target, changes=diff.changes), diff


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


@dataclass(slots=True)
class _Diff:
    """What the column needs: raw key -> the value to store (None: clear), and figures."""

    changes: dict[object, object] = field(default_factory=dict)
    clears: int = 0  # of ``changes``, the keys whose value is None
    matched: int = 0  # rows whose key is a linked HR id, changed or not

    def drop_clears(self) -> None:
        self.changes = {k: v for k, v in self.changes.items() if v is not None}
        self.clears = 0


def _changes(
    conn: Connection, key: Column[Any], target: Column[Any], pairs: Mapping[str, int]
) -> _Diff:
    """The rows whose target differs from what the map says: their pair's id, or nothing."""
    as_text = _is_text(target)
    diff = _Diff()
    changes = diff.changes
    # Statement-level: on the connection, the option would stream every later statement too.
    query = select(key, target).execution_options(yield_per=_READ_BATCH)
    with conn.execute(query) as result:
        for raw_id, current in result:
            if raw_id is None:
                continue  # no key to address the row by (NULL equals nothing)
            hr_id, problem = id_text(raw_id, max_length=10_000)
            wanted = None if problem or hr_id is None else pairs.get(hr_id)
            if wanted is not None:
                diff.matched += 1
                if not _same(current, wanted):
                    changes[raw_id] = str(wanted) if as_text else wanted
            elif _holds(current) and raw_id not in changes:
                changes[raw_id] = None
                diff.clears += 1
    return diff


class _Columns(NamedTuple):
    """Where the write-back writes: the table, the key its rows are found by, the target."""

    table: Table
    key: Column[Any]
    target: Column[Any]


def write_changes(
    conn: Connection,
    *,
    table: Table,
    key: Column[Any],
    target: Column[Any],
    changes: Mapping[object, object],
) -> int:
    """Write ``changes`` (raw key -> value) into ``target``, in the caller's transaction."""
    columns = _Columns(table, key, target)
    if conn.dialect.name == "postgresql":
        return _unnest_update(conn, columns, changes)
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
                written = _staged_update(conn, columns, changes)
            except BaseException:
                # MariaDB keeps a session's temporary table until it is dropped (a failed
                # statement leaves the transaction usable for that).
                with contextlib.suppress(SQLAlchemyError):
                    conn.execute(_DropStaging())
                raise
            conn.execute(_DropStaging())
            return written
    return _row_by_row_update(conn, columns, changes)


def _written(result: CursorResult[Any], sent: int) -> int:
    """The rows a statement changed; a driver that cannot count them (-1) wrote all it was sent."""
    return result.rowcount if result.rowcount >= 0 else sent


def _unnest_update(conn: Connection, columns: _Columns, changes: Mapping[object, object]) -> int:
    # Two array parameters, adapted by the driver in C, joined as a table: no temporary table,
    # no TEMP privilege, no per-row parameter handling (psycopg's executemany costs ~30 us a row).
    # A cleared row's value is a NULL element. One statement per _UNNEST_BATCH changed rows.
    table, key, target = columns
    keys = cast(bindparam("keys", type_=ARRAY(key.type)), ARRAY(key.type))
    values = cast(bindparam("values", type_=ARRAY(target.type)), ARRAY(target.type))
    pairs = func.unnest(keys, values).table_valued("k", "v").render_derived(name="pairs")
    statement = update(table).where(key == pairs.c.k).values({target: pairs.c.v})
    items = list(changes.items())
    written = 0
    for start in range(0, len(items), _UNNEST_BATCH):
        chunk = items[start : start + _UNNEST_BATCH]
        result = conn.execute(
            statement, {"keys": [k for k, _ in chunk], "values": [v for _, v in chunk]}
        )
        written += _written(result, len(chunk))
    return written


def _staged_update(conn: Connection, columns: _Columns, changes: Mapping[object, object]) -> int:
    table, key, target = columns
    stage = _stage_table(key, target)
    rows = [{"k": k, "v": v} for k, v in changes.items()]
    for start in range(0, len(rows), _LOAD_BATCH):
        conn.execute(insert(stage), rows[start : start + _LOAD_BATCH])
    result = conn.execute(update(table).where(key == stage.c.k).values({target: stage.c.v}))
    return _written(result, len(changes))


def _row_by_row_update(
    conn: Connection, columns: _Columns, changes: Mapping[object, object]
) -> int:
    table, key, target = columns
    statement = (
        update(table).where(key == bindparam("k_id")).values({target.name: bindparam("v_value")})
    )
    items = list(changes.items())
    chunks = [items[start : start + _ROW_BATCH] for start in range(0, len(items), _ROW_BATCH)]
    written = 0
    if conn.dialect.positional:
        # A positional driver (SQLite's qmark) gets the compiled statement and plain tuples:
        # SQLAlchemy would build and process a parameter dict per row (about 4 us of CPU a row).
        compiled = statement.compile(dialect=conn.dialect)
        order = tuple(compiled.positiontup or ())
        if order in {("k_id", "v_value"), ("v_value", "k_id")}:
            to_key = key.type.bind_processor(conn.dialect) or _as_is
            to_value = target.type.bind_processor(conn.dialect) or _as_is
            key_first = order[0] == "k_id"
            for chunk in chunks:
                rows = [
                    (to_key(k), to_value(v)) if key_first else (to_value(v), to_key(k))
                    for k, v in chunk
                ]
                result = conn.exec_driver_sql(compiled.string, rows)
                written += _written(result, len(chunk))
            return written
    for chunk in chunks:
        result = conn.execute(statement, [{"k_id": k, "v_value": v} for k, v in chunk])
        written += _written(result, len(chunk))
    return written


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


def _holds(current: object) -> bool:
    """Whether a target value is something to clear: anything but NULL and blank text."""
    if current is None:
        return False
    return not (isinstance(current, str) and not current.strip())


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
