"""Turning raw HR rows into a snapshot: ids checked, optional columns normalised, scope decided.

Pure (no I/O), so every rule is tested without a database. The rules, as the README states them:

**The id column.**
* A string is used exactly as stored. It must pass :func:`sync.values.value_problem`: not empty, no
  leading or trailing white space, at most ``max_value_length`` characters, none of ``/ \\ ? # % & *
  : < >`` and no control character. Padded ids are *invalid*, not stripped: Protime values are exact
  keys, so stripping would silently make ``"E1 "`` and ``"E1"`` one employee, and the id we wrote
  would no longer be the id in HR (lookups and write-back by it would miss the row). The HR data
  should be fixed instead; the reason says so.
* An integer is written in decimal: ``123`` becomes ``"123"``, and so collides with a string
  ``"123"`` in the same source (both are then duplicates). A ``Decimal`` without a fraction (what
  ``NUMERIC(10,0)`` columns return) and a float holding an integer exactly (``2.0``, up to 2**53)
  count as integers. A UUID becomes its canonical text.
* Anything else — floats and decimals with a fraction, booleans, bytes, dates, times, intervals,
  JSON, arrays — is invalid with ``"not a string/integer (<type>)"``: its text form is not a
  stable identifier. In table mode a column whose declared type can never be an id (DATE,
  DATETIME, TIME, INTERVAL, BOOLEAN, BLOB/BYTEA, JSON, arrays) is not even fetched (a driver may
  fail to convert its values); each row holding a value there is invalid with a reason naming the
  setting, the column and its type.
* Text whose bytes are not UTF-8 (SQLite stores whatever it is given) is invalid with
  ``"the id is not valid UTF-8 (N bytes)"``. Such a row, and a row whose id is longer than
  ``max_value_length``, is keyed by its number (``<row N>``), not by an id that cannot be one.
* An id on more than one in-scope row makes every one of those rows invalid:
  ``"duplicate id, rows 3, 7"`` (row numbers count from 1 in read order).

**The active column** (optional). A row is *out of scope* when its value is ``False``, a number equal
to 0, the bytes of a ``BIT(1)`` zero, or one of these strings, case-insensitive and trimmed: ``0``,
``f``, ``false``, ``n``, ``no``, ``off``, ``inactive``. Everything else, including ``NULL`` and a blank
string, is active: an unclear value must never turn an employee's reference into an orphan.
Out-of-scope rows only contribute their (valid) id to ``out_of_scope_ids``; an id that also has an
in-scope row is in scope. Duplicates are counted among in-scope rows only, so an old inactive row
that shares its id with the current active one (a rehire) is history, not a conflict. A row whose id
is invalid is reported invalid whatever its active value.

**Optional columns** (employee number, badge number, e-mail) are match keys: ``None`` and blank
become ``None``; integers (and integral decimals and floats such as ``1234.0``) become their
decimal text; UUIDs their canonical text; strings are trimmed (fixed-width ``CHAR`` columns pad
them); e-mail is lower-cased. A value of any other type (a date, a boolean, bytes, JSON, a number
with a fraction), undecodable text, or a value in a column whose type is refused makes the row
invalid with a reason naming the column's role and the type, never the value.

**An active column** that cannot say yes or no (DATE, DATETIME, TIME, INTERVAL, BLOB, JSON, arrays
by its declared type; in query mode a date, time, interval or JSON value) is a configuration error
naming ``IDSYNC_HR__ACTIVE_COLUMN``, with the hint to select ``termination_date IS NULL AS active``.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from sync.domain import HREmployee, HRSnapshot, InvalidHRRow
from sync.errors import ConfigError
from sync.values import value_problem

if TYPE_CHECKING:
    from sync.strings import StringPool

FALSE_SPELLINGS = frozenset({"0", "f", "false", "n", "no", "off", "inactive"})
_MAX_ROWS_LISTED = 10
# Floats hold integers exactly up to 2**53; beyond, their decimal text is not the id HR meant.
_EXACT_FLOAT = 2**53
# Values of these types cannot say whether an employee is active (query mode: judged per value).
_NOT_BOOLEAN_LIKE = (dt.date, dt.time, dt.timedelta, dict, list, tuple)


class UndecodableText(bytes):
    """A text value whose bytes are not UTF-8 (see :func:`decode_text`); makes its row invalid."""

    __slots__ = ()


class ColumnTypeRefused:
    """Stands for a value in a column whose type can never be a key; ``why`` names the column."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def decode_text(raw: bytes) -> str | UndecodableText:
    """A driver's text value: ``str`` when UTF-8, else marked undecodable (never an exception)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableText(raw)


def _unusable(value: object, what: str) -> str | None:
    """Why ``value`` can never be read as text for ``what``, or None. Never shows the value."""
    if isinstance(value, ColumnTypeRefused):
        return f"{value.why}, not text or an integer"
    if isinstance(value, UndecodableText):
        return f"{what} is not valid UTF-8 ({len(value)} bytes)"
    return None


def _type_name(value: object) -> str:
    return type(value).__name__


def _raw_text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return repr(bytes(value))
    try:
        return str(value)
    except Exception:  # a driver type with a broken __str__ must not stop the read
        return f"<{_type_name(value)}>"


def _integral_decimal(value: Decimal) -> bool:
    # Exponent 0 is what NUMERIC(p,0) columns return; 1E+999999999 would expand to a huge int.
    return value.is_finite() and value.as_tuple().exponent == 0


def _number_text(value: object) -> tuple[bool, str | None]:
    """``(is a number, its decimal text or None when it has a fraction)``."""
    if type(value) is int:  # the usual numeric id, before the isinstance chain (bool is an int)
        return True, str(value)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        return False, None
    if isinstance(value, int):
        return True, str(value)
    if isinstance(value, Decimal):
        return True, str(int(value)) if _integral_decimal(value) else None
    if math.isfinite(value) and value.is_integer() and abs(value) <= _EXACT_FLOAT:
        return True, str(int(value))
    return True, None


def id_text(value: object, *, max_length: int) -> tuple[str | None, str | None]:
    """``(text, problem)`` for a raw id: its text form (``None`` when empty, undecodable or too
    long to be a key: the row is then keyed by its number) and why it is unusable."""
    if value is None:
        return None, "empty"
    if type(value) is str:  # what almost every row holds: straight to the text checks below
        return _str_id(value, max_length=max_length)
    unusable = _unusable(value, "the id")
    if unusable is not None:
        return None, unusable
    is_number, number = _number_text(value)
    if is_number:
        if number is None:
            return _raw_text(value), _not_id(value)
        # An unbounded NUMERIC can hold an integer of hundreds of digits: too long to be a key,
        # it is checked like text so its row is invalid under its number, never dropped unkeyed.
        return _str_id(number, max_length=max_length)
    if isinstance(value, UUID):
        return str(value), None
    if isinstance(value, str):
        return _str_id(value, max_length=max_length)
    return _raw_text(value), _not_id(value)


def _str_id(value: str, *, max_length: int) -> tuple[str | None, str | None]:
    problem = value_problem(value, max_length=max_length)
    if problem is not None and len(value) > max_length:
        # Too long to be a key anywhere (the state database keys are 255 characters): the row
        # is keyed by its number, the reason says how long the id is.
        return None, problem
    return (value or None), problem


def _not_id(value: object) -> str:
    return f"not a string/integer ({_type_name(value)})"


def optional_text(value: object) -> str | None:
    """A match key from any value: trimmed text, integers in decimal, ``None`` when blank.

    Values :func:`key_problem` refuses never get here (their row is invalid).
    """
    if type(value) is str:  # the usual case, before the isinstance chain
        return value.strip() or None
    if value is None or isinstance(value, bool | UndecodableText | ColumnTypeRefused):
        return None
    is_number, number = _number_text(value)
    if is_number:
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(float(value))  # type: ignore[arg-type]
        if number is None and not finite:
            return None
        return number if number is not None else _raw_text(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif isinstance(value, str):
        text = value
    else:
        text = _raw_text(value)
    return text.strip() or None


def key_problem(value: object, what: str) -> str | None:
    """Why an optional key column's value makes its row invalid, or None (see the module doc)."""
    if value is None or type(value) is str or type(value) is int:  # always usable: the usual case
        return None
    unusable = _unusable(value, what)
    if unusable is not None:
        return unusable
    if isinstance(value, bool | dt.date | dt.time | dt.timedelta | dict | list | tuple):
        return f"{what} is not text or a number ({_type_name(value)})"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{what} is not text or a number (bytes)"
    is_number, number = _number_text(value)
    if is_number and number is None:
        return f"{what} is not text or an integer ({_type_name(value)} with a fraction)"
    return None


