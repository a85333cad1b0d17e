"""Linked records word their reason and evidence when read: the same text, equality and copies."""

from __future__ import annotations

from dataclasses import asdict, replace

from reconcile_model import DEFAULT_RULES, emp, person, snapshot

from sync.domain import Classification, PriorState, Rule, Situation
from sync.reconcile._classify import classify


def _linked(hr_id: str, person_id: int, rule: Rule, evidence: str, how: str) -> Classification:
    return Classification(
        hr_id=hr_id,
        situation=Situation.LINKED,
        protime_id=person_id,
        rule=rule,
        evidence=evidence,
        reason=f"person {person_id} holds HRMID {hr_id} (matched {how})",
        protime_value=hr_id,
        held_by=person_id,
    )


def test_linked_records_equal_the_fully_worded_ones() -> None:
    """Linked by reference, by another rule and by hand, a record equals and hashes as the worded one."""
    hr = snapshot(emp("X", "E1"), emp("Y", "E2"), emp("Z", "E3"))
    people = [person(1, "X", "E1"), person(2, "Y", "E2"), person(3, "Z", "E3")]
    prior = PriorState(manual_links={"Z": 3})
    got = classify(hr=hr, people=people, prior=prior, rules=(Rule.EMPLOYEE_NUMBER,))
    expected = [
        _linked("X", 1, Rule.EMPLOYEE_NUMBER, "employee_number=E1", "by employee_number"),
        _linked("Y", 2, Rule.EMPLOYEE_NUMBER, "employee_number=E2", "by employee_number"),
        _linked("Z", 3, Rule.MANUAL, "manual link to 3", "by an admin's link"),
    ]
    assert got == expected
    assert expected == got
    assert [hash(c) for c in got] == [hash(c) for c in expected]
    assert [asdict(c) for c in got] == [asdict(c) for c in expected]
    (by_reference,) = classify(
        hr=snapshot(emp("X", "E1")),
        people=[person(1, "X", None)],
        prior=PriorState(),
        rules=DEFAULT_RULES,
    )
    assert by_reference == _linked("X", 1, Rule.REFERENCE, "reference=X", "by reference")


def test_a_copy_of_a_linked_record_keeps_the_given_text() -> None:
    """dataclasses.replace on a linked record gives a plain Classification with the new reason."""
    (linked,) = classify(
        hr=snapshot(emp("X", "E1")),
        people=[person(1, "X", "E1")],
        prior=PriorState(),
        rules=DEFAULT_RULES,
    )
    copy = replace(linked, situation=Situation.FAILED, reason=f"failed. It was: {linked.reason}")
    assert type(copy) is Classification
    assert copy.reason == "failed. It was: person 1 holds HRMID X (matched by reference)"
    assert copy.evidence == "reference=X"
    assert copy.situation is Situation.FAILED
