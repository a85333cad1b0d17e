"""The run table: a run starts, finishes, or is found left behind by a dead process; reads of runs."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    func,
    insert,
    select,
    update,
)

from sync.domain import Outcome
from sync.errors import StateError
from sync.status import RunStatus, Trigger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sync.state._rows import (
        RunRow,
        RunSummary,
    )

from sync.state._base import (
    _E,
    _EVENTS,
    _R,
    _RUN_COLUMNS,
    _RUNS,
    StoreBase,
    _chunks,
    _now,
    _run_row,
)

_log = logging.getLogger(__name__)


class RunStore(StoreBase):
    """Runs: start, finish, mark the interrupted, read."""

    def start_run(
        self,
        *,
        trigger: str,
        dry_run: bool,
        forced: bool,
        only: Sequence[str] = (),
        plan_id: str | None = None,
    ) -> str:
        """Record a new run as ``running`` (committed at once) and return its id (a UUID)."""
        run_id = str(uuid.uuid4())
        with self._db.write() as conn:
            conn.execute(
                insert(_RUNS).values(
                    id=run_id,
                    sync=self._sync,
                    trigger=Trigger(trigger).value,
                    status=RunStatus.RUNNING.value,
                    started_at=_now(),
                    dry_run=dry_run,
                    forced=forced,
                    only_ids=json.dumps(list(only)) if only else None,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    plan_id=plan_id,
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
        with self._db.write() as conn:
            started = conn.execute(
                select(_R.started_at).where(_R.id == run_id, _R.sync == self._sync)
            ).scalar_one_or_none()
            if started is None:
                raise StateError(f"unknown run {run_id}")
            duration = summary.duration_seconds
            if duration is None:
                duration = max((now - started).total_seconds(), 0.0)
            conn.execute(
                update(_RUNS)
                .where(_R.id == run_id, _R.sync == self._sync)
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
                    protime_read=summary.protime_read,
                    protime_read_reason=summary.protime_read_reason,
                )
            )
            conn.execute(
                update(_EVENTS)
                .where(
                    _E.sync == self._sync,
                    _E.run_id == run_id,
                    _E.outcome == Outcome.PENDING.value,
                )
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
        with self._db.write() as conn:
            # Only this sync's: another sync's run holds another lock, and may well be alive.
            query = select(_R.id).where(_R.sync == self._sync, _R.status == RunStatus.RUNNING.value)
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
                    .where(
                        _E.sync == self._sync,
                        _E.run_id.in_(chunk),
                        _E.outcome == Outcome.PENDING.value,
                    )
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

    def rate_memory(self, run_id: str) -> RunRate:
        """Where run ``run_id`` keeps the rate ``auto`` learned (the client's rate port)."""
        return RunRate(self, run_id)

    def remember_rate(self, *, run_id: str, rate: float) -> None:
        """Keep ``rate`` on run ``run_id``'s row: the rate ``auto`` ended the run at."""
        with self._db.write() as conn:
            conn.execute(
                update(_RUNS)
                .where(_R.id == run_id, _R.sync == self._sync)
                .values(rate_per_second=rate)
            )

    def learned_rate(self) -> float | None:
        """The request rate the latest run with ``auto`` learned (None: none has yet)."""
        query = (
            select(_R.rate_per_second)
            .where(_R.sync == self._sync, _R.rate_per_second.is_not(None))
            .order_by(_R.started_at.desc(), _R.id)
            .limit(1)
        )
        with self._engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def set_progress(self, *, run_id: str, progress: Mapping[str, Any]) -> None:
        """Record where a run is (its phase, done, total...), for ``idsync status`` to show."""
        with self._db.write() as conn:
            conn.execute(
                update(_RUNS)
                .where(_R.id == run_id, _R.sync == self._sync)
                .values(progress=json.dumps(dict(progress)))
            )

    def last_work_started(self) -> datetime | None:
        """When the newest run that could do this sync's work started: not a dry run, not a
        plan, not a run skipped at the lock. A replica due to run a tick skips it when one
        started since (``idsync serve``)."""
        query = select(func.max(_R.started_at)).where(
            _R.sync == self._sync,
            _R.dry_run.is_(False),
            _R.trigger != Trigger.PLAN.value,
            _R.status != RunStatus.SKIPPED.value,
        )
        with self._engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def running(self) -> list[RunRow]:
        """The runs recorded as ``running`` now, newest first (one, unless a process died)."""
        query = (
            select(*_RUN_COLUMNS)
            .where(_R.sync == self._sync, _R.status == RunStatus.RUNNING.value)
            .order_by(_R.started_at.desc(), _R.id)
        )
        with self._engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)]

    def runs(self, *, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        query = (
            select(*_RUN_COLUMNS)
            .where(_R.sync == self._sync)
            .order_by(_R.started_at.desc(), _R.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)]

    def run(self, run_id: str) -> RunRow | None:
        """One run by id, ``None`` when unknown."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_RUN_COLUMNS).where(_R.id == run_id, _R.sync == self._sync)
            ).first()
        return _run_row(row) if row is not None else None


class RunRate:
    """The learned rate's port (:class:`sync.protime.RateMemory`) on the run table: recalls the
    latest run's, remembers on this run's row. Only a client with ``auto`` asks it."""

    def __init__(self, runs: RunStore, run_id: str) -> None:
        self._runs = runs
        self._run_id = run_id

    def recall(self) -> float | None:
        return self._runs.learned_rate()

    def remember(self, rate: float | None) -> None:
        if rate is not None:
            self._runs.remember_rate(run_id=self._run_id, rate=rate)
