"""``idsync serve``: migrate, listen, reconcile on a schedule, stop cleanly on SIGTERM / SIGINT."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from sync import __version__
from sync._signals import stop_signals
from sync.config import redact_url
from sync.errors import ConfigError, IdsyncError, StateError
from sync.logging import configure_logging, get_logger, redact_text, register_settings_secrets
from sync.service._health import HealthServer, run_probe
from sync.service._metrics import Metrics
from sync.service._scheduler import Scheduler, build_trigger, timezone_of
from sync.service._state import ServiceState, StateBackend
from sync.status import Trigger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from apscheduler.triggers.base import BaseTrigger

    from sync.config import Settings
    from sync.reconcile._result import RunResult

    RunFn = Callable[..., RunResult]

log = get_logger(__name__)


def default_run_fn(**kwargs: Any) -> RunResult:
    """:func:`sync.reconcile.run`, imported on first use (the service starts without the engine)."""
    from sync.reconcile import run

    return run(**kwargs)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    """The parts of ``idsync serve``, startable and stoppable from a test without signals.

    ``run_fn`` is called as ``run_fn(settings=..., trigger="schedule", stop=..., on_progress=...)``
    and must return a :class:`RunResult`. ``state`` defaults to the state database of the settings; ``trigger`` to
    the one the schedule settings describe (a test passes a faster one).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        run_fn: RunFn | None = None,
        stop: threading.Event | None = None,
        state: ServiceState | None = None,
        metrics: Metrics | None = None,
        trigger: BaseTrigger | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.stop_event = stop if stop is not None else threading.Event()
        self.metrics = metrics if metrics is not None else Metrics()
        # Configuration first: a wrong schedule stops the service before it touches anything.
        self._trigger = trigger if trigger is not None else build_trigger(settings.schedule)
        self._run_fn: RunFn = run_fn if run_fn is not None else default_run_fn
        self._state_arg = state
        self._state: ServiceState | None = None
        self._scheduler = Scheduler(
            trigger=self._trigger,
            run_once=self._run_once,
            stop=self.stop_event,
            run_at_start=settings.schedule.run_at_start,
            misfire_grace_seconds=settings.schedule.misfire_grace_seconds,
            timezone=timezone_of(settings.schedule),
        )
        self._http: HealthServer | None = None
        self._stopping = threading.Event()
        self._raise_streak = 0
        self._lock = threading.Lock()
        # Protime asked (a Retry-After past IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS) to be called
        # no earlier than this: the ticks before it start no run.
        self._not_before: datetime | None = None
        self._clock = clock
        self._migration_abandoned = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate the state database, then start the listener and the scheduler."""
        schedule = self.settings.schedule
        log.info(
            "service.start",
            version=__version__,
            state_database=redact_url(self.settings.state_url),
            interval_seconds=schedule.interval_seconds,
            cron=schedule.cron,
            timezone=schedule.timezone,
            run_at_start=schedule.run_at_start,
        )
        if self.stop_event.is_set():
            return  # asked to stop before anything was opened
        self._state = (
            self._state_arg
            if self._state_arg is not None
            else StateBackend(self.settings.state_url, timeout=self.settings.state_timeout_seconds)
        )
        if not self._migrate(self._state) or self.stop_event.is_set():
            return  # stopped while migrating: no listener, no scheduler; shutdown() follows
        self._refresh_from_state(seed_last_success=True)
        http = self.settings.http
        try:
            self._http = HealthServer(
                host=http.host,
                port=http.port,
                metrics=self.metrics,
                liveness=self.liveness_problem,
                readiness=self.readiness_problem,
            )
        except OSError as exc:
            raise ConfigError(
                f"IDSYNC_HTTP__HOST/IDSYNC_HTTP__PORT: cannot listen on {http.host}:{http.port}: "
                f"{exc.strerror or exc}"
            ) from None
        self._http.start()
        if not self.stop_event.is_set():
            self._scheduler.start()

    def _migrate(self, state: ServiceState) -> bool:
        """Migrate on a helper thread, so a signal is acted on within the grace even if the
        migration waits on a lock; False when it was abandoned (its transaction rolls back)."""
        done = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                state.upgrade()
            except BaseException as exc:  # handed to the main thread as is
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="idsync-migrate", daemon=True).start()
        # Two things to wait for, the migration and a stop request: a short poll of both.
        while not done.wait(0.1):
            if self.stop_event.is_set():
                grace = self.settings.schedule.shutdown_grace_seconds
                if done.wait(grace):
                    break
                self._migration_abandoned = True
                log.warning(
                    "service.migrate_abandoned",
                    grace_seconds=grace,
                    detail="stopping: the migration did not finish within the grace; its "
                    "transaction is rolled back and the next start migrates",
                )
                return False
        if failure:
            self._migration_failed(failure[0])
        log.info("service.migrated")
        return True

    @staticmethod
    def _migration_failed(exc: BaseException) -> None:
        if isinstance(exc, IdsyncError):
            # A known error (state database unreachable): its message says it all.
            log.error("service.migrate_failed", error=str(exc))
            raise exc
        log.error("service.migrate_failed", exc_info=exc)
        message = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise StateError(f"migrating the state database failed: {message}") from None

    @property
    def http_port(self) -> int:
        """The listener's bound port (useful when the settings say 0)."""
        if self._http is None:
            raise RuntimeError("the service is not started")
        return self._http.port

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stop event is set; True if it was."""
        return self.stop_event.wait(timeout)

    def shutdown(self) -> bool:
        """Stop taking new work, give the running run its grace, then stop everything.

        Returns True when no run was left behind. Safe after a partial :meth:`start`.
        """
        grace = self.settings.schedule.shutdown_grace_seconds
        self._stopping.set()
        self.stop_event.set()  # the running run sees it and stops at its next safe point
        log.info("service.stopping", run_in_progress=self._scheduler.busy, grace_seconds=grace)
        clean = self._scheduler.shutdown(grace_seconds=grace) and not self._migration_abandoned
        if not clean:
            log.warning(
                "service.stop_timeout",
                grace_seconds=grace,
                detail="the run did not reach a safe point in time; it is left as running and "
                "the next run marks it interrupted and converges",
            )
        self.metrics.up.set(0)
        if self._http is not None:
            self._http.stop()
        if self._state is not None and clean:
            # With a run still in flight its connections stay; the process exit releases them.
            self._state.close()
        log.info("service.stop", clean=clean)
        return clean

    # -- probes ----------------------------------------------------------------------------------

    def liveness_problem(self) -> str | None:
        if self._stopping.is_set():
            return "shutting down"
        problem = self._scheduler.problem()
        if problem is not None:
            return problem
        # The run deadline stops a run from inside; a run still going a grace later is stuck
        # where that cannot reach it (a call that never returns): say so, for a restart.
        running = self._scheduler.running_for()
        deadline = self.settings.run_deadline_seconds
        bound = deadline + self.settings.schedule.shutdown_grace_seconds
        if running is not None and running > bound:
            return (
                f"the run has been going for {running:.0f} s, past the run deadline "
                f"(IDSYNC_RUN_DEADLINE_SECONDS={deadline:g}) plus the shutdown grace: stuck"
            )
        return None

    def readiness_problem(self) -> str | None:
        alive = self.liveness_problem()
        if alive is not None:
            return alive
        threshold = self.settings.http.failing_runs_unready
        with self._lock:
            raised = self._raise_streak
        if raised >= threshold:
            return (
                f"the last {raised} runs raised an error instead of finishing "
                "(see scheduler.run_error / scheduler.run_crashed in the log)"
            )
        if self._state is None:
            return "the state database is not open yet"
        return self._state.readiness_problem(failing_runs_unready=threshold)

    # -- one scheduled run -----------------------------------------------------------------------

    def _run_once(self) -> None:
        if self.stop_event.is_set():
            return
        not_before = self._not_before
        if not_before is not None and self._clock() < not_before:
            log.info("scheduler.waiting_for_protime", not_before=not_before.isoformat())
            return
        self.metrics.run_in_progress.set(1)
        try:
            result = self._run_fn(
                settings=self.settings,
                trigger=Trigger.SCHEDULE,
                stop=self.stop_event,
                on_progress=self.metrics.observe_progress,
            )
        except IdsyncError as exc:
            # Expected trouble outside a run's own record (state database down, schema behind):
            # one line with the reason, no traceback.
            log.error(  # noqa: TRY400 - a known error: its message says it all, a traceback is noise
                "scheduler.run_error", error=str(exc), error_type=type(exc).__name__
            )
            self._count_raise()
        except SQLAlchemyError as exc:
            # The state database refused a statement the store does not wrap (a read-only
            # database, a dropped connection mid-write): the database's own reason, one line.
            # Its first line only: the rest is the statement and its parameters.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.error(  # noqa: TRY400 - a known kind of error: its reason says it, not a traceback
                "scheduler.run_error",
                error=f"the state database refused: {reason[0][:300] if reason else '?'}",
                error_type=type(exc).__name__,
            )
            self._count_raise()
        except Exception:
            log.exception("scheduler.run_crashed")
            self._count_raise()
        else:
            self._report(result)
        finally:
            self.metrics.run_in_progress.set(0)
            self.metrics.clear_progress()
        self._refresh_from_state(seed_last_success=False)

    def _count_raise(self) -> None:
        self.metrics.observe_exception()
        with self._lock:
            self._raise_streak += 1

    def _report(self, result: RunResult) -> None:
        self.metrics.observe_run(result)
        with self._lock:
            self._raise_streak = 0  # the run function works again (whatever the run's outcome)
        self._not_before = result.retry_at
        # The run logs its own run.finish / run.skipped_locked at info; this is the scheduler's view.
        log.debug(
            "scheduler.run_finished",
            run_id=result.run_id,
            status=result.status.value,
            duration_seconds=round(result.duration_seconds, 3),
            message=result.message or None,
        )

    def _refresh_from_state(self, *, seed_last_success: bool) -> None:
        state = self._state
        if state is None:
            return
        reason = run_probe(
            lambda: self._load_state_metrics(state, seed_last_success=seed_last_success)
        )
        if reason is not None:
            log.warning("metrics.state_unavailable", reason=reason)

    def _load_state_metrics(self, state: ServiceState, *, seed_last_success: bool) -> None:
        self.metrics.set_mappings(state.counts_by_situation())
        if seed_last_success:
            last = state.last_success_timestamp()
            if last is not None:
                self.metrics.set_last_success(last)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (main thread only; elsewhere the caller owns ``stop``).

    Through sync/_signals.py's relay, never a handler that waits for the main thread to wake up:
    docs/operations.md ("Why a signal could be lost") says why.
    """
    with stop_signals(lambda name: _request_stop(stop, name)):
        yield


