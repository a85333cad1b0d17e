"""Suggestions for what the rules could not resolve. Pure: no I/O, no clock.

For every ``unmatched`` or ``disputed`` HR employee, up to three Protime persons that probably are
that employee, each with a score (0-100) and the evidence; and the persons no HR employee reaches.
Names are evidence here and nowhere else: the rules never match on them.

Candidates come only from the *pool*: persons no employee resolved to (linked, unlinked, drifted
or failed records keep theirs). Inside the pool, blocking keeps the work proportional to the
employees asked about, not to the tenant: a person is compared with an employee only when

* one of its keys (reference, employee number, badge number, e-mail) equals one of the employee's
  keys after a loose normalization (``trim,casefold,alnum_only,strip_leading_zeros``), on the same
  field or across fields; or
* its name shares a token prefix (first three letters of a name word) with the employee's name
  and is similar enough (rapidfuzz ``token_sort_ratio`` >= 70); or
* the employee's dispute named it as a candidate.

Candidates are ranked on the strength of their evidence, in this order: more *configured keys*
agreeing (the employee number, badge number and e-mail rules of ``IDSYNC_MATCH__RULES``, compared
as the rules compare them, with ``IDSYNC_MATCH__NORMALIZE``), then fewer keys that differ, then
the rest (keys equal only loosely or across fields, typos, names). The score (0-100) tells the same
order: each (agreeing, differing) pair has its own band, and the rest places a candidate inside it.
A key one typo away is a difference, never a point in favour. The scores are documented in
``docs/matching.md`` ("Suggestions").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import TYPE_CHECKING

from rapidfuzz import fuzz, process

from sync.domain import (
    Classification,
    HRDetails,
    HREmployee,
    HRSnapshot,
    Normalizer,
    Person,
    Rule,
    Situation,
)
from sync.reconcile._normalize import describe, normalizer
from sync.reconcile._world import quiet_gc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

N = Normalizer
# The loose key of the blocking; also the order in which "what would make them equal" is told.
LOOSE = (N.TRIM, N.CASEFOLD, N.ALNUM_ONLY, N.STRIP_LEADING_ZEROS)
_COMBOS = [
    (combo, normalizer(combo))
    for size in range(1, len(LOOSE) + 1)
    for combo in combinations(LOOSE, size)
]
_loose_steps = normalizer(LOOSE)
assert _loose_steps is not None
# One employee's keys are compared with up to ~30 candidates each: remember recent results.
_loose = lru_cache(maxsize=1 << 16)(_loose_steps)
_FIELDS = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER, Rule.EMAIL)
_PERSON_ATTR = {
    Rule.REFERENCE: "reference",
    Rule.EMPLOYEE_NUMBER: "employee_number",
    Rule.BADGE_NUMBER: "badge_number",
    Rule.EMAIL: "email",
}
_RESOLVED = frozenset({Situation.LINKED, Situation.UNLINKED, Situation.DRIFTED, Situation.FAILED})
# The rules whose keys rank candidates when configured. Not the reference: it is what idsync
# writes, so an unmatched or disputed employee's pool persons practically never hold it.
RANKING_KEYS = (Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER, Rule.EMAIL)
DEFAULT_RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER)  # IDSYNC_MATCH__RULES's

MAX_CANDIDATES = 3
MIN_SCORE = 15.0
NAME_CUTOFF = 70.0  # token_sort_ratio below this is no name evidence at all
_NAMES_PER_BLOCK = 20  # similar names taken from one block
_PERSONS_PER_NAME = 50  # persons taken per similar name (more share it: the name tells nothing)
_PERSONS_PER_KEY = 50  # a key more persons share (a placeholder badge "0") is no evidence
# Persons found by name alone that are scored in full: the best by name similarity. A person
# found by name alone has at most NAME_WEIGHT x 100 points, so only the best few can reach the top 3.
_NAME_CANDIDATES = 30
_PREFIX = 3
# Points: the evidence that places a candidate inside its band (docs/matching.md, "Suggestions").
SAME_FIELD_EXACT = 65.0  # equal as the rule compares (with its configured normalizers)
SAME_FIELD_NORMALIZED = 60.0  # equal only with normalizers that are not configured
CROSS_FIELD = 40.0
MORE_FIELDS = 5.0  # each further agreeing field
NAME_WEIGHT = 0.3  # times the name similarity (0-100)
DIFFERENT_KEY = -10.0  # per field both sides have that does not agree at all
SIMILAR_KEY = -5.0  # a differing key one typo away (ratio >= 80) costs less, and never adds
SIMILAR_RATIO = 80.0
# Bands of the score: no configured key agreeing stays under NO_KEY_TOP; a of n agreeing take
# [NO_KEY_TOP + (a-1) x w, NO_KEY_TOP + a x w) with w = (100 - NO_KEY_TOP) / n. Inside a band, no
# differing key takes the upper half, each further one half of what is left (DIFFER_STEPS or more
# share the bottom).
TOP = 100.0
NO_KEY_TOP = 60.0
DIFFER_STEPS = 4


@dataclass(frozen=True, slots=True)
class Candidate:
    """One Protime person suggested for an HR employee, with why."""

    protime_id: int
    score: float
    name: str | None
    agree: tuple[str, ...]  # "employee_number 00123 = 123 (equal with strip_leading_zeros)"
    differ: tuple[str, ...]  # "badge_number B1 vs B7"
    normalize: tuple[str, ...]  # settings that would make a key equal: "employee_number=..."
    name_similarity: float | None


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One unmatched or disputed HR employee and its best candidates, best first."""

    hr_id: str
    situation: Situation
    reason: str
    name: str | None
    candidates: tuple[Candidate, ...]
    hr_duplicates: tuple[str, ...] = ()  # other HR ids with the same name and birth date


