"""The planner: every situation under every reaction, phases, holds, failed and --only."""

from __future__ import annotations

import random

import pytest
from reconcile_model import ProtimeModel, by_id, decide, emp, person, snapshot

from sync.config import ReactionSettings
from sync.domain import (
    ActionKind,
    Classification,
    PriorState,
    Rule,
    Situation,
)
from sync.reconcile._classify import classify
from sync.reconcile._plan import plan, summarize

S = Situation
W, D = ActionKind.WRITE, ActionKind.DELETE
EN = (Rule.EMPLOYEE_NUMBER,)


def steps(the_plan):
    """The actions as (kind, hr_id, value, person, phase, depends_on) tuples."""
    return [
        (a.kind, a.hr_id, a.value, a.protime_id, a.phase, a.depends_on) for a in the_plan.actions
    ]


REACTION_CASES = [
    # (name, hr, people, rules, reactions, expected steps)
    (
        "unlinked, write",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1")],
        EN,
        {},
        [(W, "X", "X", 1, 2, None)],
    ),
    (
        "unlinked, report",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1")],
        EN,
        {"unlinked": "report"},
        [],
    ),
    (
        "drifted onto a stale value: delete it, then write",
        snapshot(emp("X", "E1")),
        [person(1, "OLD", "E1")],
        EN,
        {},
        [(D, "X", "OLD", 1, 0, None), (W, "X", "X", 1, 2, None)],
    ),
    (
        "drifted onto an out-of-scope value, the id sitting elsewhere: delete, then move",
        snapshot(emp("X", "E1"), out_of_scope=["LEFT"]),
        [person(1, "LEFT", "E1"), person(2, "X")],
        EN,
        {},
        [(D, "X", "LEFT", 1, 0, None), (W, "X", "X", 1, 1, None)],
    ),
    (
        "drifted, the id on another person, own person free: a move in phase 1",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1"), person(2, "X")],
        EN,
        {},
        [(W, "X", "X", 1, 1, None)],
    ),
    (
        "drifted onto a value another employee moves away: no delete, wait for the move",
        snapshot(emp("NEW", "E1"), emp("OLD", "E2")),
        [person(1, "OLD", "E1"), person(2, None, "E2")],
        EN,
        {},
        [(W, "NEW", "NEW", 1, 2, "OLD"), (W, "OLD", "OLD", 2, 1, None)],
    ),
    (
        "drifted, report",
        snapshot(emp("X", "E1")),
        [person(1, "OLD", "E1")],
        EN,
        {"drifted": "report"},
        [],
    ),
    ("orphaned, report", snapshot(), [person(7, "GONE")], EN, {}, []),
    (
        "orphaned, delete",
        snapshot(),
        [person(7, "GONE")],
        EN,
        {"orphaned": "delete"},
        [(D, "GONE", "GONE", 7, 0, None)],
    ),
    (
        "orphaned out of scope, delete",
        snapshot(out_of_scope=["LEFT"]),
        [person(7, "LEFT")],
        EN,
        {"orphaned": "delete"},
        [(D, "LEFT", "LEFT", 7, 0, None)],
    ),
    (
        "orphaned on two persons is never deleted",
        snapshot(),
        [person(7, "DUP"), person(8, "DUP")],
        EN,
        {"orphaned": "delete"},
        [],
    ),
    (
        "linked, unmatched, disputed, invalid and ignored plan nothing",
        snapshot(
            emp("L", "E1"),
            emp("U", "E9"),
            emp("D", "E2"),
            emp("I", "E3"),
            invalid=[(5, "B/D", "bad")],
        ),
        [person(1, "L", "E1"), person(2, None, "E2"), person(3, None, "E2"), person(4, None, "E3")],
        (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER),
        {"orphaned": "delete"},
        [],
    ),
]


@pytest.mark.parametrize(
    ("hr", "people", "rules", "reactions", "expected"),
    [case[1:] for case in REACTION_CASES],
    ids=[case[0] for case in REACTION_CASES],
)
def test_reaction_table(hr, people, rules, reactions, expected):
    """Each situation under each reaction yields exactly the expected actions and phases."""
    prior = PriorState(ignored_hr_ids=frozenset({"I"}))
    the_plan = decide(hr, people, rules=rules, prior=prior, reactions=ReactionSettings(**reactions))
    assert steps(the_plan) == expected


