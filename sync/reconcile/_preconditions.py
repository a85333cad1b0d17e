"""Preconditions of a stored plan: what each action expects, and the check at apply time. Pure.

An action's precondition is what the plan saw: the value its person held for our reference, the
person that held its value, and a fingerprint of its HR row. At apply time, against a fresh read:

* the action's effect is already there (a write's value on its person; a value to delete gone,
  or already on the person this plan moves it to):
  **done**, nothing to call — applying a plan twice performs nothing;
* the precondition still holds: **apply**;
* anything else: **stale**, with the reason, never called. An action that waits for a stale one
  (a later step of the same record, or the record that frees its person) is stale too.

Verdicts are taken against the state before any call of the apply, phase by phase in the plan's
order, so a stale delete in phase 0 makes the write that needed the room stale as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync.domain import ActionKind, Precondition

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Sequence

    from sync.config import Settings
    from sync.domain import Action, HRSnapshot, Person, Plan

ABSENT = "absent"  # no HR row has this id
_OUT_OF_SCOPE = "out_of_scope"
_INVALID = "invalid"
_TWO_PERSONS = -1  # a value Protime shows on two persons (never acted on: always stale)


def _digest(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def hr_fingerprints(hr: HRSnapshot, hr_ids: Collection[str]) -> dict[str, str]:
    """HR id -> fingerprint of its HR row, for the ids asked (absent ones are left out).

    An id on a valid row wins over the same id listed out of scope (it counts as in scope),
    and an invalid row's id is ``invalid`` whatever else: the same order as :func:`iter_preconditions`.
    """
    found: dict[str, str] = {}
    for hr_id in hr.out_of_scope_ids:
        if hr_id in hr_ids:
            found[hr_id] = _OUT_OF_SCOPE
    for e in hr.employees:
        if e.hr_id in hr_ids:
            found[e.hr_id] = _digest(e.hr_id, e.employee_number, e.badge_number, e.email)
    for row in hr.invalid:
        if row.hr_id is not None and row.hr_id in hr_ids:
            found[row.hr_id] = _INVALID
    return found


def iter_preconditions(plan: Plan, hr: HRSnapshot) -> Iterator[Precondition]:
    """One precondition per action of ``plan`` (same order), from the snapshot it was made of.

    A generator: a 250,000-action plan is stored and streamed without a list of them.
    """
    wanted = {a.hr_id for a in plan.actions}
    records = {c.hr_id: c for c in plan.classifications if c.hr_id in wanted}
    employees = {e.hr_id: e for e in hr.employees if e.hr_id in wanted}
    others = {hr_id: _OUT_OF_SCOPE for hr_id in hr.out_of_scope_ids if hr_id in wanted}
    invalid = {r.hr_id for r in hr.invalid if r.hr_id is not None and r.hr_id in wanted}
    for a in plan.actions:
        e = employees.get(a.hr_id)
        if a.hr_id in invalid:
            fingerprint = _INVALID
        elif e is not None:
            fingerprint = _digest(e.hr_id, e.employee_number, e.badge_number, e.email)
        else:
            fingerprint = others.get(a.hr_id, ABSENT)
        if a.kind is ActionKind.DELETE:
            yield Precondition(a.value, a.protime_id, fingerprint)
        else:
            c = records[a.hr_id]
            yield Precondition(c.protime_value, c.held_by, fingerprint)


def snapshot_fingerprint(hr: HRSnapshot, people: Iterable[Person]) -> str:
    """One digest of both snapshots: equal digests, equal inputs."""
    h = hashlib.blake2b(digest_size=16)
    for e in sorted(hr.employees, key=lambda e: e.hr_id):
        h.update(f"{e.hr_id}\x1f{e.employee_number}\x1f{e.badge_number}\x1f{e.email}\n".encode())
    h.update(f"scope:{sorted(hr.out_of_scope_ids)}\n".encode())
    h.update(f"invalid:{sorted((r.row_number, r.hr_id) for r in hr.invalid)}\n".encode())
    for p in people:
        h.update(
            f"{p.id}\x1f{p.reference}\x1f{p.employee_number}\x1f{p.badge_number}\x1f{p.email}\n".encode()
        )
    return h.hexdigest()


def settings_digest(settings: Settings) -> str:
    """A digest of the settings that shape a plan (never of a secret): tenant, reference, rules,
    reactions and the HR source. Thresholds are left out: they decide blocking, not actions."""
    shape = {
        "tenant": settings.protime.tenant,
        "base_url": settings.protime.base_url,
        "reference": settings.protime.reference_name,
        "match": settings.match.model_dump(mode="json"),
        "reactions": settings.reactions.model_dump(mode="json"),
        "hr_table": settings.hr.table,
        "hr_query": settings.hr.query,
        "hr_id_column": settings.hr.id_column,
        "hr_active_column": settings.hr.active_column,
    }
    return hashlib.blake2b(json.dumps(shape, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an apply does with one action: ``apply``, ``done`` or ``stale`` (with why)."""

    state: str
    why: str = ""


