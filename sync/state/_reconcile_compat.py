"""TEMPORARY: the store's old flat methods that ``sync.reconcile`` still calls.

``sync.reconcile`` talks to the store through its ``RunState`` port (``sync/reconcile/_ports.py``),
which names these methods on the store itself. Each is a one-line delegation to the part that owns
it now (``store.runs``, ``store.map``, ``store.events``, ``store.plans``, ``store.snapshot``,
``store.settled``). This module goes when reconcile moves to the parts: nothing else may call
these (new code uses the parts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync.state._snapshot import NO_REFERENCES

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
    from datetime import datetime

    from sync.domain import Action, Classification, Person, Precondition, PriorState
    from sync.state._events import EventStore
    from sync.state._map import MapStore
    from sync.state._plans import PlanStore
    from sync.state._rows import ActionOutcome, EventRow, PlanRow, RunRow, RunSummary
    from sync.state._runs import RunStore
    from sync.state._settled import SettledStore
    from sync.state._snapshot import PeopleFeed, SnapshotStore
    from sync.strings import StringPool


class ReconcileCompat:
    """Delegations for ``RunState`` (sync/reconcile/_ports.py); see the module doc."""

    runs: RunStore
    map: MapStore
    events: EventStore
    plans: PlanStore
    snapshot: SnapshotStore
    settled: SettledStore

    # runs
    def mark_interrupted_runs(self, *, except_run_id: str | None = None) -> int:
        return self.runs.mark_interrupted_runs(except_run_id=except_run_id)

    def start_run(
        self,
        *,
        trigger: str,
        dry_run: bool,
        forced: bool,
        only: Sequence[str] = (),
        plan_id: str | None = None,
    ) -> str:
        return self.runs.start_run(
            trigger=trigger, dry_run=dry_run, forced=forced, only=only, plan_id=plan_id
        )

    def finish_run(self, *, run_id: str, status: str, summary: RunSummary) -> None:
        self.runs.finish_run(run_id=run_id, status=status, summary=summary)

    def set_progress(self, *, run_id: str, progress: Mapping[str, Any]) -> None:
        self.runs.set_progress(run_id=run_id, progress=progress)

    def learned_rate(self) -> float | None:
        return self.runs.learned_rate()

    # map
    def load_prior(self) -> PriorState:
        return self.map.load_prior()

    def save_classifications(
        self,
        *,
        run_id: str,
        classifications: Sequence[Classification],
        now: datetime,
        prune: bool = False,
        verified: bool = True,
    ) -> bool:
        return self.map.save_classifications(
            run_id=run_id, classifications=classifications, now=now, prune=prune, verified=verified
        )

    def linked_pairs(self) -> dict[str, int]:
        return self.map.linked_pairs()

    def written(self, hr_ids: Sequence[str]) -> dict[str, tuple[int | None, str, datetime | None]]:
        return self.map.written(hr_ids)

    def unlinked_records(self) -> list[Classification]:
        return self.map.unlinked_records()

    # events
    def record_pending(
        self,
        *,
        run_id: str,
        actions: Sequence[Action],
        preconditions: Iterable[Precondition] | None = None,
    ) -> list[int]:
        return self.events.record_pending(
            run_id=run_id, actions=actions, preconditions=preconditions
        )

    def record_outcomes(self, outcomes: Sequence[ActionOutcome]) -> None:
        self.events.record_outcomes(outcomes)

    # plans
    def save_plan(self, header: PlanRow, actions: Iterable[tuple[Action, Precondition]]) -> None:
        self.plans.save_plan(header, actions)

    def plan(self, plan_id: str) -> PlanRow | None:
        return self.plans.plan(plan_id)

    def iter_plan_actions(self, plan_id: str) -> Iterator[tuple[Action, Precondition]]:
        return self.plans.iter_plan_actions(plan_id)

    def mark_plan_applied(self, *, plan_id: str, run_id: str) -> None:
        self.plans.mark_plan_applied(plan_id=plan_id, run_id=run_id)

    def iter_run_calls(self, run_id: str) -> Iterator[EventRow]:
        return self.plans.iter_run_calls(run_id)

    # snapshot
    def people_feed(self) -> PeopleFeed | None:
        return self.snapshot.people_feed()

    def load_people(self, *, strings: StringPool | None = None) -> list[Person]:
        return self.snapshot.load_people(strings=strings)

    def people_versions(self, *, ids: Sequence[int]) -> dict[int, str | None]:
        return self.snapshot.people_versions(ids=ids)

    def forget_people_feed(self) -> None:
        self.snapshot.forget_people_feed()

    def save_people(
        self,
        *,
        full: Sequence[Person] | None = None,
        upserts: Iterable[Person] = (),
        removed: Collection[int] = (),
        references: Mapping[int, str | None] = NO_REFERENCES,
        versions: Mapping[int, str | None] = NO_REFERENCES,
        delta_link: str | None,
        fingerprint: str,
        full_read_at: datetime,
        now: datetime,
        run_id: str | None,
        unconfirmed_writes: int = 0,
        delta_refusals: int = 0,
    ) -> None:
        self.snapshot.save_people(
            full=full,
            upserts=upserts,
            removed=removed,
            references=references,
            versions=versions,
            delta_link=delta_link,
            fingerprint=fingerprint,
            full_read_at=full_read_at,
            now=now,
            run_id=run_id,
            unconfirmed_writes=unconfirmed_writes,
            delta_refusals=delta_refusals,
        )

    # settled runs
    def settle(self, *, run_id: str, key: str) -> None:
        self.settled.settle(run_id=run_id, key=key)

    def settled_run(self, *, key: str, run_id: str) -> RunRow | None:
        return self.settled.settled_run(key=key, run_id=run_id)
