from __future__ import annotations

import pytest

from sync.names import DEFAULT_SYNC, sync_name_problem


@pytest.mark.parametrize("name", [DEFAULT_SYNC, "acme", "a", "0-9", "acme-payroll", "a" * 63])
def test_good_names_pass(name: str) -> None:
    """Lower-case letters, digits and inner dashes up to 63 characters name a sync."""
    assert sync_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-acme", "Acme", "acme_hr", "a" * 64, "acme.eu", "acme\n"])
def test_bad_names_say_the_rule(name: str) -> None:
    """Anything else is refused with the pattern in the message."""
    problem = sync_name_problem(name)
    assert problem is not None
    assert "[a-z0-9]" in problem
