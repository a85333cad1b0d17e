"""The map after a rollback's calls: a record whose reference a rollback deleted is no longer linked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.domain import Action, ActionKind, Classification, Outcome, Rule, Situation
from sync.state import ActionOutcome, StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
UNDONE = "0123abcd-0000-0000-0000-000000000000"


def _linked(hr_id: str, pid: int, rule: Rule = Rule.REFERENCE) -> Classification:
    return Classification(
        hr_id,
        Situation.LINKED,
        protime_id=pid,
        rule=rule,
        evidence=f"reference={hr_id}" if rule is Rule.REFERENCE else f"linked by an admin to {pid}",
        reason=f"person {pid} holds HRMID {hr_id} (matched by reference)",
        protime_value=hr_id,
    )


def _undo_delete(value: str, pid: int) -> Action:
    """The action a rollback plans for a value the undone run wrote onto no one's person."""
    return Action(
        ActionKind.DELETE,
        value,
        pid,
        value,
        Situation.UNLINKED,
        f"rollback of run {UNDONE[:8]}: delete HRMID {value} from person {pid}"
        " (it was on no one before)",
    )


def _apply(
    store: StateStore,
    trigger: str,
    classifications: list[Classification],
    actions: list[Action],
    outcome: Outcome = Outcome.SUCCEEDED,
) -> str:
    """A run of ``trigger`` that classified, then called ``actions`` with ``outcome``."""
    run_id = store.runs.start_run(trigger=trigger, dry_run=False, forced=False)
    store.map.save_classifications(run_id=run_id, classifications=classifications, now=T0)
    ids = store.events.record_pending(run_id=run_id, actions=actions)
    status = 204 if outcome is Outcome.SUCCEEDED else 503
    store.events.record_outcomes(
        [ActionOutcome(i, a, outcome, status) for i, a in zip(ids, actions, strict=True)]
    )
    return run_id


def test_a_rolled_back_reference_leaves_its_record_unlinked_with_the_rollback_as_reason(
    store: StateStore,
) -> None:
    """A rollback's succeeded delete of a linked employee's own value makes its record unlinked,
    reasoned by the rollback run, off the write-back's pairs and counted as unlinked."""
    run_id = _apply(
        store, "rollback", [_linked("H1", 11), _linked("E1", 12)], [_undo_delete("H1", 11)]
    )
    row = store.map.mapping("H1")
    assert row is not None
    assert (row.situation, row.protime_id, row.protime_value, row.rule, row.evidence) == (
        "unlinked",
        11,
        None,
        None,
        None,
    )
    assert row.reason == (
        f"rolled back by run {run_id[:8]}: rollback of run {UNDONE[:8]}: delete HRMID H1 from"
        " person 11 (it was on no one before)"
    )
    assert store.map.linked_pairs() == {"E1": 12}
    assert store.map.counts_by_situation() == {"linked": 1, "unlinked": 1}
    assert [c.hr_id for c in store.map.unlinked_records()] == ["H1"]


def test_a_delete_by_another_run_names_that_run(store: StateStore) -> None:
    """A linked record whose own value a run of another trigger deleted is unlinked too, its
    reason naming the run."""
    run_id = _apply(store, "apply", [_linked("H1", 11)], [_undo_delete("H1", 11)])
    row = store.map.mapping("H1")
    assert row is not None
    assert row.situation == "unlinked"
    assert row.reason is not None
    assert row.reason.startswith(f"deleted by run {run_id[:8]}: ")


def test_a_manual_link_keeps_its_rule_when_its_reference_is_rolled_back(
    store: StateStore,
) -> None:
    """An admin's link whose reference a rollback deleted reads unlinked but keeps the admin's
    rule and evidence: the next run writes the reference again."""
    _apply(store, "rollback", [_linked("M1", 21, Rule.MANUAL)], [_undo_delete("M1", 21)])
    row = store.map.mapping("M1")
    assert row is not None
    assert (row.situation, row.rule, row.evidence) == (
        "unlinked",
        "manual",
        "linked by an admin to 21",
    )


@pytest.mark.parametrize("outcome", [Outcome.RETRIABLE, Outcome.FAILED])
def test_a_delete_that_did_not_happen_leaves_the_record_linked_to_its_person(
    store: StateStore, outcome: Outcome
) -> None:
    """A rollback delete that did not succeed leaves the reference in Protime, so the record
    keeps its person and value (a permanent failure reads failed, as for any call)."""
    _apply(store, "rollback", [_linked("H1", 11)], [_undo_delete("H1", 11)], outcome)
    row = store.map.mapping("H1")
    assert row is not None
    assert (row.protime_id, row.protime_value) == (11, "H1")
    assert row.situation == ("linked" if outcome is Outcome.RETRIABLE else "failed")


def test_deleting_another_value_from_a_linked_person_keeps_the_link(store: StateStore) -> None:
    """A delete of a value that is not the record's own (a stale value on its person, another
    person's copy) does not unlink it."""
    stale = Action(ActionKind.DELETE, "E1", 99, "E1", Situation.LINKED, "copy on person 99")
    other = Action(ActionKind.DELETE, "E2", 12, "OLD", Situation.DRIFTED, "make room")
    _apply(store, "rollback", [_linked("E1", 11), _linked("E2", 12)], [stale, other])
    assert store.map.linked_pairs() == {"E1": 11, "E2": 12}


def test_a_rollback_writing_a_value_back_links_it_to_its_old_person(store: StateStore) -> None:
    """A re-point rolled back (the value put back on the person it was on) links the record to
    that person again: the write-back's pairs follow."""
    back = Action(
        ActionKind.WRITE,
        "R1",
        31,
        "R1",
        Situation.DRIFTED,
        f"rollback of run {UNDONE[:8]}: put HRMID R1 back on person 31",
    )
    _apply(store, "rollback", [_linked("R1", 32)], [back])
    assert store.map.linked_pairs() == {"R1": 31}
