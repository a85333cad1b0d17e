from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.domain import HREmployee
from sync.hr._validate import (
    ColumnTypeRefused,
    SnapshotBuilder,
    UndecodableText,
    id_text,
    is_active,
    optional_text,
)
from sync.strings import StringPool


@pytest.mark.parametrize(
    ("raw", "text", "problem"),
    [
        ("E1", "E1", None),
        (123, "123", None),
        (Decimal(42), "42", None),
        (Decimal("4.20"), "4.20", "not a string/integer (Decimal)"),
        (Decimal("NaN"), "NaN", "not a string/integer (Decimal)"),
        (Decimal("sNaN"), "sNaN", "not a string/integer (Decimal)"),
        (Decimal("1E+999999999"), "1E+999999999", "not a string/integer (Decimal)"),
        (1.0, "1", None),
        (1.5, "1.5", "not a string/integer (float)"),
        (float(2**60), str(float(2**60)), "not a string/integer (float)"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", None),
        (UndecodableText(b"E\xff"), None, "the id is not valid UTF-8 (2 bytes)"),
        (
            ColumnTypeRefused("IDSYNC_HR__ID_COLUMN 'd' is DATE"),
            None,
            "IDSYNC_HR__ID_COLUMN 'd' is DATE, not text or an integer",
        ),
        ("x" * 256, None, "longer than 255 characters (256)"),
        (10**300, None, "longer than 255 characters (301)"),
        (Decimal(10**299), None, "longer than 255 characters (300)"),
        (10**254, "1" + "0" * 254, None),
        (True, "True", "not a string/integer (bool)"),
        (b"E1", "b'E1'", "not a string/integer (bytes)"),
        (dt.date(2024, 1, 2), "2024-01-02", "not a string/integer (date)"),
        (None, None, "empty"),
        ("", None, "empty"),
        (" E1", " E1", "leading or trailing white space"),
    ],
)
def test_id_text_converts_integers_and_refuses_other_types(raw, text, problem) -> None:
    """Integers (and integral decimals) become decimal text, too long as any text is; other
    non-strings are invalid."""
    assert id_text(raw, max_length=255) == (text, problem)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (" 0042 ", "0042"),
        (42, "42"),
        (Decimal(7), "7"),
        (1234.0, "1234"),
        (12.5, "12.5"),
        (float("nan"), None),
        (b"B-7", "B-7"),
        (b"\xff\xfe", None),
        (True, None),
        (dt.date(2024, 1, 2), "2024-01-02"),
    ],
)
def test_optional_columns_are_normalised(raw, expected) -> None:
    """Match keys: blank is None, numbers are decimal text, strings trimmed, odd types harmless."""
    assert optional_text(raw) == expected


@pytest.mark.parametrize(
    "value",
    [
        False,
        0,
        0.0,
        Decimal(0),
        "0",
        "N",
        "n",
        "no",
        "NO",
        " false ",
        "F",
        "off",
        "Inactive",
        b"\x00",
    ],
)
def test_false_spellings_put_a_row_out_of_scope(value) -> None:
    """Every documented spelling of "not active" is recognised."""
    assert not is_active(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        True,
        1,
        -1,
        "1",
        "Y",
        "yes",
        "true",
        "active",
        "A",
        b"\x01",
        object(),
        Decimal("sNaN"),
        float("nan"),
    ],
)
def test_everything_else_is_active(value) -> None:
    """NULL, blanks and unknown spellings keep the row in scope (an unclear value never orphans)."""
    assert is_active(value)


def test_duplicates_invalidate_every_row_with_their_row_numbers() -> None:
    """An id on several in-scope rows makes each of them invalid, naming all the rows."""
    builder = SnapshotBuilder(max_value_length=255)
    for number, raw in enumerate(["A", "D", "B", "D", 7, "7"], start=1):
        builder.add(number, raw)
    snap = builder.snapshot()
    assert [e.hr_id for e in snap.employees] == ["A", "B"]
    assert [(r.row_number, r.hr_id, r.reason) for r in snap.invalid] == [
        (2, "D", "duplicate id, rows 2, 4"),
        (4, "D", "duplicate id, rows 2, 4"),
        (5, "7", "duplicate id, rows 5, 6"),
        (6, "7", "duplicate id, rows 5, 6"),
    ]


def test_a_long_duplicate_list_is_shortened() -> None:
    """Hundreds of rows sharing one id give a bounded reason."""
    builder = SnapshotBuilder(max_value_length=255)
    for number in range(1, 301):
        builder.add(number, "0")
    reason = builder.snapshot().invalid[0].reason
    assert reason.startswith("duplicate id, rows 1, 2, 3")
    assert reason.endswith("and 290 more")


