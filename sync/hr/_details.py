"""Names and birth dates from HR, for ``idsync suggest`` only: never read by a run, never matched on.

A second, separate read of the same table or query (``IDSYNC_HR__FIRST_NAME_COLUMN``,
``..._LAST_NAME_COLUMN``, ``..._BIRTH_DATE_COLUMN``, each optional): the run's read stays as lean
as it is, and a wrong detail column can only stop the suggestion report, with the setting named.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, TextClause, select, text
from sqlalchemy.exc import SQLAlchemyError

from sync.domain import HRDetails
from sync.errors import HRSourceError
from sync.hr._source import _connect, _describe, _reflect, _resolve
from sync.hr._validate import id_text, optional_text

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from sync.config import HRSettings

_STREAM_BATCH = 2000
DETAIL_ROLES = ("first_name", "last_name", "birth_date")


def detail_columns(settings: HRSettings) -> dict[str, str]:
    """Role -> configured column, for the detail columns that are set."""
    wanted = {
        "first_name": settings.first_name_column,
        "last_name": settings.last_name_column,
        "birth_date": settings.birth_date_column,
    }
    return {role: column for role, column in wanted.items() if column}


def _birth_date(value: object) -> str | None:
    """An ISO date from a DATE/DATETIME column or a text column holding one; else ``None``."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raw = optional_text(value)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        return None  # for suggestions only: an unreadable date is no evidence, not an error


def read_hr_details(*, settings: HRSettings, url: str) -> dict[str, HRDetails]:
    """HR id -> names and birth date, for the rows whose id is usable; ``{}`` when none is set.

    Raises :class:`HRSourceError` for an unknown column (naming its setting) or a failing read.
    """
    roles = detail_columns(settings)
    if not roles or not (settings.table or settings.query):
        return {}
    wanted = {"id": settings.id_column, **roles}
    details: dict[str, HRDetails] = {}
    with _connect(url, settings.url_variable) as (conn, parsed):
        try:
            _read(conn, settings, wanted, details)
        except HRSourceError:
            raise
        except SQLAlchemyError as exc:
            raise HRSourceError(
                f"reading names and birth dates from HR failed: {_describe(exc, parsed)}"
            ) from None
    return details


def _read(
    conn: Connection, settings: HRSettings, wanted: dict[str, str], out: dict[str, HRDetails]
) -> None:
    statement: Select[Any] | TextClause
    if settings.table:
        table = _reflect(conn, settings.table, setting="table")
        roles = _resolve(list(table.c.keys()), wanted, where=f"table {settings.table!r}")
        statement = select(*(table.c[column].label(role) for role, column in roles.items()))
    else:
        assert settings.query is not None
        statement = text(settings.query)
    with conn.execution_options(yield_per=_STREAM_BATCH).execute(statement) as result:
        names = list(result.keys())
        if settings.table:
            positions = {role: names.index(role) for role in wanted}
        else:
            roles = _resolve(names, wanted, where="the query's result")
            positions = {role: names.index(column) for role, column in roles.items()}
        first, last, born = (positions.get(role) for role in DETAIL_ROLES)
        for row in result:
            hr_id, problem = id_text(row[positions["id"]], max_length=10_000)
            if problem or hr_id is None:
                continue
            out[hr_id] = HRDetails(
                first_name=optional_text(row[first]) if first is not None else None,
                last_name=optional_text(row[last]) if last is not None else None,
                birth_date=_birth_date(row[born]) if born is not None else None,
            )
