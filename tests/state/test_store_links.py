"""Bulk links (one check for every link) and re-key history, on every state database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.domain import Action, ActionKind, Classification, Outcome, Rule, Situation
from sync.errors import UsageError
from sync.state import ActionOutcome, StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _classify(store: StateStore, *classifications: Classification) -> str:
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    store.map.save_classifications(run_id=run_id, classifications=classifications, now=T0)
    return run_id


def _world(store: StateStore) -> None:
    """E1 linked to person 1; U1, U2, U3 unmatched; BAD invalid; GONE an orphan on person 9."""
    _classify(
        store,
        Classification(
            "E1", Situation.LINKED, protime_id=1, rule=Rule.REFERENCE, protime_value="E1"
        ),
        Classification("U1", Situation.UNMATCHED, reason="no person matched"),
        Classification("U2", Situation.UNMATCHED, reason="no person matched"),
        Classification("U3", Situation.UNMATCHED, reason="no person matched"),
        Classification("BAD", Situation.INVALID, reason="row 3: duplicate id"),
        Classification("GONE", Situation.ORPHANED, protime_id=9, protime_value="GONE"),
    )


def test_link_many_checks_every_pair_and_links_nothing_when_one_is_wrong(store: StateStore):
    """Each problem is reported with its pair's index, and no pair is linked."""
    _world(store)
    pairs = [
        ("U1", 5),  # fine
        ("U2", 1),  # person 1 is E1's
        ("NEW", 6),  # no run has seen it
        ("BAD", 7),  # invalid in HR
        ("GONE", 8),  # an orphaned value, no employee
        ("U3", 0),  # not a person id
        ("E/1", 4),  # cannot be a reference value
    ]
    linked, problems = store.admin.link_many(pairs)
    assert linked == []
    assert dict(problems) == {
        1: "Protime person 1 is mapped to HR id E1 (linked); linking U2 to it would re-point the"
        " person's reference on the next reconcile. Add --force to do that",
        2: "HR id 'NEW' is no HR employee idsync knows (no run has seen it)",
        3: "HR id 'BAD' is no HR employee idsync knows (it is invalid)",
        4: "HR id 'GONE' is no HR employee idsync knows (it is orphaned)",
        5: "Protime id must be a positive number, got 0",
        6: "HR id 'E/1' cannot be linked: forbidden character(s) /",
    }
    assert store.map.load_prior().manual_links == {}


def test_link_many_refuses_duplicates_inside_the_file(store: StateStore):
    """The same HR id for two persons, or one person for two HR ids, refuses both rows."""
    _world(store)
    linked, problems = store.admin.link_many([("U1", 5), ("U1", 6), ("U2", 7), ("U3", 7)])
    assert linked == []
    assert [i for i, _ in problems] == [0, 1, 2, 3]
    assert "HR id 'U1' is given more than one person: 5, 6" in problems[0][1]
    assert "Protime person 7 is given more than one HR id: U2, U3" in problems[2][1]


def test_link_many_skip_bad_and_force(store: StateStore):
    """--skip-bad links the good pairs; --force takes a person another HR id holds."""
    _world(store)
    linked, problems = store.admin.link_many([("U1", 5), ("U2", 1)], skip_bad=True)
    assert linked == [("U1", 5)]
    assert [i for i, _ in problems] == [1]
    assert store.map.load_prior().manual_links == {"U1": 5}
    linked, problems = store.admin.link_many([("U2", 1)], force=True)
    assert (linked, problems) == ([("U2", 1)], [])
    assert store.map.load_prior().manual_links == {"U1": 5, "U2": 1}
    assert [e.action for e in store.events.events_for(hr_id="U2")] == ["link"]


def test_link_many_check_only_links_nothing(store: StateStore):
    """check_only reports the problems of a clean batch as none and still writes nothing."""
    _world(store)
    assert store.admin.link_many([("U1", 5)], check_only=True) == ([], [])
    assert store.map.load_prior().manual_links == {}


def test_single_link_refuses_a_mapped_person_unless_forced(store: StateStore):
    """One `link` runs the same check: a person the map has under another HR id needs --force."""
    _world(store)
    with pytest.raises(UsageError, match="mapped to HR id E1"):
        store.admin.link(hr_id="U1", protime_id=1)
    store.admin.link(hr_id="U1", protime_id=1, force=True)
    assert store.map.load_prior().manual_links == {"U1": 1}


def test_a_rekey_is_told_from_both_ids_and_kept_as_previous_hr_id(store: StateStore):
    """E9 written over E1 on person 1: the row keeps E1 as previous HR id, and both ids'
    history tells the re-key with its run and reason."""
    _classify(
        store,
        Classification("E1", Situation.LINKED, protime_id=1, protime_value="E1"),
    )
    reason = (
        "employee_number 7 matched person 1, which holds HRMID E1 instead (no HR row has that id)"
    )
    run_id = _classify(
        store,
        Classification(
            "E9",
            Situation.DRIFTED,
            protime_id=1,
            rule=Rule.EMPLOYEE_NUMBER,
            protime_value="E1",
            reason=reason,
        ),
    )
    delete = Action(ActionKind.DELETE, "E9", 1, "E1", Situation.DRIFTED, "delete E1", phase=0)
    write = Action(ActionKind.WRITE, "E9", 1, "E9", Situation.DRIFTED, reason, phase=1)
    ids = store.events.record_pending(run_id=run_id, actions=[delete, write])
    store.events.record_outcomes(
        [
            ActionOutcome(event_id=ids[0], action=delete, outcome=Outcome.SUCCEEDED),
            ActionOutcome(event_id=ids[1], action=write, outcome=Outcome.SUCCEEDED),
        ]
    )
    row = store.map.mapping("E9")
    assert row is not None
    assert (row.situation, row.previous_hr_id) == ("linked", "E1")
    for hr_id in ("E1", "E9"):
        (rekey,) = store.events.rekeys(hr_id)
        assert (rekey.old, rekey.new, rekey.protime_id, rekey.run_id) == ("E1", "E9", 1, run_id)
        assert rekey.reason == reason
    assert store.events.rekeys("E2") == []
