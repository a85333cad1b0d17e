"""One run, top to bottom: lock, run row, read, decide, execute, record.

Every run takes this one flow: :func:`run` (``idsync reconcile``, the scheduler) and ``plan``,
``apply`` and ``rollback`` (``_review.py``) build a :class:`~sync.reconcile._job.Job` and call
:func:`execute`:

1. **frame** (:func:`execute`): ports, the run lock, the run row, the deadline, the progress
   ticker; every ending (a status, an exception, a stop) is recorded on the run row.
2. **read** (``_steps.read_inputs``): HR, Protime (in full or the delta) and the prior state.
3. **decide** (``_decide.py``, pure): one :data:`~sync.reconcile._decide.Decision`.
4. **execute** (``_execute.py``): carry out that decision exactly.
5. **record** (``_report.py``): the result, from how the executor ended and the ledger.

Durability rule: every action is recorded as ``pending`` before its call, and its outcome as soon
as it completes (flushed in small batches), so a crash at any moment leaves either a finished
outcome or a pending one; the next run re-reads Protime and converges either way.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sync.domain import Rule
from sync.errors import (
    BlockedError,
    ConfigError,
    IdsyncError,
    LockHeldError,
    ProtimeBackoffError,
    UsageError,
)
from sync.logging import bind_context, get_logger, unbind_context
from sync.protime import ProtimeClient
from sync.reconcile._decide import (
    ApplyStored,
    Settled,
    classify_inputs,
    decide,
    decide_stored,
    drifted_ids,
)
from sync.reconcile._execute import Executor
from sync.reconcile._fence import FencedStop, record_or_raise, state_failure
from sync.reconcile._job import Job, Ledger, Ports
from sync.reconcile._ports import SettingsHRSource
from sync.reconcile._preconditions import settings_digest
from sync.reconcile._progress import ProgressSnapshot, RunProgress
from sync.reconcile._report import Ended, report, summary
from sync.reconcile._steps import StoppedReading, read_inputs
from sync.state import StateStore
from sync.status import RunStatus, Trigger

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator, Sequence

    from sync.config import Settings
    from sync.reconcile._decide import Decision
    from sync.reconcile._job import Inputs
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState
    from sync.reconcile._result import RunResult
    from sync.state import PlanRow

log = get_logger(__name__)

# Container allocations between two young-generation collections during a run (default 700).
_GC_THRESHOLD = 10_000


def run(
    *,
    settings: Settings,
    trigger: str = Trigger.CLI,
    dry_run: bool = False,
    force: bool = False,
    full: bool = False,
    only: Sequence[str] = (),
    retry_failed: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
    due_at: datetime | None = None,
    hr: HRSource | None = None,
    state: RunState | None = None,
    protime: ProtimeAPI | None = None,
) -> RunResult:
    """Reconcile once. Never raises for a run-level problem: the result carries the status.

    Configuration errors (missing Protime settings, schema behind) do raise: they are the
    caller's to report with exit code 2 before any work. ``stop`` set while reading cuts the read
    off and ends the run ``interrupted`` with nothing kept (the next run reads again); set while
    writing, after the calls in flight, the rest unattempted. ``hr``, ``state`` and
    ``protime`` are the run's ports (see ``_ports``), built from ``settings`` when not given; a
    given ``protime`` client is used for this one run and closed with it. ``on_progress`` gets
    the run's progress at each phase and every ``IDSYNC_LOG__PROGRESS_SECONDS`` (the service's
    gauges); ``progress`` gets (done, total) after every write (the terminal's bar). ``full``
    reads Protime in full even when the people delta feed would do (``--full``). ``due_at``
    (``idsync serve``): the tick this run serves; a run of the sync that started since (another
    replica's) ends this one ``skipped`` once it holds the lock, before it does anything.
    """
    job = Job(
        settings=settings,
        trigger=Trigger(trigger),
        dry_run=dry_run,
        force=force,
        full=full,
        only=tuple(only),
        retry_failed=retry_failed,
        stop=stop,
        progress=progress,
        on_progress=on_progress,
        due_at=due_at,
    )
    return execute(job, hr=hr, state=state, protime=protime)


def execute(
    job: Job,
    *,
    hr: HRSource | None,
    state: RunState | None,
    protime: ProtimeAPI | None,
) -> RunResult:
    """Run ``job`` as one recorded run under the run lock, with the ports built."""
    with _ports(job.settings, hr=hr, state=state, protime=protime) as ports:
        try:
            with ports.state.lock(timeout=job.settings.lock_timeout_seconds) as fence:
                fenced = replace(job, stop=FencedStop(job.stop, fence))  # the lock as a fence
                done = _done_since_due(job, ports.state)
                if done is not None:
                    return _skipped(job, ports.state, done)
                with _rare_collections():
                    return _locked_run(fenced, ports)
        except LockHeldError as exc:
            log.warning("run.skipped_locked", trigger=job.trigger, reason=str(exc))
            return _skipped(job, ports.state, f"skipped: locked ({exc})")


def _done_since_due(job: Job, store: RunState) -> str | None:
    """Why a scheduled run has nothing to do: its sync ran since the tick (held under the lock,
    so no other run can start meanwhile); None when it has its tick to serve."""
    if job.due_at is None:
        return None
    started = store.runs.last_work_started()
    if started is None or started < job.due_at:
        return None
    log.info("run.already_run", due_at=job.due_at.isoformat(), started_at=started.isoformat())
    return f"skipped: a run of this sync started at {started.isoformat()}, after its tick"


def _skipped(job: Job, store: RunState, message: str) -> RunResult:
    """A run that did nothing, recorded as ``skipped`` with why."""
    run_id = _start_run(job, store)
    result = report(job, run_id, Ledger(), Ended(RunStatus.SKIPPED, message=message))
    store.runs.finish_run(run_id=run_id, status=result.status, summary=summary(result))
    return result


def _start_run(job: Job, store: RunState) -> str:
    return store.runs.start_run(
        trigger=job.trigger,
        dry_run=job.dry_run,
        forced=job.force,
        only=job.only,
        plan_id=job.plan_id,
    )


@contextmanager
def _ports(
    settings: Settings,
    *,
    hr: HRSource | None,
    state: RunState | None,
    protime: ProtimeAPI | None,
) -> Iterator[Ports]:
    """The given ports, and the settings' defaults for the others (closed afterwards)."""
    if protime is None:
        settings.protime.require()
    source = hr if hr is not None else SettingsHRSource(settings)
    store = (
        state
        if state is not None
        else StateStore.open(
            settings.state_url, sync=settings.sync_name, timeout=settings.state_timeout_seconds
        )
    )
    try:
        client = protime
        if client is None:
            client = ProtimeClient(settings.protime, read_email=Rule.EMAIL in settings.match.rules)
        yield Ports(hr=source, state=store, protime=client)
    finally:
        if state is None:
            store.close()


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Let the cyclic garbage collector run rarely while a run builds its objects.

    A run's snapshots, classifications and plan live until it ends, yet with the default
    threshold (700 allocations) the collector ran hundreds of times in a 100,000-person run, its
    full passes walking all of them again. A higher threshold keeps most of that CPU without
    keeping many more garbage cycles alive at the memory peak (docs/benchmarks.md). The previous
    thresholds come back afterwards (``idsync serve`` runs many times in one process).
    """
    before = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _locked_run(job: Job, ports: Ports) -> RunResult:
    store = ports.state
    interrupted = store.runs.mark_interrupted_runs()
    if interrupted:
        log.warning("run.found_interrupted", runs=interrupted)
    run_id = _start_run(job, store)
    bind_context(run_id=run_id, sync=job.settings.sync_name)
    # The rate "auto" learned lives in the run table: recalled when the client opens, left on
    # this run's row when it closes.
    ports.protime.keep_rate_in(store.runs.rate_memory(run_id))
    log.info(
        "run.start",
        trigger=job.trigger,
        dry_run=job.dry_run,
        force=job.force,
        only=len(job.only),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    ledger = Ledger(progress=_tracker(job, store, run_id))
    try:
        ended = asyncio.run(_bounded(job, ports, ledger, run_id))
    except KeyboardInterrupt:
        # A second Ctrl-C (the first only sets `stop`): close the run now rather than leave it
        # `running` until the next run finds it.
        result = report(job, run_id, ledger, Ended(RunStatus.INTERRUPTED, "interrupted (Ctrl-C)"))
        store.runs.finish_run(run_id=run_id, status=result.status, summary=summary(result))
        unbind_context("run_id", "sync")
        raise
    except Exception as exc:
        ended = _failed(exc)
    finally:
        assert ledger.progress is not None
        ledger.progress.stop()
    result = report(job, run_id, ledger, ended)
    record_or_raise(
        lambda: store.runs.finish_run(run_id=run_id, status=result.status, summary=summary(result))
    )
    log.info(
        "run.finish",
        status=result.status,
        duration_seconds=round(result.duration_seconds, 3),
        message=result.message,
        situations=result.counts_by_situation,
        actions=result.actions_by_outcome,
        phase_seconds=ledger.progress.phase_seconds(),
    )
    unbind_context("run_id", "sync")
    return result


def _failed(exc: Exception) -> Ended:
    """How a run that raised ends: each known trouble with its status and one line."""
    if isinstance(exc, StoppedReading):
        # Asked to stop while reading (SIGINT, SIGTERM, the lock lost): the read was cut off and
        # nothing of it kept; with nothing planned, there is nothing to record but the stop.
        return Ended(RunStatus.INTERRUPTED, message=str(exc))
    if isinstance(exc, ProtimeBackoffError):
        # Protime asked to be called again hours from now (while reading): stop, say when.
        log.warning("run.protime_backoff", retry_at=exc.retry_at.isoformat(), error=str(exc))
        return Ended(RunStatus.INTERRUPTED, message=str(exc), retry_at=exc.retry_at)
    if isinstance(exc, BlockedError):
        return Ended(RunStatus.BLOCKED, message=str(exc))
    if isinstance(exc, ConfigError | UsageError):
        # A wrong setting or argument found mid-run (an HR column that does not exist, --only ids
        # nobody has, a write-back table gone): failed with every figure it reached, and exit 2.
        log.error("run.config_error", error=str(exc))
        return Ended(RunStatus.FAILED, message=str(exc), config_error=True)
    if isinstance(exc, IdsyncError):
        return Ended(RunStatus.FAILED, message=str(exc))
    gone = state_failure(exc)
    if gone is not None:
        # The state database went away mid-run: a known trouble, one line, no traceback.
        log.error("run.state_unavailable", error=gone)
        return Ended(RunStatus.FAILED, message=gone)
    # Unknown failures are recorded by type and message only; our own messages never carry
    # secrets, and a stack trace goes to the log at error level for the operator.
    log.error("run.crashed", exc_info=exc)
    return Ended(RunStatus.FAILED, message=f"unexpected error: {type(exc).__name__}: {exc}")


async def _bounded(job: Job, ports: Ports, ledger: Ledger, run_id: str) -> Ended:
    """The run's flow within ``IDSYNC_RUN_DEADLINE_SECONDS``; past it the run stops like an
    interrupt: calls in flight are cut off, known outcomes recorded, the rest left pending."""
    deadline = job.settings.run_deadline_seconds
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            return await _flow(job, ports, ledger, run_id)
    except TimeoutError:
        if not scope.expired():
            raise
    log.warning("run.deadline", deadline_seconds=deadline)
    done = ledger.tally.done
    planned = len(ledger.plan.actions) if ledger.plan is not None else 0
    where = (
        f"{planned - done} of {planned} action(s) not attempted or cut off; the next run does them"
        if planned
        else "stopped before writing"
    )
    return Ended(
        RunStatus.INTERRUPTED,
        message=f"run deadline of {deadline:g} s reached (IDSYNC_RUN_DEADLINE_SECONDS): {where}",
    )


async def _flow(job: Job, ports: Ports, ledger: Ledger, run_id: str) -> Ended:
    """Check, read, decide, execute: the same lines for every kind of run."""
    # The preflight, before anything is read or written: a wrong HR setting ends the run here
    # (HRConfigError naming it, exit 2), the same check `idsync config check` shows.
    for warning in await asyncio.to_thread(ports.hr.check):
        log.warning(warning.warning, check=warning.name, detail=warning.detail)
    if job.plan_id is not None:
        header = await asyncio.to_thread(ports.state.plans.plan, job.plan_id)
        refused = refusal(job.settings, header, job.plan_id)
        if refused is not None:
            return Ended(RunStatus.BLOCKED, message=refused, plan_id=job.plan_id)
    async with ports.protime as client:
        try:
            settle_as = run_id if job.plain else None
            inputs = await read_inputs(job, ports, ledger, client, settle_as=settle_as)
            if inputs.settled is None and job.plan_id is None and job.trigger is not Trigger.PLAN:
                ledger.phase("planning")
            decision = await asyncio.to_thread(_decide, job, ports.state, ledger, inputs)
            execute_decision = Executor(
                job=job, ports=ports, ledger=ledger, run_id=run_id, client=client
            )
            return await execute_decision(decision, inputs)
        finally:
            unbind_context("hr_id")


def _decide(job: Job, store: RunState, ledger: Ledger, inputs: Inputs) -> Decision:
    """The decide step, with the one read a decision needs besides the run's read (a stored
    plan's actions; what idsync last wrote for drifted records), timed for the run log."""
    if inputs.settled is not None:
        return Settled(since=inputs.settled)
    if job.plan_id is not None:
        return decide_stored(job, inputs, list(store.plans.iter_plan_actions(job.plan_id)))
    cpu = time.process_time()
    classified = classify_inputs(job, inputs)
    drifted = drifted_ids(classified)
    decision = decide(job, inputs, classified, store.map.written(drifted) if drifted else {})
    assert not isinstance(decision, Settled | ApplyStored)  # a reconcile's or a plan's
    the_plan = decision.plan
    assert the_plan is not None  # which carries its plan
    # Known before it is carried out: a run that fails from here still reports its plan.
    ledger.plan = the_plan
    log.info(
        "run.planned",
        actions=len(the_plan.actions),
        would_block=len(decision.would_block),
        planning_cpu_seconds=round(time.process_time() - cpu, 3),
    )
    return decision


def refusal(settings: Settings, header: PlanRow | None, plan_id: str) -> str | None:
    """Why a stored plan may not be applied: unknown, too old, or made under other settings."""
    if header is None:
        return f"no plan {plan_id} in the state database"
    ttl = settings.safety.plan_ttl_hours
    age = datetime.now(UTC) - header.created_at
    if age > timedelta(hours=ttl):
        hours = age.total_seconds() / 3600
        return (
            f"plan {plan_id[:8]} is {hours:.1f} hours old, older than"
            f" IDSYNC_SAFETY__PLAN_TTL_HOURS={ttl:g}: make a new one with `idsync plan`"
        )
    if header.kind == "reconcile" and header.settings_digest != settings_digest(settings):
        return (
            f"plan {plan_id[:8]} was made under other settings (tenant, reference, rules,"
            " reactions or HR source changed): make a new one with `idsync plan`"
        )
    return None


def _tracker(job: Job, store: RunState, run_id: str) -> RunProgress:
    """The run's progress, reported to the log, its run row and the caller, on a clock."""

    def save(snapshot: ProgressSnapshot) -> None:
        try:
            store.runs.set_progress(run_id=run_id, progress=snapshot.as_dict())
        except Exception as exc:  # a busy or lost state database must not stop the run
            log.warning("run.progress_not_saved", run_id=run_id, error=type(exc).__name__)

    sinks = [save] if job.on_progress is None else [save, job.on_progress]
    tracker = RunProgress(run_id=run_id, interval=job.settings.log.progress_seconds, sinks=sinks)
    tracker.start(log=_log_progress)
    return tracker


def _log_progress(snapshot: ProgressSnapshot) -> None:
    # The ticker thread does not see the run's bound context: the run id goes explicitly.
    log.info(
        "run.progress",
        run_id=snapshot.run_id,
        phase=snapshot.phase,
        done=snapshot.done,
        total=snapshot.total,
        rate_per_second=snapshot.rate_per_second,
        eta_seconds=snapshot.eta_seconds,
        elapsed_seconds=snapshot.elapsed_seconds,
    )
