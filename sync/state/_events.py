"""The audit trail of a run's calls: pending before each call, the outcome after it."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from sync.domain import Action, ActionKind, Outcome, Precondition
from sync.state._dialect import IdsIn
from sync.state._rows import EventAction, Rekey

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sync.state._rows import (
        ActionOutcome,
        EventRow,
    )

from sync.state._base import (
    _CHUNK,
    _E,
    _EVENT_COLUMNS,
    _EVENTS,
    _M,
    _WRITE_BATCH,
    StoreBase,
    _chunks,
    _event_row,
    _now,
)
from sync.state._outcomes import apply_outcomes

# The columns of a pending event, in the order record_pending builds its rows.
_PENDING_COLUMNS = (
    _E.sync,
    _E.run_id,
    _E.hr_id,
    _E.protime_id,
    _E.action,
    _E.situation,
    _E.value,
    _E.previous_value,
    _E.previous_protime_id,
    _E.reason,
    _E.outcome,
    _E.attempts,
    _E.created_at,
)

# Events closed alike in one statement per chunk of ids.
_CLOSE = (
    update(_EVENTS)
    .where(IdsIn(_E.id, _CHUNK), _E.sync == bindparam("b_sync"))
    .values(
        outcome=bindparam("outcome"),
        http_status=bindparam("http_status"),
        error=bindparam("error"),
        attempts=bindparam("attempts"),
        completed_at=bindparam("now"),
    )
)


class EventStore(StoreBase):
    """Events: recorded pending before a call, closed with its outcome, read back."""

    # ---------------------------------------------------------------------- writes

    def record_pending(
        self,
        *,
        run_id: str,
        actions: Sequence[Action],
        preconditions: Iterable[Precondition] | None = None,
    ) -> list[int]:
        """Write one ``pending`` event per action, committed before any call is made.

        Returns the event ids in the order of ``actions``. With ``preconditions`` (one per
        action) ``previous_value`` and ``previous_protime_id`` are what the person held and who
        held the value when the snapshot was read; without, ``previous_value`` is what the
        person held as far as the map knows (for a write: the row's ``protime_value`` when the
        row points at the same person; for a delete: the value being deleted).
        """
        if not actions:
            return []
        now = _now()
        pending = Outcome.PENDING.value
        sync = self._sync
        with self._db.write() as conn:
            known: dict[str, tuple[int | None, str | None]] = {}
            hr_ids = sorted({a.hr_id for a in actions}) if preconditions is None else []
            for chunk in _chunks(hr_ids):
                for hr_id, protime_id, protime_value in conn.execute(
                    select(_M.hr_id, _M.protime_id, _M.protime_value).where(
                        _M.sync == sync, _M.hr_id.in_(chunk)
                    )
                ):
                    known[hr_id] = (protime_id, protime_value)
            ids: list[int] = []
            # In batches, like the classifications: 100,000 event rows at once would cost about
            # 100 MB in a first run that writes to every person.
            expected = iter(preconditions) if preconditions is not None else None
            for batch in _chunks(actions, _WRITE_BATCH):
                rows: list[tuple[Any, ...]] = []
                for a in batch:
                    holder: int | None = None
                    if expected is not None:
                        pre = next(expected)
                        previous: str | None = pre.expect_value
                        holder = pre.expect_holder
                    elif a.kind is ActionKind.DELETE:
                        previous = a.value
                    else:
                        protime_id, protime_value = known.get(a.hr_id, (None, None))
                        previous = protime_value if protime_id == a.protime_id else None
                    # In _PENDING_COLUMNS' order; http_status, error and completed_at stay NULL.
                    rows.append(
                        (
                            sync,
                            run_id,
                            a.hr_id,
                            a.protime_id,
                            a.kind.value,
                            a.situation.value,
                            a.value,
                            previous,
                            holder,
                            a.reason,
                            pending,
                            0,
                            now,
                        )
                    )
                allocated = self._db.dialect.allocate_ids(conn, _E.id, len(rows))
                if allocated is None:
                    keys = [c.key for c in _PENDING_COLUMNS]
                    result = conn.execute(
                        insert(_EVENTS).returning(_E.id, sort_by_parameter_order=True),
                        [dict(zip(keys, row, strict=True)) for row in rows],
                    )
                    ids.extend(int(i) for i in result.scalars())
                    continue
                self._db.dialect.insert_rows(
                    conn,
                    _EVENTS,
                    [_E.id, *_PENDING_COLUMNS],
                    [(event_id, *row) for event_id, row in zip(allocated, rows, strict=True)],
                )
                ids.extend(allocated)
            return ids

    def record_outcomes(self, outcomes: Sequence[ActionOutcome]) -> None:
        """Close the events of a batch of completed actions and update their mapping rows.

        One transaction per batch. On the mapping row of ``action.hr_id``:

        * write succeeded — ``linked`` to ``action.protime_id``, ``last_written_value`` and
          ``protime_value`` = the value, error, attempts and ``failed_fingerprint`` cleared;
        * delete succeeded — an ``orphaned`` row for that person is removed (the orphan is gone;
          its events remain); otherwise error fields are cleared and a ``protime_value`` equal to the
          deleted value on that person is forgotten;
        * failed (permanent) — situation ``failed``, ``last_error``, ``attempts`` added,
          ``failed_fingerprint = action.fingerprint``;
        * retriable — ``last_error`` and ``attempts`` only; the next run tries again;
        * skipped — the row is left alone.

        A row that does not exist yet is created. ``pending`` is not an outcome and is refused.
        """
        if not outcomes:
            return
        for o in outcomes:
            if o.outcome is Outcome.PENDING:
                raise ValueError("record_outcomes takes final outcomes, not 'pending'")
        now = _now()
        # Outcomes alike (a batch of successes, mostly) close their events in one statement.
        alike: dict[tuple[str, int | None, str | None, int], list[int]] = defaultdict(list)
        for o in outcomes:
            alike[(o.outcome.value, o.http_status, o.error, o.attempts)].append(o.event_id)
        with self._db.write() as conn:
            for (outcome, http_status, error, attempts), event_ids in alike.items():
                values = {
                    "outcome": outcome,
                    "http_status": http_status,
                    "error": error,
                    "attempts": attempts,
                    "now": now,
                    "b_sync": self._sync,
                }
                for chunk in _chunks(event_ids):
                    conn.execute(_CLOSE, {**values, **self._db.dialect.ids_params(chunk, _CHUNK)})
            apply_outcomes(conn, self._db.dialect, outcomes, now, sync=self._sync)

    def events_for(
        self,
        *,
        hr_id: str | None = None,
        protime_id: int | None = None,
        run_id: str | None = None,
        limit: int = 50,
    ) -> list[EventRow]:
        """Audit events matching every filter given (all events when none is), newest first.

        Ordered by completion (a pending event by its creation), not by id: ids follow the plan's
        order (by HR id), while a delete of phase 0 completes before the writes of later phases.
        Outcomes flushed together share a timestamp (and MariaDB keeps whole seconds), so a delete
        sorts before a write at the same instant: deletes always run in the first phase.
        """
        completed = func.coalesce(_E.completed_at, _E.created_at)
        deletes_first = case((_E.action == EventAction.DELETE.value, 0), else_=1)
        query = (
            select(*_EVENT_COLUMNS)
            .where(_E.sync == self._sync)
            .order_by(completed.desc(), deletes_first.desc(), _E.id.desc())
            .limit(limit)
        )
        if hr_id is not None:
            query = query.where(_E.hr_id == hr_id)
        if protime_id is not None:
            query = query.where(_E.protime_id == protime_id)
        if run_id is not None:
            query = query.where(_E.run_id == run_id)
        with self._engine.connect() as conn:
            return [_event_row(r) for r in conn.execute(query)]

    def count_events(self, *, run_id: str) -> int:
        """How many audit events a run recorded (``events_for`` gives at most ``limit``)."""
        query = (
            select(func.count())
            .select_from(_EVENTS)
            .where(_E.sync == self._sync, _E.run_id == run_id)
        )
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_run_events(self, run_id: str) -> Iterator[EventRow]:
        """Every audit event of a run, oldest first (``events_for``'s order reversed), streamed."""
        completed = func.coalesce(_E.completed_at, _E.created_at)
        deletes_first = case((_E.action == EventAction.DELETE.value, 0), else_=1)
        query = (
            select(*_EVENT_COLUMNS)
            .where(_E.sync == self._sync, _E.run_id == run_id)
            .order_by(completed, deletes_first, _E.id)
            .execution_options(yield_per=_WRITE_BATCH)
        )
        with self._engine.connect() as conn:
            for r in conn.execute(query):
                yield _event_row(r)

    def rekeys(self, hr_id: str) -> list[Rekey]:
        """Every re-key ``hr_id`` took part in, oldest first: written over another HR id on its
        person, or written over by another HR id (found through ``previous_hr_id``)."""
        with self._engine.connect() as conn:
            successors = list(
                conn.execute(
                    select(_M.hr_id).where(_M.sync == self._sync, _M.previous_hr_id == hr_id)
                ).scalars()
            )
            query = (
                select(
                    _E.previous_value,
                    _E.value,
                    _E.protime_id,
                    _E.completed_at,
                    _E.run_id,
                    _E.reason,
                )
                .where(
                    _E.sync == self._sync,
                    _E.action == EventAction.WRITE.value,
                    _E.outcome == Outcome.SUCCEEDED.value,
                    _E.previous_value.is_not(None),
                    or_(
                        _E.hr_id == hr_id,
                        _E.hr_id.in_(successors) & (_E.previous_value == hr_id),
                    ),
                )
                .order_by(_E.id)
            )
            return [
                Rekey(old=old, new=new, protime_id=pid, at=at, run_id=run, reason=reason)
                for old, new, pid, at, run, reason in conn.execute(query)
                if old != new
            ]
