"""Normalized matching keys (IDSYNC_MATCH__NORMALIZE): each normalizer, each combination, each rule."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reconcile_model import by_id, emp, person, snapshot

from sync.config import ReactionSettings
from sync.domain import (
    ActionKind,
    HREmployee,
    HRSnapshot,
    Normalizer,
    Person,
    PriorState,
    Rule,
    Situation,
)
from sync.reconcile._classify import classify
from sync.reconcile._normalize import normalizer
from sync.reconcile._plan import plan

N = Normalizer
S = Situation
RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER, Rule.EMAIL)
_FIELD = {
    Rule.EMPLOYEE_NUMBER: "employee_number",
    Rule.BADGE_NUMBER: "badge_number",
    Rule.EMAIL: "email",
}


@pytest.mark.parametrize(
    ("steps", "raw", "expected"),
    [
        ((N.TRIM,), "  B42 \t", "B42"),
        ((N.TRIM,), "B 42", "B 42"),
        ((N.CASEFOLD,), "AbC", "abc"),
        ((N.CASEFOLD,), "Straße", "strasse"),
        ((N.STRIP_LEADING_ZEROS,), "00123", "123"),
        ((N.STRIP_LEADING_ZEROS,), "000", "0"),
        ((N.STRIP_LEADING_ZEROS,), "B0042", "B0042"),
        ((N.STRIP_LEADING_ZEROS,), " 0042", " 0042"),
        ((N.TRIM, N.STRIP_LEADING_ZEROS), " 0042", "42"),
        ((N.ALNUM_ONLY,), "B-00 42.x", "B0042x"),
        ((N.ALNUM_ONLY,), "--", None),
        ((N.ALNUM_ONLY, N.STRIP_LEADING_ZEROS), "0-042", "42"),
        ((N.STRIP_LEADING_ZEROS, N.ALNUM_ONLY), "0-042", "042"),
    ],
)
def test_each_normalizer_and_its_order(steps, raw, expected):
    """Each step does what docs/matching.md says, and the steps apply in the order given."""
    apply = normalizer(steps)
    assert apply is not None
    assert apply(raw) == expected


def test_no_steps_is_no_normalizer():
    """An empty list of steps gives no function at all (the fast, exact path)."""
    assert normalizer(()) is None


# Each normalizer undoes one way of writing a key differently in Protime.
BASE = "B42x"
_PERTURB = {
    N.TRIM: lambda v: f"  {v} ",
    N.CASEFOLD: str.swapcase,
    N.STRIP_LEADING_ZEROS: lambda v: f"00{v}",
    N.ALNUM_ONLY: lambda v: v.replace("42", "4-2"),
}
# What a rule already forgives without any normalizer (docs/matching.md, "Matching rules").
_ABSORBED = {
    Rule.REFERENCE: set(),
    Rule.EMPLOYEE_NUMBER: {N.TRIM},
    Rule.BADGE_NUMBER: {N.TRIM},
    Rule.EMAIL: {N.TRIM, N.CASEFOLD},
}
# alnum_only drops white space too, so it forgives what trim forgives.
_FORGIVES = {n: {n} for n in N} | {N.ALNUM_ONLY: {N.ALNUM_ONLY, N.TRIM}}
COMBOS = [c for size in range(1, len(N) + 1) for c in combinations(tuple(N), size)]


def _world(rule: Rule, protime_key: str) -> tuple[HRSnapshot, list[Person]]:
    if rule is Rule.REFERENCE:
        return snapshot(emp(BASE)), [person(1, protime_key)]
    employee = HREmployee(hr_id="X", **{_FIELD[rule]: BASE})
    return HRSnapshot(employees=(employee,)), [Person(id=1, **{_FIELD[rule]: protime_key})]


def _perturbed(differences) -> str:
    value = BASE
    for step in (N.ALNUM_ONLY, N.CASEFOLD, N.STRIP_LEADING_ZEROS, N.TRIM):  # inside out
        if step in differences:
            value = _PERTURB[step](value)
    return value


def _classify(hr, people, rule, steps):
    normalize = {rule: tuple(steps)} if steps else None
    return by_id(
        classify(hr=hr, people=people, prior=PriorState(), rules=(rule,), normalize=normalize)
    )


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("combo", COMBOS, ids="+".join)
def test_every_combination_with_every_rule(rule, combo):
    """Keys differing by exactly what a combination forgives match with it and not without it."""
    hr, people = _world(rule, _perturbed(combo))
    hr_id = hr.employees[0].hr_id
    without = _classify(hr, people, rule, ())[hr_id]
    expected_without = S.UNMATCHED
    if set(combo) <= _ABSORBED[rule]:
        expected_without = S.DRIFTED if rule is Rule.REFERENCE else S.UNLINKED
    assert without.situation is expected_without
    found = _classify(hr, people, rule, combo)[hr_id]
    # The reference rule finds a person holding another spelling: the re-point writes the HR id.
    assert found.situation is (S.DRIFTED if rule is Rule.REFERENCE else S.UNLINKED)
    assert found.protime_id == 1
    assert found.rule is rule


@pytest.mark.parametrize(
    ("rule", "step", "difference"),
    [
        (rule, step, difference)
        for rule in RULES
        for step in N
        for difference in N
        if difference not in _FORGIVES[step] | _ABSORBED[rule]
    ],
)
def test_a_normalizer_forgives_nothing_else(rule, step, difference):
    """One normalizer never makes keys equal that differ in a way it does not forgive."""
    hr, people = _world(rule, _perturbed({difference}))
    found = _classify(hr, people, rule, (step,))[hr.employees[0].hr_id]
    assert found.situation is S.UNMATCHED
    assert "no person" in found.reason


def _keyed(rule: Rule, hr_id: str, key: str) -> HREmployee:
    if rule is Rule.REFERENCE:
        return HREmployee(hr_id=key)
    return HREmployee(hr_id=hr_id, **{_FIELD[rule]: key})


def _person(rule: Rule, pid: int, key: str) -> Person:
    if rule is Rule.REFERENCE:
        return Person(id=pid, reference=key)
    return Person(id=pid, **{_FIELD[rule]: key})


@pytest.mark.parametrize("rule", RULES)
def test_two_persons_equal_only_after_normalization_are_disputed(rule):
    """Persons whose keys collide after normalization are both candidates: disputed, key named."""
    hr = HRSnapshot(employees=(_keyed(rule, "X", "b42"),))
    people = [_person(rule, 11, "0B-42"), _person(rule, 12, "b42")]
    steps = (N.CASEFOLD, N.ALNUM_ONLY, N.STRIP_LEADING_ZEROS)
    hr_id = hr.employees[0].hr_id
    assert _classify(hr, people, rule, ())[hr_id].situation is not S.DISPUTED
    found = _classify(hr, people, rule, steps)[hr_id]
    assert found.situation is S.DISPUTED
    assert found.candidates == (11, 12)
    assert "normalized key b42" in found.reason
    assert "11 has 0B-42" in found.reason
    assert "casefold,alnum_only,strip_leading_zeros" in found.reason


@pytest.mark.parametrize("rule", RULES)
def test_two_employees_equal_only_after_normalization_are_disputed(rule):
    """Employees whose keys collide after normalization on one person are all disputed."""
    hr = HRSnapshot(employees=(_keyed(rule, "X", "0042"), _keyed(rule, "Y", "42")))
    people = [_person(rule, 7, "42")]
    found = _classify(hr, people, rule, (N.STRIP_LEADING_ZEROS,))
    first, second = (e.hr_id for e in hr.employees)
    assert found[first].situation is S.DISPUTED
    assert found[second].situation is S.DISPUTED
    assert found[first].candidates == (7,)
    assert "matched by 2 HR employees" in found[first].reason
    assert "0042 [normalized 42]" in found[first].reason


def test_reasons_show_the_normalized_key():
    """Unmatched reasons print the normalized key next to the raw one, and an emptied key."""
    hr = snapshot(emp("X", "00-7", badge="--"))
    found = by_id(
        classify(
            hr=hr,
            people=[person(1, None, "8")],
            prior=PriorState(),
            rules=(Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER),
            normalize={
                Rule.EMPLOYEE_NUMBER: (N.ALNUM_ONLY, N.STRIP_LEADING_ZEROS),
                Rule.BADGE_NUMBER: (N.ALNUM_ONLY,),
            },
        )
    )["X"]
    assert found.situation is S.UNMATCHED
    assert "employee_number 00-7 [normalized 7]: no person" in found.reason
    assert "badge_number '--' [nothing left after normalization]" in found.reason


def test_linked_still_means_the_exact_id():
    """A person holding another spelling of the id is drifted, and the plan writes the exact id."""
    hr = snapshot(emp("00123"))
    people = [person(5, "123")]
    found = classify(
        hr=hr,
        people=people,
        prior=PriorState(),
        rules=(Rule.REFERENCE,),
        normalize={Rule.REFERENCE: (N.STRIP_LEADING_ZEROS,)},
    )
    decided = plan(classifications=found, reactions=ReactionSettings(), prior=PriorState())
    assert by_id(found)["00123"].situation is S.DRIFTED
    writes = [a for a in decided.actions if a.kind is ActionKind.WRITE]
    deletes = [a for a in decided.actions if a.kind is ActionKind.DELETE]
    assert [(a.value, a.protime_id) for a in writes] == [("00123", 5)]
    assert [(a.value, a.protime_id) for a in deletes] == [("123", 5)]


# ----- property: normalization never changes a written value --------------------------------

KEYS = ["007", "7", "A-7", "a7", " A7 ", "0a-7", "--", "B7"]


@st.composite
def normalized_worlds(draw: st.DrawFn):
    ids = draw(st.lists(st.sampled_from([*KEYS[:6], "H1", "H2"]), unique=True, max_size=6))
    ids = [i.strip() or "H0" for i in ids]
    ids = list(dict.fromkeys(ids))
    employees = tuple(
        HREmployee(
            hr_id=hr_id,
            employee_number=draw(st.none() | st.sampled_from(KEYS)),
            badge_number=draw(st.none() | st.sampled_from(KEYS)),
            email=draw(st.none() | st.sampled_from(KEYS)),
        )
        for hr_id in ids
    )
    people = tuple(
        Person(
            id=pid,
            reference=draw(st.none() | st.sampled_from([*KEYS, "H1", "S0"])),
            employee_number=draw(st.none() | st.sampled_from(KEYS)),
            badge_number=draw(st.none() | st.sampled_from(KEYS)),
            email=draw(st.none() | st.sampled_from(KEYS)),
        )
        for pid in range(1, draw(st.integers(0, 6)) + 1)
    )
    rules = tuple(draw(st.permutations(RULES))[: draw(st.integers(1, len(RULES)))])
    every = tuple(draw(st.permutations(tuple(N)))[: draw(st.integers(0, len(N)))])
    normalize = {rule: every for rule in rules if every}
    links = draw(st.dictionaries(st.sampled_from(ids or ["H1"]), st.integers(1, 7), max_size=2))
    return HRSnapshot(employees=employees), people, rules, normalize, PriorState(manual_links=links)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalized_worlds(), st.sampled_from(["report", "delete"]))
def test_normalization_never_changes_a_written_value(world, orphaned):
    """Every write carries an HR id exactly as HR has it; every delete a value exactly as held."""
    hr, people, rules, normalize, prior = world
    found = classify(hr=hr, people=people, prior=prior, rules=rules, normalize=normalize)
    decided = plan(
        classifications=found, reactions=ReactionSettings(orphaned=orphaned), prior=prior
    )
    hr_ids = {e.hr_id for e in hr.employees}
    held = {(p.reference, p.id) for p in people}
    for action in decided.actions:
        if action.kind is ActionKind.WRITE:
            assert action.value == action.hr_id
            assert action.value in hr_ids
        else:
            assert (action.value, action.protime_id) in held
    for c in found:
        if c.situation is S.LINKED:
            assert c.protime_value == c.hr_id