def test_reasons_are_sentences_naming_rule_values_and_persons():
    """Every action explains itself with the rule, the values and the persons involved."""
    unlinked = decide(snapshot(emp("E123", "123")), [person(4711, None, "123")], rules=EN)
    assert unlinked.actions[0].reason == (
        "employee_number 123 matched person 4711, which has no HRMID"
    )
    drifted = decide(snapshot(emp("X", "E1")), [person(1, "OLD", "E1"), person(2, "X")], rules=EN)
    delete, move = drifted.actions
    assert delete.reason.startswith("delete HRMID OLD from person 1 to make room for X:")
    assert move.reason.startswith("move HRMID X from person 2 to person 1:")
    assert "employee_number E1 matched person 1, which holds HRMID OLD" in move.reason
    orphan = decide(snapshot(), [person(7, "GONE")], reactions=ReactionSettings(orphaned="delete"))
    assert orphan.actions[0].reason == (
        "delete HRMID GONE from person 7: person 7 holds HRMID GONE, but no HR row has that id"
    )


def test_reference_name_appears_in_reasons():
    """The configured reference name, not HRMID, is used in every reason."""
    prior = PriorState()
    found = classify(
        hr=snapshot(emp("X", "E1")),
        people=[person(1, None, "E1")],
        prior=prior,
        rules=EN,
        reference_name="EMPID",
    )
    the_plan = plan(
        classifications=found, reactions=ReactionSettings(), prior=prior, reference_name="EMPID"
    )
    assert "which has no EMPID" in the_plan.actions[0].reason


def _converges(hr, people, *, rules=EN, prior=None, mode="conflict", seed=0):
    the_plan = decide(hr, people, rules=rules, prior=prior)
    model = ProtimeModel.of(people, mode)
    model.apply(the_plan, random.Random(seed))
    again = decide(hr, model.persons(), rules=rules, prior=prior)
    return the_plan, model, again


def test_chain_of_moves_takes_one_phase_per_link_and_never_conflicts():
    """P1 holds X2, P2 holds X3: X3 moves first, then X2, then X1, without a single 409."""
    hr = snapshot(emp("X1", "E1"), emp("X2", "E2"), emp("X3", "E3"))
    people = [person(1, "X2", "E1"), person(2, "X3", "E2"), person(3, None, "E3")]
    the_plan, model, again = _converges(hr, people)
    assert steps(the_plan) == [
        (W, "X1", "X1", 1, 3, "X2"),
        (W, "X2", "X2", 2, 2, "X3"),
        (W, "X3", "X3", 3, 1, None),
    ]
    assert model.conflicts == []
    assert again.actions == ()


def test_swap_is_broken_by_deleting_the_smallest_id_first():
    """X on Y's person and Y on X's: X is deleted in phase 0, Y moves, then X is written."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E2"))
    people = [person(1, "Y", "E1"), person(2, "X", "E2")]
    the_plan, model, again = _converges(hr, people)
    assert steps(the_plan) == [
        (D, "X", "X", 2, 0, None),
        (W, "X", "X", 1, 2, "Y"),
        (W, "Y", "Y", 2, 1, "X"),
    ]
    assert "values swap between persons" in the_plan.actions[0].reason
    assert model.conflicts == []
    assert again.actions == ()


def test_person_holding_an_unmoved_employee_id_is_held_not_cleared():
    """X's person holds Y, an unmatched employee: nothing is deleted, X says why it waits."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E9"))
    people = [person(1, "Y", "E1")]
    the_plan = decide(hr, people, rules=EN)
    x = by_id(the_plan.classifications)["X"]
    assert the_plan.actions == ()
    assert x.situation is S.DRIFTED
    assert "not re-pointed in this run" in x.reason
    assert "the id of an HR employee that is unmatched" in x.reason


