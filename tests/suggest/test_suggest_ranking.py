"""How suggestions rank: configured keys agreeing first, then keys differing, then the rest."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.domain import (
    HRDetails,
    HREmployee,
    HRSnapshot,
    NamedPerson,
    Normalizer,
    Person,
    PriorState,
    Rule,
    Situation,
)
from sync.reconcile import classify
from sync.reconcile._normalize import normalizer
from sync.suggest import Report, Suggestion, suggest
from sync.suggest._engine import DIFFER_STEPS, score

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

R = Rule
KEYS = (R.EMPLOYEE_NUMBER, R.BADGE_NUMBER, R.EMAIL)  # the rules whose keys rank candidates
_FIELD = {R.EMPLOYEE_NUMBER: "employee_number", R.BADGE_NUMBER: "badge_number", R.EMAIL: "email"}


def _report(
    employees: Sequence[HREmployee],
    people: Sequence[Person],
    rules: Sequence[Rule],
    *,
    normalize: Mapping[Rule, Sequence[Normalizer]] | None = None,
    details: Mapping[str, HRDetails] | None = None,
    limit: int = 3,
) -> Report:
    """Classify as a run would, then suggest with the same settings (as `idsync suggest` does)."""
    hr = HRSnapshot(employees=tuple(employees))
    found = classify(hr=hr, people=people, prior=PriorState(), rules=rules, normalize=normalize)
    return suggest(
        hr=hr,
        people=people,
        classifications=found,
        details=details or {},
        rules=rules,
        normalize=normalize,
        limit=limit,
    )


# ----- the trial ------------------------------------------------------------------------------

TRIAL_RULES = (R.REFERENCE, R.EMPLOYEE_NUMBER, R.BADGE_NUMBER, R.EMAIL)


def _trial() -> Suggestion:
    """The 240,000-employee trial's disputed shape: one employee number on two persons, one of
    them with the badge one letter off (before the fix: that one 82.9, the right one 75.0)."""
    employee = HREmployee("E1", employee_number="100471", badge_number="B100471", email="j@a.be")
    typo = Person(id=1, employee_number="100471", badge_number="D100471", email="j@a.be")
    right = Person(id=2, employee_number="100471", badge_number="B100471", email="j@a.be")
    (s,) = _report([employee], [typo, right], TRIAL_RULES).suggestions
    return s


def test_the_trial_ranks_the_person_agreeing_on_number_and_badge_first():
    """In the trial's case the person agreeing on employee number and badge is rank 1."""
    s = _trial()
    assert s.situation is Situation.DISPUTED
    assert [c.protime_id for c in s.candidates] == [2, 1]
    assert [c.score for c in s.candidates] == [98.3, 78.8]


def test_the_trials_rank_1_says_it_agrees_on_every_key_and_rank_2_names_its_difference():
    """Rank 1's evidence lists each agreeing key, and rank 2's names its badge as differing."""
    first, second = _trial().candidates
    assert first.agree == ("employee_number 100471", "badge_number B100471", "email j@a.be")
    assert first.differ == ()
    assert second.differ == ("badge_number B100471 vs D100471 (differs, 86% similar)",)
    assert "badge_number B100471" not in second.agree


def test_the_trial_without_email_still_ranks_number_and_badge_first():
    """With the default rules and no e-mail the person agreeing on both keys is still rank 1."""
    employee = HREmployee("E1", employee_number="100471", badge_number="B100471")
    people = [
        Person(id=1, employee_number="100471", badge_number="D100471"),
        Person(id=2, employee_number="100471", badge_number="B100471"),
    ]
    rules = (R.REFERENCE, R.EMPLOYEE_NUMBER, R.BADGE_NUMBER)
    (s,) = _report([employee], people, rules).suggestions
    assert [c.protime_id for c in s.candidates] == [2, 1]
    assert s.candidates[0].agree == ("employee_number 100471", "badge_number B100471")


# ----- evidence words and the score bands ------------------------------------------------------


