"""One sync's scheduled runs inside ``idsync serve``: when it may run, the run, what it reports.

The service holds one :class:`SyncRunner` per sync and the scheduler calls its :meth:`run_once`
on the sync's ticks. Everything here is the sync's own: its settings (rate, retries, deadline),
Protime's "call me later", the count of runs that raised, its metrics. One sync's trouble never
reaches another's runner.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from sync.errors import IdsyncError
from sync.logging import get_logger
from sync.status import RunStatus, Trigger

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.config import Settings
    from sync.reconcile._progress import ProgressSnapshot
    from sync.reconcile._result import RunResult
    from sync.service._state import ServiceState

    RunFn = Callable[..., RunResult]

log = get_logger(__name__)


class SyncMetricsView(Protocol):
    """What a runner tells the metrics (one sync's view, :meth:`Metrics.sync`)."""

    def observe_run(self, result: RunResult) -> None: ...
    def observe_progress(self, snapshot: ProgressSnapshot) -> None: ...
    def clear_progress(self) -> None: ...
    def observe_exception(self) -> None: ...
    def set_in_progress(self, running: bool) -> None: ...


class SyncRunner:
    """The scheduled runs of one sync (see the module doc)."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        run_fn: RunFn,
        stop: threading.Event,
        metrics: SyncMetricsView,
        state: Callable[[], ServiceState | None],
        serving: Callable[[], datetime | None],
        clock: Callable[[], datetime],
        after_run: Callable[[str], None],
    ) -> None:
        self.name = name
        self.settings = settings
        self._run_fn = run_fn
        self._stop = stop
        self._metrics = metrics
        self._state = state
        self._serving = serving
        self._clock = clock
        self._after_run = after_run
        self._lock = threading.Lock()
        self._raise_streak = 0
        # Protime asked (a Retry-After past IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS) to be called
        # no earlier than this: the ticks before it start no run of this sync.
        self.not_before: datetime | None = None
        self.last_status: RunStatus | None = None

    @property
    def raise_streak(self) -> int:
        with self._lock:
            return self._raise_streak

    def run_once(self) -> None:
        if self._stop.is_set():
            return
        not_before = self.not_before
        if not_before is not None and self._clock() < not_before:
            log.info(
                "scheduler.waiting_for_protime", sync=self.name, not_before=not_before.isoformat()
            )
            return
        if self._done_elsewhere():
            return
        self._metrics.set_in_progress(True)
        try:
            result = self._run_fn(
                settings=self.settings,
                trigger=Trigger.SCHEDULE,
                stop=self._stop,
                on_progress=self._metrics.observe_progress,
                due_at=self._serving(),
            )
        except IdsyncError as exc:
            # Expected trouble outside a run's own record (state database down, schema behind):
            # one line with the reason, no traceback.
            log.error(  # noqa: TRY400 - a known error: its message says it all, a traceback is noise
                "scheduler.run_error", sync=self.name, error=str(exc), error_type=type(exc).__name__
            )
            self._count_raise()
        except SQLAlchemyError as exc:
            # The state database refused a statement the store does not wrap (a read-only
            # database, a dropped connection mid-write): the database's own reason, one line.
            # Its first line only: the rest is the statement and its parameters.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.error(  # noqa: TRY400 - a known kind of error: its reason says it, not a traceback
                "scheduler.run_error",
                sync=self.name,
                error=f"the state database refused: {reason[0][:300] if reason else '?'}",
                error_type=type(exc).__name__,
            )
            self._count_raise()
        except Exception:
            log.exception("scheduler.run_crashed", sync=self.name)
            self._count_raise()
        else:
            self._report(result)
        finally:
            self._metrics.set_in_progress(False)
            self._metrics.clear_progress()
        self._after_run(self.name)

    def _done_elsewhere(self) -> bool:
        """Whether a run of this sync started since the tick this run would serve: another
        replica (or an operator's `idsync reconcile`) took it, and one run per tick is enough."""
        due = self._serving()
        state = self._state()
        if due is None or state is None:
            return False
        try:
            started = state.last_run_started(sync=self.name)
        except Exception:
            return False
        if started is None:
            return False
        if started.tzinfo is None:  # SQLite hands back naive UTC
            started = started.replace(tzinfo=UTC)
        if started < due:
            return False
        log.info(
            "scheduler.already_run",
            sync=self.name,
            due_at=due.isoformat(),
            started_at=started.astimezone(UTC).isoformat(),
        )
        return True

    def _count_raise(self) -> None:
        self._metrics.observe_exception()
        with self._lock:
            self._raise_streak += 1
        self.last_status = RunStatus.FAILED

    def _report(self, result: RunResult) -> None:
        self._metrics.observe_run(result)
        with self._lock:
            self._raise_streak = 0  # the run function works again (whatever the run's outcome)
        self.not_before = result.retry_at
        self.last_status = result.status
        # The run logs its own run.finish / run.skipped_locked at info; this is the scheduler's view.
        log.debug(
            "scheduler.run_finished",
            sync=self.name,
            run_id=result.run_id,
            status=result.status.value,
            duration_seconds=round(result.duration_seconds, 3),
            message=result.message or None,
        )

    def describe(self) -> dict[str, Any]:
        """This runner's view for ``/syncs``."""
        return {
            "raised_in_a_row": self.raise_streak,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "last_status_here": self.last_status.value if self.last_status else None,
        }
