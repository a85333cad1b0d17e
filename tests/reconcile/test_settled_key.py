"""The settled key: one digest of every input of a plan besides the Protime snapshot (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from sync.config import ProtimeSettings, ReactionSettings, SafetySettings, Settings
from sync.domain import (
    HREmployee,
    HRSnapshot,
    InvalidHRRow,
    PriorState,
)
from sync.reconcile._settled import settled_key

if TYPE_CHECKING:
    from collections.abc import Callable


def _settings(**sections: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings init option
        protime=ProtimeSettings(base_url="https://x.example", tenant="t"),
        **sections,  # type: ignore[arg-type]  # the sections of Settings
    )


HR = HRSnapshot(
    employees=(
        HREmployee("E1", employee_number="1", badge_number="B1"),
        HREmployee("E2", employee_number="2", email="e2@example.com"),
    ),
    invalid=(InvalidHRRow(3, None, "empty"),),
    out_of_scope_ids=frozenset({"OLD"}),
)
PRIOR = PriorState(manual_links={"E1": 7}, ignored_hr_ids=frozenset({"X"}), failed={"E2": "f"})


def _key(
    *, settings: Settings | None = None, hr: HRSnapshot = HR, prior: PriorState = PRIOR
) -> str:
    return settled_key(
        settings=settings or _settings(), hr=hr, prior=prior, snapshot_fingerprint="fp"
    )


def test_the_same_inputs_give_the_same_key() -> None:
    """Two digests of equal inputs (built separately) are equal."""
    again = HRSnapshot(
        employees=tuple(replace(e) for e in HR.employees),
        invalid=HR.invalid,
        out_of_scope_ids=frozenset({"OLD"}),
    )
    assert _key() == _key(hr=again, prior=replace(PRIOR))


def test_the_last_good_counts_do_not_count() -> None:
    """The prior's last good counts change with every run and are left out."""
    assert _key() == _key(prior=replace(PRIOR, last_good_hr_count=5, last_good_action_count=2))


CHANGES: dict[str, Callable[[], str]] = {
    "an employee's badge": lambda: _key(
        hr=replace(HR, employees=(replace(HR.employees[0], badge_number="B9"), HR.employees[1]))
    ),
    "the order of employees": lambda: _key(hr=replace(HR, employees=HR.employees[::-1])),
    "a value moved between fields": lambda: _key(
        hr=replace(
            HR,
            employees=(
                replace(HR.employees[0], employee_number="B1", badge_number="1"),
                HR.employees[1],
            ),
        )
    ),
    "an invalid row": lambda: _key(hr=replace(HR, invalid=(InvalidHRRow(4, None, "empty"),))),
    "an out-of-scope id": lambda: _key(hr=replace(HR, out_of_scope_ids=frozenset({"OLDER"}))),
    "a manual link": lambda: _key(prior=replace(PRIOR, manual_links={"E1": 8})),
    "an ignored id": lambda: _key(prior=replace(PRIOR, ignored_hr_ids=frozenset())),
    "a failed record": lambda: _key(prior=replace(PRIOR, failed={"E2": "g"})),
    "a reaction": lambda: _key(settings=_settings(reactions=ReactionSettings(orphaned="delete"))),
    "a safety threshold": lambda: _key(settings=_settings(safety=SafetySettings(max_deletes=3))),
    "the snapshot fingerprint": lambda: settled_key(
        settings=_settings(), hr=HR, prior=PRIOR, snapshot_fingerprint="other"
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_to_an_input_changes_the_key(change: str) -> None:
    """Each input of a plan is in the digest: changing it gives another key."""
    assert CHANGES[change]() != _key()