def test_a_name_never_lifts_a_differing_person_above_one_agreeing_on_more_keys():
    """A same-named person differing on the badge ranks below an unnamed one agreeing on it."""
    employee = HREmployee("E1", employee_number="7", badge_number="B1")
    people = [
        NamedPerson(
            id=1, employee_number="7", badge_number="B2", first_name="Jan", last_name="Maes"
        ),
        Person(id=2, employee_number="7", badge_number="B1"),
    ]
    details = {"E1": HRDetails("Jan", "Maes")}
    (s,) = _report([employee], people, TRIAL_RULES, details=details).suggestions
    assert [c.protime_id for c in s.candidates] == [2, 1]
    assert s.candidates[1].name_similarity == 100.0
    assert s.candidates[0].score > s.candidates[1].score


def test_a_key_equal_with_the_configured_normalizers_agrees_without_asking_for_a_setting():
    """A key equal after IDSYNC_MATCH__NORMALIZE agrees as configured and suggests no setting."""
    employee = HREmployee("E1", employee_number="0042", badge_number="b-7")
    people = [
        Person(id=1, employee_number="42", badge_number="B7"),
        Person(id=2, employee_number="42", badge_number="B8"),
    ]
    normalize = {R.EMPLOYEE_NUMBER: (Normalizer.STRIP_LEADING_ZEROS,)}
    (s,) = _report([employee], people, TRIAL_RULES, normalize=normalize).suggestions
    first, second = s.candidates
    assert first.protime_id == 1
    assert (
        "employee_number 0042 = 42 (equal with strip_leading_zeros, as configured)" in first.agree
    )
    assert "badge_number b-7 = B7 (equal with casefold,alnum_only)" in first.agree
    assert first.normalize == ("badge_number=casefold,alnum_only",)
    assert second.differ == ("badge_number b-7 vs B8",)


def test_a_key_equal_only_loosely_ranks_above_one_that_differs():
    """With nothing agreeing, a key written differently beats a key that is one typo away."""
    employee = HREmployee("E1", employee_number="0012345")
    people = [
        NamedPerson(id=1, employee_number="0012346", first_name="Jan", last_name="Peeters"),
        NamedPerson(id=2, employee_number="12345", first_name="Jan", last_name="Peeters"),
    ]
    details = {"E1": HRDetails("Jan", "Peeters")}
    (s,) = _report([employee], people, (R.EMPLOYEE_NUMBER,), details=details).suggestions
    assert s.situation is Situation.UNMATCHED
    near, typo = s.candidates
    assert (near.protime_id, typo.protime_id) == (2, 1)
    assert near.agree == ("employee_number 0012345 = 12345 (equal with strip_leading_zeros)",)
    assert typo.differ == ("employee_number 0012345 vs 0012346 (differs, 80% similar)",)


@pytest.mark.parametrize("ranking", [1, 2, 3])
def test_each_score_band_lies_wholly_above_the_bands_ranked_below_it(ranking):
    """The lowest score of an (agreeing, differing) pair beats the highest of every pair after it."""
    # Four fields can differ at most (reference, employee number, badge number, e-mail).
    pairs = sorted(
        ((a, d) for a in range(ranking + 1) for d in range(DIFFER_STEPS + 1)),
        key=lambda pair: (-pair[0], pair[1]),
    )
    for better, worse in pairwise(pairs):
        assert score(*better, ranking, 0.0) > score(*worse, ranking, 100.0), (better, worse)
    assert score(ranking, 0, ranking, 100.0) == 100.0
    assert score(0, DIFFER_STEPS, ranking, 0.0) == 0.0


# ----- the property ---------------------------------------------------------------------------

_CHARS = "0123456789ABab"
_key = st.text(alphabet=_CHARS, min_size=1, max_size=6)


def _respelled(value: str) -> st.SearchStrategy[str]:
    """The same key written another way: case, leading zeros, a dash, white space."""
    return st.sampled_from(
        [value.swapcase(), f"00{value}", f"{value[:1]}-{value[1:]}", f" {value} ", value.upper()]
    )


def _typo(value: str) -> st.SearchStrategy[str]:
    """The key with one character replaced (it may come out the same)."""
    return st.tuples(st.integers(0, len(value) - 1), st.sampled_from(_CHARS)).map(
        lambda t: value[: t[0]] + t[1] + value[t[0] + 1 :]
    )