@dataclass(frozen=True, slots=True)
class Unreached:
    """A Protime person no HR employee resolves to, nor disputes."""

    protime_id: int
    name: str | None
    reference: str | None
    employee_number: str | None
    badge_number: str | None
    email: str | None
    out_of_service: bool
    suggested_for: tuple[str, ...]  # HR ids it is a candidate for in this report


@dataclass(frozen=True, slots=True)
class Report:
    suggestions: tuple[Suggestion, ...]
    unreached: tuple[Unreached, ...]


_NON_WORD = re.compile(r"[\W_]+")


def fold_name(first: str | None, last: str | None) -> str | None:
    """A name for comparing: accents dropped, case folded, punctuation to spaces."""
    text = f"{first} {last}" if first and last else (first or last)
    if not text:
        return None
    if not text.isascii():  # most names are ASCII: no decomposition needed (250,000 per report)
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = _NON_WORD.sub(" ", text.casefold()).strip()
    return folded or None


def _shown_name(first: str | None, last: str | None) -> str | None:
    text = " ".join(part for part in (first, last) if part)
    return text or None


def _hr_key(employee: HREmployee, field: Rule) -> str | None:
    if field is Rule.REFERENCE:
        return employee.hr_id
    value: str | None = getattr(employee, _PERSON_ATTR[field])
    return value


def _rule_key(field: Rule, value: str) -> str | None:
    """``value`` as the rule compares it, as ``sync.reconcile`` does: trimmed (the reference is
    exact), e-mail case-insensitive; the rule's configured normalizer applies to this."""
    if field is not Rule.REFERENCE:
        value = value.strip()
        if field is Rule.EMAIL:
            value = value.casefold()
    return value or None