def test_manual_link_clears_an_unmoved_employee_id_from_its_person():
    """An admin's link wins: the unmatched employee's value is deleted, then X is written."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E9"))
    people = [person(1, "Y", "E1")]
    prior = PriorState(manual_links={"X": 1})
    the_plan, model, again = _converges(hr, people, prior=prior)
    assert steps(the_plan) == [(D, "X", "Y", 1, 0, None), (W, "X", "X", 1, 2, None)]
    assert model.conflicts == []
    assert again.actions == ()


def test_manual_link_lets_the_displaced_employee_find_its_own_person():
    """Y's reference points to X's linked person; Y moves to its own match, X follows."""
    hr = snapshot(emp("X"), emp("Y", "E1"))
    people = [person(1, "Y", "E1"), person(2, None, "E1")]
    prior = PriorState(manual_links={"X": 1})
    the_plan, model, again = _converges(hr, people, rules=(Rule.REFERENCE, *EN), prior=prior)
    assert steps(the_plan) == [(W, "X", "X", 1, 2, "Y"), (W, "Y", "Y", 2, 1, None)]
    assert model.conflicts == []
    assert again.actions == ()


@pytest.mark.parametrize(
    ("prior", "word"),
    [
        (PriorState(ignored_hr_ids=frozenset({"V"})), "never removes"),
        (PriorState(manual_links={"X": 1}, ignored_hr_ids=frozenset({"V"})), "never removes"),
    ],
)
def test_protected_values_hold_the_re_point(prior, word):
    """A value an admin ignored is never removed, not even for a manual link."""
    the_plan = decide(snapshot(emp("X", "E1")), [person(1, "V", "E1")], rules=EN, prior=prior)
    assert the_plan.actions == ()
    assert word in by_id(the_plan.classifications)["X"].reason


def test_failed_action_is_not_retried_until_its_inputs_change():
    """Same fingerprint: failed, no action; --retry-failed or another person: planned again."""
    hr = snapshot(emp("X", "E1"))
    prior = PriorState(failed={"X": "write:X:1"})
    the_plan = decide(hr, [person(1, None, "E1")], rules=EN, prior=prior)
    x = by_id(the_plan.classifications)["X"]
    assert (x.situation, the_plan.actions) == (S.FAILED, ())
    assert "write:X:1" in x.reason
    assert "--retry-failed" in x.reason
    retried = decide(hr, [person(1, None, "E1")], rules=EN, prior=prior, retry_failed=True)
    assert steps(retried) == [(W, "X", "X", 1, 2, None)]
    moved = decide(hr, [person(2, None, "E1")], rules=EN, prior=prior)
    assert steps(moved) == [(W, "X", "X", 2, 2, None)]
    assert by_id(moved.classifications)["X"].situation is S.UNLINKED


def test_failed_delete_of_a_re_point_fails_the_whole_record():
    """A re-point whose phase-0 delete failed is failed as a whole, its write not attempted."""
    prior = PriorState(failed={"X": "delete:OLD:1"})
    the_plan = decide(snapshot(emp("X", "E1")), [person(1, "OLD", "E1")], rules=EN, prior=prior)
    assert the_plan.actions == ()
    assert by_id(the_plan.classifications)["X"].situation is S.FAILED


def test_failed_orphan_delete_is_not_retried():
    """An orphan whose delete failed permanently is failed, not deleted again."""
    prior = PriorState(failed={"GONE": "delete:GONE:7"})
    the_plan = decide(
        snapshot(), [person(7, "GONE")], prior=prior, reactions=ReactionSettings(orphaned="delete")
    )
    assert the_plan.actions == ()
    assert by_id(the_plan.classifications)["GONE"].situation is S.FAILED


def test_a_record_waiting_for_a_failed_move_is_held():
    """NEW waits for OLD to leave its person; OLD's move failed, so NEW is held, not run into 409."""
    hr = snapshot(emp("NEW", "E1"), emp("OLD", "E2"))
    people = [person(1, "OLD", "E1"), person(2, None, "E2")]
    prior = PriorState(failed={"OLD": "write:OLD:2"})
    the_plan = decide(hr, people, rules=EN, prior=prior)
    found = by_id(the_plan.classifications)
    assert the_plan.actions == ()
    assert found["OLD"].situation is S.FAILED
    assert found["NEW"].situation is S.DRIFTED
    assert "OLD must free person 1 first, and its last attempt failed" in found["NEW"].reason


