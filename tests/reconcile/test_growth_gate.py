"""The scope-growth gate: an HR snapshot or a plan much larger than the last good run's blocks."""

from __future__ import annotations

import pytest

from sync.config import SafetySettings
from sync.domain import Action, ActionKind, Plan, PriorState, Situation
from sync.errors import InputGateError, ThresholdError
from sync.reconcile._gates import check_input_gate, check_thresholds


def _plan(writes: int) -> Plan:
    actions = tuple(
        Action(
            kind=ActionKind.WRITE,
            hr_id=f"E{i}",
            protime_id=i + 1,
            value=f"E{i}",
            situation=Situation.UNLINKED,
            reason="matched",
        )
        for i in range(writes)
    )
    return Plan(classifications=(), actions=actions)


@pytest.mark.parametrize(("hr", "blocked"), [(1500, False), (1501, True), (999, False)])
def test_an_hr_snapshot_over_the_ratio_blocks_naming_the_variable(hr: int, blocked: bool) -> None:
    """1.5 x 1000 = 1500 passes, 1501 blocks with the figures and the variable's name."""
    prior = PriorState(last_good_hr_count=1000, last_good_protime_count=1000)
    if not blocked:
        check_input_gate(hr_count=hr, protime_count=1000, prior=prior, safety=SafetySettings())
        return
    with pytest.raises(InputGateError) as caught:
        check_input_gate(hr_count=hr, protime_count=1000, prior=prior, safety=SafetySettings())
    message = str(caught.value)
    assert "IDSYNC_SAFETY__MAX_GROWTH_RATIO" in message
    assert "1501" in message
    assert "1000" in message


def test_the_ratio_is_configurable_and_a_first_run_has_nothing_to_compare() -> None:
    """MAX_GROWTH_RATIO=3 lets twice as many through; without a last good run nothing blocks."""
    prior = PriorState(last_good_hr_count=1000, last_good_protime_count=1000)
    check_input_gate(
        hr_count=2000, protime_count=1000, prior=prior, safety=SafetySettings(max_growth_ratio=3)
    )
    check_input_gate(hr_count=10**6, protime_count=10, prior=PriorState(), safety=SafetySettings())


def test_a_plan_over_the_ratio_of_the_last_good_runs_blocks() -> None:
    """The last good run planned 200; 301 actions over a 50,000 snapshot block, 300 pass."""
    prior = PriorState(last_good_hr_count=50_000, last_good_action_count=200)
    safety = SafetySettings(max_deletes=10**6, max_repoints=10**6)
    check_thresholds(plan=_plan(300), safety=safety, prior=prior)
    with pytest.raises(ThresholdError) as caught:
        check_thresholds(plan=_plan(501), safety=safety, prior=prior)
    assert "IDSYNC_SAFETY__MAX_GROWTH_RATIO" in str(caught.value)
    assert "last good run planned 200" in str(caught.value)


def test_ordinary_churn_and_a_quiet_last_run_never_trip_it() -> None:
    """After a run that planned 0 nothing is compared; 100 actions (or 1 % of HR) always pass."""
    safety = SafetySettings()
    check_thresholds(plan=_plan(90), safety=safety, prior=PriorState(last_good_action_count=0))
    check_thresholds(
        plan=_plan(100),
        safety=safety,
        prior=PriorState(last_good_hr_count=1000, last_good_action_count=2),
    )
    check_thresholds(
        plan=_plan(99),
        safety=safety,
        prior=PriorState(last_good_hr_count=20_000, last_good_action_count=3),
    )
    with pytest.raises(ThresholdError):
        check_thresholds(
            plan=_plan(101),
            safety=safety,
            prior=PriorState(last_good_hr_count=1000, last_good_action_count=2),
        )