@dataclass(frozen=True, slots=True)
class _Rules:
    """What the settings configure: the ranking keys and each rule's normalizer."""

    ranking: frozenset[Rule]
    steps: Mapping[Rule, tuple[Normalizer, ...]]
    norms: Mapping[Rule, Callable[[str], str | None]]

    @classmethod
    def of(
        cls, rules: Sequence[Rule], normalize: Mapping[Rule, Sequence[Normalizer]] | None
    ) -> _Rules:
        steps = {r: tuple(s) for r, s in (normalize or {}).items() if s and r in rules}
        norms = {r: f for r, s in steps.items() if (f := normalizer(s)) is not None}
        return cls(frozenset(r for r in rules if r in RANKING_KEYS), steps, norms)


def _steps_to_equal(a: str, b: str) -> tuple[Normalizer, ...] | None:
    """The smallest list of normalizers (in LOOSE order) that makes ``a`` and ``b`` one key."""
    assert _loose is not None
    if _loose(a) is None or _loose(a) != _loose(b):
        return None  # not even all of them together: no need to try each combination
    for combo, apply in _COMBOS:
        assert apply is not None
        key = apply(a)
        if key is not None and key == apply(b):
            return combo
    return None


class _Pool:
    """The persons suggestions may name, indexed for blocking."""

    def __init__(self, persons: Iterable[Person]) -> None:
        self.persons = {p.id: p for p in persons}
        assert _loose is not None
        loose = _loose
        self.keys: dict[str, list[tuple[int, Rule]]] = defaultdict(list)
        names: dict[str, list[int]] = defaultdict(list)
        for person in self.persons.values():
            for field in _FIELDS:
                value = getattr(person, _PERSON_ATTR[field])
                if value:
                    key = loose(value)
                    if key is not None:
                        self.keys[key].append((person.id, field))
            name = fold_name(
                getattr(person, "first_name", None), getattr(person, "last_name", None)
            )
            if name is not None:
                names[name].append(person.id)
        self.names = names
        blocks: dict[str, list[str]] = defaultdict(list)
        for name in names:
            for token in set(name.split()):
                blocks[token[:_PREFIX]].append(name)
        self.blocks = blocks

    def by_key(self, value: str) -> list[tuple[int, Rule]]:
        """The persons holding ``value`` (loosely), unless so many do that it tells nothing."""
        assert _loose is not None
        key = _loose(value)
        found = self.keys.get(key, []) if key is not None else []
        return found if len(found) <= _PERSONS_PER_KEY else []

    def by_name(self, name: str) -> dict[int, float]:
        """Person id -> name similarity, for the similar names in the name's blocks."""
        found: dict[int, float] = {}
        for prefix in {token[:_PREFIX] for token in name.split()}:
            block = self.blocks.get(prefix)
            if not block:
                continue
            for other, score, _ in process.extract(
                name,
                block,
                scorer=fuzz.token_sort_ratio,
                score_cutoff=NAME_CUTOFF,
                limit=_NAMES_PER_BLOCK,
            ):
                for pid in self.names[other][:_PERSONS_PER_NAME]:
                    if score > found.get(pid, -1.0):
                        found[pid] = score
        if len(found) > _NAME_CANDIDATES:
            best = sorted(found.items(), key=lambda item: (-item[1], item[0]))[:_NAME_CANDIDATES]
            found = dict(best)
        return found


