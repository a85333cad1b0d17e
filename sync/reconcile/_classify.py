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

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync.domain import (
    Classification,
    HREmployee,
    HRSnapshot,
    InvalidHRRow,
    Person,
    PriorState,
    Rule,
    Situation,
    ValueOwner,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

DEFAULT_REFERENCE_NAME = "HRMID"


def _trimmed(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _email(value: str | None) -> str | None:
    value = _trimmed(value)
    return value.casefold() if value else None


def _reference(value: str | None) -> str | None:
    # Protime leaves a name without a value out of the map; an empty string means the same.
    return value or None


_HR_KEYS: dict[Rule, Callable[[HREmployee], str | None]] = {
    Rule.REFERENCE: lambda e: e.hr_id,
    Rule.EMPLOYEE_NUMBER: lambda e: _trimmed(e.employee_number),
    Rule.BADGE_NUMBER: lambda e: _trimmed(e.badge_number),
    Rule.EMAIL: lambda e: _email(e.email),
}
_PERSON_KEYS: dict[Rule, Callable[[Person], str | None]] = {
    Rule.REFERENCE: lambda p: _reference(p.reference),
    Rule.EMPLOYEE_NUMBER: lambda p: _trimmed(p.employee_number),
    Rule.BADGE_NUMBER: lambda p: _trimmed(p.badge_number),
    Rule.EMAIL: lambda p: _email(p.email),
}


def match_phrase(c: Classification) -> str:
    """How ``c`` found its person, as words: "employee_number E1 matched person 7"."""
    if c.rule is Rule.MANUAL:
        return f"an admin linked {c.hr_id} to person {c.protime_id}"
    key = (c.evidence or "").partition("=")[2]
    return f"{c.rule} {key} matched person {c.protime_id}"


def _index(persons: Iterable[Person], key: Callable[[Person], str | None]) -> dict[str, list[int]]:
    """key -> person ids, ascending (persons arrive sorted by id)."""
    index: dict[str, list[int]] = {}
    for person in persons:
        value = key(person)
        if value is not None:
            index.setdefault(value, []).append(person.id)
    return index


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)


@dataclass(frozen=True, slots=True)
class _Claim:
    hr_id: str
    rule: Rule
    evidence: str


def _invalid_key(row: InvalidHRRow) -> str:
    raw = row.hr_id
    return raw if raw is not None and raw.strip() else f"<row {row.row_number}>"


def _merge_reasons(rows: Sequence[InvalidHRRow]) -> str:
    if len(rows) == 1:
        return f"row {rows[0].row_number}: {rows[0].reason}"
    reasons = {row.reason for row in rows}
    numbers = ", ".join(str(row.row_number) for row in rows)
    if len(reasons) == 1:
        return f"rows {numbers}: {rows[0].reason}"
    return "; ".join(f"row {row.row_number}: {row.reason}" for row in rows)


def _invalid(hr: HRSnapshot) -> tuple[dict[str, str], dict[str, str]]:
    """Invalid keys -> reason, and values an invalid row might own -> its key.

    Valid rows that share an id with an invalid row, or with each other, are invalid as well.
    """
    groups: dict[str, list[InvalidHRRow]] = defaultdict(list)
    for row in sorted(hr.invalid, key=lambda r: r.row_number):
        groups[_invalid_key(row)].append(row)
    reasons = {key: _merge_reasons(rows) for key, rows in groups.items()}
    owners: dict[str, str] = {}
    for key in groups:
        if not key.startswith("<row "):
            owners[key] = key
            owners.setdefault(key.strip(), key)
    valid_count: dict[str, int] = defaultdict(int)
    for employee in hr.employees:
        valid_count[employee.hr_id] += 1
    for hr_id, count in valid_count.items():
        if hr_id in reasons:
            reasons[hr_id] += (
                f"; {count} other row(s) with this id looked valid, but an HR id must be unique"
            )
        elif count > 1:
            reasons[hr_id] = f"duplicate id: {count} rows in HR have it"
            owners[hr_id] = hr_id
    return reasons, owners


class _World:
    """The indices of one classification, built once."""

    def __init__(
        self,
        *,
        hr: HRSnapshot,
        people: Sequence[Person],
        prior: PriorState,
        reference_name: str,
    ) -> None:
        self.name = reference_name
        self.ignored = prior.ignored_hr_ids
        # The same person twice (a page read while Protime changed): keep one, chosen by content
        # so that the order of the input does not matter.
        by_id: dict[int, Person] = {}
        for person in sorted(people, key=_person_order):
            by_id[person.id] = person
        self.persons = by_id
        ordered = [by_id[i] for i in sorted(by_id)]
        self.ordered_persons = ordered
        self.holders = _index(ordered, _PERSON_KEYS[Rule.REFERENCE])

        self.invalid_reasons, self.invalid_owner = _invalid(hr)
        self.employees = {e.hr_id: e for e in hr.employees if e.hr_id not in self.invalid_reasons}
        self.in_scope = {i for i in self.employees if i not in self.ignored}
        self.out_of_scope = hr.out_of_scope_ids
        self.seen_in_hr = (
            {e.hr_id for e in hr.employees}
            | {r.hr_id for r in hr.invalid if r.hr_id}
            | hr.out_of_scope_ids
        )

    def owner(self, value: str) -> tuple[ValueOwner, str]:
        """Whom a value held in Protime belongs to, and why, in words."""
        if value in self.ignored:
            return ValueOwner.PROTECTED, "an admin ignored that id"
        holders = self.holders.get(value, ())
        if len(holders) > 1:
            return ValueOwner.PROTECTED, f"Protime shows it on persons {_ids(holders)}"
        if value in self.in_scope:
            return ValueOwner.EMPLOYEE, "the id of another HR employee"
        if value in self.invalid_owner:
            key = self.invalid_owner[value]
            return ValueOwner.PROTECTED, f"it may belong to the invalid HR row {key!r}"
        if value in self.out_of_scope:
            return ValueOwner.OUT_OF_SCOPE, "HR marks that id out of scope"
        return ValueOwner.GONE, "no HR row has that id"

    def holder(self, value: str) -> int | None:
        holders = self.holders.get(value)
        return holders[0] if holders and len(holders) == 1 else None


def _person_order(p: Person) -> tuple[object, ...]:
    return (
        p.id,
        p.reference or "",
        p.employee_number or "",
        p.badge_number or "",
        p.email or "",
        p.out_of_service,
    )


def classify(
    *,
    hr: HRSnapshot,
    people: Sequence[Person],
    prior: PriorState,
    rules: Sequence[Rule],
    reference_name: str = DEFAULT_REFERENCE_NAME,
) -> list[Classification]:
    """One classification per HR id (valid, invalid or ignored) and per orphaned value, by key."""
    world = _World(hr=hr, people=people, prior=prior, reference_name=reference_name)
    out: dict[str, Classification] = {}
    _classify_invalid_and_ignored(world, out)
    claims = _match(world, prior=prior, rules=rules, out=out)
    targets = _resolve(world, claims=claims, out=out)
    _classify_orphans(world, targets=targets, out=out)
    return [out[key] for key in sorted(out)]


def _classify_invalid_and_ignored(world: _World, out: dict[str, Classification]) -> None:
    for key, reason in world.invalid_reasons.items():
        held_by = world.holder(key) or world.holder(key.strip())
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
    for hr_id in sorted(world.ignored & (world.seen_in_hr | world.holders.keys())):
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
    out: dict[str, Classification],
) -> dict[int, list[_Claim]]:
    """Run the rules for every in-scope employee; returns person -> the employees that claim it."""
    matcher = _Matcher(world, prior=prior, rules=rules)
    for hr_id in world.in_scope:
        found = matcher.match(hr_id)
        if isinstance(found, Classification):
            out[hr_id] = found
        else:
            matcher.claims[found[0]].append(found[1])
    return matcher.claims