class Current:
    """The fresh read of Protime, kept only for the persons and values a plan touches."""

    def __init__(self, people: Iterable[Person], *, persons: set[int], values: set[str]) -> None:
        self.value_of: dict[int, str | None] = {}
        self.holder_of: dict[str, int] = {}
        for p in people:
            if p.id in persons:
                self.value_of[p.id] = p.reference or None
            ref = p.reference
            if ref and ref in values:
                self.holder_of[ref] = _TWO_PERSONS if ref in self.holder_of else p.id

    @classmethod
    def for_actions(
        cls, people: Iterable[Person], planned: Sequence[tuple[Action, Precondition]]
    ) -> Current:
        persons = {a.protime_id for a, _ in planned}
        values = {a.value for a, _ in planned}
        values.update(pre.expect_value for _, pre in planned if pre.expect_value)
        return cls(people, persons=persons, values=values)


def _show(value: object) -> str:
    return "none" if value is None else repr(value)


def verdicts(
    planned: Sequence[tuple[Action, Precondition]],
    current: Current,
    hr_now: dict[str, str],
) -> list[Verdict]:
    """One verdict per planned action (same order). ``hr_now``: fingerprints of the fresh HR."""
    out: list[Verdict | None] = [None] * len(planned)
    writes_to = {a.value: a.protime_id for a, _ in planned if a.kind is ActionKind.WRITE}
    stale_records: dict[str, str] = {}
    order = sorted(range(len(planned)), key=lambda i: (planned[i][0].phase, i))
    for i in order:
        a, pre = planned[i]
        verdict = _one(a, pre, current, hr_now, writes_to)
        if verdict.state == "apply":
            # Something it waits for is stale: calling it would fail (409) or clobber.
            if a.hr_id in stale_records:
                verdict = Verdict("stale", f"an earlier step of {a.hr_id} is stale")
            elif a.depends_on is not None and a.depends_on in stale_records:
                verdict = Verdict(
                    "stale",
                    f"waits for {a.depends_on} to free person {a.protime_id}, and that is stale",
                )
        if verdict.state == "stale":
            stale_records.setdefault(a.hr_id, verdict.why)
        out[i] = verdict
    return [v for v in out if v is not None]


def _one(
    a: Action,
    pre: Precondition,
    current: Current,
    hr_now: dict[str, str],
    writes_to: dict[str, int],
) -> Verdict:
    person_now = current.value_of.get(a.protime_id)
    holder_now = current.holder_of.get(a.value)
    if a.kind is ActionKind.WRITE and holder_now == a.protime_id:
        return Verdict("done")
    if a.kind is ActionKind.DELETE and (
        holder_now is None or (holder_now != a.protime_id and writes_to.get(a.value) == holder_now)
    ):
        # Gone, or already where this plan moves it (a value deleted for a moment to break a
        # swap): nothing to remove. Anywhere else a DELETE by value would remove it from a
        # person the plan never saw: stale, never called.
        return Verdict("done")
    problems = []
    if a.protime_id not in current.value_of:
        problems.append(f"person {a.protime_id} is gone from Protime")
    elif person_now != pre.expect_value:
        problems.append(
            f"person {a.protime_id} now holds {_show(person_now)}"
            f" (the plan saw {_show(pre.expect_value)})"
        )
    if holder_now != pre.expect_holder:
        now = "two persons" if holder_now == _TWO_PERSONS else f"person {_show(holder_now)}"
        problems.append(
            f"{a.value!r} is now on {now} (the plan saw person {_show(pre.expect_holder)})"
        )
    if pre.hr_fingerprint is not None and hr_now.get(a.hr_id, ABSENT) != pre.hr_fingerprint:
        problems.append(f"the HR row of {a.hr_id} changed")
    if problems:
        return Verdict("stale", "; ".join(problems))
    return Verdict("apply")
