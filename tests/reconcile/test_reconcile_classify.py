"""Classification: every situation and every matching decision of docs/matching.md, as a table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from reconcile_model import DEFAULT_RULES, by_id, emp, person, snapshot

from sync.domain import HRSnapshot, Person, PriorState, Rule, Situation, ValueOwner
from sync.reconcile._classify import classify

S = Situation
ALL_RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER, Rule.EMAIL)


@dataclass
class Case:
    name: str
    hr: HRSnapshot
    people: list[Person]
    # hr_id -> (situation, protime_id, words the reason must contain)
    expected: dict[str, tuple[Situation, int | None, tuple[str, ...]]]
    prior: PriorState = field(default_factory=PriorState)
    rules: tuple[Rule, ...] = DEFAULT_RULES


CASES = [
    Case(
        "linked by reference",
        snapshot(emp("X", "E1")),
        [person(1, "X", "E1")],
        {"X": (S.LINKED, 1, ("person 1 holds HRMID X", "by reference"))},
    ),
    Case(
        "unlinked by employee number",
        snapshot(emp("E123", "123")),
        [person(4711, None, "123")],
        {
            "E123": (
                S.UNLINKED,
                4711,
                ("employee_number 123 matched person 4711, which has no HRMID",),
            )
        },
    ),
    Case(
        "unlinked by badge when the employee number is empty in HR",
        snapshot(emp("X", None, badge="B1")),
        [person(1, None, "E9", badge_number="B1")],
        {"X": (S.UNLINKED, 1, ("badge_number B1 matched person 1",))},
    ),
    Case(
        "email is trimmed and case-insensitive",
        snapshot(emp("X", email=" Ann@Example.ORG ")),
        [person(1, email="ann@example.org")],
        {"X": (S.UNLINKED, 1, ("email ann@example.org",))},
        rules=(Rule.EMAIL,),
    ),
    Case(
        "employee numbers are trimmed but case-sensitive",
        snapshot(emp("X", " e1 "), emp("Y", "E2 ")),
        [person(1, None, "E1"), person(2, None, " E2")],
        {
            "X": (S.UNMATCHED, None, ("employee_number e1: no person",)),
            "Y": (S.UNLINKED, 2, ()),
        },
    ),
    Case(
        "drifted: the person holds a value no HR row has",
        snapshot(emp("X", "E1")),
        [person(1, "OLD", "E1")],
        {"X": (S.DRIFTED, 1, ("holds HRMID OLD instead", "no HR row has that id"))},
    ),
    Case(
        "drifted: the id sits on another person",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1"), person(2, "X")],
        {"X": (S.DRIFTED, 1, ("HRMID X sits on person 2",))},
        rules=(Rule.EMPLOYEE_NUMBER, Rule.REFERENCE),
    ),
    Case(
        "drifted: the person holds another employee's id (rehire with a new id)",
        snapshot(emp("NEW", "E1"), emp("OLD", "E2")),
        [person(1, "OLD", "E1"), person(2, None, "E2")],
        {
            "NEW": (S.DRIFTED, 1, ("holds HRMID OLD instead", "another HR employee")),
            "OLD": (S.DRIFTED, 2, ("HRMID OLD sits on person 1",)),
        },
        rules=(Rule.EMPLOYEE_NUMBER,),
    ),
    Case(
        "unmatched lists what was tried",
        snapshot(emp("X", "E1")),
        [person(1, None, "E2")],
        {
            "X": (
                S.UNMATCHED,
                None,
                (
                    "reference X: no person",
                    "employee_number E1: no person",
                    "badge_number empty in HR",
                ),
            )
        },
    ),
    Case(
        "disputed: a rule with two candidates stops, a later unique rule is not tried",
        snapshot(emp("X", "E1", badge="B1")),
        [person(1, None, "E1"), person(2, None, "E1", badge_number="B1")],
        {"X": (S.DISPUTED, None, ("employee_number E1 matches 2 persons (1, 2)", "never guessed"))},
    ),
    Case(
        "disputed: two HR employees resolve to one person, both of them",
        snapshot(emp("X", "E1"), emp("Y", None, badge="B1")),
        [person(1, None, "E1", badge_number="B1")],
        {
            "X": (
                S.DISPUTED,
                None,
                (
                    "person 1 is matched by 2 HR employees",
                    "X (employee_number E1)",
                    "Y (badge_number B1)",
                ),
            ),
            "Y": (S.DISPUTED, None, ("person 1 is matched by 2 HR employees",)),
        },
    ),
    Case(
        "disputed even when one of the two matched by reference",
        snapshot(emp("X", "E9"), emp("Y", "E1")),
        [person(1, "X", "E1")],
        {"X": (S.DISPUTED, None, ("X (reference X)",)), "Y": (S.DISPUTED, None, ())},
    ),
    Case(
        "a rule before reference wins when it yields one person",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1"), person(2, "X")],
        {"X": (S.DRIFTED, 1, ())},
        rules=(Rule.EMPLOYEE_NUMBER, Rule.REFERENCE),
    ),
    Case(
        "out-of-service persons are still candidates",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1", out_of_service=True)],
        {"X": (S.UNLINKED, 1, ())},
    ),
    Case(
        "orphaned: a value no HR row has",
        snapshot(),
        [person(7, "GONE")],
        {"GONE": (S.ORPHANED, 7, ("person 7 holds HRMID GONE", "no HR row has that id"))},
    ),
    Case(
        "orphaned: a value HR marks out of scope",
        snapshot(out_of_scope=["LEFT"]),
        [person(7, "LEFT")],
        {"LEFT": (S.ORPHANED, 7, ("out of scope",))},
    ),
    Case(
        "an id both in scope and out of scope counts as in scope",
        snapshot(emp("X", "E1"), out_of_scope=["X"]),
        [person(7, "X", "E1")],
        {"X": (S.LINKED, 7, ())},
    ),
    Case(
        "a stale value on a matched person is the employee's drift, not an orphan as well",
        snapshot(emp("X", "E1")),
        [person(1, "OLD", "E1")],
        {"X": (S.DRIFTED, 1, ())},
    ),
    Case(
        "a value an invalid row might own is never an orphan, trimmed or not",
        snapshot(
            invalid=[
                (3, " A1", "leading or trailing white space"),
                (4, "B/1", "forbidden character(s) /"),
            ]
        ),
        [person(1, "A1"), person(2, "B/1")],
        {
            " A1": (S.INVALID, None, ("row 3: leading or trailing white space",)),
            "B/1": (S.INVALID, None, ("row 4: forbidden",)),
        },
    ),
    Case(
        "invalid rows with the same id merge; blank ids get one key per row",
        snapshot(
            invalid=[
                (5, "D", "duplicate id"),
                (2, "D", "duplicate id"),
                (7, None, "empty"),
                (8, "  ", "empty"),
            ]
        ),
        [],
        {
            "D": (S.INVALID, None, ("rows 2, 5: duplicate id",)),
            "<row 7>": (S.INVALID, None, ("row 7: empty",)),
            "<row 8>": (S.INVALID, None, ("row 8: empty",)),
        },
    ),
    Case(
        "a valid row sharing its id with an invalid row is invalid too",
        snapshot(emp("D", "E1"), invalid=[(9, "D", "duplicate id")]),
        [person(1, None, "E1")],
        {"D": (S.INVALID, None, ("row 9: duplicate id", "must be unique"))},
    ),
    Case(
        "two valid rows with one id are invalid",
        snapshot(emp("D", "E1"), emp("D", "E2")),
        [person(1, None, "E1")],
        {"D": (S.INVALID, None, ("duplicate id: 2 rows",))},
    ),
    Case(
        "ignored: no matching, and it frees its person for nobody else's guess",
        snapshot(emp("X", "E1"), emp("Y", "E1")),
        [person(1, None, "E1")],
        {"X": (S.IGNORED, None, ("an admin ignored it",)), "Y": (S.UNLINKED, 1, ())},
        prior=PriorState(ignored_hr_ids=frozenset({"X"})),
    ),
    Case(
        "ignored value in Protime is reported as ignored, not orphaned",
        snapshot(),
        [person(1, "GONE")],
        {"GONE": (S.IGNORED, None, ())},
        prior=PriorState(ignored_hr_ids=frozenset({"GONE", "NOWHERE"})),
    ),
    Case(
        "ignored invalid row",
        snapshot(invalid=[(2, "A/B", "forbidden")]),
        [],
        {"A/B": (S.IGNORED, None, ("invalid too",))},
        prior=PriorState(ignored_hr_ids=frozenset({"A/B"})),
    ),
    Case(
        "a manual link wins over the rules",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1"), person(2)],
        {"X": (S.UNLINKED, 2, ("an admin linked X to person 2",))},
        prior=PriorState(manual_links={"X": 2}),
    ),
    Case(
        "a manual link to a person Protime no longer has is unmatched, no fallback",
        snapshot(emp("X", "E1")),
        [person(1, None, "E1")],
        {"X": (S.UNMATCHED, None, ("person 99, which Protime no longer has", "idsync unlink X"))},
        prior=PriorState(manual_links={"X": 99}),
    ),
    Case(
        "a manually linked person is no candidate for anyone else",
        snapshot(emp("X"), emp("Y", "E1")),
        [person(1, "Y", "E1"), person(2, None, "E1")],
        {
            "X": (S.DRIFTED, 1, ("holds HRMID Y",)),
            "Y": (S.DRIFTED, 2, ("HRMID Y sits on person 1",)),
        },
        prior=PriorState(manual_links={"X": 1}),
    ),
    Case(
        "a manually claimed person is named in the unmatched reason",
        snapshot(emp("X"), emp("Y", "E1")),
        [person(1, None, "E1")],
        {
            "X": (S.UNLINKED, 1, ()),
            "Y": (S.UNMATCHED, None, ("person 1 left out (an admin linked it to X)",)),
        },
        prior=PriorState(manual_links={"X": 1}),
    ),
    Case(
        "two manual links to one person are both disputed",
        snapshot(emp("X"), emp("Y")),
        [person(1)],
        {"X": (S.DISPUTED, None, ("manual link to 1",)), "Y": (S.DISPUTED, None, ())},
        prior=PriorState(manual_links={"X": 1, "Y": 1}),
    ),
    Case(
        "a manual link of an id not in HR is dormant",
        snapshot(emp("Y", "E1")),
        [person(1, None, "E1")],
        {"Y": (S.UNLINKED, 1, ())},
        prior=PriorState(manual_links={"GONE": 1}),
    ),
    Case(
        "an id Protime shows on two persons is disputed and never an orphan to delete",
        snapshot(emp("X", "E1")),
        [person(1, "X", "E1"), person(2, "X"), person(3, "Z"), person(4, "Z")],
        {
            "X": (S.DISPUTED, None, ("on persons 1, 2",)),
            "Z": (S.ORPHANED, None, ("Protime shows it on persons 3, 4", "left alone")),
        },
        rules=ALL_RULES,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_classification_table(case: Case):
    """Each row of the table gets exactly the expected situations, persons and reasons."""
    found = by_id(classify(hr=case.hr, people=case.people, prior=case.prior, rules=case.rules))
    assert {k: (c.situation, c.protime_id) for k, c in found.items()} == {
        k: (s, p) for k, (s, p, _) in case.expected.items()
    }
    for hr_id, (_, _, words) in case.expected.items():
        for word in words:
            assert word in found[hr_id].reason, (hr_id, word, found[hr_id].reason)


def test_disputed_lists_candidates_and_evidence():
    """A disputed record lists every candidate person and the rule that found them."""
    found = by_id(
        classify(
            hr=snapshot(emp("X", "E1")),
            people=[person(3, None, "E1"), person(1, None, "E1")],
            prior=PriorState(),
            rules=DEFAULT_RULES,
        )
    )
    assert found["X"].candidates == (1, 3)
    assert (found["X"].rule, found["X"].evidence) == (Rule.EMPLOYEE_NUMBER, "employee_number=E1")


def test_drifted_carries_what_the_planner_needs():
    """A drifted record says where its id sits and whom the value on its person belongs to."""
    found = by_id(
        classify(
            hr=snapshot(emp("X", "E1"), emp("Y", "E2"), out_of_scope=["OLD"]),
            people=[person(1, "OLD", "E1"), person(2, "X", "E2")],
            prior=PriorState(),
            rules=(Rule.EMPLOYEE_NUMBER,),
        )
    )
    x, y = found["X"], found["Y"]
    assert (x.protime_value, x.protime_value_owner, x.held_by) == (
        "OLD",
        ValueOwner.OUT_OF_SCOPE,
        2,
    )
    assert (y.protime_value, y.protime_value_owner, y.held_by) == ("X", ValueOwner.EMPLOYEE, None)


def test_value_owner_protects_ignored_and_invalid_values():
    """Values an admin ignored or an invalid row might own are marked protected on a drift."""
    prior = PriorState(ignored_hr_ids=frozenset({"IGN"}))
    found = by_id(
        classify(
            hr=snapshot(emp("X", "E1"), emp("Y", "E2"), invalid=[(4, "BAD ", "white space")]),
            people=[person(1, "IGN", "E1"), person(2, "BAD", "E2")],
            prior=prior,
            rules=(Rule.EMPLOYEE_NUMBER,),
        )
    )
    assert found["X"].protime_value_owner is ValueOwner.PROTECTED
    assert "an admin ignored that id" in found["X"].reason
    assert found["Y"].protime_value_owner is ValueOwner.PROTECTED
    assert "invalid HR row 'BAD '" in found["Y"].reason
    assert "BAD" not in found  # not an orphan


def test_same_person_twice_is_read_once_whatever_the_order():
    """A person listed twice (paging while Protime changed) gives one answer in either order."""
    a, b = person(1, "X", "E1"), person(1, None, "E1")
    hr = snapshot(emp("X", "E1"))
    first = classify(hr=hr, people=[a, b], prior=PriorState(), rules=DEFAULT_RULES)
    second = classify(hr=hr, people=[b, a], prior=PriorState(), rules=DEFAULT_RULES)
    assert first == second
