"""What `idsync config check` asks of the HR database, without reading it all or changing it.

Each configured table, query and column must exist; the id columns must hold text or integers (a
date or a float cannot be an HR id); the active column must be boolean-like, and when it holds
text, every value must spell true or false (``Terminated`` would silently count as active); the
write-back column must exist and the configured user must be allowed to write it, tried in a
transaction that is rolled back. Types come from the table's reflection, or for a query from the
values of its first row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Integer, Numeric, String, func, select, text, update
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError, SQLAlchemyError

from sync.errors import HRConfigError, HRSourceError, IdsyncError
from sync.hr._source import (
    ACTIVE_HINT,
    _configured_columns,
    _connect,
    _describe,
    _reflect,
    _resolve,
)
from sync.hr._validate import FALSE_SPELLINGS
from sync.hr._writeback import writeback_columns

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.types import TypeEngine

    from sync.config import HRSettings

TRUE_SPELLINGS = frozenset({"1", "t", "true", "y", "yes", "on", "active"})
_ID_ROLES = ("id", "employee_number", "badge_number", "email")
_ACTIVE_HINT = "; " + ACTIVE_HINT
_DISTINCT_SAMPLE = 50


@dataclass(frozen=True, slots=True)
class Check:
    """One line of `config check`: ``config`` marks a failure that is a configuration error;
    ``warning``, on a passing check, the log event a run logs it under (``hr.no_active_column``)."""

    name: str
    ok: bool
    detail: str
    config: bool = False
    warning: str | None = None


def _variable(role: str) -> str:
    return f"IDSYNC_HR__{role.upper()}_COLUMN"


NO_ACTIVE_COLUMN = Check(
    "HR active column (IDSYNC_HR__ACTIVE_COLUMN)",
    ok=True,
    detail=(
        "warning: not set, so every HR row counts as active and departed staff are linked too;"
        " set IDSYNC_HR__ACTIVE_COLUMN (or leave them out in IDSYNC_HR__QUERY)"
    ),
    warning="hr.no_active_column",
)


def probe_hr(*, settings: HRSettings, url: str, count_rows: bool = True) -> list[Check]:
    """Every HR check, in order; a failure that makes the rest meaningless ends the list.

    The one checker of the HR configuration: `config check` shows its lines, and every run calls
    it (through :func:`preflight_hr`) before its read. It reads at most a first row of a query, a
    table's reflection and, for a text active column, its distinct values; ``count_rows``
    (`config check` only) adds the table's row count.
    """
    source = "IDSYNC_HR__TABLE" if settings.table else "IDSYNC_HR__QUERY"
    try:
        with _connect(url, settings.url_variable) as (conn, parsed):
            try:
                checks = _source_checks(conn, settings, count_rows=count_rows)
                if all(c.ok for c in checks) and settings.writeback_enabled:
                    checks.append(_writeback_check(conn, settings))
            except SQLAlchemyError as exc:
                return [
                    Check(
                        f"HR source ({source})",
                        ok=False,
                        detail=f"{source}: {_describe(exc, parsed)}",
                        config=_sql_fault(exc, conn),
                    )
                ]
    except IdsyncError as exc:
        return [
            Check(
                f"HR database ({settings.url_variable})",
                ok=False,
                detail=str(exc),
                config=exc.exit_code == 2,  # noqa: PLR2004
            )
        ]
    if not settings.active_column:
        checks.append(NO_ACTIVE_COLUMN)
    return checks


def preflight_hr(*, settings: HRSettings, url: str) -> list[Check]:
    """The HR checks a run makes before it reads or writes anything: the first failure raised
    (:class:`HRConfigError` naming the setting, exit 2; :class:`HRSourceError` when the database
    cannot be reached), the warnings returned."""
    checks = probe_hr(settings=settings, url=url, count_rows=False)
    for check in checks:
        if not check.ok:
            raise (HRConfigError if check.config else HRSourceError)(check.detail)
    return [check for check in checks if check.warning]


def _sql_fault(exc: SQLAlchemyError, conn: Connection) -> bool:
    """Whether a failing statement is wrong SQL (a setting to change) rather than an outage:
    the driver's ProgrammingError, or any error of SQLite (no server to be unreachable)."""
    if isinstance(exc, ProgrammingError):
        return True
    return conn.dialect.name == "sqlite" and isinstance(exc, OperationalError | DatabaseError)


