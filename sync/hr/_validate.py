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
  ``NUMERIC(10,0)`` columns return) counts as an integer.
* Anything else — floats, booleans, bytes, dates, decimals with a fraction — is invalid with
  ``"not a string/integer (<type>)"``: its text form is not a stable identifier.
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
decimal text; strings are trimmed (fixed-width ``CHAR`` columns pad them); e-mail is lower-cased.
No value type makes a row fail.
"""

from __future__ import annotations

import math
from decimal import Decimal

from sync.domain import HREmployee, HRSnapshot, InvalidHRRow
from sync.values import value_problem

FALSE_SPELLINGS = frozenset({"0", "f", "false", "n", "no", "off", "inactive"})
_MAX_ROWS_LISTED = 10


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


def id_text(value: object, *, max_length: int) -> tuple[str | None, str | None]:
    """``(text, problem)`` for a raw id: its text form (``None`` when empty) and why it is unusable."""
    if value is None:
        return None, "empty"
    if isinstance(value, bool):
        return _raw_text(value), "not a string/integer (bool)"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, Decimal) and _integral_decimal(value):
        return str(int(value)), None
    if isinstance(value, str):
        problem = value_problem(value, max_length=max_length)
        return (value or None), problem
    return _raw_text(value), f"not a string/integer ({_type_name(value)})"


def optional_text(value: object) -> str | None:
    """A match key from any value: trimmed text, integers in decimal, ``None`` when blank."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if _integral_decimal(value):
            return str(int(value))
        return str(value) if value.is_finite() else None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
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


def is_active(value: object) -> bool:
    """Whether an active-column value keeps the row in scope (see the module doc)."""
    if value is None:
        return True
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
    """Collects rows one at a time (a read streams them) and builds the :class:`HRSnapshot`."""

    def __init__(self, *, max_value_length: int) -> None:
        self._max = max_value_length
        self._employees: list[tuple[int, HREmployee]] = []
        self._first_row: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        self._invalid: list[InvalidHRRow] = []
        self._out_of_scope: set[str] = set()

    def add(
        self,
        row_number: int,
        raw_id: object,
        *,
        employee_number: object = None,
        badge_number: object = None,
        email: object = None,
        active: object = None,
    ) -> None:
        text, problem = id_text(raw_id, max_length=self._max)
        if problem is not None or text is None:
            self._invalid.append(InvalidHRRow(row_number, text, problem or "empty"))
            return
        if not is_active(active):
            self._out_of_scope.add(text)
            return
        first = self._first_row.setdefault(text, row_number)
        if first != row_number:
            self._duplicates.setdefault(text, [first]).append(row_number)
            return
        mail = optional_text(email)
        self._employees.append(
            (
                row_number,
                HREmployee(
                    hr_id=text,
                    employee_number=optional_text(employee_number),
                    badge_number=optional_text(badge_number),
                    email=mail.lower() if mail else None,
                ),
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