class _Matcher:
    def __init__(self, world: _World, *, prior: PriorState, rules: Sequence[Rule]) -> None:
        self.world = world
        self.manual = {h: p for h, p in prior.manual_links.items() if h in world.in_scope}
        # A manually linked person -> the (first) id linking it: no candidate for anyone else.
        self.claimed: dict[int, str] = {}
        for hr_id in sorted(self.manual):
            if self.manual[hr_id] in world.persons:
                self.claimed.setdefault(self.manual[hr_id], hr_id)
        indices = {
            rule: world.holders if rule is Rule.REFERENCE else _index(world.ordered_persons, key)
            for rule, key in _PERSON_KEYS.items()
            if rule in rules
        }
        self.rules = [(rule, _HR_KEYS[rule], indices[rule]) for rule in rules if rule in indices]
        self.claims: dict[int, list[_Claim]] = defaultdict(list)

    def match(self, hr_id: str) -> Classification | tuple[int, _Claim]:
        world = self.world
        on = world.holders.get(hr_id, ())
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
        held_by = on[0] if on else None
        if hr_id not in self.manual:
            return self._by_rules(world.employees[hr_id], held_by)
        person_id = self.manual[hr_id]
        if person_id in world.persons:
            return person_id, _Claim(hr_id, Rule.MANUAL, f"manual link to {person_id}")
        return Classification(
            hr_id=hr_id,
            situation=Situation.UNMATCHED,
            rule=Rule.MANUAL,
            evidence=f"manual link to {person_id}",
            reason=(
                f"an admin linked it to person {person_id}, which Protime no longer has;"
                f" link it again or remove the link (idsync unlink {hr_id})"
            ),
            held_by=held_by,
        )

    def _by_rules(
        self, employee: HREmployee, held_by: int | None
    ) -> Classification | tuple[int, _Claim]:
        hr_id = employee.hr_id
        tried: list[str] = []
        for rule, hr_key, index in self.rules:
            key = hr_key(employee)
            if key is None:
                tried.append(f"{rule} empty in HR")
                continue
            candidates = index.get(key, ())
            if self.claimed and candidates:
                left_out = [c for c in candidates if c in self.claimed]
                if left_out:
                    candidates = [c for c in candidates if c not in self.claimed]
                    if not candidates:
                        tried.append(
                            f"{rule} {key}: person {left_out[0]} left out"
                            f" (an admin linked it to {self.claimed[left_out[0]]})"
                        )
                        continue
            if not candidates:
                tried.append(f"{rule} {key}: no person")
                continue
            evidence = f"{rule}={key}"
            if len(candidates) == 1:
                return candidates[0], _Claim(hr_id, rule, evidence)
            return Classification(
                hr_id=hr_id,
                situation=Situation.DISPUTED,
                rule=rule,
                evidence=evidence,
                reason=(
                    f"{rule} {key} matches {len(candidates)} persons ({_ids(candidates)});"
                    f" never guessed: link it by hand (idsync link {hr_id} PROTIME_ID)"
                ),
                candidates=tuple(candidates),
                held_by=held_by,
            )
        return Classification(
            hr_id=hr_id,
            situation=Situation.UNMATCHED,
            reason="no person matched: " + "; ".join(tried or ["no rules configured"]),
            held_by=held_by,
        )


