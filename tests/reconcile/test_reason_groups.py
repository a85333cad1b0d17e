"""`idsync status` groups: each group comes from a real classification's reason."""

from __future__ import annotations

from sync.domain import HREmployee, HRSnapshot, Person, PriorState, Rule
from sync.reconcile import classify
from sync.reconcile._groups import group_counts, reason_group


def test_every_unmatched_and_disputed_kind_has_its_group():
    """No candidate, a link to a gone person, two persons by a rule, two employees on one
    person, an id on two persons: each reason the classifier writes falls in its own group."""
    hr = HRSnapshot(
        employees=(
            HREmployee("U1", employee_number="none"),
            HREmployee("M1", employee_number="none2"),
            HREmployee("R1", employee_number="7"),
            HREmployee("T1", employee_number="8"),
            HREmployee("T2", badge_number="B8"),
            HREmployee("P1"),
        )
    )
    people = [
        Person(id=1, employee_number="7"),
        Person(id=2, employee_number="7"),
        Person(id=3, employee_number="8", badge_number="B8"),
        Person(id=4, reference="P1"),
        Person(id=5, reference="P1"),
    ]
    found = classify(
        hr=hr,
        people=people,
        prior=PriorState(manual_links={"M1": 99}),
        rules=(Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER),
    )
    groups = {
        c.hr_id: reason_group(c.situation.value, c.rule.value if c.rule else None, c.reason)
        for c in found
    }
    assert groups == {
        "U1": "no candidate",
        "M1": "manual link to a person Protime no longer has",
        "R1": "two or more candidates by rule employee_number",
        "T1": "two or more employees on one person",
        "T2": "two or more employees on one person",
        "P1": "the id is on two or more persons in Protime",
    }


def test_a_row_an_admin_just_linked_waits_for_the_next_run():
    """Between `idsync link` and the next run the row keeps its situation but says why."""
    reason = "manual link; the next run writes the reference"
    assert reason_group("unmatched", "manual", reason) == "linked by hand, waiting for the next run"


def test_counts_put_unmatched_first_then_the_biggest_groups():
    """Counts per (situation, group): unmatched before disputed, larger groups first."""
    rows = [
        ("disputed", "employee_number", "employee_number 7 matches 2 persons"),
        ("unmatched", None, "no person matched: ..."),
        ("disputed", None, "person 3 is matched by 2 HR employees"),
        ("disputed", None, "person 4 is matched by 2 HR employees"),
    ]
    assert group_counts(rows) == [
        ("unmatched", "no candidate", 1),
        ("disputed", "two or more employees on one person", 2),
        ("disputed", "two or more candidates by rule employee_number", 1),
    ]
