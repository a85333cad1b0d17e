"""Classification: every HR id, and every value Protime holds for us, gets one situation.

Pure: no I/O, no clock. Inputs are one HR snapshot, one read of Protime's people, the state's
:class:`PriorState` and the configured rules; the output is one :class:`Classification` per key,
sorted by key, so the result never depends on the order of HR rows or persons. The rules and
every decision below are explained with examples in ``docs/matching.md``.

Decisions (each one is tested in ``tests/reconcile/``):

* Keys are compared as follows: ``reference`` exactly (values are case-sensitive);
  ``employee_number`` and ``badge_number`` exactly after trimming surrounding white space;
  ``email`` trimmed and case-insensitive. An empty HR field yields nothing and the next rule is
  tried.
* Normalizers configured for a rule (``IDSYNC_MATCH__NORMALIZE``) apply to both sides' keys on
  top of that, for comparing only: the value written is always the HR id as HR has it, and
  "linked" still means the person holds exactly that id. Keys that become equal only after
  normalization are candidates like any others (two of them: ``disputed``), and reasons show the
  normalized key next to the raw one.
* Rules run in the configured order. The first rule with exactly one candidate resolves the
  employee. A rule with two or more candidates makes it ``disputed`` and stops there: later
  rules are not tried, because a later unique match would be a guess among people the earlier,
  stronger rule could not tell apart.
* A manual link wins over every rule. It claims its person: that person is no candidate for
  any other employee's rules (it is listed as "left out" in their reason). A manual link to a
  person Protime no longer has makes the employee ``unmatched``; rules are not tried as a
  fallback. Links of ids that are not valid, in-scope, non-ignored employees are dormant and
  claim nothing.
* Two or more employees resolving to one person are all ``disputed`` (no one wins, not even the
  one that matched by reference: nothing tells which HR record is right).
* Out-of-service persons stay candidates: HR decides scope through its active column, and a
  reference on a former employee is harmless.
* An id Protime shows on two persons (which Protime should not allow) is never touched: its
  employee is ``disputed`` and a person holding it is never written over.
* Invalid rows: one classification per distinct raw id (rows with the same id are merged and
  their row numbers listed); rows with a blank id each get their own ``<row N>`` key. A valid
  row sharing its id with an invalid row, or two valid rows with one id, are ``invalid`` too:
  an HR id must be unique. Values an invalid row might own (its raw id and the raw id trimmed)
  are never deleted or written over.
* Ignored ids: ignored employees take no part in matching; their values are never touched. An
  ignored id is reported when it appears in this run (an HR row or a Protime value).
* An id that is both a valid in-scope employee and listed as out of scope counts as in scope.
* Orphans are values Protime holds that are not the id of a valid in-scope employee, not an
  invalid row's id and not ignored. A stale value on a person some employee resolved to is part
  of that employee's ``drifted`` record (the re-point deletes it), not an orphan as well.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING

from sync.contract import DEFAULT_REFERENCE_NAME
from sync.domain import (
    Classification,
    HREmployee,
    HRSnapshot,
    LinkedClassification,
    Person,
    PriorState,
    Rule,
    Situation,
    ValueOwner,
    matched_evidence,
)
from sync.reconcile._normalize import describe, normalizer
from sync.reconcile._world import (
    _HR_KEYS,
    _PERSON_FIELDS,
    _all,
    _Ids,
    _ids,
    _index,
    _shown,
    _World,
    quiet_gc,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sync.domain import Normalizer

# One unique match: (hr_id, rule, evidence). A tuple, not a dataclass: 100,000 are made per run.
# Evidence None: the reference rule matched the HR id itself, worded only when read (most records).
_Claim = tuple[str, Rule, str | None]
# One rule tried without a match: (rule, HR key, normalized key, person left out) for the reason.
_Tried = tuple[Rule, str | None, str | None, int | None]


def classify(
    *,
    hr: HRSnapshot,
    people: Sequence[Person],
    prior: PriorState,
    rules: Sequence[Rule],
    reference_name: str = DEFAULT_REFERENCE_NAME,
    normalize: Mapping[Rule, Sequence[Normalizer]] | None = None,
) -> list[Classification]:
    """One classification per HR id (valid, invalid or ignored) and per orphaned value, by key.

    ``normalize`` gives each rule's normalizers (``IDSYNC_MATCH__NORMALIZE``); a rule not in it
    compares keys as ``docs/matching.md`` says, without normalization.
    """
    with quiet_gc():
        world = _World(hr=hr, people=people, prior=prior, reference_name=reference_name)
        out: dict[str, Classification] = {}
        _classify_invalid_and_ignored(world, out)
        matcher = _match(world, prior=prior, rules=rules, normalize=normalize or {}, out=out)
        _resolve(world, claims=matcher.claims, contested=matcher.contested, out=out)
        _classify_orphans(world, claims=matcher.claims, contested=matcher.contested, out=out)
        return [out[key] for key in sorted(out)]


def _classify_invalid_and_ignored(world: _World, out: dict[str, Classification]) -> None:
    for key, reason in world.invalid_reasons.items():
        held_by = world.holder(key)
        if held_by is None:
            held_by = world.holder(key.strip())
        if key in world.ignored:
            out[key] = Classification(
                hr_id=key,
                situation=Situation.IGNORED,
                reason=f"an admin ignored it (the HR row is invalid too: {reason})",
                held_by=held_by,
            )
        else:
            out[key] = Classification(
                hr_id=key, situation=Situation.INVALID, reason=reason, held_by=held_by
            )
    for hr_id in sorted(i for i in world.ignored if world.seen(i)):
        out.setdefault(
            hr_id,
            Classification(
                hr_id=hr_id,
                situation=Situation.IGNORED,
                reason="an admin ignored it: idsync neither writes nor removes it",
                held_by=world.holder(hr_id),
            ),
        )


def _match(
    world: _World,
    *,
    prior: PriorState,
    rules: Sequence[Rule],
    normalize: Mapping[Rule, Sequence[Normalizer]],
    out: dict[str, Classification],
) -> _Matcher:
    """Run the rules for every in-scope employee; the matcher holds who claims which person."""
    matcher = _Matcher(world, prior=prior, rules=rules, normalize=normalize)
    match = matcher.match
    for hr_id in world.in_scope:
        found = match(hr_id)
        if found is not None:
            out[hr_id] = found
    return matcher


class _Matcher:
    """Runs the rules for one employee at a time; unique matches go to ``claims``."""

    def __init__(
        self,
        world: _World,
        *,
        prior: PriorState,
        rules: Sequence[Rule],
        normalize: Mapping[Rule, Sequence[Normalizer]],
    ) -> None:
        self.world = world
        self.manual = {h: p for h, p in prior.manual_links.items() if h in world.in_scope}
        # A manually linked person -> the (first) id linking it: no candidate for anyone else.
        self.claimed: dict[int, str] = {}
        for hr_id in sorted(self.manual):
            if self.manual[hr_id] in world.persons:
                self.claimed.setdefault(self.manual[hr_id], hr_id)
        self.rules = [
            (rule, _HR_KEYS[rule], normalizer(normalize.get(rule, ())))
            for rule in dict.fromkeys(rules)
            if rule in _HR_KEYS
        ]
        self.steps = {rule: tuple(steps) for rule, steps in normalize.items() if steps}
        # Built on first use: when everyone is linked, only the reference index is ever needed.
        # A normalized reference rule gets its own index: ``holders`` stays exact for everything
        # else (who holds which value, orphans, what may be deleted).
        self.indices: dict[Rule, dict[str, _Ids]] = {}
        if Rule.REFERENCE not in self.steps:
            self.indices[Rule.REFERENCE] = world.holders
        self.claims: dict[int, _Claim] = {}  # person -> the first employee that claims it
        self.contested: dict[int, list[_Claim]] = {}  # person -> every claim, when several

    def match(self, hr_id: str) -> Classification | None:
        """A classification for an employee that did not resolve; ``None`` after a claim."""
        world = self.world
        on = _all(world.holders.get(hr_id))
        if len(on) > 1:
            return Classification(
                hr_id=hr_id,
                situation=Situation.DISPUTED,
                reason=(
                    f"Protime shows {world.name} {hr_id} on persons {_ids(on)}; "
                    "left alone until that is fixed in Protime"
                ),
                candidates=tuple(on),
            )
        if hr_id in self.manual:
            return self._manual(hr_id)
        return self._by_rules(world.employees[hr_id])

    def _by_rules(self, employee: HREmployee) -> Classification | None:
        world, hr_id, claimed = self.world, employee.hr_id, self.claimed
        tried: list[_Tried] = []  # worded only if unmatched
        for rule, hr_key, norm in self.rules:
            raw = hr_key(employee)
            if raw is None:
                tried.append((rule, None, None, None))
                continue
            key = raw if norm is None else norm(raw)
            if key is None:
                tried.append((rule, raw, None, None))
                continue
            index = self.indices.get(rule)
            if index is None:
                index = self.indices[rule] = _index(world.ordered_persons, rule, norm)
            candidates = _all(index.get(key))
            if candidates and claimed:
                left_out = [c for c in candidates if c in claimed]
                if left_out:
                    candidates = [c for c in candidates if c not in claimed]
                    if not candidates:
                        tried.append((rule, raw, key, left_out[0]))
                        continue
            if not candidates:
                tried.append((rule, raw, key, None))
                continue
            shown = raw if key == raw else _shown(raw, key)
            if len(candidates) == 1:
                exact = rule is Rule.REFERENCE and key == raw
                evidence = None if exact else matched_evidence(rule, shown)
                self._claim(candidates[0], (hr_id, rule, evidence))
                return None
            return Classification(
                hr_id=hr_id,
                situation=Situation.DISPUTED,
                rule=rule,
                evidence=matched_evidence(rule, shown),
                reason=(
                    f"{rule} {shown} matches {len(candidates)} persons"
                    f" ({self._candidates(rule, key, candidates)});"
                    f" never guessed: link it by hand (idsync link {hr_id} PROTIME_ID)"
                ),
                candidates=tuple(candidates),
                held_by=world.holder(hr_id),
            )
        return Classification(
            hr_id=hr_id,
            situation=Situation.UNMATCHED,
            reason="no person matched: " + self._tried(tried),
            held_by=world.holder(hr_id),
        )

    def _candidates(self, rule: Rule, key: str, candidates: Sequence[int]) -> str:
        """The candidates; with normalizers, what each one holds and the key they share."""
        steps = self.steps.get(rule)
        if not steps:
            return _ids(candidates)
        read = attrgetter(_PERSON_FIELDS[rule])
        held = ", ".join(f"{c} has {read(self.world.persons[c])}" for c in candidates)
        return f"{held}; all equal to the normalized key {key} ({describe(steps)})"

    def _tried(self, tried: list[_Tried]) -> str:
        words = []
        for rule, raw, key, left_out in tried:
            if raw is None:
                words.append(f"{rule} empty in HR")
                continue
            shown = _shown(raw, key)
            if left_out is not None:
                words.append(
                    f"{rule} {shown}: person {left_out} left out"
                    f" (an admin linked it to {self.claimed[left_out]})"
                )
            else:
                words.append(f"{rule} {shown}: no person")
        return "; ".join(words or ["no rules configured"])

    def _claim(self, person_id: int, claim: _Claim) -> None:
        first = self.claims.setdefault(person_id, claim)
        if first is not claim:
            self.contested.setdefault(person_id, [first]).append(claim)

    def _manual(self, hr_id: str) -> Classification | None:
        person_id = self.manual[hr_id]
        evidence = f"manual link to {person_id}"
        if person_id in self.world.persons:
            self._claim(person_id, (hr_id, Rule.MANUAL, evidence))
            return None
        return Classification(
            hr_id=hr_id,
            situation=Situation.UNMATCHED,
            rule=Rule.MANUAL,
            evidence=evidence,
            reason=(
                f"an admin linked it to person {person_id}, which Protime no longer has;"
                f" link it again or remove the link (idsync unlink {hr_id})"
            ),
            held_by=self.world.holder(hr_id),
        )


def _evidence(hr_id: str, evidence: str | None) -> str:
    return evidence if evidence is not None else matched_evidence(Rule.REFERENCE, hr_id)


def _resolve(
    world: _World,
    *,
    claims: Mapping[int, _Claim],
    contested: Mapping[int, list[_Claim]],
    out: dict[str, Classification],
) -> None:
    """Turn unique claims into linked/unlinked/drifted, and contested ones into disputed."""
    persons = world.persons
    for person_id, (hr_id, rule, evidence) in claims.items():
        if person_id not in contested:
            out[hr_id] = _resolved(world, hr_id, rule, evidence, persons[person_id])
    for person_id, person_claims in contested.items():
        ordered = sorted((hr_id, rule, _evidence(hr_id, e)) for hr_id, rule, e in person_claims)
        who = ", ".join(f"{hr_id} ({evidence.replace('=', ' ')})" for hr_id, _, evidence in ordered)
        for hr_id, rule, evidence in ordered:
            out[hr_id] = Classification(
                hr_id=hr_id,
                situation=Situation.DISPUTED,
                rule=rule,
                evidence=evidence,
                reason=(
                    f"person {person_id} is matched by {len(ordered)} HR employees: {who};"
                    " never guessed: an admin links one by hand"
                ),
                candidates=(person_id,),
                held_by=world.holder(hr_id),
            )


def _resolved(
    world: _World, hr_id: str, rule: Rule, claimed: str | None, person: Person
) -> Classification:
    value = person.reference or None
    on = world.holders.get(hr_id)
    held_by = on if isinstance(on, int) else None  # one at most: two made the employee disputed
    name = world.name
    if value == hr_id:
        return LinkedClassification.of(
            hr_id=hr_id,
            protime_id=person.id,
            rule=rule,
            evidence=claimed,
            held_by=held_by,
            reference_name=name,
        )
    evidence = _evidence(hr_id, claimed)
    owner: ValueOwner | None = None
    if rule is Rule.MANUAL:
        found = f"an admin linked {hr_id} to person {person.id}"
    else:
        found = f"{rule} {evidence.partition('=')[2]} matched person {person.id}"
    if value is None and held_by is None:
        situation = Situation.UNLINKED
        reason = f"{found}, which has no {name}"
    else:
        situation = Situation.DRIFTED
        if value is not None:
            owner, why = world.owner(value)
            reason = f"{found}, which holds {name} {value} instead ({why})"
        else:
            reason = f"{found}, which has no {name}"
        if held_by is not None:
            reason += f"; {name} {hr_id} sits on person {held_by}"
    return Classification(
        hr_id=hr_id,
        situation=situation,
        protime_id=person.id,
        rule=rule,
        evidence=evidence,
        reason=reason,
        protime_value=value,
        held_by=held_by,
        protime_value_owner=owner,
    )


def _classify_orphans(
    world: _World,
    *,
    claims: Mapping[int, _Claim],
    contested: Mapping[int, list[_Claim]],
    out: dict[str, Classification],
) -> None:
    """Values Protime holds that no record accounts for; a person some employee resolved to
    (claimed by one employee only) is not asked again: the set of them would be one more
    entry per employee at the run's memory peak."""
    name = world.name
    for value, ids in world.holders.items():
        holders = _all(ids)
        if value in out or value in world.in_scope:
            continue
        owner, why = world.owner(value)
        if owner is ValueOwner.PROTECTED and len(holders) == 1:
            continue  # an ignored or invalid row's value: reported under its own key
        if len(holders) > 1:
            out[value] = Classification(
                hr_id=value,
                situation=Situation.ORPHANED,
                reason=f"{why}, and no valid in-scope HR employee has that id; left alone",
                protime_value=value,
                candidates=tuple(holders),
                protime_value_owner=owner,
            )
            continue
        person_id = holders[0]
        if person_id in claims and person_id not in contested:
            continue  # part of the drift of the employee that resolved to this person
        out[value] = Classification(
            hr_id=value,
            situation=Situation.ORPHANED,
            protime_id=person_id,
            reason=f"person {person_id} holds {name} {value}, but {why}",
            protime_value=value,
            held_by=person_id,
            protime_value_owner=owner,
        )