def _source_checks(conn: Connection, settings: HRSettings, *, count_rows: bool) -> list[Check]:
    wanted = _configured_columns(settings)
    if settings.table:
        name = f"HR table {settings.table} (IDSYNC_HR__TABLE)"
        try:
            table = _reflect(conn, settings.table, setting="table")
            roles = _resolve(list(table.c.keys()), wanted, where=f"table {settings.table!r}")
        except HRConfigError as exc:
            return [Check(name, ok=False, detail=str(exc), config=True)]
        detail = "found"
        if count_rows:
            rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
            detail = f"{rows} row(s)"
        checks = [Check(name, ok=True, detail=detail)]
        types = {role: table.c[column].type for role, column in roles.items()}
        for role, column in roles.items():
            checks.append(_type_check(role, column, _declared_kind(types[role])))
        if "active" in roles and _declared_kind(types["active"]) == "text":
            checks.append(_active_values(conn, table.c[roles["active"]], roles["active"]))
        return checks
    assert settings.query is not None
    # The newline: a query ending in a `-- comment` must not comment out the alias.
    sample = select(text("*")).select_from(text(f"({settings.query}\n) AS idsync_check")).limit(1)
    result = conn.execute(sample)
    names = list(result.keys())
    first = result.first()
    try:
        roles = _resolve(names, wanted, where="the query's result")
    except HRConfigError as exc:
        return [Check("HR query (IDSYNC_HR__QUERY)", ok=False, detail=str(exc), config=True)]
    checks = [Check("HR query (IDSYNC_HR__QUERY)", ok=True, detail=f"columns {', '.join(names)}")]
    if first is None:
        checks.append(
            Check("HR column types", ok=True, detail="not checked: the query gave no row")
        )
        return checks
    for role, column in roles.items():
        checks.append(_type_check(role, column, _value_kind(first[names.index(column)])))
    return checks


def _declared_kind(type_: TypeEngine[Any]) -> str:
    """text, integer, boolean, or what else the column holds (``unknown`` when undeclared)."""
    if isinstance(type_, Boolean):
        return "boolean"
    if isinstance(type_, Integer):
        return "integer"
    if isinstance(type_, Numeric):
        return "integer" if getattr(type_, "scale", None) == 0 else "fractional number"
    if isinstance(type_, String):
        return "text"
    try:
        python = type_.python_type
    except NotImplementedError:
        return "unknown"
    if python is uuid.UUID:
        return "text"
    return str(type_).lower()


def _value_kind(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "integer" if value == value.to_integral_value() else "fractional number"
    if isinstance(value, str | uuid.UUID):
        return "text"
    return type(value).__name__  # date, datetime, float, bytes...


def _type_check(role: str, column: str, kind: str) -> Check:
    name = f"HR column {column} ({_variable(role)})"
    if role in _ID_ROLES:
        if kind in {"text", "integer", "unknown"}:
            return Check(name, ok=True, detail=kind if kind != "unknown" else "type not declared")
        return Check(
            name,
            ok=False,
            detail=f"{_variable(role)}: column {column!r} holds {kind}; it must be text or an integer",
            config=True,
        )
    if kind in {"boolean", "integer", "text", "unknown"}:
        return Check(name, ok=True, detail=kind if kind != "unknown" else "type not declared")
    return Check(
        name,
        ok=False,
        detail=(
            f"{_variable(role)}: column {column!r} holds {kind}, which is not boolean-like"
            " (boolean, 0/1, or text such as yes/no)" + _ACTIVE_HINT
        ),
        config=True,
    )


def _active_values(conn: Connection, column: Any, name: str) -> Check:
    """Text active values must each spell true or false; anything else would count as active."""
    values = conn.execute(select(column).distinct().limit(_DISTINCT_SAMPLE)).scalars().all()
    unclear = sorted(
        {
            str(v)
            for v in values
            if v is not None
            and str(v).strip()
            and str(v).strip().lower() not in FALSE_SPELLINGS | TRUE_SPELLINGS
        }
    )
    check = f"HR column {name} values (IDSYNC_HR__ACTIVE_COLUMN)"
    if unclear:
        shown = ", ".join(repr(v) for v in unclear[:5])
        return Check(
            check,
            ok=False,
            detail=(
                f"IDSYNC_HR__ACTIVE_COLUMN: {shown} spell neither true nor false, so those rows"
                " would count as active" + _ACTIVE_HINT
            ),
            config=True,
        )
    return Check(check, ok=True, detail="every value spells true or false")


def _writeback_check(conn: Connection, settings: HRSettings) -> Check:
    """The write-back table and column exist, take an integer or text, and may be written."""
    assert settings.writeback_table is not None
    assert settings.writeback_column is not None
    name = f"HR write-back {settings.writeback_table}.{settings.writeback_column}"
    try:
        table, key, target = writeback_columns(conn, settings)
    except HRConfigError as exc:
        return Check(name, ok=False, detail=str(exc), config=True)
    kind = _declared_kind(target.type)
    if kind not in {"text", "integer", "unknown"}:
        return Check(
            name,
            ok=False,
            detail=(
                f"IDSYNC_HR__WRITEBACK_COLUMN: column {target.name!r} holds {kind}; the Protime id"
                " needs an integer or text column"
            ),
            config=True,
        )
    conn.rollback()  # end reflection's implicit transaction; the probe gets its own
    transaction = conn.begin()
    try:
        # The same row written with its own value, then rolled back: proves the permission
        # (and that nothing locks the table) without changing anything.
        first = conn.execute(select(key).limit(1)).first()
        if first is not None:
            conn.execute(update(table).where(key == first[0]).values({target.name: target}))
    except SQLAlchemyError as exc:
        return Check(
            name,
            ok=False,
            detail=f"IDSYNC_HR__WRITEBACK_TABLE: cannot write: {_describe(exc, conn.engine.url)}",
            config=True,
        )
    finally:
        transaction.rollback()
    tried = "writable (tried and rolled back)" if first is not None else "empty table, not tried"
    return Check(name, ok=True, detail=f"{kind}, {tried}")
