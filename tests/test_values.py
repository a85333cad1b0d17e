from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.values import FORBIDDEN_CHARACTERS, _explain, name_problem, value_problem


@pytest.mark.parametrize("ch", sorted(FORBIDDEN_CHARACTERS))
def test_each_forbidden_character_is_refused(ch: str) -> None:
    """Every character of protime-api.md §7's list makes a value unusable."""
    assert value_problem(f"A{ch}1") is not None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        (" E1", "white space"),
        ("E1\t", "white space"),
        ("E\x001", "control"),
        ("x" * 256, "longer than 255"),
        (12, "not a string"),
    ],
)
def test_other_bad_values_say_why(value: object, fragment: str) -> None:
    """Empty, padded, control, too long and non-string values are refused with a reason."""
    problem = value_problem(value)
    assert problem is not None
    assert fragment in problem


def test_good_values_pass() -> None:
    """Ordinary ids, unicode and exactly 255 characters are accepted."""
    for value in ("E123", "émile-42", "x" * 255, "a b", "..."):
        assert value_problem(value) is None


def test_names() -> None:
    """Names are 1-64 of letters, digits, '-' and '_' and never start with '@'."""
    assert name_problem("HRMID") is None
    assert name_problem("@badge-number") is not None
    assert name_problem("x" * 65) is not None


def test_dot_segments_are_refused() -> None:
    """'.' and '..' would be folded away in a URL path, so they cannot be values."""
    assert value_problem(".") is not None
    assert value_problem("..") is not None


@settings(max_examples=3000)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.sampled_from("E1 ./\\?#%&*:<>\x00\x1f\x7f\x9f\xa0\u2028é")),
    ),
    st.integers(min_value=1, max_value=12),
)
def test_fast_path_agrees_with_every_rule(value: str, max_length: int) -> None:
    """The one-regex fast path accepts exactly the values the full rules accept."""
    assert value_problem(value, max_length=max_length) == _explain(value, max_length=max_length)