def _variant(value: str | None) -> st.SearchStrategy[str | None]:
    """What a candidate holds for one of the employee's keys."""
    if value is None:
        return st.one_of(st.none(), _key)
    return st.one_of(st.just(value), _respelled(value), _typo(value), _key, st.none())


_NAMES = st.sampled_from([None, ("Jan", "Peeters"), ("Jan", "Peters"), ("Els", "Maes")])


_Normalize = dict[Rule, tuple[Normalizer, ...]]
_Case = tuple[HREmployee, HRDetails, list[NamedPerson], tuple[Rule, ...], _Normalize]


@st.composite
def _case(draw: st.DrawFn) -> _Case:
    """A random HR employee, random persons derived from its keys, random rules and normalizers."""
    employee = HREmployee(
        "E1",
        employee_number=draw(st.one_of(st.none(), _key)),
        badge_number=draw(st.one_of(st.none(), _key)),
        email=draw(st.one_of(st.none(), _key.map(lambda k: f"{k}@acme.be"))),
    )
    name = draw(_NAMES)
    details = HRDetails(*name) if name else HRDetails()
    people = []
    for pid in range(1, draw(st.integers(1, 6)) + 1):
        person_name = draw(_NAMES)
        people.append(
            NamedPerson(
                id=pid,
                employee_number=draw(_variant(employee.employee_number)),
                badge_number=draw(_variant(employee.badge_number)),
                email=draw(_variant(employee.email)),
                reference=draw(st.sampled_from([None, None, "E1", "E9"])),
                first_name=person_name[0] if person_name else None,
                last_name=person_name[1] if person_name else None,
            )
        )
    order = draw(st.permutations([R.REFERENCE, *KEYS]))
    rules = tuple(order[: draw(st.integers(1, len(order)))])
    steps = st.lists(st.sampled_from(list(Normalizer)), unique=True, max_size=4).map(tuple)
    normalize = draw(st.dictionaries(st.sampled_from(rules), steps))
    return employee, details, people, rules, normalize


def _rule_key(rule: Rule, value: str | None, steps: Sequence[Normalizer]) -> str | None:
    """A key as docs/matching.md says the rules compare it (trimmed, e-mail case-insensitive,
    then the configured normalizers); ``None`` for no key."""
    if not value or not value.strip():
        return None
    value = value.strip().casefold() if rule is R.EMAIL else value.strip()
    apply = normalizer(steps)
    return apply(value) if apply is not None else value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case(), st.sampled_from([3, 10]))
def test_a_candidate_agreeing_on_every_configured_key_ranks_above_any_that_differs_on_one(
    case, limit
):
    """A candidate agreeing on every configured key the employee has always ranks above any
    candidate differing on a configured key, and the scores fall with the rank."""
    employee, details, people, rules, normalize = case
    report = _report(
        [employee], people, rules, normalize=normalize, details={"E1": details}, limit=limit
    )
    if not report.suggestions:
        return  # the rules resolved the employee: nothing to suggest
    (s,) = report.suggestions
    scores = [c.score for c in s.candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= score <= 100.0 for score in scores)

    configured = [r for r in rules if r in KEYS]
    mine = {r: _rule_key(r, getattr(employee, _FIELD[r]), normalize.get(r, ())) for r in configured}
    has = {r: key for r, key in mine.items() if key is not None}
    by_id = {p.id: p for p in people}

    def theirs(pid: int, rule: Rule) -> str | None:
        return _rule_key(rule, getattr(by_id[pid], _FIELD[rule]), normalize.get(rule, ()))

    def agrees_on_all(pid: int) -> bool:
        return bool(has) and all(theirs(pid, r) == key for r, key in has.items())

    def differs(pid: int) -> bool:
        return any(theirs(pid, r) not in (None, key) for r, key in has.items())

    ranks = {c.protime_id: rank for rank, c in enumerate(s.candidates)}
    for worse in (pid for pid in ranks if differs(pid)):
        for better in (pid for pid in by_id if agrees_on_all(pid)):
            assert better in ranks, (better, worse, s.candidates)
            assert ranks[better] < ranks[worse], s.candidates
            assert s.candidates[ranks[better]].score > s.candidates[ranks[worse]].score
