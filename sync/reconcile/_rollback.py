"""The plan that undoes a run: from its events back to the Protime state before it. Pure.

Each succeeded call of the run is an event with the value, the person, what the person held
before (``previous_value``) and who held the value before (``previous_protime_id``). From them:

* **before**: for each value the run touched, the person that held it before its first call (a
  value a write displaced from its person counts as held there before);
* **after**: the person that holds it after the run's last call (none after a delete).

Every value whose before and after differ gets one action: held by no one before -> DELETE it;
held by a person before -> WRITE it back onto that person (a PUT moves it from where it is).
Each action's precondition is what the run left: the value's holder is its *after* person, and
the target person holds its *after* value; anything else is stale at apply time.

Order: deletes in phase 0; a write runs one phase after the action that frees its target person
(the value the run left there moves away or is deleted). A cycle (A's value goes back to B while
B's goes back to A) is broken by deleting the smallest value of the cycle in phase 0 first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.domain import Action, ActionKind, Precondition, Situation

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sync.state import EventRow


def _situation(text: str | None) -> Situation:
    try:
        return Situation(text) if text else Situation.LINKED
    except ValueError:
        return Situation.LINKED


def _before_after(
    calls: Iterable[EventRow],
) -> tuple[dict[str, int | None], dict[str, int | None], dict[str, Situation]]:
    """Value -> holder before the run, value -> holder after it, value -> its situation."""
    before: dict[str, int | None] = {}
    after: dict[str, int | None] = {}
    situation: dict[str, Situation] = {}
    for e in calls:
        value, person = e.value, e.protime_id
        if value is None or person is None:
            continue
        situation.setdefault(value, _situation(e.situation))
        if e.action == ActionKind.WRITE.value:
            before.setdefault(value, e.previous_protime_id)
            displaced = e.previous_value
            if displaced and displaced != value and displaced not in before:
                before[displaced] = person
                after[displaced] = None
                situation.setdefault(displaced, Situation.LINKED)
            after[value] = person
        else:
            before.setdefault(value, person)
            after[value] = None
    return before, after, situation


def rollback_actions(
    calls: Iterable[EventRow], *, run_id: str, reference_name: str
) -> list[tuple[Action, Precondition]]:
    """The phased actions (with preconditions) that put every value back where it was."""
    before, after, situation = _before_after(calls)
    moved = sorted(v for v in before if before[v] != after.get(v))
    left_on = {p: v for v, p in after.items() if p is not None}  # person -> value the run left
    run = run_id[:8]
    name = reference_name

    # What frees each write's target person: the value the run left there (it moves away).
    waits: dict[str, str | None] = {}
    for v in moved:
        target = before[v]
        if target is not None:
            other = left_on.get(target)
            waits[v] = other if other is not None and other != v and other in before else None
    breakers = _cycle_breakers(waits)
    phase: dict[str, int] = {}

    def phase_of(v: str) -> int:
        chain: list[str] = []
        node: str | None = v
        while node is not None and node not in phase:
            chain.append(node)
            dep = waits.get(node)
            node = None if dep is None or dep in breakers or before.get(dep) is None else dep
        base = phase[node] if node is not None else 0
        for n in reversed(chain):
            base += 1
            phase[n] = base
        return phase[v]

    out: list[tuple[Action, Precondition]] = []
    for v in moved:
        was, now = before[v], after.get(v)
        why = f"rollback of run {run}"
        if now is not None and (was is None or v in breakers):
            reason = f"{why}: delete {name} {v} from person {now}" + (
                " (it was on no one before)" if was is None else " for a moment (values swap)"
            )
            out.append(
                (
                    Action(ActionKind.DELETE, v, now, v, situation[v], reason, 0),
                    Precondition(v, now, None),
                )
            )
        if was is not None:
            reason = f"{why}: put {name} {v} back on person {was}"
            dep = waits.get(v)
            out.append(
                (
                    Action(
                        ActionKind.WRITE,
                        v,
                        was,
                        v,
                        situation[v],
                        reason,
                        phase_of(v),
                        depends_on=dep,
                    ),
                    Precondition(left_on.get(was), now, None),
                )
            )
    out.sort(key=lambda item: (item[0].phase, item[0].hr_id, item[0].kind))
    return out


def _cycle_breakers(waits: dict[str, str | None]) -> set[str]:
    """The smallest value of every cycle of writes that wait for each other."""
    state: dict[str, int] = {}
    breakers: set[str] = set()
    for start in sorted(waits):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in state:
            state[node] = 1
            path.append(node)
            node = waits.get(node)
        if node is not None and state.get(node) == 1:
            breakers.add(min(path[path.index(node) :]))
        for n in path:
            state[n] = 2
    return breakers