def test_scope_rules_for_inactive_rows() -> None:
    """Inactive valid ids are out of scope unless an active row has the id; bad ids stay invalid."""
    builder = SnapshotBuilder(max_value_length=255)
    builder.add(1, "GONE", active="N")
    builder.add(2, "REHIRED", active="N")
    builder.add(3, "REHIRED", active="Y")
    builder.add(4, "OLD", active=0)
    builder.add(5, "OLD", active=False)
    builder.add(6, "BAD/ID", active="N")
    snap = builder.snapshot()
    assert snap.out_of_scope_ids == frozenset({"GONE", "OLD"})
    assert [e.hr_id for e in snap.employees] == ["REHIRED"]
    assert [(r.hr_id, r.reason) for r in snap.invalid] == [("BAD/ID", "forbidden character(s) /")]


def test_good_row_keeps_its_normalised_fields() -> None:
    """A valid row becomes an HREmployee with trimmed keys and a lower-cased e-mail."""
    builder = SnapshotBuilder(max_value_length=255)
    builder.add(1, "E1", employee_number=" 0042 ", badge_number=77, email=" John.Doe@Example.COM ")
    assert builder.snapshot().employees == (
        HREmployee("E1", employee_number="0042", badge_number="77", email="john.doe@example.com"),
    )


_any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.dates(),
    st.datetimes(),
)


# Dates in the active column are a configuration error, not a row's problem (test_types.py).
_any_active = _any_value.filter(lambda v: not isinstance(v, dt.date))


@given(
    rows=st.lists(
        st.tuples(_any_value, _any_value, _any_value, _any_value, _any_active), max_size=30
    )
)
def test_no_value_of_any_type_crashes_and_every_row_is_accounted_for(rows) -> None:
    """Whatever the driver returns, each row ends valid, invalid or out of scope, never an exception."""
    builder = SnapshotBuilder(max_value_length=255)
    for number, (raw_id, emp, badge, mail, active) in enumerate(rows, start=1):
        builder.add(
            number, raw_id, employee_number=emp, badge_number=badge, email=mail, active=active
        )
    snap = builder.snapshot()
    invalid_rows = {r.row_number for r in snap.invalid}
    assert len(invalid_rows) == len(snap.invalid)
    assert len(snap.employees) + len(snap.invalid) <= len(rows)
    assert len({e.hr_id for e in snap.employees}) == len(snap.employees)
    assert not snap.out_of_scope_ids & {e.hr_id for e in snap.employees}


def _fresh(text: str) -> str:
    """An equal ``str`` that is not the same object (literals are shared by the compiler)."""
    return "".join(list(text))


def test_a_pool_gives_employees_the_strings_it_holds_and_keeps_the_first_seen() -> None:
    """With a pool, an employee's id and keys are the pool's objects; new text enters the pool."""
    pool = StringPool()
    held = [pool.share(_fresh(t)) for t in ("E1", "100", "b9")]
    builder = SnapshotBuilder(max_value_length=255, strings=pool)
    builder.add(1, _fresh("E1"), employee_number=_fresh("100"), badge_number=_fresh("B9"))
    builder.add(2, _fresh("E2"), employee_number=100, email=_fresh(" X@Example.org "))
    one, two = builder.snapshot().employees
    assert one == HREmployee("E1", employee_number="100", badge_number="B9")
    assert one.hr_id is held[0]
    assert one.employee_number is held[1]
    assert two.employee_number is held[1]  # an integer's decimal text, too
    assert one.badge_number is pool.share(_fresh("B9"))  # B9 was new: the pool keeps it
    assert two.email == "x@example.org"
    assert two.email is pool.share(_fresh("x@example.org"))


_TEXT = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "E1", " E1", "E1 ", "a/b", "x\x00y", ".", "Ünï", "MIXED@Case.Example"]
    ),
    st.text(max_size=8),
)
_ROW = st.tuples(
    _TEXT,
    _TEXT,
    _TEXT,
    _TEXT,
    st.one_of(st.none(), st.integers(-2, 2), st.sampled_from(["0", "no", "yes"]), st.booleans()),
)


@given(st.lists(_ROW, max_size=12))
def test_the_inline_path_for_usual_rows_gives_what_the_full_checks_give(
    rows: list[tuple[object, object, object, object, object]],
) -> None:
    """Rows of text, empty and integer values built through ``add`` (its inline path) and through
    the full checks alone give the same snapshot."""
    inline, checked = SnapshotBuilder(max_value_length=6), SnapshotBuilder(max_value_length=6)
    for number, (raw_id, employee_number, badge, email, active) in enumerate(rows, start=1):
        inline.add(number, raw_id, employee_number, badge, email, active)
        checked._add_checked(
            number,
            raw_id,
            employee_number=employee_number,
            badge_number=badge,
            email=email,
            active=active,
        )
    assert inline.snapshot() == checked.snapshot()
