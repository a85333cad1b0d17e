"""load_prior gives the growth gate the last good run's action count."""

from __future__ import annotations

from sync.state import RunSummary, StateStore


def test_last_good_action_count_sums_every_outcome(store: StateStore) -> None:
    """3 writes succeeded and 1 failed, 2 deletes: the last good run planned 6 actions."""
    assert store.map.load_prior().last_good_action_count is None
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False, only=())
    store.runs.finish_run(
        run_id=run_id,
        status="partial",
        summary=RunSummary(
            hr_count=10,
            protime_count=10,
            actions_by_outcome={"write": {"succeeded": 3, "failed": 1}, "delete": {"succeeded": 2}},
        ),
    )
    prior = store.map.load_prior()
    assert prior.last_good_action_count == 6
    assert prior.last_good_hr_count == 10