def _resolve(
    world: _World, *, claims: Mapping[int, list[_Claim]], out: dict[str, Classification]
) -> set[int]:
    """Turn unique claims into linked/unlinked/drifted; returns the persons resolved to."""
    targets: set[int] = set()
    for person_id, person_claims in claims.items():
        if len(person_claims) > 1:
            ordered = sorted(person_claims, key=lambda c: c.hr_id)
            who = ", ".join(f"{c.hr_id} ({c.evidence.replace('=', ' ')})" for c in ordered)
            for claim in ordered:
                out[claim.hr_id] = Classification(
                    hr_id=claim.hr_id,
                    situation=Situation.DISPUTED,
                    rule=claim.rule,
                    evidence=claim.evidence,
                    reason=(
                        f"person {person_id} is matched by {len(ordered)} HR employees: {who};"
                        " never guessed: an admin links one by hand"
                    ),
                    candidates=(person_id,),
                    held_by=world.holder(claim.hr_id),
                )
            continue
        claim = person_claims[0]
        targets.add(person_id)
        out[claim.hr_id] = _resolved(world, claim=claim, person=world.persons[person_id])
    return targets


def _resolved(world: _World, *, claim: _Claim, person: Person) -> Classification:
    hr_id = claim.hr_id
    value = _reference(person.reference)
    held_by = world.holder(hr_id)
    base = Classification(
        hr_id=hr_id,
        situation=Situation.LINKED,
        protime_id=person.id,
        rule=claim.rule,
        evidence=claim.evidence,
        protime_value=value,
        held_by=held_by,
    )
    found = match_phrase(base)
    name = world.name
    if value == hr_id:
        how = "by an admin's link" if claim.rule is Rule.MANUAL else f"by {claim.rule}"
        return _with(
            base, Situation.LINKED, f"person {person.id} holds {name} {hr_id} (matched {how})"
        )
    if value is None and held_by is None:
        return _with(base, Situation.UNLINKED, f"{found}, which has no {name}")
    parts = []
    owner: ValueOwner | None = None
    if value is not None:
        owner, why = world.owner(value)
        parts.append(f"{found}, which holds {name} {value} instead ({why})")
    else:
        parts.append(f"{found}, which has no {name}")
    if held_by is not None:
        parts.append(f"{name} {hr_id} sits on person {held_by}")
    return Classification(
        hr_id=hr_id,
        situation=Situation.DRIFTED,
        protime_id=person.id,
        rule=claim.rule,
        evidence=claim.evidence,
        reason="; ".join(parts),
        protime_value=value,
        held_by=held_by,
        protime_value_owner=owner,
    )


def _with(c: Classification, situation: Situation, reason: str) -> Classification:
    return Classification(
        hr_id=c.hr_id,
        situation=situation,
        protime_id=c.protime_id,
        rule=c.rule,
        evidence=c.evidence,
        reason=reason,
        protime_value=c.protime_value,
        held_by=c.held_by,
    )


def _classify_orphans(world: _World, *, targets: set[int], out: dict[str, Classification]) -> None:
    name = world.name
    for value, holders in world.holders.items():
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
        if person_id in targets:
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
