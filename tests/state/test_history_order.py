"""Histories are ordered by when things completed, not by the plan's order of event ids."""

from __future__ import annotations

from sync.domain import Action, ActionKind, Outcome, Situation
from sync.state import ActionOutcome, StateStore


def _action(kind: ActionKind, hr_id: str, pid: int, phase: int) -> Action:
    return Action(
        kind=kind,
        hr_id=hr_id,
        protime_id=pid,
        value=hr_id,
        situation=Situation.DRIFTED,
        reason="re-point",
        phase=phase,
    )


def test_a_delete_completed_before_a_write_comes_first_in_the_history(store: StateStore) -> None:
    """The write of A (lower id: the plan is by HR id) after the delete of Z: delete listed older."""
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False, only=())
    write = _action(ActionKind.WRITE, "A1", 7, phase=1)
    delete = _action(ActionKind.DELETE, "Z9", 7, phase=0)
    write_id, delete_id = store.events.record_pending(run_id=run_id, actions=[write, delete])
    assert write_id < delete_id
    store.events.record_outcomes([ActionOutcome(delete_id, delete, Outcome.SUCCEEDED, 204)])
    store.events.record_outcomes([ActionOutcome(write_id, write, Outcome.SUCCEEDED, 201)])
    newest_first = [e.action for e in store.events.events_for(protime_id=7)]
    assert newest_first == ["write", "delete"]


def test_a_delete_and_a_write_flushed_together_keep_their_phase_order(store: StateStore) -> None:
    """Outcomes recorded in one batch share a timestamp: the delete (phase 0) is still older."""
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False, only=())
    write = _action(ActionKind.WRITE, "A1", 8, phase=1)
    delete = _action(ActionKind.DELETE, "Z9", 8, phase=0)
    write_id, delete_id = store.events.record_pending(run_id=run_id, actions=[write, delete])
    store.events.record_outcomes(
        [
            ActionOutcome(delete_id, delete, Outcome.SUCCEEDED, 204),
            ActionOutcome(write_id, write, Outcome.SUCCEEDED, 201),
        ]
    )
    assert [e.action for e in store.events.events_for(protime_id=8)] == ["write", "delete"]
