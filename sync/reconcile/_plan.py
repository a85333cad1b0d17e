"""The pure planner: classifications and reactions in, ordered actions with reasons out.

No I/O. The plan is sorted by HR id, then phase, so it does not depend on input order. Apply
runs phase 0 to the last phase in order, concurrently within a phase. The ordering guarantees
that every write finds its person free when it runs, so the plan works whether Protime answers
a second value on a person with 409 or replaces the old value
(the API assumptions in docs/simulator.md), and a rerun
after a successful apply plans nothing. The decisions, with examples, are in
``docs/matching.md``:

* ``unlinked`` -> WRITE (reaction ``write``). ``orphaned`` -> DELETE in phase 0 (reaction
  ``delete``), never for a value Protime shows on two persons. ``drifted`` -> re-point
  (reaction ``repoint``); everything else -> nothing.
* Re-point of X onto person P that holds V: V gone from HR or out of scope -> DELETE V (phase 0)
  then WRITE X. V the id of an employee Y that is re-pointed elsewhere -> no delete: X's write
  waits for Y's move (``depends_on``). V an in-scope employee that is not moving (unmatched,
  disputed...) -> X is held, unless X's person comes from a manual link: the admin's link wins
  and V is deleted first. V ignored, possibly owned by an invalid row, or on two persons -> held.
* Phases: 0 deletes; a write runs one phase after whatever frees its person, and no earlier than
  phase 1 for a move (the value sits on another person) or phase 2 for a brand-new value. Chains
  of moves (P holds Y, Y's person holds Z, ...) take one phase per link. A cycle (X on Y's
  person and Y on X's) is broken by deleting the smallest id of the cycle in phase 0; that id is
  written again in a later phase.
* ``failed``: a record whose planned actions include the fingerprint in ``prior.failed`` gets no
  action and the situation ``failed`` (unless ``retry_failed``); once its inputs change (another
  person, another value) it is planned again.
* ``only`` restricts actions, never classifications. A record in ``only`` whose person is to be
  freed by a record outside ``only`` is held with a reason naming the missing id, never run
  into a certain 409 (or, with replace semantics, into removing the other employee's value).
* Any record whose freeing record gets no action (failed, held, not in ``only``) is held too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sync.contract import DEFAULT_REFERENCE_NAME
from sync.domain import Action, ActionKind, Classification, Plan, Rule, Situation, ValueOwner
from sync.reconcile._world import quiet_gc

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from sync.config import ReactionSettings
    from sync.domain import PriorState

_DELETABLE = (ValueOwner.GONE, ValueOwner.OUT_OF_SCOPE)


@dataclass(slots=True)
class _Write:
    """One record to re-point or write, while the plan is being worked out."""

    c: Classification
    delete_first: bool = False  # delete protime_value from the person (phase 0)
    depends_on: str | None = None  # the record whose action frees the person
    freed_at_zero: bool = False  # the person is free after phase 0
    breaker: bool = False  # own value deleted in phase 0 to break a cycle
    held: str | None = None  # why nothing is done


def plan(
    *,
    classifications: Sequence[Classification],
    reactions: ReactionSettings,
    prior: PriorState,
    retry_failed: bool = False,
    only: Collection[str] | None = None,
    reference_name: str = DEFAULT_REFERENCE_NAME,
) -> Plan:
    """Turn classifications into phased actions, each with a human reason."""
    with quiet_gc():
        records: dict[str, Classification] = {}
        for c in classifications:
            if c.hr_id in records:
                raise ValueError(f"two classifications for {c.hr_id!r}")
            records[c.hr_id] = c
        planner = _Planner(records, reactions=reactions, name=reference_name)
        actions = planner.actions()
        changed = {} if retry_failed else _fail(actions, records=records, failed=prior.failed)
        excluded: set[str] = set()
        if only is not None:
            only = frozenset(only)
            excluded = {hr_id for hr_id in actions if hr_id not in only}
            for hr_id in excluded:
                del actions[hr_id]
        for hr_id, why in planner.held.items():
            if only is None or hr_id in only:
                changed[hr_id] = _held(records[hr_id], why)
        _propagate_holds(planner, actions=actions, changed=changed, excluded=excluded, only=only)

        keys = sorted(records)
        final = [changed.get(hr_id, records[hr_id]) for hr_id in keys]
        ordered: list[Action] = []
        for hr_id in keys:
            acts = actions.get(hr_id)
            if acts:
                # A record has at most two actions (delete, then write): by phase.
                ordered.extend(sorted(acts, key=_action_order) if len(acts) > 1 else acts)
        return Plan(classifications=tuple(final), actions=tuple(ordered))


def _fail(
    actions: dict[str, list[Action]],
    *,
    records: dict[str, Classification],
    failed: Mapping[str, str],
) -> dict[str, Classification]:
    """Drop the actions of records whose last attempt failed with the same fingerprint."""
    changed: dict[str, Classification] = {}
    for hr_id in [h for h in failed if h in actions]:
        fingerprint = failed[hr_id]
        if any(a.fingerprint == fingerprint for a in actions[hr_id]):
            del actions[hr_id]
            c = records[hr_id]
            changed[hr_id] = replace(
                c,
                situation=Situation.FAILED,
                reason=(
                    f"the last attempt ({fingerprint}) failed permanently; it is tried again"
                    f" when its inputs change, or with --retry-failed. It was {c.situation}:"
                    f" {c.reason}"
                ),
            )
    return changed


def _action_order(a: Action) -> tuple[int, str, str]:
    return (a.phase, a.kind, a.value)


def _held(c: Classification, why: str) -> Classification:
    return replace(c, reason=f"{c.reason}; not re-pointed in this run: {why}")


def _propagate_holds(
    planner: _Planner,
    *,
    actions: dict[str, list[Action]],
    changed: dict[str, Classification],
    excluded: set[str],
    only: Collection[str] | None,
) -> None:
    """A record waiting for another record that gets no action is held as well, transitively."""
    waiting: dict[str, list[str]] = defaultdict(list)
    for hr_id, write in planner.writes.items():
        if write.depends_on is not None:
            waiting[write.depends_on].append(hr_id)
    stuck = [hr_id for hr_id in waiting if hr_id not in actions]
    while stuck:
        blocker = stuck.pop()
        for hr_id in waiting.get(blocker, ()):
            if hr_id not in actions:
                continue
            del actions[hr_id]
            stuck.append(hr_id)
            if only is not None and hr_id not in only:
                continue
            person = planner.writes[hr_id].c.protime_id
            if blocker in excluded:
                why = f"{blocker} must free person {person} first; add it to --only"
            elif changed.get(blocker, planner.records[blocker]).situation is Situation.FAILED:
                why = f"{blocker} must free person {person} first, and its last attempt failed"
            else:
                why = f"{blocker} must free person {person} first, and it is held"
            changed[hr_id] = _held(planner.records[hr_id], why)


class _Planner:
    def __init__(
        self, records: dict[str, Classification], *, reactions: ReactionSettings, name: str
    ) -> None:
        self.records = records
        self.name = name
        self.reactions = reactions
        self.held: dict[str, str] = {}
        self.writes: dict[str, _Write] = {}  # records whose write needs working out
        # Unlinked with a free person and a new value, and orphans: (record, its person).
        self.simple: list[tuple[Classification, int]] = []
        self.orphans: list[tuple[Classification, int]] = []
        write_unlinked = reactions.unlinked == "write"
        repoint = reactions.drifted == "repoint"
        delete_orphans = reactions.orphaned == "delete"
        for hr_id, c in records.items():
            situation, person = c.situation, c.protime_id
            if person is None:
                continue
            if situation is Situation.UNLINKED and write_unlinked:
                if c.protime_value is None and c.held_by is None:
                    self.simple.append((c, person))
                else:
                    self.writes[hr_id] = _Write(c)
            elif situation is Situation.DRIFTED and repoint:
                self.writes[hr_id] = _Write(c)
            elif (
                situation is Situation.ORPHANED
                and delete_orphans
                and c.protime_value_owner in _DELETABLE
            ):
                self.orphans.append((c, person))

    def actions(self) -> dict[str, list[Action]]:
        for write in self.writes.values():
            self._blocker(write)
        self._break_cycles()
        phases = self._phases()
        out: dict[str, list[Action]] = {}
        for hr_id, write in self.writes.items():
            if write.held is None:
                out[hr_id] = self._write_actions(write, phases)
        for c, person in self.simple:
            # Nothing to wait for; phase 2 like every brand-new value, after the moves.
            out[c.hr_id] = [
                Action(ActionKind.WRITE, c.hr_id, person, c.hr_id, c.situation, c.reason, 2)
            ]
        for c, person in self.orphans:
            out[c.hr_id] = [
                Action(
                    kind=ActionKind.DELETE,
                    hr_id=c.hr_id,
                    protime_id=person,
                    value=c.hr_id,
                    situation=Situation.ORPHANED,
                    reason=f"delete {self.name} {c.hr_id} from person {person}: {c.reason}",
                    phase=0,
                )
            ]
        return out

    def _blocker(self, write: _Write) -> None:
        """What frees the person of ``write``, or why nothing can."""
        c = write.c
        value = c.protime_value
        if value is None:
            return
        if c.protime_value_owner in _DELETABLE:
            write.delete_first = True
            write.freed_at_zero = True
            return
        if c.protime_value_owner is ValueOwner.EMPLOYEE and value in self.records:
            if value in self.writes:
                write.depends_on = value  # its own re-point moves it off this person
                return
            if c.rule is Rule.MANUAL:
                write.delete_first = True
                write.freed_at_zero = True
                return
            other = self.records[value]
            why = (
                f"person {c.protime_id} holds {self.name} {value}, the id of an HR employee"
                f" that is {other.situation} and not moved; link {value} or {c.hr_id} by hand"
            )
        else:
            why = f"person {c.protime_id} holds {self.name} {value}, which idsync never removes"
        write.held = why
        self.held[c.hr_id] = why

    def _break_cycles(self) -> None:
        """Find cycles of moves (X waits for Y waits for ... X); delete the smallest id first."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        writes = self.writes
        for start in sorted(h for h, w in writes.items() if w.depends_on is not None):
            path: list[str] = []
            node: str | None = start
            while node is not None and node not in state:
                state[node] = 1
                path.append(node)
                node = writes[node].depends_on
            if node is not None and state[node] == 1:
                cycle = path[path.index(node) :]
                breaker = min(cycle)
                writes[breaker].breaker = True
                for hr_id in cycle:
                    if writes[hr_id].depends_on == breaker:
                        writes[hr_id].freed_at_zero = True
            for hr_id in path:
                state[hr_id] = 2

    def _phases(self) -> dict[str, int]:
        """Phase of every write: one after whatever frees its person, 1 for a move, 2 if new."""
        phases: dict[str, int] = {}
        waiting: list[str] = []
        for hr_id, write in self.writes.items():
            base = 1 if write.c.held_by is not None and not write.breaker else 2
            if write.freed_at_zero or write.depends_on is None:
                phases[hr_id] = base  # free after phase 0 or already: base >= 1 either way
            else:
                waiting.append(hr_id)
        for start in waiting:
            stack = [start]
            while stack:
                hr_id = stack[-1]
                if hr_id in phases:
                    stack.pop()
                    continue
                write = self.writes[hr_id]
                before = write.depends_on
                assert before is not None  # cycles are broken: every chain ends
                if before not in phases:
                    stack.append(before)
                    continue
                base = 1 if write.c.held_by is not None and not write.breaker else 2
                phases[hr_id] = max(base, phases[before] + 1)
                stack.pop()
        return phases

    def _write_actions(self, write: _Write, phases: dict[str, int]) -> list[Action]:
        c = write.c
        hr_id, person, name = c.hr_id, c.protime_id, self.name
        assert person is not None  # only classifications with a person become writes
        phase = phases[hr_id]
        actions: list[Action] = []
        if write.delete_first:
            value = c.protime_value
            assert value is not None
            actions.append(
                _delete_first(
                    c,
                    person=person,
                    value=value,
                    reason=(
                        f"delete {name} {value} from person {person} to make room for {hr_id}:"
                        f" {c.reason}"
                    ),
                )
            )
        if write.breaker:
            holder = c.held_by
            assert holder is not None
            actions.append(
                _delete_first(
                    c,
                    person=holder,
                    value=hr_id,
                    reason=(
                        f"delete {name} {hr_id} from person {holder} for a moment: values swap"
                        f" between persons, so one must give way; it is written on person"
                        f" {person} in phase {phase}"
                    ),
                )
            )
        if c.held_by is not None and not write.breaker:
            verb = f"move {name} {hr_id} from person {c.held_by} to person {person}"
        else:
            verb = f"write {name} {hr_id} on person {person}"
        actions.append(
            Action(
                kind=ActionKind.WRITE,
                hr_id=hr_id,
                protime_id=person,
                value=hr_id,
                situation=c.situation,
                reason=f"{verb}: {c.reason}" if c.situation is Situation.DRIFTED else c.reason,
                phase=phase,
                depends_on=write.depends_on,
            )
        )
        return actions


def _delete_first(c: Classification, *, person: int, value: str, reason: str) -> Action:
    """A delete that clears the way for ``c``'s write: it runs in phase 0, before every write."""
    return Action(
        kind=ActionKind.DELETE,
        hr_id=c.hr_id,
        protime_id=person,
        value=value,
        situation=c.situation,
        reason=reason,
        phase=0,
    )


def summarize(plan: Plan) -> dict[str, int]:
    """Counts by situation, every situation present (zero included), keyed by its value."""
    counts = {situation.value: 0 for situation in Situation}
    for c in plan.classifications:
        counts[c.situation.value] += 1
    return counts
