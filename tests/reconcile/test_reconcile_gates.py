"""The input gate and the safety thresholds: when they block, and what their messages say."""

from __future__ import annotations

import pytest

from sync.config import SafetySettings
from sync.domain import Action, ActionKind, Plan, PriorState, Situation
from sync.errors import BlockedError, InputGateError, ThresholdError
from sync.reconcile._gates import check_input_gate, check_thresholds

LAST = PriorState(last_good_hr_count=1000, last_good_protime_count=2000)


def gate(hr: int, protime: int, prior: PriorState = LAST, **safety) -> None:
    check_input_gate(
        hr_count=hr, protime_count=protime, prior=prior, safety=SafetySettings(**safety)
    )


@pytest.mark.parametrize(
    ("hr", "protime", "prior", "safety"),
    [
        (1000, 2000, LAST, {}),
        (900, 1800, LAST, {}),  # exactly the ratio: 900 = 0.9 x 1000 passes
        (5, 7, PriorState(), {}),  # first run: nothing to compare with
        (0, 7, PriorState(), {"allow_empty_snapshot": True}),
        (0, 0, PriorState(last_good_hr_count=0), {"allow_empty_snapshot": True}),
        (100, 200, LAST, {"min_snapshot_ratio": 0.1}),
    ],
)
def test_gate_lets_normal_snapshots_through(hr, protime, prior, safety):
    """Snapshots at or above the ratio, or without a last good run, are not blocked."""
    gate(hr, protime, prior, **safety)


def test_gate_blocks_an_empty_hr_snapshot_with_figures():
    """An empty HR snapshot blocks and the message says which, how many, and how to override."""
    with pytest.raises(InputGateError) as caught:
        gate(0, 5, PriorState())
    message = str(caught.value)
    assert "the HR snapshot is empty (0 valid employees; no earlier good run)" in message
    assert "IDSYNC_SAFETY__ALLOW_EMPTY_SNAPSHOT=true" in message
    assert "--force" in message
    assert caught.value.exit_code == 3


def test_gate_blocks_an_empty_protime_snapshot():
    """No people in Protime (wrong tenant, missing scope) blocks like an empty HR does."""
    with pytest.raises(InputGateError, match=r"the Protime snapshot is empty \(0 people"):
        gate(5, 0, PriorState())


def test_gate_blocks_a_shrunken_snapshot_with_ratio():
    """HR at 899 of 1000 is below 0.90: the message has both counts, the ratio and the setting."""
    with pytest.raises(InputGateError) as caught:
        gate(899, 2000)
    message = str(caught.value)
    assert "the HR snapshot has 899 valid employees, the last good run had 1000" in message
    assert "ratio 0.899, below the minimum 0.9 (IDSYNC_SAFETY__MIN_SNAPSHOT_RATIO)" in message
    assert "Protime" not in message


def test_gate_names_both_snapshots_when_both_shrank():
    """When both snapshots shrank, one message names both with their figures."""
    with pytest.raises(InputGateError) as caught:
        gate(100, 300)
    message = str(caught.value)
    assert (
        "HR snapshot has 100 valid employees, the last good run had 1000: ratio 0.1, below"
        in message
    )
    assert "Protime snapshot has 300 people, the last good run had 2000: ratio 0.15" in message


def test_allowing_empty_does_not_allow_a_drop_to_zero():
    """allow_empty_snapshot lets an empty first run through, not a fall from 1000 to 0."""
    with pytest.raises(InputGateError, match="has 0 valid employees, the last good run had 1000"):
        gate(0, 2000, allow_empty_snapshot=True)


def _plan(*kinds_and_situations: tuple[ActionKind, Situation]) -> Plan:
    actions = tuple(
        Action(kind=k, hr_id=f"H{i}", protime_id=i, value=f"H{i}", situation=s, reason="r")
        for i, (k, s) in enumerate(kinds_and_situations)
    )
    return Plan(classifications=(), actions=actions)


W, D = ActionKind.WRITE, ActionKind.DELETE


def test_thresholds_pass_at_the_limits():
    """Counts equal to the limits pass: a limit is exceeded only when the count is greater."""
    the_plan = _plan((D, Situation.ORPHANED), (D, Situation.DRIFTED), (W, Situation.DRIFTED))
    check_thresholds(
        plan=the_plan, safety=SafetySettings(max_deletes=2, max_repoints=2, max_writes=3)
    )


def test_thresholds_name_each_exceeded_limit_with_figures():
    """Deletes, re-points and total writes over their limits are each named with figures."""
    the_plan = _plan(
        (D, Situation.ORPHANED),
        (D, Situation.ORPHANED),
        (D, Situation.DRIFTED),
        (W, Situation.DRIFTED),
        (W, Situation.UNLINKED),
    )
    with pytest.raises(ThresholdError) as caught:
        check_thresholds(
            plan=the_plan, safety=SafetySettings(max_deletes=2, max_repoints=1, max_writes=4)
        )
    message = str(caught.value)
    assert "3 deletes planned, limit 2 (IDSYNC_SAFETY__MAX_DELETES)" in message
    assert "2 re-point actions planned, limit 1 (IDSYNC_SAFETY__MAX_REPOINTS)" in message
    assert "5 actions planned, limit 4 (IDSYNC_SAFETY__MAX_WRITES)" in message
    assert "--force" in message
    assert isinstance(caught.value, BlockedError)


def test_thresholds_name_only_the_exceeded_limit():
    """One exceeded limit is named alone; no limit on total writes unless one is set."""
    the_plan = _plan(*[(W, Situation.UNLINKED)] * 50, (D, Situation.ORPHANED))
    with pytest.raises(ThresholdError) as caught:
        check_thresholds(plan=the_plan, safety=SafetySettings(max_deletes=0))
    assert str(caught.value).count("planned") == 1
    assert "1 deletes planned, limit 0" in str(caught.value)