def _hr_duplicates(
    employees: Sequence[HREmployee], details: Mapping[str, HRDetails]
) -> dict[str, tuple[str, ...]]:
    """HR id -> the other HR ids with the same name and birth date (one person entered twice?)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for employee in employees:
        d = details.get(employee.hr_id)
        if d is None or not d.birth_date:
            continue
        name = fold_name(d.first_name, d.last_name)
        if name is not None:
            groups[(name, d.birth_date)].append(employee.hr_id)
    out: dict[str, tuple[str, ...]] = {}
    for ids in groups.values():
        if len(ids) > 1:
            for hr_id in ids:
                out[hr_id] = tuple(sorted(i for i in ids if i != hr_id))
    return out


def _compare(
    employee: HREmployee, person: Person, hits: set[tuple[Rule, Rule]], rules: _Rules
) -> _Evidence:
    """Every key pair of one employee and one person, and what it says."""
    ev = _Evidence()
    for field in _FIELDS:
        mine = _hr_key(employee, field)
        theirs = getattr(person, _PERSON_ATTR[field])
        if mine and theirs:
            _compare_field(ev, field, mine, theirs, rules)
    for mine_field, their_field in sorted(hits):
        if mine_field is their_field:
            continue
        mine = _hr_key(employee, mine_field) or ""
        theirs = getattr(person, _PERSON_ATTR[their_field]) or ""
        ev.key(CROSS_FIELD, f"HR {mine_field} {mine} = Protime {their_field} {theirs}")
    return ev


def _compare_field(ev: _Evidence, field: Rule, mine: str, theirs: str, rules: _Rules) -> None:
    """One field both sides have: agreeing as the rule compares, equal only loosely, or not."""
    mine_key, their_key = _rule_key(field, mine), _rule_key(field, theirs)
    exact = mine_key == their_key
    norm = rules.norms.get(field)
    if norm is not None and mine_key is not None and their_key is not None:
        mine_key, their_key = norm(mine_key), norm(their_key)
    if mine_key is None or their_key is None:
        return  # white space only, or nothing left after normalization: no key, as for the rules
    ranking = field in rules.ranking
    if mine_key == their_key:
        if exact:
            ev.agrees(f"{field} {mine}", ranking=ranking)
        else:
            how = describe(rules.steps[field])
            words = f"{field} {mine} = {theirs} (equal with {how}, as configured)"
            ev.agrees(words, ranking=ranking)
        return
    steps = _steps_to_equal(mine, theirs)
    if steps is not None:
        ev.key(SAME_FIELD_NORMALIZED, f"{field} {mine} = {theirs} (equal with {describe(steps)})")
        ev.normalize.append(f"{field}={describe(steps)}")
        return
    assert _loose is not None
    a, b = _loose(mine) or "", _loose(theirs) or ""
    ratio = fuzz.ratio(a, b) if a and b else 0.0
    if ratio >= SIMILAR_RATIO:  # one typo in a short key: still a difference
        ev.differs(SIMILAR_KEY, f"{field} {mine} vs {theirs} (differs, {ratio:.0f}% similar)")
    else:
        ev.differs(DIFFERENT_KEY, f"{field} {mine} vs {theirs}")


class _Evidence:
    __slots__ = ("agree", "agreeing", "differ", "differing", "keys", "normalize", "penalty")

    def __init__(self) -> None:
        self.keys: list[float] = []
        self.agree: list[str] = []
        self.differ: list[str] = []
        self.normalize: list[str] = []
        self.penalty = 0.0
        self.agreeing = 0  # configured ranking keys equal as the rules compare them
        self.differing = 0  # keys both sides have that are not equal even loosely

    def key(self, weight: float, words: str) -> None:
        self.keys.append(weight)
        self.agree.append(words)

    def agrees(self, words: str, *, ranking: bool) -> None:
        self.key(SAME_FIELD_EXACT, words)
        if ranking:
            self.agreeing += 1

    def differs(self, weight: float, words: str) -> None:
        self.penalty += weight
        self.differing += 1
        self.differ.append(words)

    def points(self, name_similarity: float | None) -> float:
        """The evidence besides the counts, 0-100: it orders candidates inside one band."""
        keys = sorted(self.keys, reverse=True)
        total = (keys[0] + MORE_FIELDS * (len(keys) - 1)) if keys else 0.0
        total += self.penalty
        if name_similarity is not None:
            total += NAME_WEIGHT * name_similarity
        return max(0.0, min(TOP, total))


def _band(agreeing: int, differing: int, ranking: int) -> tuple[float, float]:
    """The score range of a candidate agreeing on ``agreeing`` of ``ranking`` configured keys
    and differing on ``differing`` keys: higher for more agreeing, then for fewer differing."""
    if agreeing == 0:
        low, high = 0.0, NO_KEY_TOP
    else:
        width = (TOP - NO_KEY_TOP) / ranking
        low, high = NO_KEY_TOP + (agreeing - 1) * width, NO_KEY_TOP + agreeing * width
    span = high - low
    if differing >= DIFFER_STEPS:
        return low, low + span / 2**DIFFER_STEPS
    return low + span / 2 ** (differing + 1), low + span / 2**differing


def score(agreeing: int, differing: int, ranking: int, points: float) -> float:
    """The shown score (one decimal): ``points`` placed inside the band, never touching the next
    band up (so sorting by score is sorting by agreeing keys, then differing keys, then points)."""
    low, high = _band(agreeing, differing, ranking)
    value = round(low + (high - low) * points / TOP, 1)
    floor = math.ceil(low * 10 - 1e-6) / 10
    ceiling = TOP if high >= TOP else math.floor(high * 10 - 1e-6) / 10
    return max(floor, min(ceiling, value))


def suggest(
    *,
    hr: HRSnapshot,
    people: Sequence[Person],
    classifications: Sequence[Classification],
    details: Mapping[str, HRDetails] | None = None,
    rules: Sequence[Rule] = DEFAULT_RULES,
    normalize: Mapping[Rule, Sequence[Normalizer]] | None = None,
    limit: int = MAX_CANDIDATES,
) -> Report:
    """The suggestion report for one classification of ``hr`` against ``people``.

    ``rules`` and ``normalize`` are the ones the classification used (``IDSYNC_MATCH__RULES``,
    ``IDSYNC_MATCH__NORMALIZE``): their keys rank the candidates.
    """
    with quiet_gc():  # no cycles made; the collector would rescan the whole 250,000-row heap
        return _suggest(
            hr=hr,
            people=people,
            classifications=classifications,
            details=details,
            rules=_Rules.of(rules, normalize),
            limit=limit,
        )


def _suggest(
    *,
    hr: HRSnapshot,
    people: Sequence[Person],
    classifications: Sequence[Classification],
    details: Mapping[str, HRDetails] | None,
    rules: _Rules,
    limit: int,
) -> Report:
    details = details or {}
    employees = {e.hr_id: e for e in hr.employees}
    resolved = {
        c.protime_id
        for c in classifications
        if c.situation in _RESOLVED and c.protime_id is not None
    }
    targets = [
        c
        for c in classifications
        if c.situation in (Situation.UNMATCHED, Situation.DISPUTED) and c.hr_id in employees
    ]
    disputed_persons = {p for c in targets for p in c.candidates}
    pool = _Pool(p for p in people if p.id not in resolved)
    duplicates = _hr_duplicates(hr.employees, details)
    suggestions = [
        _suggest_one(
            c,
            employee=employees[c.hr_id],
            detail=details.get(c.hr_id),
            pool=pool,
            rules=rules,
            duplicates=duplicates.get(c.hr_id, ()),
            limit=limit,
        )
        for c in targets
    ]
    suggested_for: dict[int, list[str]] = defaultdict(list)
    for s in suggestions:
        for cand in s.candidates:
            suggested_for[cand.protime_id].append(s.hr_id)
    unreached = tuple(
        Unreached(
            protime_id=p.id,
            name=_shown_name(getattr(p, "first_name", None), getattr(p, "last_name", None)),
            reference=p.reference,
            employee_number=p.employee_number,
            badge_number=p.badge_number,
            email=p.email,
            out_of_service=p.out_of_service,
            suggested_for=tuple(suggested_for.get(p.id, ())),
        )
        for pid, p in sorted(pool.persons.items())
        if pid not in disputed_persons
    )
    return Report(suggestions=tuple(suggestions), unreached=unreached)


# Best first: more configured keys agreeing, fewer keys differing, higher score, lower person id.
_Rank = tuple[int, int, float, int]


def _suggest_one(
    c: Classification,
    *,
    employee: HREmployee,
    detail: HRDetails | None,
    pool: _Pool,
    rules: _Rules,
    duplicates: tuple[str, ...],
    limit: int,
) -> Suggestion:
    hits = _key_hits(employee, pool, c)
    name = fold_name(detail.first_name, detail.last_name) if detail else None
    named: dict[int, float] = pool.by_name(name) if name else {}
    ranked: list[tuple[_Rank, Candidate]] = []
    for pid, pairs in hits.items():
        found = _candidate(employee, pool.persons[pid], pairs, rules, name=name, named=named, c=c)
        if found is not None:
            ranked.append(found)
    # Persons found by name alone, most similar first. None shares a key with the employee even
    # loosely, so none agrees on a key: at best it differs on none and scores its name's share.
    # Once the top `limit` are surely better, the rest cannot enter.
    for pid, similarity in sorted(named.items(), key=lambda item: (-item[1], item[0])):
        if pid in hits:
            continue
        if len(ranked) >= limit:
            ranked.sort(key=lambda item: item[0])
            best = score(0, 0, len(rules.ranking), NAME_WEIGHT * similarity)
            if ranked[limit - 1][0][:3] <= (0, 0, -best):
                break
        found = _candidate(employee, pool.persons[pid], set(), rules, name=name, named=named, c=c)
        if found is not None:
            ranked.append(found)
    ranked.sort(key=lambda item: item[0])
    return Suggestion(
        hr_id=c.hr_id,
        situation=c.situation,
        reason=c.reason,
        name=_shown_name(detail.first_name, detail.last_name) if detail else None,
        candidates=tuple(cand for _, cand in ranked[:limit]),
        hr_duplicates=duplicates,
    )


def _key_hits(
    employee: HREmployee, pool: _Pool, c: Classification
) -> dict[int, set[tuple[Rule, Rule]]]:
    """Pool persons sharing a loose key with the employee (which fields), and its dispute's."""
    hits: dict[int, set[tuple[Rule, Rule]]] = defaultdict(set)
    for field in _FIELDS:
        value = _hr_key(employee, field)
        if value:
            for pid, their_field in pool.by_key(value):
                hits[pid].add((field, their_field))
    for pid in c.candidates:
        if pid in pool.persons:
            hits.setdefault(pid, set())
    return hits


