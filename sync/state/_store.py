"""Reads and writes of the state database: runs, the map, the audit trail, admin changes.

Every method opens its own connection and transaction, so one :class:`StateStore` may be shared by
threads. Writers use :func:`~sync.state._engine.write_transaction` (``BEGIN IMMEDIATE`` on SQLite).
Nothing here branches on the dialect: upserts are "load, diff in Python, insert or update".

Order of calls in one run (the lead's ``reconcile/run.py``)::

    with run_lock(engine):
        store.mark_interrupted_runs()        # runs a dead process left 'running'
        run_id = store.start_run(...)
        prior = store.load_prior()
        ...classify and plan...
        store.save_classifications(run_id=run_id, classifications=..., now=..., prune=not only)
        ids = store.record_pending(run_id=run_id, actions=plan.actions)    # before any call
        store.record_outcomes([...])         # as calls complete, in batches
        store.finish_run(run_id=run_id, status=..., summary=...)

``save_classifications`` goes before ``record_outcomes``: an outcome updates the row the
classification wrote (a successful write turns it ``linked``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from sync.domain import Action, ActionKind, Classification, Outcome, PriorState, Situation
from sync.errors import StateError, UsageError
from sync.state._engine import write_transaction
from sync.state._models import EVENTS, KEY_LENGTH, MAPPINGS, RUNS
from sync.state._rows import (
    ActionOutcome,
    EventAction,
    EventRow,
    MappingRow,
    RunRow,
    RunStatus,
    RunSummary,
    Trigger,
)
from sync.values import value_problem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

_log = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit
_STREAM_ROWS = 5000  # rows fetched at a time when a whole table is compared
_WRITE_BATCH = 5000  # rows per executemany when many are inserted or updated at once
_GOOD_RUN = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)

_MAPPINGS = MAPPINGS
_EVENTS = EVENTS
_RUNS = RUNS
_M = MAPPINGS.c
_E = EVENTS.c
_R = RUNS.c

# What a classification determines; a row whose stored values equal these is "unchanged".
_CLASSIFIED = (
    "protime_id",
    "situation",
    "rule",
    "evidence",
    "reason",
    "protime_value",
    "candidates",
)
_BOUND_CLASSIFIED = tuple(f"v_{name}" for name in _CLASSIFIED)
# What an outcome may change on a mapping row.
_OUTCOME_FIELDS = (
    "situation",
    "protime_id",
    "protime_value",
    "last_written_value",
    "reason",
    "last_error",
    "attempts",
    "failed_fingerprint",
    "last_changed_at",
)
_MAPPING_COLUMNS = (
    _M.hr_id,
    _M.protime_id,
    _M.situation,
    _M.rule,
    _M.evidence,
    _M.reason,
    _M.manual,
    _M.ignored,
    _M.last_written_value,
    _M.protime_value,
    _M.candidates,
    _M.first_seen_at,
    _M.last_verified_at,
    _M.last_changed_at,
    _M.last_error,
    _M.attempts,
    _M.failed_fingerprint,
    _M.last_run_id,
)
_EVENT_COLUMNS = tuple(_EVENTS.c)
_RUN_COLUMNS = tuple(_RUNS.c)


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _candidates_text(candidates: Iterable[int]) -> str | None:
    text = ",".join(str(c) for c in candidates)
    return text or None


def _candidates_tuple(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(int(part) for part in text.split(",") if part)


def _json_or_empty(text: str | None) -> Any:
    if not text:
        return {}
    return json.loads(text)


def _mapping_row(row: Row[Any]) -> MappingRow:
    data = row._asdict()
    data["candidates"] = _candidates_tuple(data["candidates"])
    return MappingRow(**data)


def _event_row(row: Row[Any]) -> EventRow:
    return EventRow(**row._asdict())


def _run_row(row: Row[Any]) -> RunRow:
    data = row._asdict()
    data["only_ids"] = tuple(json.loads(data["only_ids"])) if data["only_ids"] else ()
    for name in ("counts_by_situation", "actions_by_outcome", "api_calls"):
        data[name] = _json_or_empty(data[name])
    return RunRow(**data)


def _admin_event(
    *,
    action: EventAction,
    hr_id: str,
    now: datetime,
    protime_id: int | None = None,
    value: str | None = None,
    previous_value: str | None = None,
    reason: str,
) -> dict[str, Any]:
    return {
        "run_id": None,
        "hr_id": hr_id,
        "protime_id": protime_id,
        "action": action.value,
        "situation": None,
        "value": value,
        "previous_value": previous_value,
        "reason": reason,
        "outcome": Outcome.SUCCEEDED.value,
        "http_status": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "completed_at": now,
    }


def _new_mapping(hr_id: str, *, now: datetime, situation: Situation, reason: str) -> dict[str, Any]:
    return {
        "hr_id": hr_id,
        "protime_id": None,
        "situation": situation.value,
        "rule": None,
        "evidence": None,
        "reason": reason,
        "manual": False,
        "ignored": False,
        "last_written_value": None,
        "protime_value": None,
        "candidates": None,
        "first_seen_at": now,
        "last_verified_at": None,
        "last_changed_at": now,
        "last_error": None,
        "attempts": 0,
        "failed_fingerprint": None,
        "last_run_id": None,
    }


def _admin_key(hr_id: str) -> str:
    if not hr_id or len(hr_id) > KEY_LENGTH:
        raise UsageError(f"an HR id is 1-{KEY_LENGTH} characters; got {len(hr_id)}")
    return hr_id


def _values(c: Classification) -> tuple[Any, ...]:
    """The ``_CLASSIFIED`` column values of one classification, in that order."""
    return (
        c.protime_id,
        c.situation.value,
        c.rule.value if c.rule is not None else None,
        c.evidence,
        c.reason,
        c.protime_value,
        _candidates_text(c.candidates) if c.candidates else None,
    )


def _keyed(classifications: Sequence[Classification]) -> dict[str, Classification]:
    """HR id -> its first classification, unkeyable ones left out (logged)."""
    incoming: dict[str, Classification] = {}
    unkeyable = 0
    for c in classifications:
        if not c.hr_id or len(c.hr_id) > KEY_LENGTH:
            unkeyable += 1
        elif c.hr_id not in incoming:
            incoming[c.hr_id] = c
    if unkeyable:
        _log.warning(
            "%d classification(s) have no usable HR id to key a row; not stored", unkeyable
        )
    return incoming


def _compare(
    loaded: Iterable[tuple[Any, ...]], incoming: dict[str, Classification]
) -> tuple[list[str], set[str], list[str], set[str]]:
    """Stored rows ``(hr_id, *_CLASSIFIED, manual, ignored)`` against this run's classifications.

    Returns the ids whose classified values changed, the ids that have a row, the ids with a row
    but no classification, and those of them an admin linked or ignored.
    """
    width = 1 + len(_CLASSIFIED)
    changed: list[str] = []
    known: set[str] = set()
    unseen: list[str] = []
    pinned: set[str] = set()
    for row in loaded:
        hr_id = row[0]
        c = incoming.get(hr_id)
        if c is None:
            unseen.append(hr_id)
            if row[width] or row[width + 1]:
                pinned.add(hr_id)
            continue
        known.add(hr_id)
        if _values(c) != row[1:width]:
            changed.append(hr_id)
    return changed, known, unseen, pinned


def _after_outcome(
    row: dict[str, Any] | None, o: ActionOutcome, now: datetime
) -> dict[str, Any] | None:
    """The mapping row after one outcome (see :meth:`StateStore.record_outcomes`); None: delete."""
    a = o.action
    if row is None:
        if a.kind is ActionKind.DELETE and o.outcome is Outcome.SUCCEEDED:
            return None
        row = _new_mapping(a.hr_id, now=now, situation=a.situation, reason=a.reason)
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
        row.update(
            situation=Situation.LINKED.value,
            protime_id=a.protime_id,
            last_written_value=a.value,
            protime_value=a.value,
            reason=f"written: {a.reason}" if a.reason else "written",
            last_changed_at=now,
        )
    elif row["situation"] == Situation.ORPHANED.value and row["protime_id"] == a.protime_id:
        return None
    elif row["protime_id"] == a.protime_id and row["protime_value"] == a.value:
        row.update(protime_value=None, last_changed_at=now)
    return row


class StateStore:
    """The state database behind one engine (see :func:`~sync.state.create_state_engine`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ----------------------------------------------------------------------------- runs

    def start_run(
        self, *, trigger: str, dry_run: bool, forced: bool, only: Sequence[str] = ()
    ) -> str:
        """Record a new run as ``running`` (committed at once) and return its id (a UUID)."""
        run_id = str(uuid.uuid4())
        with write_transaction(self._engine) as conn:
            conn.execute(
                insert(_RUNS).values(
                    id=run_id,
                    trigger=Trigger(trigger).value,
                    status=RunStatus.RUNNING.value,
                    started_at=_now(),
                    dry_run=dry_run,
                    forced=forced,
                    only_ids=json.dumps(list(only)) if only else None,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                )
            )
        return run_id

    def finish_run(self, *, run_id: str, status: str, summary: RunSummary) -> None:
        """Close a run with its final ``status`` and figures.

        Events of the run still ``pending`` become ``skipped``: once a run is over nothing of it is in
        flight any more. ``summary.duration_seconds`` defaults to finished minus started.
        """
        final = RunStatus(status)
        if final is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status, not 'running'")
        now = _now()
        with write_transaction(self._engine) as conn:
            started = conn.execute(
                select(_R.started_at).where(_R.id == run_id)
            ).scalar_one_or_none()
            if started is None:
                raise StateError(f"unknown run {run_id}")
            duration = summary.duration_seconds
            if duration is None:
                duration = max((now - started).total_seconds(), 0.0)
            conn.execute(
                update(_RUNS)
                .where(_R.id == run_id)
                .values(
                    status=final.value,
                    finished_at=now,
                    hr_count=summary.hr_count,
                    protime_count=summary.protime_count,
                    counts_by_situation=json.dumps(dict(summary.counts_by_situation)),
                    actions_by_outcome=json.dumps(
                        {kind: dict(by) for kind, by in summary.actions_by_outcome.items()}
                    ),
                    api_calls=json.dumps(dict(summary.api_calls)),
                    error=summary.error,
                    duration_seconds=duration,
                )
            )
            conn.execute(
                update(_EVENTS)
                .where(_E.run_id == run_id, _E.outcome == Outcome.PENDING.value)
                .values(
                    outcome=Outcome.SKIPPED.value,
                    completed_at=now,
                    error=f"not completed: the run ended {final.value}",
                )
            )

    def mark_interrupted_runs(self, *, except_run_id: str | None = None) -> int:
        """Mark runs left ``running`` as ``interrupted``, and their pending events ``skipped``.

        Call it while holding the run lock: every run holds the lock while it runs, so any other
        run still ``running`` belongs to a process that died. Returns how many runs it marked.
        """
        now = _now()
        with write_transaction(self._engine) as conn:
            query = select(_R.id).where(_R.status == RunStatus.RUNNING.value)
            if except_run_id is not None:
                query = query.where(_R.id != except_run_id)
            stale = list(conn.execute(query).scalars())
            for chunk in _chunks(stale):
                conn.execute(
                    update(_RUNS)
                    # Checked again here: a run refused the lock is `running` for a moment before
                    # it records `skipped`; if it finished since the select, it stays as it ended.
                    .where(_R.id.in_(chunk), _R.status == RunStatus.RUNNING.value)
                    .values(
                        status=RunStatus.INTERRUPTED.value,
                        finished_at=now,
                        error=func.coalesce(_R.error, "the process ended before the run finished"),
                    )
                )
                conn.execute(
                    update(_EVENTS)
                    .where(_E.run_id.in_(chunk), _E.outcome == Outcome.PENDING.value)
                    .values(
                        outcome=Outcome.SKIPPED.value,
                        completed_at=now,
                        error="not completed: the run was interrupted",
                    )
                )
        if stale:
            _log.warning(
                "marked %d run(s) left running by a dead process as interrupted", len(stale)
            )
        return len(stale)

    def load_prior(self) -> PriorState:
        """What the planner needs from earlier runs and from admins.

        The "last good run" is the latest full (no ``--only``), real (not dry-run) run that ended
        ``succeeded`` or ``partial``: a dry run never sets the baseline the input gate compares with.
        """
        manual: dict[str, int] = {}
        ignored: set[str] = set()
        failed: dict[str, str] = {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_M.hr_id, _M.protime_id, _M.manual, _M.ignored, _M.failed_fingerprint).where(
                    or_(
                        _M.manual.is_(True),
                        _M.ignored.is_(True),
                        _M.failed_fingerprint.is_not(None),
                    )
                )
            )
            for hr_id, protime_id, is_manual, is_ignored, fingerprint in rows:
                if is_manual and protime_id is not None:
                    manual[hr_id] = protime_id
                if is_ignored:
                    ignored.add(hr_id)
                if fingerprint is not None:
                    failed[hr_id] = fingerprint
            last = conn.execute(
                select(_R.hr_count, _R.protime_count)
                .where(
                    _R.status.in_(_GOOD_RUN),
                    _R.dry_run.is_(False),
                    _R.only_ids.is_(None),
                    _R.hr_count.is_not(None),
                )
                .order_by(_R.started_at.desc())
                .limit(1)
            ).first()
        return PriorState(
            manual_links=manual,
            ignored_hr_ids=frozenset(ignored),
            failed=failed,
            last_good_hr_count=last.hr_count if last else None,
            last_good_protime_count=last.protime_count if last else None,
        )

    # ---------------------------------------------------------------------- the map

    def save_classifications(
        self,
        *,
        run_id: str,
        classifications: Sequence[Classification],
        now: datetime,
        prune: bool = False,
    ) -> None:
        """Upsert one mapping row per classification, in one transaction.

        Existing rows are loaded once and compared in Python; only rows whose classified fields
        changed are updated (``last_changed_at = now``), new ones inserted (``first_seen_at = now``),
        and every classified row gets ``last_verified_at = now`` and ``last_run_id`` in (usually) one
        statement. ``manual``, ``ignored``, ``last_written_value`` and failure fields are never
        touched here.

        ``prune=True`` (a full run, not ``--only``) deletes rows this run did not classify, unless an
        admin linked or ignored them: an HR id that left the source and holds nothing in Protime
        is gone. Their history stays in the events.

        A classification whose ``hr_id`` is empty or longer than 255 characters cannot key a row
        and is left out (logged); when ``hr_id`` repeats, the first classification wins.
        """
        incoming = _keyed(classifications)
        with write_transaction(self._engine) as conn:
            # Stored rows are streamed and compared one by one against the classification of
            # their id: at 100,000 rows, holding them all (and a values tuple per
            # classification) cost tens of MB at the run's memory peak, and most of the time
            # went to the garbage collector walking those tuples. ``yield_per`` makes PostgreSQL
            # stream them too (a server-side cursor) instead of buffering all in the driver.
            loaded = conn.execute(
                select(
                    _M.hr_id, *(_M[name] for name in _CLASSIFIED), _M.manual, _M.ignored
                ).execution_options(yield_per=_STREAM_ROWS)
            ).tuples()
            changed, known, unseen, pinned = _compare(loaded, incoming)
            new = [k for k in incoming if k not in known]
            if prune:
                doomed = [k for k in unseen if k not in pinned]
                for chunk in _chunks(doomed):
                    conn.execute(delete(_MAPPINGS).where(_M.hr_id.in_(chunk)))
                unseen = [k for k in unseen if k in pinned]

            verified = {"last_verified_at": now, "last_run_id": run_id}
            if len(unseen) <= _CHUNK:
                # The usual case: (nearly) every row was classified, one statement marks them all.
                conn.execute(update(_MAPPINGS).where(_M.hr_id.not_in(unseen)).values(verified))
            else:
                seen = [k for k in incoming if k in known]
                for chunk in _chunks(seen):
                    conn.execute(update(_MAPPINGS).where(_M.hr_id.in_(chunk)).values(verified))
            # Parameters go in batches: one list of 100,000 row dicts (a first run over a tenant
            # that is already linked) cost 100 MB at the run's memory peak.
            changes = (
                update(_MAPPINGS)
                .where(_M.hr_id == bindparam("k_hr_id"))
                .values({name: bindparam(f"v_{name}") for name in _CLASSIFIED})
                .values(last_changed_at=now)
            )
            for chunk in _chunks(changed, _WRITE_BATCH):
                conn.execute(
                    changes,
                    [
                        {
                            "k_hr_id": k,
                            **dict(zip(_BOUND_CLASSIFIED, _values(incoming[k]), strict=True)),
                        }
                        for k in chunk
                    ],
                )
            for chunk in _chunks(new, _WRITE_BATCH):
                conn.execute(
                    insert(_MAPPINGS),
                    [
                        {
                            **_new_mapping(k, now=now, situation=Situation.UNMATCHED, reason=""),
                            **dict(zip(_CLASSIFIED, _values(incoming[k]), strict=True)),
                            "last_verified_at": now,
                            "last_run_id": run_id,
                        }
                        for k in chunk
                    ],
                )

    # ---------------------------------------------------------------------- writes

    def record_pending(self, *, run_id: str, actions: Sequence[Action]) -> list[int]:
        """Write one ``pending`` event per action, committed before any call is made.

        Returns the event ids in the order of ``actions``. ``previous_value`` is what the person
        held as far as the map knows (for a write: the row's ``protime_value`` when the row points
        at the same person; for a delete: the value being deleted).
        """
        if not actions:
            return []
        now = _now()
        with write_transaction(self._engine) as conn:
            known: dict[str, tuple[int | None, str | None]] = {}
            hr_ids = sorted({a.hr_id for a in actions})
            for chunk in _chunks(hr_ids):
                for hr_id, protime_id, protime_value in conn.execute(
                    select(_M.hr_id, _M.protime_id, _M.protime_value).where(_M.hr_id.in_(chunk))
                ):
                    known[hr_id] = (protime_id, protime_value)
            ids: list[int] = []
            # In batches, like the classifications: 100,000 event dicts at once would cost about
            # 100 MB in a first run that writes to every person.
            for batch in _chunks(actions, _WRITE_BATCH):
                params = []
                for a in batch:
                    if a.kind is ActionKind.DELETE:
                        previous: str | None = a.value
                    else:
                        protime_id, protime_value = known.get(a.hr_id, (None, None))
                        previous = protime_value if protime_id == a.protime_id else None
                    params.append(
                        {
                            "run_id": run_id,
                            "hr_id": a.hr_id,
                            "protime_id": a.protime_id,
                            "action": a.kind.value,
                            "situation": a.situation.value,
                            "value": a.value,
                            "previous_value": previous,
                            "reason": a.reason,
                            "outcome": Outcome.PENDING.value,
                            "http_status": None,
                            "error": None,
                            "attempts": 0,
                            "created_at": now,
                            "completed_at": None,
                        }
                    )
                result = conn.execute(
                    insert(_EVENTS).returning(_E.id, sort_by_parameter_order=True), params
                )
                ids.extend(int(i) for i in result.scalars())
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
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(_EVENTS)
                .where(_E.id == bindparam("k_id"))
                .values(
                    outcome=bindparam("v_outcome"),
                    http_status=bindparam("v_http_status"),
                    error=bindparam("v_error"),
                    attempts=bindparam("v_attempts"),
                    completed_at=now,
                ),
                [
                    {
                        "k_id": o.event_id,
                        "v_outcome": o.outcome.value,
                        "v_http_status": o.http_status,
                        "v_error": o.error,
                        "v_attempts": o.attempts,
                    }
                    for o in outcomes
                ],
            )
            self._apply_outcomes_to_mappings(conn, outcomes, now)

    def _apply_outcomes_to_mappings(
        self, conn: Connection, outcomes: Sequence[ActionOutcome], now: datetime
    ) -> None:
        relevant = [o for o in outcomes if o.outcome is not Outcome.SKIPPED]
        if not relevant:
            return
        rows: dict[str, dict[str, Any] | None] = {}
        hr_ids = sorted({o.action.hr_id for o in relevant})
        for chunk in _chunks(hr_ids):
            for found in conn.execute(select(*_MAPPING_COLUMNS).where(_M.hr_id.in_(chunk))):
                rows[found.hr_id] = found._asdict()
        existed = set(rows)
        for o in relevant:
            rows[o.action.hr_id] = _after_outcome(rows.get(o.action.hr_id), o, now)

        gone = [k for k, v in rows.items() if v is None and k in existed]
        for chunk in _chunks(gone):
            conn.execute(delete(_MAPPINGS).where(_M.hr_id.in_(chunk)))
        updates = [v for k, v in rows.items() if v is not None and k in existed]
        if updates:
            conn.execute(
                update(_MAPPINGS)
                .where(_M.hr_id == bindparam("k_hr_id"))
                .values({name: bindparam(f"v_{name}") for name in _OUTCOME_FIELDS}),
                [
                    {"k_hr_id": v["hr_id"], **{f"v_{n}": v[n] for n in _OUTCOME_FIELDS}}
                    for v in updates
                ],
            )
        inserts = [v for k, v in rows.items() if v is not None and k not in existed]
        if inserts:
            conn.execute(insert(_MAPPINGS), inserts)

    # ----------------------------------------------------------------------- reads

    def mapping(self, hr_id: str) -> MappingRow | None:
        """The row of an HR id (or of an orphaned Protime value), ``None`` when unknown."""
        with self._engine.connect() as conn:
            row = conn.execute(select(*_MAPPING_COLUMNS).where(_M.hr_id == hr_id)).first()
        return _mapping_row(row) if row is not None else None

    def mapping_by_protime_id(self, protime_id: int) -> list[MappingRow]:
        """Every row pointing at a Protime person (more than one only for a conflict)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*_MAPPING_COLUMNS).where(_M.protime_id == protime_id).order_by(_M.hr_id)
            ).all()
        return [_mapping_row(r) for r in rows]

    def events_for(
        self,
        *,
        hr_id: str | None = None,
        protime_id: int | None = None,
        run_id: str | None = None,
        limit: int = 50,
    ) -> list[EventRow]:
        """Audit events matching every filter given (all events when none is), newest first."""
        query = select(*_EVENT_COLUMNS).order_by(_E.id.desc()).limit(limit)
        if hr_id is not None:
            query = query.where(_E.hr_id == hr_id)
        if protime_id is not None:
            query = query.where(_E.protime_id == protime_id)
        if run_id is not None:
            query = query.where(_E.run_id == run_id)
        with self._engine.connect() as conn:
            return [_event_row(r) for r in conn.execute(query)]

    def runs(self, *, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        query = select(*_RUN_COLUMNS).order_by(_R.started_at.desc(), _R.id).limit(limit)
        with self._engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)]

    def run(self, run_id: str) -> RunRow | None:
        """One run by id, ``None`` when unknown."""
        with self._engine.connect() as conn:
            row = conn.execute(select(*_RUN_COLUMNS).where(_R.id == run_id)).first()
        return _run_row(row) if row is not None else None

    def counts_by_situation(self) -> dict[str, int]:
        """Rows of the map per situation, as stored now."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_M.situation, func.count()).group_by(_M.situation))
            return {situation: int(count) for situation, count in rows}

    def iter_mappings(self) -> Iterator[MappingRow]:
        """Every row of the map ordered by HR id, streamed (for ``idsync export``)."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(
                select(*_MAPPING_COLUMNS).order_by(_M.hr_id)
            )
            for row in result:
                yield _mapping_row(row)

    # --------------------------------------------------------------- admin actions

    def link(self, *, hr_id: str, protime_id: int) -> None:
        """Pin an HR id to a Protime person by hand; the next run writes the reference.

        A manual link wins over every matching rule. Refused (:class:`UsageError`) when the id cannot
        be a reference value, or when another HR id is already linked by hand to that person.
        """
        problem = value_problem(hr_id, max_length=KEY_LENGTH)
        if problem:
            raise UsageError(f"HR id {hr_id!r} cannot be linked: {problem}")
        if protime_id <= 0:
            raise UsageError(f"Protime id must be a positive number, got {protime_id}")
        now = _now()
        with write_transaction(self._engine) as conn:
            other = conn.execute(
                select(_M.hr_id).where(
                    _M.protime_id == protime_id, _M.manual.is_(True), _M.hr_id != hr_id
                )
            ).scalar()
            if other is not None:
                raise UsageError(
                    f"Protime person {protime_id} is already linked by hand to HR id {other!r}; "
                    f"unlink it first (idsync unlink {other})"
                )
            row = conn.execute(select(_M.protime_id, _M.manual).where(_M.hr_id == hr_id)).first()
            values = {
                "protime_id": protime_id,
                "manual": True,
                "rule": "manual",
                "evidence": f"linked by an admin to {protime_id}",
                "reason": "manual link; the next run writes the reference",
                "last_changed_at": now,
            }
            if row is None:
                new = _new_mapping(hr_id, now=now, situation=Situation.UNLINKED, reason="")
                conn.execute(insert(_MAPPINGS).values({**new, **values}))
                previous = None
            else:
                conn.execute(update(_MAPPINGS).where(_M.hr_id == hr_id).values(values))
                previous = str(row.protime_id) if row.manual and row.protime_id else None
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.LINK,
                        hr_id=hr_id,
                        protime_id=protime_id,
                        value=str(protime_id),
                        previous_value=previous,
                        reason="linked by an admin",
                        now=now,
                    )
                )
            )

    def unlink(self, *, hr_id: str) -> None:
        """Remove an admin's link; the next run matches the HR id by the rules again."""
        now = _now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_M.protime_id, _M.manual).where(_M.hr_id == hr_id)).first()
            if row is None or not row.manual:
                raise UsageError(f"HR id {hr_id!r} has no manual link")
            conn.execute(
                update(_MAPPINGS)
                .where(_M.hr_id == hr_id)
                .values(
                    manual=False,
                    reason="manual link removed; the next run matches it again",
                    last_changed_at=now,
                )
            )
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.UNLINK,
                        hr_id=hr_id,
                        protime_id=row.protime_id,
                        previous_value=str(row.protime_id) if row.protime_id else None,
                        reason="unlinked by an admin",
                        now=now,
                    )
                )
            )

    def ignore(self, *, hr_id: str) -> None:
        """Exclude an HR id (or an orphaned value) from every run until :meth:`unignore`."""
        _admin_key(hr_id)
        now = _now()
        with write_transaction(self._engine) as conn:
            exists = conn.execute(select(_M.hr_id).where(_M.hr_id == hr_id)).first() is not None
            values = {
                "ignored": True,
                "situation": Situation.IGNORED.value,
                "reason": "ignored by an admin",
                "last_changed_at": now,
            }
            if exists:
                conn.execute(update(_MAPPINGS).where(_M.hr_id == hr_id).values(values))
            else:
                new = _new_mapping(hr_id, now=now, situation=Situation.IGNORED, reason="")
                conn.execute(insert(_MAPPINGS).values({**new, **values}))
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.IGNORE,
                        hr_id=hr_id,
                        reason="ignored by an admin",
                        now=now,
                    )
                )
            )

    def unignore(self, *, hr_id: str) -> None:
        """Undo :meth:`ignore`; the row keeps its situation until the next run classifies it."""
        now = _now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_M.ignored).where(_M.hr_id == hr_id)).first()
            if row is None or not row.ignored:
                raise UsageError(f"HR id {hr_id!r} is not ignored")
            conn.execute(
                update(_MAPPINGS)
                .where(_M.hr_id == hr_id)
                .values(
                    ignored=False,
                    reason="no longer ignored; the next run classifies it",
                    last_changed_at=now,
                )
            )
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.UNIGNORE,
                        hr_id=hr_id,
                        reason="unignored by an admin",
                        now=now,
                    )
                )
            )

    def clear_failed(self, *, hr_ids: Sequence[str] | None = None) -> int:
        """Forget permanent failures (all, or of ``hr_ids``) so the next run retries them.

        Clears ``failed_fingerprint``, ``last_error`` and ``attempts``; one audit event per row.
        Returns how many rows had a failure to clear.
        """
        now = _now()
        with write_transaction(self._engine) as conn:
            query = select(_M.hr_id, _M.protime_id, _M.failed_fingerprint).where(
                _M.failed_fingerprint.is_not(None)
            )
            found: list[Row[Any]] = []
            if hr_ids is None:
                found = list(conn.execute(query))
            else:
                for chunk in _chunks(sorted(set(hr_ids))):
                    found.extend(conn.execute(query.where(_M.hr_id.in_(chunk))))
            keys = [r.hr_id for r in found]
            for chunk in _chunks(keys):
                conn.execute(
                    update(_MAPPINGS)
                    .where(_M.hr_id.in_(chunk))
                    .values(failed_fingerprint=None, last_error=None, attempts=0)
                )
            if found:
                conn.execute(
                    insert(_EVENTS),
                    [
                        _admin_event(
                            action=EventAction.CLEAR_FAILED,
                            hr_id=r.hr_id,
                            protime_id=r.protime_id,
                            previous_value=r.failed_fingerprint,
                            reason="failure cleared by an admin; the next run retries",
                            now=now,
                        )
                        for r in found
                    ],
                )
        return len(found)
