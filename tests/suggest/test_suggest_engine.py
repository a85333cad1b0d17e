"""The pure suggestion core: candidates, scores, evidence, blocking, unreached persons."""

from __future__ import annotations

import pytest

from sync.domain import (
    Classification,
    HRDetails,
    HREmployee,
    HRSnapshot,
    NamedPerson,
    Person,
    PriorState,
    Rule,
    Situation,
)
from sync.reconcile import classify
from sync.suggest import suggest
from sync.suggest._engine import fold_name

RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER)


def _report(employees, people, details=None, prior=None):
    hr = HRSnapshot(employees=tuple(employees))
    found = classify(hr=hr, people=people, prior=prior or PriorState(), rules=RULES)
    return suggest(hr=hr, people=people, classifications=found, details=details or {})


def _named(pid, first, last, **kw) -> NamedPerson:
    return NamedPerson(id=pid, first_name=first, last_name=last, **kw)


@pytest.mark.parametrize(
    ("mine", "theirs", "steps"),
    [
        ("00123", "123", "strip_leading_zeros"),
        ("AB12", "ab12", "casefold"),
        ("B0042", "B-0042", "alnum_only"),
        ("b-0042", "B0042", "casefold,alnum_only"),
        ("0-042", "42", "alnum_only,strip_leading_zeros"),
    ],
)
def test_a_near_miss_key_is_the_first_candidate_with_what_would_make_it_equal(mine, theirs, steps):
    """A key differing by zeros, case or dashes ranks its person first and names the normalizers."""
    report = _report(
        [HREmployee("E1", employee_number=mine)],
        [Person(id=1, employee_number="999"), Person(id=2, employee_number=theirs)],
    )
    (s,) = report.suggestions
    assert s.situation is Situation.UNMATCHED
    best = s.candidates[0]
    assert best.protime_id == 2
    assert f"employee_number={steps}" in best.normalize
    assert any(f"equal with {steps}" in words for words in best.agree)
    assert [c.protime_id for c in s.candidates] == [2]  # person 1 shares nothing


def test_names_rank_when_keys_say_nothing_and_keys_beat_names():
    """With no key in common the similar name wins; a key in common beats a same-named person."""
    people = [
        _named(1, "Jan", "Peeters", employee_number="1"),
        _named(2, "Els", "Maes", employee_number="2"),
        _named(3, "Jan", "Peters", employee_number="0077"),
    ]
    details = {
        "E1": HRDetails("Jan", "Peeters"),
        "E2": HRDetails("Jan", "Peeters"),
    }
    report = _report(
        [HREmployee("E1", employee_number="X1"), HREmployee("E2", employee_number="77")],
        people,
        details,
    )
    by_id = {s.hr_id: s for s in report.suggestions}
    assert [c.protime_id for c in by_id["E1"].candidates][:2] == [1, 3]
    assert by_id["E1"].candidates[0].name_similarity == 100.0
    assert by_id["E2"].candidates[0].protime_id == 3


def test_names_match_without_accents_case_or_word_order():
    """Names are compared folded: accents, case, punctuation and order do not count."""
    assert fold_name("Amélie", "D'Hondt") == "amelie d hondt"
    report = _report(
        [HREmployee("E1", employee_number="X")],
        [_named(5, "hondt", "AMELIE D", employee_number="Y")],
        {"E1": HRDetails("Amélie", "D'Hondt")},
    )
    assert report.suggestions[0].candidates[0].protime_id == 5


def test_resolved_persons_are_never_suggested_and_unreached_are_listed():
    """A person another employee resolved to is no candidate; persons nobody reaches are listed."""
    people = [
        Person(id=1, employee_number="123"),  # E2's by the rules
        Person(id=2, employee_number="0123X"),
        Person(id=3, employee_number="555"),
    ]
    report = _report(
        [HREmployee("E1", employee_number="00123"), HREmployee("E2", employee_number="123")],
        people,
    )
    (s,) = report.suggestions
    assert s.hr_id == "E1"
    assert 1 not in [c.protime_id for c in s.candidates]
    assert [u.protime_id for u in report.unreached] == [2, 3]


def test_a_disputed_employee_gets_its_candidates_and_they_are_not_unreached():
    """Both persons of a dispute are suggested (scored), and neither is called unreached."""
    people = [
        _named(1, "Jan", "Peeters", employee_number="7"),
        _named(2, "Els", "Maes", employee_number="7"),
    ]
    report = _report(
        [HREmployee("E1", employee_number="7")], people, {"E1": HRDetails("Els", "Maes")}
    )
    (s,) = report.suggestions
    assert s.situation is Situation.DISPUTED
    assert [c.protime_id for c in s.candidates] == [2, 1]
    assert report.unreached == ()


def test_differing_keys_lower_the_score_and_say_so():
    """A field both sides have that does not agree is listed as a difference and costs points."""
    people = [
        _named(1, "Jan", "Peeters", employee_number="1", badge_number="B9"),
        _named(2, "Jan", "Peeters", employee_number="2"),
    ]
    report = _report(
        [HREmployee("E1", badge_number="B1")],
        people,
        {"E1": HRDetails("Jan", "Peeters")},
    )
    first, second = report.suggestions[0].candidates
    assert first.protime_id == 2
    assert second.protime_id == 1
    assert second.score < first.score
    assert any("badge_number B1 vs B9" in words for words in second.differ)


def test_a_key_in_another_field_is_evidence_too():
    """The HR id found as a person's employee number (written differently) is a candidate."""
    report = _report([HREmployee("E-0042")], [Person(id=4, employee_number="e0042")])
    best = report.suggestions[0].candidates[0]
    assert best.protime_id == 4
    assert "HR reference E-0042 = Protime employee_number e0042" in best.agree


def test_hr_duplicates_by_name_and_birth_date_are_flagged():
    """Two HR rows with one name and birth date are named on each other's suggestion."""
    details = {
        "E1": HRDetails("Jan", "Peeters", "1980-01-02"),
        "E2": HRDetails("jan", "PEETERS", "1980-01-02"),
        "E3": HRDetails("Jan", "Peeters", "1990-01-02"),
    }
    report = _report(
        [HREmployee("E1"), HREmployee("E2"), HREmployee("E3")], [Person(id=1)], details
    )
    flagged = {s.hr_id: s.hr_duplicates for s in report.suggestions}
    assert flagged == {"E1": ("E2",), "E2": ("E1",), "E3": ()}


def test_at_most_three_candidates_best_first():
    """No more than three candidates, sorted by score then person id."""
    people = [_named(i, "Jan", "Peeters") for i in range(1, 7)]
    report = _report(
        [HREmployee("E1", employee_number="X")], people, {"E1": HRDetails("Jan", "Peeters")}
    )
    assert [c.protime_id for c in report.suggestions[0].candidates] == [1, 2, 3]


def test_no_suggestions_for_linked_employees():
    """Only unmatched and disputed HR employees get suggestions."""
    linked = Classification(hr_id="E1", situation=Situation.LINKED, protime_id=1)
    report = suggest(
        hr=HRSnapshot(employees=(HREmployee("E1"),)),
        people=[Person(id=1, reference="E1")],
        classifications=[linked],
    )
    assert report.suggestions == ()
    assert report.unreached == ()


def test_a_key_shared_by_many_persons_is_no_evidence():
    """A placeholder key on 60 persons (badge 0) finds no one: it tells nothing, and it would make
    every employee with it compare with all of them."""
    people = [Person(id=i, badge_number="0") for i in range(1, 61)]
    report = _report([HREmployee("E1", badge_number="000")], people)
    assert report.suggestions[0].candidates == ()
