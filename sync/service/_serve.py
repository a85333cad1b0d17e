"""``idsync serve``: migrate, listen, reconcile on a schedule, stop cleanly on SIGTERM / SIGINT."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync import __version__
from sync._signals import stop_signals
from sync.config import redact_url
from sync.errors import ConfigError, IdsyncError, StateError
from sync.logging import configure_logging, get_logger, redact_text, register_settings_secrets
from sync.names import DEFAULT_SYNC
from sync.service._health import HealthServer, run_probe
from sync.service._metrics import Metrics
from sync.service._scheduler import Scheduler, build_trigger, timezone_of
from sync.service._state import ServiceState, StateBackend
from sync.service._syncrun import SyncRunner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from apscheduler.triggers.base import BaseTrigger

    from sync.config import Settings
    from sync.reconcile._result import RunResult

    RunFn = Callable[..., RunResult]
    # Builds `idsync syncs --json`'s document, given what this process knows of each sync.
    SyncsDocumentFn = Callable[[Mapping[str, dict[str, Any]]], dict[str, Any]]

log = get_logger(__name__)


def default_run_fn(**kwargs: Any) -> RunResult:
    """:func:`sync.reconcile.run`, imported on first use (the service starts without the engine)."""
    from sync.reconcile import run

    return run(**kwargs)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    """The parts of ``idsync serve``, startable and stoppable from a test without signals.

    ``syncs`` maps each sync's name to its settings (one deployment, many syncs: they share the
    state database, ``http`` and ``log``, which the first one's settings give); ``settings``
    alone is the one sync ``default``, as an environment-only configuration has. At most
    ``max_concurrent_runs`` runs go at once. ``run_fn`` is called as ``run_fn(settings=...,
    trigger="schedule", stop=..., on_progress=...)`` with the sync's settings and must return a
    :class:`RunResult`. ``state`` defaults to the state database of the settings; ``trigger`` to
    the one each sync's schedule settings describe (a test passes a faster one).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        syncs: Mapping[str, Settings] | None = None,
        max_concurrent_runs: int = 1,
        run_fn: RunFn | None = None,
        stop: threading.Event | None = None,
        state: ServiceState | None = None,
        metrics: Metrics | None = None,
        trigger: BaseTrigger | None = None,
        clock: Callable[[], datetime] = _utcnow,
        syncs_document: SyncsDocumentFn | None = None,
    ) -> None:
        self._syncs_document = syncs_document
        if syncs is None:
            if settings is None:
                raise ValueError("a service needs settings or syncs")
            syncs = {DEFAULT_SYNC: settings}
        if not syncs:
            raise ConfigError("no sync to serve: the settings file has no [syncs.NAME] table")
        self.syncs = dict(syncs)
        # What all syncs share (state database, listener, logs, shutdown grace): the first's.
        self.settings = next(iter(self.syncs.values()))
        self.stop_event = stop if stop is not None else threading.Event()
        self.metrics = metrics if metrics is not None else Metrics()
        run = run_fn if run_fn is not None else default_run_fn
        self._state_arg = state
        self._state: ServiceState | None = None
        self._scheduler = Scheduler(
            stop=self.stop_event,
            workers=max_concurrent_runs,
            timezone=timezone_of(self.settings.schedule),
        )
        self.runners: dict[str, SyncRunner] = {}
        for name, sync_settings in self.syncs.items():
            # Configuration first: a wrong schedule stops the service before it touches anything.
            sync_trigger = trigger if trigger is not None else build_trigger(sync_settings.schedule)
            runner = SyncRunner(
                name=name,
                settings=sync_settings,
                run_fn=run,
                stop=self.stop_event,
                metrics=self.metrics.sync(name),
                state=lambda: self._state,
                serving=lambda name=name: self._scheduler.serving(name),  # type: ignore[misc]
                clock=clock,
                after_run=self._after_run,
            )
            self.runners[name] = runner
            self._scheduler.add(
                name,
                trigger=sync_trigger,
                run_once=runner.run_once,
                run_at_start=sync_settings.schedule.run_at_start,
                misfire_grace_seconds=sync_settings.schedule.misfire_grace_seconds,
            )
        self._http: HealthServer | None = None
        self._stopping = threading.Event()
        self._migration_abandoned = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate the state database, then start the listener and the scheduler."""
        schedule = self.settings.schedule
        log.info(
            "service.start",
            version=__version__,
            state_database=redact_url(self.settings.state_url),
            syncs=list(self.syncs),
            workers=self._scheduler.workers,
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
        for name in self.syncs:
            self._refresh_from_state(name, seed_last_success=True)
        http = self.settings.http
        try:
            self._http = HealthServer(
                host=http.host,
                port=http.port,
                metrics=self.metrics,
                liveness=self.liveness_problem,
                readiness=self.readiness_problem,
                syncs=self.syncs_document if self._syncs_document is not None else None,
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
        deadline = max(s.run_deadline_seconds for s in self.syncs.values())
        bound = deadline + self.settings.schedule.shutdown_grace_seconds
        if running is not None and running > bound:
            return (
                f"the run has been going for {running:.0f} s, past the run deadline "
                f"(IDSYNC_RUN_DEADLINE_SECONDS={deadline:g}) plus the shutdown grace: stuck"
            )
        return None

    def readiness_problem(self) -> str | None:
        """The service itself: alive, its state database reachable and at head. With one sync,
        also that sync's runs (as before many syncs); with several, one sync's trouble (a wrong
        password, a blocked plan) is that sync's, in ``/syncs`` and the metrics, not the
        service's -- unless every sync's runs raise, which is the service's own trouble."""
        alive = self.liveness_problem()
        if alive is not None:
            return alive
        threshold = self.settings.http.failing_runs_unready
        streaks = [runner.raise_streak for runner in self.runners.values()]
        if min(streaks) >= threshold:
            which = "runs" if len(streaks) == 1 else "runs of every sync"
            return (
                f"the last {min(streaks)} {which} raised an error instead of finishing "
                "(see scheduler.run_error / scheduler.run_crashed in the log)"
            )
        if self._state is None:
            return "the state database is not open yet"
        one = len(self.syncs) == 1
        return self._state.readiness_problem(
            failing_runs_unready=threshold if one else None, sync=next(iter(self.syncs))
        )

    def here(self) -> dict[str, dict[str, Any]]:
        """What this process knows of each sync: its schedule's next tick, whether it runs or
        waits for a worker here, and what its runner holds."""
        waiting = self._scheduler.waiting()
        return {
            name: {
                "next_run_at": self._scheduler.next_run_time(name),
                "running_here": self._scheduler.serving(name) is not None,
                "waiting_seconds": round(waiting[name], 3) if name in waiting else None,
                **runner.describe(),
            }
            for name, runner in self.runners.items()
        }

    def syncs_document(self) -> dict[str, Any]:
        """``/syncs``: `idsync syncs --json`'s document, with what this process knows."""
        if self._syncs_document is None:
            raise RuntimeError("no sync document was given to this service")
        return self._syncs_document(self.here())

    # -- after a run ------------------------------------------------------------------------------

    def _after_run(self, name: str) -> None:
        self._refresh_from_state(name, seed_last_success=False)
        waiting = self._scheduler.waiting()
        for sync_name in self.syncs:
            self.metrics.sync(sync_name).set_overdue(waiting.get(sync_name, 0.0))

    def _refresh_from_state(self, name: str, *, seed_last_success: bool) -> None:
        state = self._state
        if state is None:
            return
        reason = run_probe(
            lambda: self._load_state_metrics(state, name, seed_last_success=seed_last_success)
        )
        if reason is not None:
            log.warning("metrics.state_unavailable", sync=name, reason=reason)

    def _load_state_metrics(
        self, state: ServiceState, name: str, *, seed_last_success: bool
    ) -> None:
        view = self.metrics.sync(name)
        view.set_mappings(state.counts_by_situation(sync=name))
        if seed_last_success:
            last = state.last_success_timestamp(sync=name)
            if last is not None:
                view.set_last_success(last)


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
    settings: Settings | None = None,
    syncs: Mapping[str, Settings] | None = None,
    max_concurrent_runs: int = 1,
    run_fn: RunFn | None = None,
    stop: threading.Event | None = None,
    syncs_document: SyncsDocumentFn | None = None,
    exit_process: bool = False,
) -> int:
    """Run the service until SIGTERM / SIGINT (or ``stop`` is set); return the exit code, 0.

    ``syncs`` (or ``settings`` alone: the one sync ``default``) and ``max_concurrent_runs`` as
    :class:`Service` takes them. Raises :class:`~sync.errors.ConfigError` for a wrong schedule
    before anything starts, and :class:`~sync.errors.StateError` when the state database cannot
    be migrated. ``exit_process`` (the CLI): once stopped, end the process at once with 0 (logs
    flushed) instead of returning. The interpreter's own exit would join the threads of a run
    that missed its grace (still inside a database or HTTP call) and collect every object the
    process made; on a starved machine that alone took seconds past the stop.
    """
    service = Service(
        settings=settings,
        syncs=syncs,
        max_concurrent_runs=max_concurrent_runs,
        run_fn=run_fn,
        stop=stop,
        syncs_document=syncs_document,
    )
    configure_logging(level=service.settings.log.level, fmt=service.settings.log.format)
    for sync_settings in service.syncs.values():
        register_settings_secrets(sync_settings)
    if run_fn is None:
        # The real run needs the Protime connection and the HR source: say so now, exit 2, rather
        # than fail every tick.
        for sync_settings in service.syncs.values():
            sync_settings.protime.require()
            sync_settings.hr.require()
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
