"""Writes of many rows go to the database in batches and still come back whole and in order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync.domain import Action, ActionKind, Classification, Rule, Situation
from sync.state._base import _WRITE_BATCH

if TYPE_CHECKING:
    from sync.state import StateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COUNT = 2 * _WRITE_BATCH + 7  # three batches, the last one short


def _run(store: StateStore) -> str:
    return store.start_run(trigger="cli", dry_run=False, forced=False)


def test_many_pending_events_keep_one_id_per_action_in_action_order(store: StateStore) -> None:
    """record_pending over three batches returns one id per action, in the order of the actions."""
    run_id = _run(store)
    actions = [
        Action(
            kind=ActionKind.WRITE,
            hr_id=f"E{i:06d}",
            protime_id=i + 1,
            value=f"E{i:06d}",
            situation=Situation.UNLINKED,
            reason="unlinked",
        )
        for i in reversed(range(COUNT))  # not sorted by id: order must come from the actions
    ]
    ids = store.record_pending(run_id=run_id, actions=actions)
    assert len(ids) == len(set(ids)) == COUNT
    events = {e.id: e.hr_id for e in store.events_for(run_id=run_id, limit=COUNT + 1)}
    assert [events[i] for i in ids] == [a.hr_id for a in actions]


def test_many_new_and_changed_classifications_are_all_stored(store: StateStore) -> None:
    """save_classifications inserts and then updates three batches of rows, every one of them."""
    first = [
        Classification(
            hr_id=f"E{i:06d}",
            situation=Situation.LINKED,
            protime_id=i + 1,
            rule=Rule.REFERENCE,
            reason="linked",
        )
        for i in range(COUNT)
    ]
    store.save_classifications(run_id=_run(store), classifications=first, now=T0)
    changed = [
        Classification(hr_id=c.hr_id, situation=Situation.UNMATCHED, reason="gone from Protime")
        for c in first
    ]
    store.save_classifications(run_id=_run(store), classifications=changed, now=T0)
    rows = list(store.iter_mappings())
    assert len(rows) == COUNT
    assert {(r.situation, r.protime_id, r.reason) for r in rows} == {
        ("unmatched", None, "gone from Protime")
    }


def test_pending_ids_and_the_databases_own_ids_never_collide(store: StateStore) -> None:
    """Ids allocated for a bulk of pending events and ids the database gives an admin's event
    interleave without a collision, each id naming the event it was returned for."""
    run_id = _run(store)

    def pending(prefix: str, count: int) -> list[int]:
        actions = [
            Action(
                kind=ActionKind.WRITE,
                hr_id=f"{prefix}{i}",
                protime_id=i + 1,
                value=f"{prefix}{i}",
                situation=Situation.UNLINKED,
                reason="unlinked",
            )
            for i in range(count)
        ]
        return store.record_pending(run_id=run_id, actions=actions)

    first = pending("A", 3)
    store.ignore(hr_id="X1")  # an admin event, its id from the database's own autoincrement
    second = pending("B", 2)
    admin = [e.id for e in store.events_for(hr_id="X1")]
    assert len(admin) == 1
    assert len({*first, *admin, *second}) == 6
    assert max(first) < admin[0] < min(second)
    events = {e.id: e.hr_id for e in store.events_for(limit=10)}
    assert [events[i] for i in first + second] == ["A0", "A1", "A2", "B0", "B1"]