def test_only_restricts_actions_not_classifications():
    """--only X plans X's actions alone; every record keeps its classification."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E2"))
    people = [person(1, None, "E1"), person(2, None, "E2")]
    full = decide(hr, people, rules=EN)
    only = decide(hr, people, rules=EN, only={"X"})
    assert [a.hr_id for a in only.actions] == ["X"]
    assert only.classifications == full.classifications


def test_only_holds_a_record_whose_person_another_record_must_free():
    """--only NEW without OLD: NEW is held with a reason that says to add OLD."""
    hr = snapshot(emp("NEW", "E1"), emp("OLD", "E2"))
    people = [person(1, "OLD", "E1"), person(2, None, "E2")]
    held = decide(hr, people, rules=EN, only={"NEW"})
    assert held.actions == ()
    assert (
        "OLD must free person 1 first; add it to --only"
        in by_id(held.classifications)["NEW"].reason
    )
    both = decide(hr, people, rules=EN, only={"NEW", "OLD"})
    assert len(both.actions) == 2
    first = decide(hr, people, rules=EN, only={"OLD"})
    assert [a.hr_id for a in first.actions] == ["OLD"]


def test_hold_propagates_along_a_chain():
    """X1 waits for X2, which waits for X3, which is held: all three are held."""
    hr = snapshot(emp("X1", "E1"), emp("X2", "E2"), emp("X3", "E3"))
    people = [person(1, "X2", "E1"), person(2, "X3", "E2"), person(3, "IGN", "E3")]
    the_plan = decide(hr, people, rules=EN, prior=PriorState(ignored_hr_ids=frozenset({"IGN"})))
    found = by_id(the_plan.classifications)
    assert the_plan.actions == ()
    assert "never removes" in found["X3"].reason
    assert "X3 must free person 2 first, and it is held" in found["X2"].reason
    assert "X2 must free person 1 first, and it is held" in found["X1"].reason


def test_plan_is_sorted_by_hr_id_then_phase():
    """Actions come sorted by HR id, then phase, whatever the order of the classifications."""
    hr = snapshot(emp("B", "E1"), emp("A", "E2"), emp("C", "E3"))
    people = [person(1, "OLD", "E1"), person(2, None, "E2"), person(3, None, "E3")]
    found = classify(hr=hr, people=people, prior=PriorState(), rules=EN)
    forward = plan(classifications=found, reactions=ReactionSettings(), prior=PriorState())
    backward = plan(
        classifications=list(reversed(found)), reactions=ReactionSettings(), prior=PriorState()
    )
    assert forward == backward
    keys = [(a.hr_id, a.phase) for a in forward.actions]
    assert keys == sorted(keys)
    assert [c.hr_id for c in forward.classifications] == ["A", "B", "C"]


def test_two_classifications_for_one_id_are_refused():
    """Two classifications with one key are a caller's bug and raise instead of guessing."""
    twice = [Classification("X", S.LINKED, protime_id=1), Classification("X", S.UNMATCHED)]
    with pytest.raises(ValueError, match="two classifications for 'X'"):
        plan(classifications=twice, reactions=ReactionSettings(), prior=PriorState())


def test_summarize_counts_every_situation():
    """The summary has every situation, zero included, and counts the failed ones separately."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E2"), invalid=[(3, None, "empty")])
    people = [person(1, "X", "E1"), person(2, None, "E2")]
    the_plan = decide(
        hr, people, rules=(Rule.REFERENCE, *EN), prior=PriorState(failed={"Y": "write:Y:2"})
    )
    counts = summarize(the_plan)
    assert set(counts) == {s.value for s in Situation}
    assert counts == {s.value: 0 for s in Situation} | {"linked": 1, "failed": 1, "invalid": 1}


def test_the_core_leaves_the_garbage_collector_as_it_found_it():
    """classify and plan pause the cyclic GC while they run and restore its state, on or off."""
    import gc

    was = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            decide(snapshot(emp("X", "E1")), [person(1, None, "E1")], rules=EN)
            assert gc.isenabled() is state
            with pytest.raises(ValueError, match="two classifications"):
                plan(
                    classifications=[Classification("X", S.LINKED), Classification("X", S.LINKED)],
                    reactions=ReactionSettings(),
                    prior=PriorState(),
                )
            assert gc.isenabled() is state
    finally:
        (gc.enable if was else gc.disable)()