def _candidate(
    employee: HREmployee,
    person: Person,
    pairs: set[tuple[Rule, Rule]],
    rules: _Rules,
    *,
    name: str | None,
    named: Mapping[int, float],
    c: Classification,
) -> tuple[_Rank, Candidate] | None:
    """One person ranked and scored for one employee; ``None`` when its points are below the bar
    (a dispute's own: never)."""
    similarity = _name_similarity(name, person, named)
    ev = _compare(employee, person, pairs, rules)
    points = ev.points(similarity)
    if points < MIN_SCORE and person.id not in c.candidates:
        return None
    shown = score(ev.agreeing, ev.differing, len(rules.ranking), points)
    candidate = Candidate(
        protime_id=person.id,
        score=shown,
        name=_shown_name(getattr(person, "first_name", None), getattr(person, "last_name", None)),
        agree=tuple(ev.agree),
        differ=tuple(ev.differ),
        normalize=tuple(dict.fromkeys(ev.normalize)),
        name_similarity=similarity,
    )
    return (-ev.agreeing, ev.differing, -shown, person.id), candidate


def _name_similarity(name: str | None, person: Person, named: Mapping[int, float]) -> float | None:
    if name is None:
        return None
    if person.id in named:
        return round(named[person.id], 1)
    theirs = fold_name(getattr(person, "first_name", None), getattr(person, "last_name", None))
    if theirs is None:
        return None
    return round(fuzz.token_sort_ratio(name, theirs), 1)
