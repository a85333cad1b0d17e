"""Helpers for the reconcile tests: short constructors and an in-memory model of Protime.

The model applies a plan's actions the way Protime would under each of the three behaviours
the tests care about, phase by phase, in a caller-chosen order within a phase:

* ``replace``: a PUT moves the value to the person and replaces the person's old value;
* ``conflict``: a PUT onto a person that holds another value fails (409) and changes nothing;
* ``naive``: a PUT moves the value and keeps the person's old value too (no such Protime exists;
  it shows whether a plan ever writes onto a person that is not free).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sync.config import ReactionSettings
from sync.domain import (
    ActionKind,
    Classification,
    HREmployee,
    HRSnapshot,
    InvalidHRRow,
    Person,
    Plan,
    PriorState,
    Rule,
)
from sync.reconcile._classify import classify
from sync.reconcile._plan import plan

if TYPE_CHECKING:
    import random

DEFAULT_RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER)


def emp(hr_id: str, en: str | None = None, badge: str | None = None, email: str | None = None):
    return HREmployee(hr_id=hr_id, employee_number=en, badge_number=badge, email=email)


def person(pid: int, ref: str | None = None, en: str | None = None, **kw) -> Person:
    return Person(id=pid, reference=ref, employee_number=en, **kw)


def snapshot(*employees, invalid=(), out_of_scope=()) -> HRSnapshot:
    return HRSnapshot(
        employees=tuple(employees),
        invalid=tuple(InvalidHRRow(*row) for row in invalid),
        out_of_scope_ids=frozenset(out_of_scope),
    )


def by_id(classifications) -> dict[str, Classification]:
    return {c.hr_id: c for c in classifications}


def decide(
    hr: HRSnapshot,
    people,
    *,
    prior: PriorState | None = None,
    rules=DEFAULT_RULES,
    reactions: ReactionSettings | None = None,
    **plan_kw,
) -> Plan:
    prior = prior or PriorState()
    found = classify(hr=hr, people=people, prior=prior, rules=rules)
    return plan(
        classifications=found,
        reactions=reactions or ReactionSettings(),
        prior=prior,
        **plan_kw,
    )


@dataclass
class ProtimeModel:
    """Pairs (value, person id) as Protime holds them; see the module docstring for modes."""

    people: dict[int, Person]
    mode: str
    pairs: set[tuple[str, int]] = field(default_factory=set)
    conflicts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, people, mode: str) -> ProtimeModel:
        model = cls(people={p.id: p for p in people}, mode=mode)
        model.pairs = {(p.reference, p.id) for p in people if p.reference}
        return model

    def apply(self, the_plan: Plan, rng: random.Random) -> None:
        phases = sorted({a.phase for a in the_plan.actions})
        for phase in phases:
            batch = [a for a in the_plan.actions if a.phase == phase]
            rng.shuffle(batch)  # concurrent within a phase: any order must do
            for action in batch:
                self._one(action)

    def _one(self, action) -> None:
        if action.kind is ActionKind.DELETE:
            # The planner must only delete what Protime holds, where it believes it is.
            assert (action.value, action.protime_id) in self.pairs, action
            self.pairs.discard((action.value, action.protime_id))
            return
        others = {v for v, p in self.pairs if p == action.protime_id and v != action.value}
        if others and self.mode == "conflict":
            self.conflicts.append(f"409: {action}")
            return
        self.pairs = {(v, p) for v, p in self.pairs if v != action.value}
        if others and self.mode == "replace":
            self.pairs -= {(v, action.protime_id) for v in others}
        self.pairs.add((action.value, action.protime_id))

    def broken_invariants(self) -> list[str]:
        problems = []
        values: dict[str, list[int]] = {}
        persons: dict[int, list[str]] = {}
        for value, pid in self.pairs:
            values.setdefault(value, []).append(pid)
            persons.setdefault(pid, []).append(value)
        problems += [f"{v} on persons {ps}" for v, ps in values.items() if len(ps) > 1]
        problems += [f"person {p} holds {vs}" for p, vs in persons.items() if len(vs) > 1]
        return problems

    def persons(self) -> list[Person]:
        held = {pid: value for value, pid in self.pairs}
        return [replace(p, reference=held.get(pid)) for pid, p in sorted(self.people.items())]