def is_active(value: object) -> bool:
    """Whether an active-column value keeps the row in scope (see the module doc)."""
    if value is None:
        return True
    if isinstance(value, _NOT_BOOLEAN_LIKE):
        raise ConfigError(
            f"IDSYNC_HR__ACTIVE_COLUMN holds {_type_name(value)} values, which cannot say whether "
            "an employee is active; use a column that says yes or no (boolean, 0/1, "
            "'active'/'inactive'), or set IDSYNC_HR__QUERY with an expression such as "
            "`termination_date IS NULL AS active`"
        )
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return not (value.is_finite() and value.is_zero())  # NaN (even signalling) is not 0
    if isinstance(value, int | float):
        return bool(value != 0)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if raw and not any(raw):
            return False
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_SPELLINGS
    return True


def _rows_text(rows: list[int]) -> str:
    listed = ", ".join(str(n) for n in rows[:_MAX_ROWS_LISTED])
    if len(rows) > _MAX_ROWS_LISTED:
        listed += f" and {len(rows) - _MAX_ROWS_LISTED} more"
    return listed


class SnapshotBuilder:
    """Collects rows one at a time (a read streams them) and builds the :class:`HRSnapshot`.

    With ``strings``, an employee's id and keys are the pool's objects (:mod:`sync.strings`).
    """

    def __init__(self, *, max_value_length: int, strings: StringPool | None = None) -> None:
        self._max = max_value_length
        self._strings = strings
        self._employees: list[tuple[int, HREmployee]] = []
        self._first_row: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        self._invalid: list[InvalidHRRow] = []
        self._out_of_scope: set[str] = set()

    def add(  # noqa: PLR0917 - a row's values in column order: splatted once per HR row
        self,
        row_number: int,
        raw_id: object,
        employee_number: object = None,
        badge_number: object = None,
        email: object = None,
        active: object = None,
    ) -> None:
        """One row, numbered from 1 in read order; its values as the driver gave them."""
        # The usual row (a text id, text or empty keys, an integer or no active value) takes
        # the same rules inline: this runs for every HR row of every run.
        if (
            type(raw_id) is str
            and (employee_number is None or type(employee_number) is str)
            and (badge_number is None or type(badge_number) is str)
            and (email is None or type(email) is str)
            and (active is None or type(active) is int)
            and value_problem(raw_id, max_length=self._max) is None
        ):
            if active == 0:
                self._out_of_scope.add(raw_id)
                return
            mail = email.strip().lower() or None if email is not None else None
            self._keep(
                row_number,
                raw_id,
                employee_number.strip() or None if employee_number is not None else None,
                badge_number.strip() or None if badge_number is not None else None,
                mail,
            )
            return
        self._add_checked(
            row_number,
            raw_id,
            employee_number=employee_number,
            badge_number=badge_number,
            email=email,
            active=active,
        )

    def _add_checked(
        self,
        row_number: int,
        raw_id: object,
        *,
        employee_number: object,
        badge_number: object,
        email: object,
        active: object,
    ) -> None:
        text, problem = id_text(raw_id, max_length=self._max)
        if problem is not None or text is None:
            self._invalid.append(InvalidHRRow(row_number, text, problem or "empty"))
            return
        keys = (
            (employee_number, "the employee number"),
            (badge_number, "the badge number"),
            (email, "the e-mail"),
        )
        for value, what in keys:
            key_trouble = key_problem(value, what)
            if key_trouble is not None:
                self._invalid.append(InvalidHRRow(row_number, text, key_trouble))
                return
        if not is_active(active):
            self._out_of_scope.add(text)
            return
        number = optional_text(employee_number)
        badge = optional_text(badge_number)
        mail = optional_text(email)
        self._keep(row_number, text, number, badge, mail.lower() if mail else None)

    def _keep(
        self,
        row_number: int,
        text: str,
        number: str | None,
        badge: str | None,
        mail: str | None,
    ) -> None:
        """An in-scope row with a valid id and its keys normalised: kept, or a duplicate."""
        pool = self._strings
        if pool is not None:
            text, number, badge, mail = (
                pool.share(text),
                pool.share(number),
                pool.share(badge),
                pool.share(mail),
            )
        first = self._first_row.setdefault(text, row_number)
        if first != row_number:
            self._duplicates.setdefault(text, [first]).append(row_number)
            return
        self._employees.append(
            (
                row_number,
                HREmployee(hr_id=text, employee_number=number, badge_number=badge, email=mail),
            )
        )

    def snapshot(self) -> HRSnapshot:
        invalid = list(self._invalid)
        for hr_id, rows in self._duplicates.items():
            reason = f"duplicate id, rows {_rows_text(rows)}"
            invalid.extend(InvalidHRRow(n, hr_id, reason) for n in rows)
        invalid.sort(key=lambda row: row.row_number)
        employees = tuple(e for _, e in self._employees if e.hr_id not in self._duplicates)
        return HRSnapshot(
            employees=employees,
            invalid=tuple(invalid),
            out_of_scope_ids=frozenset(self._out_of_scope - self._first_row.keys()),
        )
