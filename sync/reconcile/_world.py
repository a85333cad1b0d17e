"""What the classifier reads, indexed once: keys, invalid rows, who holds which value.

The :class:`_World` a classification runs over is built here from the HR snapshot, the Protime
people and the prior state; ``_classify.py`` holds the rules that decide on it. Split from it by
concern (the inputs' shape and indexes vs the decisions); both are pure.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from contextlib import contextmanager
from operator import attrgetter
from typing import TYPE_CHECKING

from sync.domain import (
    HREmployee,
    HRSnapshot,
    InvalidHRRow,
    Person,
    PriorState,
    Rule,
    ValueOwner,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from collections.abc import Set as AbstractSet


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the core builds 100,000s of small objects.

    The core makes no reference cycles, yet the collector would run hundreds of times over
    objects that all stay alive: a third of the CPU time of a 100,000-employee run. Reference
    counting still frees everything, and the collector's previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
# The Person field each rule reads; keys are normalised the same way as _HR_KEYS does.
_PERSON_FIELDS = {
    Rule.REFERENCE: "reference",
    Rule.EMPLOYEE_NUMBER: "employee_number",
    Rule.BADGE_NUMBER: "badge_number",
    Rule.EMAIL: "email",
}


# The person ids of one key: a bare id for the common single holder (a list of one costs a
# list object more per key), a list, ascending, from the second on. Read with _all().
_Ids = int | list[int]


def _all(ids: _Ids | None) -> Sequence[int]:
    """The person ids of an index entry (none for a key not in the index)."""
    if ids is None:
        return ()
    return (ids,) if isinstance(ids, int) else ids


def _index(
    persons: Iterable[Person], rule: Rule, norm: Callable[[str], str | None] | None = None
) -> dict[str, _Ids]:
    """Rule key -> person ids, ascending (persons arrive sorted by id).

    Inlined normalisation: this loop runs once per rule over every person (100,000+).
    ``norm`` is the rule's configured normalizer, applied after the rule's own trimming.
    """
    index: dict[str, _Ids] = {}
    read = attrgetter(_PERSON_FIELDS[rule])
    exact, fold = rule is Rule.REFERENCE, rule is Rule.EMAIL
    for person in persons:
        value = read(person)
        if not value:
            continue
        if not exact:
            value = value.strip()
            if not value:
                continue
            if fold:
                value = value.casefold()
        if norm is not None:
            value = norm(value)
            if value is None:
                continue
        ids = index.get(value)
        if ids is None:
            index[value] = person.id
        elif isinstance(ids, int):
            index[value] = [ids, person.id]
        else:
            ids.append(person.id)
    return index


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _shown(raw: str, key: str | None) -> str:
    """A key as reasons print it: the normalized key next to the raw one when they differ."""
    if key is None:
        return f"{raw!r} [nothing left after normalization]"
    return raw if key == raw else f"{raw} [normalized {key}]"


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
        by_id = {person.id: person for person in people}
        if len(by_id) != len(people):
            by_id = {person.id: person for person in sorted(people, key=_person_order)}
        self.persons = by_id
        ordered = [by_id[i] for i in sorted(by_id)]
        self.ordered_persons = ordered
        self.holders = _index(ordered, Rule.REFERENCE)

        self.invalid_reasons, self.invalid_owner = _invalid(hr)
        self.employees = {e.hr_id: e for e in hr.employees if e.hr_id not in self.invalid_reasons}
        # Without ignored ids every valid employee is in scope: the keys of ``employees`` are the
        # set (a set of its own would be alive at the planning peak).
        self.in_scope: AbstractSet[str] = (
            {i for i in self.employees if i not in self.ignored}
            if self.ignored
            else self.employees.keys()
        )
        self.out_of_scope = hr.out_of_scope_ids
        self.raw_invalid_ids = {r.hr_id for r in hr.invalid if r.hr_id}

    def seen(self, hr_id: str) -> bool:
        """Whether this run's inputs mention ``hr_id`` (an HR row of any kind, or a value)."""
        return (
            hr_id in self.employees
            or hr_id in self.invalid_reasons
            or hr_id in self.raw_invalid_ids
            or hr_id in self.out_of_scope
            or hr_id in self.holders
        )

    def owner(self, value: str) -> tuple[ValueOwner, str]:
        """Whom a value held in Protime belongs to, and why, in words."""
        if value in self.ignored:
            return ValueOwner.PROTECTED, "an admin ignored that id"
        holders = _all(self.holders.get(value))
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
        return holders if isinstance(holders, int) else None


def _person_order(p: Person) -> tuple[object, ...]:
    return (
        p.id,
        p.reference or "",
        p.employee_number or "",
        p.badge_number or "",
        p.email or "",
        p.out_of_service,
    )
