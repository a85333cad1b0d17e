"""Stored plans: a header and its actions with their preconditions, for review and apply.

A plan of 250,000 actions is written in batches and read back streamed, never held as rows all at
once by this module. Plans older than ``PLAN_RETENTION`` are removed when a new one is stored.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select, update

from sync.domain import Action, ActionKind, Outcome, Precondition, Situation
from sync.errors import UsageError
from sync.state._base import (
    _EVENT_COLUMNS,
    _EVENTS,
    _WRITE_BATCH,
    StoreBase,
    _event_row,
    _json_or_empty,
    _now,
)
from sync.state._models import PLAN_ACTIONS, PLANS
from sync.state._rows import EventAction, PlanRow

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy import ColumnElement, Row

    from sync.state._rows import EventRow

PLAN_RETENTION = timedelta(days=30)
MIN_PREFIX = 4
_P = PLANS.c
_A = PLAN_ACTIONS.c
_E = _EVENTS.c
_PLAN_COLUMNS = tuple(c for c in PLANS.c if c.key != "sync")
_ACTION_COLUMNS = (
    _A.kind,
    _A.hr_id,
    _A.protime_id,
    _A.value,
    _A.situation,
    _A.reason,
    _A.phase,
    _A.depends_on,
    _A.expect_value,
    _A.expect_holder,
    _A.hr_fingerprint,
)


def _plan_row(row: Row[Any]) -> PlanRow:
    data = row._asdict()
    data["counts_by_situation"] = _json_or_empty(data["counts_by_situation"])
    data["actions_by_kind"] = _json_or_empty(data["actions_by_kind"])
    data["would_block"] = tuple(json.loads(data["would_block"] or "[]"))
    return PlanRow(**data)


def _planned(r: Row[Any]) -> tuple[Action, Precondition]:
    """One stored action and its precondition."""
    return (
        Action(
            kind=ActionKind(r.kind),
            hr_id=r.hr_id,
            protime_id=r.protime_id,
            value=r.value,
            situation=Situation(r.situation),
            reason=r.reason,
            phase=r.phase,
            depends_on=r.depends_on,
        ),
        Precondition(r.expect_value, r.expect_holder, r.hr_fingerprint),
    )


class PlanStore(StoreBase):
    """Stored plans: save, find by id prefix, list, read the actions back, mark applied.

    A plan belongs to the sync that stored it; its actions are reached through it, so another
    sync's plan id reads as unknown here (no actions, no counts)."""

    def _own(self, plan_id: str) -> ColumnElement[bool]:
        """Actions of plan ``plan_id`` if it is this sync's (``plan_actions`` has no sync)."""
        return _A.plan_id.in_(select(_P.id).where(_P.id == plan_id, _P.sync == self._sync))

    def save_plan(self, header: PlanRow, actions: Iterable[tuple[Action, Precondition]]) -> None:
        """Store a plan and its actions (in order) in one transaction; prune old plans."""
        with self._db.write() as conn:
            # This sync's old plans: another sync prunes its own when it stores one.
            expired = (_P.sync == self._sync, _P.created_at < _now() - PLAN_RETENTION)
            conn.execute(delete(PLAN_ACTIONS).where(_A.plan_id.in_(select(_P.id).where(*expired))))
            conn.execute(delete(PLANS).where(*expired))
            conn.execute(
                insert(PLANS).values(
                    id=header.id,
                    sync=self._sync,
                    kind=header.kind,
                    created_at=header.created_at,
                    run_id=header.run_id,
                    rollback_of=header.rollback_of,
                    settings_digest=header.settings_digest,
                    snapshot_fingerprint=header.snapshot_fingerprint,
                    counts_by_situation=json.dumps(header.counts_by_situation),
                    actions_by_kind=json.dumps(header.actions_by_kind),
                    would_block=json.dumps(list(header.would_block)),
                    action_count=header.action_count,
                )
            )
            batch: list[dict[str, Any]] = []
            for seq, (a, pre) in enumerate(actions):
                batch.append(
                    {
                        "plan_id": header.id,
                        "seq": seq,
                        "kind": a.kind.value,
                        "hr_id": a.hr_id,
                        "protime_id": a.protime_id,
                        "value": a.value,
                        "situation": a.situation.value,
                        "reason": a.reason,
                        "phase": a.phase,
                        "depends_on": a.depends_on,
                        "expect_value": pre.expect_value,
                        "expect_holder": pre.expect_holder,
                        "hr_fingerprint": pre.hr_fingerprint,
                    }
                )
                if len(batch) >= _WRITE_BATCH:
                    conn.execute(insert(PLAN_ACTIONS), batch)
                    batch = []
            if batch:
                conn.execute(insert(PLAN_ACTIONS), batch)

    def plan(self, plan_id: str) -> PlanRow | None:
        """One plan by its full id, ``None`` when unknown."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_PLAN_COLUMNS).where(_P.id == plan_id, _P.sync == self._sync)
            ).first()
        return _plan_row(row) if row is not None else None

    def find_plan(self, prefix: str) -> PlanRow:
        """The plan whose id starts with ``prefix`` (4 characters or more, unique), else UsageError."""
        prefix = prefix.strip().lower()
        if len(prefix) < MIN_PREFIX:
            raise UsageError(f"a plan id needs at least {MIN_PREFIX} characters, got {prefix!r}")
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*_PLAN_COLUMNS)
                .where(_P.sync == self._sync, _P.id.like(f"{escaped}%", escape="\\"))
                .limit(2)
            ).all()
        if not rows:
            raise UsageError(f"no plan with id {prefix!r} (see `idsync plans`)")
        if len(rows) > 1:
            raise UsageError(f"plan id {prefix!r} is ambiguous: give more characters")
        return _plan_row(rows[0])

    def plans(self, *, limit: int = 20) -> list[PlanRow]:
        """The latest plans, newest first."""
        query = (
            select(*_PLAN_COLUMNS)
            .where(_P.sync == self._sync)
            .order_by(_P.created_at.desc(), _P.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_plan_row(r) for r in conn.execute(query)]

    def iter_plan_actions(self, plan_id: str) -> Iterator[tuple[Action, Precondition]]:
        """The actions of a plan in their order, each with its precondition, streamed."""
        query = (
            select(*_ACTION_COLUMNS)
            .where(_A.plan_id == plan_id, self._own(plan_id))
            .order_by(_A.seq)
        ).execution_options(yield_per=_WRITE_BATCH)
        with self._engine.connect() as conn:
            for r in conn.execute(query):
                yield _planned(r)

    def plan_action_counts(self, plan_id: str) -> dict[tuple[str, str], int]:
        """How many actions a plan holds by ``(kind, situation)``: what the safety limits count
        (every delete; every action of a drifted record, a re-point) and the rest."""
        query = (
            select(_A.kind, _A.situation, func.count())
            .where(_A.plan_id == plan_id, self._own(plan_id))
            .group_by(_A.kind, _A.situation)
        )
        with self._engine.connect() as conn:
            return {(kind, situation): int(n) for kind, situation, n in conn.execute(query)}

    def iter_plan_actions_for_review(
        self, plan_id: str, *, kind: ActionKind | None = None, limit: int | None = None
    ) -> Iterator[tuple[Action, Precondition]]:
        """A plan's actions as a reviewer reads them, streamed: what the safety limits count
        first (deletes, then the other actions of drifted records: the re-points), then the
        rest; each group in plan order. ``kind`` keeps actions of that kind only; ``limit``
        stops after that many."""
        blocking_first = case(
            (_A.kind == ActionKind.DELETE.value, 0),
            (_A.situation == Situation.DRIFTED.value, 1),
            else_=2,
        )
        query = (
            select(*_ACTION_COLUMNS)
            .where(_A.plan_id == plan_id, self._own(plan_id))
            .order_by(blocking_first, _A.seq)
        )
        if kind is not None:
            query = query.where(_A.kind == kind.value)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            for r in conn.execute(query.execution_options(yield_per=_WRITE_BATCH)):
                yield _planned(r)

    def mark_plan_applied(self, *, plan_id: str, run_id: str) -> None:
        """Remember the run that applied the plan last (a plan may be applied again: no-op)."""
        with self._db.write() as conn:
            conn.execute(
                update(PLANS)
                .where(_P.id == plan_id, _P.sync == self._sync)
                .values(applied_at=_now(), applied_by=run_id)
            )

    def iter_run_calls(self, run_id: str) -> Iterator[EventRow]:
        """The succeeded writes and deletes of a run, in the order they were recorded."""
        query = (
            select(*_EVENT_COLUMNS)
            .where(
                _E.sync == self._sync,
                _E.run_id == run_id,
                _E.outcome == Outcome.SUCCEEDED.value,
                _E.action.in_((EventAction.WRITE.value, EventAction.DELETE.value)),
            )
            .order_by(_E.id)
        ).execution_options(yield_per=_WRITE_BATCH)
        with self._engine.connect() as conn:
            for r in conn.execute(query):
                yield _event_row(r)