def _request_stop(stop: threading.Event, signal_name: str) -> None:
    if stop.is_set():
        log.info("service.signal", signal=signal_name, detail="already stopping")
        return
    log.info("service.signal", signal=signal_name)
    stop.set()


def serve(
    *,
    settings: Settings,
    run_fn: RunFn | None = None,
    stop: threading.Event | None = None,
    exit_process: bool = False,
) -> int:
    """Run the service until SIGTERM / SIGINT (or ``stop`` is set); return the exit code, 0.

    Raises :class:`~sync.errors.ConfigError` for a wrong schedule before anything starts, and
    :class:`~sync.errors.StateError` when the state database cannot be migrated.
    ``exit_process`` (the CLI): once stopped, end the process at once with 0 (logs flushed)
    instead of returning. The interpreter's own exit would join the threads of a run that missed
    its grace (still inside a database or HTTP call) and collect every object the process made;
    on a starved machine that alone took seconds past the stop.
    """
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    register_settings_secrets(settings)
    service = Service(settings=settings, run_fn=run_fn, stop=stop)
    if run_fn is None:
        # The real run needs the Protime connection and the HR source: say so now, exit 2, rather
        # than fail every tick.
        settings.protime.require()
        settings.hr.require()
    with _stop_on_signals(service.stop_event):
        try:
            service.start()
            service.wait()
        finally:
            service.shutdown()
    if exit_process:
        _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """End the process now: no join of threads left in a call (what they did is recorded)."""
    import logging

    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
        sys.stdout.flush()
    os._exit(code)
