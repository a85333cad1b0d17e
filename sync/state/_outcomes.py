"""What an action's outcome does to its mapping row: applied in SQL for plain writes, in Python
for the rest (a batch at a time, inside :meth:`~sync.state._events.EventStore.record_outcomes`'s
transaction)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from sync.domain import ActionKind, Outcome, Rule, Situation
from sync.state._base import (
    _CHUNK,
    _E,
    _M,
    _MAPPING_COLUMNS,
    _MAPPINGS,
    _OUTCOME_FIELDS,
    _R,
    _RUNS,
    _chunks,
    _new_mapping,
)
from sync.state._dialect import IdsIn
from sync.status import Trigger

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sync.domain import Action
    from sync.state._dialect import Dialect
    from sync.state._rows import ActionOutcome

# What an outcome applied row by row may change: a delete that unlinks a row forgets the rule
# and evidence of a match by the value it deleted.
_ROW_FIELDS = (*_OUTCOME_FIELDS, "rule", "evidence")


def _after_outcome(
    row: dict[str, Any] | None,
    o: ActionOutcome,
    now: datetime,
    previous: str | None = None,
    deleted_by: str | None = None,
    *,
    sync: str,
) -> dict[str, Any] | None:
    """The mapping row after one outcome (see :meth:`~sync.state._events.EventStore.record_outcomes`); None: delete.

    ``previous`` is what the person held before a write, as its pending event recorded it.
    ``deleted_by`` says which run a delete was part of (``rolled back by run 1a2b3c4d``): the
    reason of a linked row that loses its own value.
    """
    a = o.action
    if row is None:
        if a.kind is ActionKind.DELETE and o.outcome is Outcome.SUCCEEDED:
            return None
        row = _new_mapping(a.hr_id, sync=sync, now=now, situation=a.situation, reason=a.reason)
        row["protime_id"] = a.protime_id
    if o.outcome is Outcome.FAILED:
        row.update(
            situation=Situation.FAILED.value,
            last_error=o.error,
            attempts=row["attempts"] + o.attempts,
            failed_fingerprint=a.fingerprint,
            last_changed_at=now,
        )
        return row
    if o.outcome is Outcome.RETRIABLE:
        row.update(last_error=o.error, attempts=row["attempts"] + o.attempts)
        return row
    row.update(last_error=None, attempts=0, failed_fingerprint=None)
    if a.kind is ActionKind.WRITE:
        if previous and previous != a.value:
            row["previous_hr_id"] = previous  # a re-key: the person held another HR id
        # A rollback writes an orphan's value back: it stays an orphan, not a link.
        orphan = a.situation is Situation.ORPHANED
        row.update(
            situation=(Situation.ORPHANED if orphan else Situation.LINKED).value,
            last_written_at=now,
            protime_id=a.protime_id,
            last_written_value=a.value,
            protime_value=a.value,
            reason=f"written: {a.reason}" if a.reason else "written",
            last_changed_at=now,
        )
        return row
    return _after_delete(row, o.action, now, deleted_by)


def _after_delete(
    row: dict[str, Any], a: Action, now: datetime, deleted_by: str | None
) -> dict[str, Any] | None:
    """The mapping row after its succeeded delete ``a``; None: delete the row."""
    if row["situation"] == Situation.ORPHANED.value and row["protime_id"] == a.protime_id:
        return None  # the orphan is gone
    if (
        row["situation"] == Situation.LINKED.value
        and row["protime_id"] == a.protime_id
        and a.value == row["hr_id"]
    ):
        # The employee's own value left the person it was linked to (a rollback deleting what a
        # run wrote): Protime no longer links them. The person stays the one it resolves to.
        row.update(
            situation=Situation.UNLINKED.value,
            protime_value=None,
            reason=f"{deleted_by or 'reference deleted'}: {a.reason}",
            last_changed_at=now,
        )
        if row["rule"] == Rule.REFERENCE.value:
            row.update(rule=None, evidence=None)  # it matched by the value now deleted
    elif row["protime_id"] == a.protime_id and row["protime_value"] == a.value:
        row.update(protime_value=None, last_changed_at=now)
    return row


def apply_outcomes(
    conn: Connection,
    dialect: Dialect,
    outcomes: Sequence[ActionOutcome],
    now: datetime,
    *,
    sync: str,
) -> None:
    """Apply a batch of outcomes to sync ``sync``'s mapping rows (see
    ``EventStore.record_outcomes``)."""
    relevant = [o for o in outcomes if o.outcome not in (Outcome.SKIPPED, Outcome.STALE)]
    if not relevant:
        return
    bulk = _bulk_writes(conn, dialect, relevant)
    if bulk:
        # Each row of a succeeded write becomes what its pending event says: one statement per
        # batch instead of a read, a Python update and an executemany of every row.
        for chunk in _chunks(sorted(o.event_id for o in bulk)):
            conn.execute(
                _WRITTEN, {"now": now, "b_sync": sync, **dialect.ids_params(chunk, _CHUNK)}
            )
        done = {id(o) for o in bulk}
        relevant = [o for o in relevant if id(o) not in done]
    if relevant:
        _apply_rows(conn, relevant, now, sync)


def _apply_rows(
    conn: Connection, relevant: Sequence[ActionOutcome], now: datetime, sync: str
) -> None:
    """Outcomes applied row by row: read, changed by :func:`_after_outcome`, written back."""
    rows: dict[str, dict[str, Any] | None] = {}
    hr_ids = sorted({o.action.hr_id for o in relevant})
    for chunk in _chunks(hr_ids):
        query = select(*_MAPPING_COLUMNS).where(_M.sync == sync, _M.hr_id.in_(chunk))
        for found in conn.execute(query):
            rows[found.hr_id] = found._asdict()
    existed = set(rows)
    # What each written person held before, as the pending event recorded it: a re-key.
    previous: dict[int, str] = {}
    writes = sorted(
        o.event_id
        for o in relevant
        if o.action.kind is ActionKind.WRITE and o.outcome is Outcome.SUCCEEDED
    )
    for chunk in _chunks(writes):
        previous.update(
            (event_id, value)
            for event_id, value in conn.execute(
                select(_E.id, _E.previous_value).where(
                    _E.sync == sync, _E.id.in_(chunk), _E.previous_value.is_not(None)
                )
            )
        )
    deleted_by = _deleting_runs(conn, relevant, sync)
    for o in relevant:
        rows[o.action.hr_id] = _after_outcome(
            rows.get(o.action.hr_id),
            o,
            now,
            previous.get(o.event_id),
            deleted_by.get(o.event_id),
            sync=sync,
        )

    gone = [k for k, v in rows.items() if v is None and k in existed]
    for chunk in _chunks(gone):
        conn.execute(delete(_MAPPINGS).where(_M.sync == sync, _M.hr_id.in_(chunk)))
    updates = [v for k, v in rows.items() if v is not None and k in existed]
    if updates:
        conn.execute(
            update(_MAPPINGS)
            .where(_M.sync == bindparam("k_sync"), _M.hr_id == bindparam("k_hr_id"))
            .values({name: bindparam(f"v_{name}") for name in _ROW_FIELDS}),
            [
                {"k_sync": sync, "k_hr_id": v["hr_id"], **{f"v_{n}": v[n] for n in _ROW_FIELDS}}
                for v in updates
            ],
        )
    inserts = [v for k, v in rows.items() if v is not None and k not in existed]  # _new_mapping's
    if inserts:
        conn.execute(insert(_MAPPINGS), inserts)


def _deleting_runs(
    conn: Connection, relevant: Sequence[ActionOutcome], sync: str
) -> dict[int, str]:
    """Event id -> ``rolled back by run 1a2b3c4d`` (``deleted by run ...`` for another trigger)
    for the succeeded deletes among ``relevant``."""
    deletes = sorted(
        o.event_id
        for o in relevant
        if o.action.kind is ActionKind.DELETE and o.outcome is Outcome.SUCCEEDED
    )
    found: dict[int, str] = {}
    for chunk in _chunks(deletes):
        query = (
            select(_E.id, _E.run_id, _R.trigger)
            .join(_RUNS, _R.id == _E.run_id)
            .where(_E.sync == sync, _E.id.in_(chunk))
        )
        for event_id, run_id, trigger in conn.execute(query):
            done = "rolled back" if trigger == Trigger.ROLLBACK.value else "deleted"
            found[event_id] = f"{done} by run {run_id[:8]}"
    return found


# A succeeded write, applied in SQL from its pending event (what _after_outcome does in Python):
# the row is linked (an orphan's value written back stays orphaned) to the event's person and
# value, its error fields are cleared, and a person that held another HR id is a re-key.
_REKEY = and_(
    _E.previous_value.is_not(None), _E.previous_value != "", _E.previous_value != _E.value
)
_WRITTEN = (
    update(_MAPPINGS)
    .where(_M.sync == bindparam("b_sync"), _E.sync == _M.sync, _M.hr_id == _E.hr_id)
    .values(
        situation=case(
            (_E.situation == Situation.ORPHANED.value, Situation.ORPHANED.value),
            else_=Situation.LINKED.value,
        ),
        protime_id=_E.protime_id,
        last_written_value=_E.value,
        protime_value=_E.value,
        reason=case(
            (func.coalesce(_E.reason, "") == "", literal("written")),
            else_=literal("written: ") + _E.reason,
        ),
        last_error=None,
        attempts=0,
        failed_fingerprint=None,
        previous_hr_id=case((_REKEY, _E.previous_value), else_=_M.previous_hr_id),
        last_written_at=bindparam("now"),
        last_changed_at=bindparam("now"),
    )
    .where(IdsIn(_E.id, _CHUNK))
)
# The pending events of a batch's writes, with their mapping row's existence (see _bulk_writes):
# the row of the event's own sync (_WRITTEN then updates only the store's sync's rows).
_WRITE_EVENTS = (
    select(_E.id, _E.hr_id, _E.protime_id, _E.value, _E.situation, _E.reason)
    .join(_MAPPINGS, (_M.sync == _E.sync) & (_M.hr_id == _E.hr_id))
    .where(IdsIn(_E.id, _CHUNK))
)


def _bulk_writes(
    conn: Connection, dialect: Dialect, relevant: Sequence[ActionOutcome]
) -> list[ActionOutcome]:
    """The succeeded writes :data:`_WRITTEN` applies exactly as ``_after_outcome`` would.

    Those whose HR id has no other outcome in the batch (order would matter), whose mapping row
    exists (a new one is inserted with every column) and whose pending event holds what the
    action says (the statement reads the event). The rest go through Python.
    """
    counts = Counter(o.action.hr_id for o in relevant)
    writes = {
        o.event_id: o
        for o in relevant
        if o.action.kind is ActionKind.WRITE
        and o.outcome is Outcome.SUCCEEDED
        and counts[o.action.hr_id] == 1
    }
    if not writes:
        return []
    matching: list[ActionOutcome] = []
    for chunk in _chunks(sorted(writes)):
        rows = conn.execute(_WRITE_EVENTS, dialect.ids_params(chunk, _CHUNK))
        for event_id, hr_id, protime_id, value, situation, reason in rows:
            a = writes[event_id].action
            if (hr_id, protime_id, value, situation, reason or "") == (
                a.hr_id,
                a.protime_id,
                a.value,
                a.situation.value,
                a.reason,
            ):
                matching.append(writes[event_id])
    return matching
