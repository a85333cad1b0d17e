"""One reconciliation run, top to bottom: lock, read HR, read Protime, gate, classify, plan,
check thresholds, apply, record.

The CLI (`idsync reconcile`) and the scheduler (`idsync serve`) both call :func:`run`; `plan`,
`apply` and `rollback` (``_review``) run through the same :func:`execute` (lock, run row, ports),
:func:`~sync.reconcile._decide.decide` and the steps of ``_steps.py`` (read, apply, snapshot,
write-back). Durability rule: every action is recorded as ``pending`` before its call, and its outcome is recorded as soon
as it completes (flushed in small batches), so a crash at any moment leaves either a finished
outcome or a pending one; the next run re-reads Protime and converges either way.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sync.domain import Plan, Rule
from sync.errors import BlockedError, ConfigError, IdsyncError, LockHeldError, UsageError
from sync.logging import bind_context, get_logger, unbind_context
from sync.protime import ProtimeClient
from sync.reconcile._apply import Tally
from sync.reconcile._decide import Inputs, decide, store_plan
from sync.reconcile._fence import FencedStop, lock_lost, record_or_raise, state_failure
from sync.reconcile._people import FULL, ProtimeRead
from sync.reconcile._plan import summarize
from sync.reconcile._ports import SettingsHRSource
from sync.reconcile._preconditions import (
    iter_preconditions,
)
from sync.reconcile._progress import ProgressSnapshot, RunProgress
from sync.reconcile._result import RunResult, RunStatus
from sync.reconcile._settled import plain
from sync.reconcile._steps import (
    StoppedReading,
    _phase,
    advance_snapshot,
    apply_step,
    finish_writes,
    keep_read,
    read_inputs,
    settle,
    settled_step,
)
from sync.state import RunRow, RunSummary, StateStore

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Coroutine, Iterator, Sequence

    from sync.config import Settings
    from sync.domain import (
        Classification,
        HRSnapshot,
        Person,
    )
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState

    Pipeline = Callable[["Job", "Ports", str], Coroutine[Any, Any, RunResult]]

log = get_logger(__name__)

# Container allocations between two young-generation collections during a run (default 700).
_GC_THRESHOLD = 10_000


@dataclass(slots=True)
class _Reached:
    """The figures a run has reached so far: kept when it fails, blocks or stops half-way."""

    client: ProtimeAPI | None = None
    hr: HRSnapshot | None = None
    people: list[Person] | None = None
    counts: dict[str, int] | None = None
    plan: Plan | None = None
    tally: Tally = field(default_factory=Tally)
    progress: RunProgress | None = None  # where the run is (run.progress, the run row, gauges)
    read: ProtimeRead | None = None  # which read of Protime the run did
    settled: RunRow | None = None  # a settled run: the run whose plan it takes


@dataclass(frozen=True, slots=True)
class Job:
    """One run as its caller asked for it, and when it started."""

    settings: Settings
    trigger: str
    dry_run: bool
    force: bool
    only: tuple[str, ...]
    retry_failed: bool
    stop: threading.Event | None
    progress: Callable[[int, int], None] | None
    plan_id: str | None = None  # an apply or rollback: the plan it runs
    full: bool = False  # read Protime in full whatever the delta feed allows (--full)
    on_progress: Callable[[ProgressSnapshot], None] | None = None
    started: float = field(default_factory=time.monotonic)
    reached: _Reached = field(default_factory=_Reached)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def result(
        self,
        run_id: str | None,
        status: RunStatus,
        *,
        message: str = "",
        client: ProtimeAPI | None = None,
        inputs: Inputs | None = None,
        plan: Plan | None = None,
        counts: dict[str, int] | None = None,
        actions: dict[str, int] | None = None,
        plan_id: str | None = None,
        would_block: tuple[str, ...] = (),
        stale: tuple[tuple[str, str], ...] = (),
        done: int = 0,
        settled: RunRow | None = None,
        records: tuple[Classification, ...] | None = None,
    ) -> RunResult:
        """The result of this job so far: whatever figures the run got to before it ended.

        Figures not passed come from :attr:`reached`, so a run that fails or stops half-way
        still reports the counts and API calls it measured. ``settled``: the run whose plan a
        settled run took (its Protime count; ``records`` are the map's unlinked rows).
        """
        reached = self.reached
        client = client or reached.client
        hr = inputs.hr if inputs is not None else reached.hr
        people = inputs.people if inputs is not None else reached.people
        plan = plan or reached.plan
        counts = counts or reached.counts
        if actions is None and reached.tally.outcomes:
            actions = dict(reached.tally.outcomes)
        read = reached.read
        settled = settled or reached.settled
        return RunResult(
            run_id=run_id,
            status=status,
            dry_run=self.dry_run,
            duration_seconds=time.monotonic() - self.started,
            counts_by_situation=counts or {},
            actions_by_outcome=actions or {},
            api_requests=_requests(client) if client is not None else {},
            retries=client.stats.retries if client is not None else 0,
            rate_per_second=client.rate_per_second if client is not None else None,
            hr_count=len(hr.employees) if hr is not None else 0,
            protime_count=(
                settled.protime_count or 0
                if settled is not None
                else len(people)
                if people is not None
                else 0
            ),
            plan=plan,
            records=records,
            settled_since=settled.id if settled is not None else None,
            message=message,
            plan_id=plan_id,
            would_block=would_block,
            stale=stale,
            done=done,
            protime_read=read.kind if read is not None else None,
            protime_read_reason=read.reason if read is not None else None,
        )


def run(
    *,
    settings: Settings,
    trigger: str = "cli",
    dry_run: bool = False,
    force: bool = False,
    full: bool = False,
    only: Sequence[str] = (),
    retry_failed: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
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
    reads Protime in full even when the people delta feed would do (``--full``).
    """
    job = Job(
        settings=settings,
        trigger=trigger,
        dry_run=dry_run,
        force=force,
        full=full,
        only=tuple(only),
        retry_failed=retry_failed,
        stop=stop,
        progress=progress,
        on_progress=on_progress,
    )
    return execute(job, _pipeline, hr=hr, state=state, protime=protime)


def execute(
    job: Job,
    pipeline: Pipeline,
    *,
    hr: HRSource | None,
    state: RunState | None,
    protime: ProtimeAPI | None,
) -> RunResult:
    """Run ``pipeline`` as one recorded run under the run lock, with the ports built."""
    with _ports(job.settings, hr=hr, state=state, protime=protime) as ports:
        try:
            with ports.state.lock(timeout=job.settings.lock_timeout_seconds) as fence:
                fenced = replace(job, stop=FencedStop(job.stop, fence))  # the lock as a fence
                with _rare_collections():
                    return _locked_run(fenced, ports, pipeline)
        except LockHeldError as exc:
            log.warning("run.skipped_locked", trigger=job.trigger, reason=str(exc))
            store = ports.state
            run_id = store.start_run(
                trigger=job.trigger,
                dry_run=job.dry_run,
                forced=job.force,
                only=job.only,
                plan_id=job.plan_id,
            )
            result = job.result(run_id, RunStatus.SKIPPED, message=f"skipped: locked ({exc})")
            store.finish_run(run_id=run_id, status=result.status, summary=_summary(result))
            return result


@dataclass(frozen=True, slots=True)
class Ports:
    hr: HRSource
    state: RunState
    protime: ProtimeAPI


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
        else StateStore.open(settings.state_url, timeout=settings.state_timeout_seconds)
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
    threshold (700 allocations) the collector ran some 750 times in a 100,000-person run, its
    full passes walking all of them again: about half a second, a tenth of the run's CPU. At
    10,000 it costs 0.3 s; 50,000 saves little more CPU but keeps more garbage cycles alive at
    the memory peak (+4 MB). The previous thresholds come back afterwards (``idsync serve``
    runs many times in one process).
    """
    before = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _locked_run(job: Job, ports: Ports, pipeline: Pipeline) -> RunResult:
    store = ports.state
    interrupted = store.mark_interrupted_runs()
    if interrupted:
        log.warning("run.found_interrupted", runs=interrupted)
    run_id = store.start_run(
        trigger=job.trigger,
        dry_run=job.dry_run,
        forced=job.force,
        only=job.only,
        plan_id=job.plan_id,
    )
    bind_context(run_id=run_id)
    adaptive = job.settings.protime.adaptive_rate
    if adaptive:
        ports.protime.resume_rate(store.learned_rate())
    log.info(
        "run.start",
        trigger=job.trigger,
        dry_run=job.dry_run,
        force=job.force,
        only=len(job.only),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    tracker = job.reached.progress = _tracker(job, store, run_id)
    try:
        result = asyncio.run(_bounded(job, ports, run_id, pipeline))
    except StoppedReading as exc:
        # Asked to stop while reading (SIGINT, SIGTERM, the lock lost): the read was cut off and
        # nothing of it kept; with nothing planned, there is nothing to record but the stop.
        result = job.result(run_id, RunStatus.INTERRUPTED, message=str(exc))
    except BlockedError as exc:
        result = job.result(run_id, RunStatus.BLOCKED, message=str(exc))
    except (ConfigError, UsageError) as exc:
        # A wrong setting or argument found mid-run (an HR column that does not exist, --only ids
        # nobody has, a write-back table gone): failed with every figure it reached, and exit 2.
        log.error("run.config_error", error=str(exc))  # noqa: TRY400 - one line, no traceback: the message says it all
        result = replace(job.result(run_id, RunStatus.FAILED, message=str(exc)), config_error=True)
    except IdsyncError as exc:
        result = job.result(run_id, RunStatus.FAILED, message=str(exc))
    except KeyboardInterrupt:
        # A second Ctrl-C (the first only sets `stop`): close the run now rather than leave it
        # `running` until the next run finds it.
        result = job.result(run_id, RunStatus.INTERRUPTED, message="interrupted (Ctrl-C)")
        store.finish_run(
            run_id=run_id, status=result.status, summary=_summary(result, adaptive=adaptive)
        )
        unbind_context("run_id")
        raise
    except Exception as exc:
        gone = state_failure(exc)
        if gone is not None:
            # The state database went away mid-run: a known trouble, one line, no traceback.
            log.error("run.state_unavailable", error=gone)  # noqa: TRY400 - one line: no traceback
            result = job.result(run_id, RunStatus.FAILED, message=gone)
        else:
            # Unknown failures are recorded by type and message only; our own messages never
            # carry secrets, and a stack trace goes to the log at error level for the operator.
            log.exception("run.crashed")
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            result = job.result(run_id, RunStatus.FAILED, message=message)
    finally:
        tracker.stop()
    record_or_raise(
        lambda: store.finish_run(
            run_id=run_id, status=result.status, summary=_summary(result, adaptive=adaptive)
        )
    )
    log.info(
        "run.finish",
        status=result.status,
        duration_seconds=round(result.duration_seconds, 3),
        message=result.message,
        situations=result.counts_by_situation,
        actions=result.actions_by_outcome,
        phase_seconds=tracker.phase_seconds(),
    )
    unbind_context("run_id")
    return result


async def _bounded(job: Job, ports: Ports, run_id: str, pipeline: Pipeline) -> RunResult:
    """``pipeline`` within ``IDSYNC_RUN_DEADLINE_SECONDS``; past it the run stops like an
    interrupt: calls in flight are cut off, known outcomes recorded, the rest left pending."""
    deadline = job.settings.run_deadline_seconds
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            return await pipeline(job, ports, run_id)
    except TimeoutError:
        if not scope.expired():
            raise
    log.warning("run.deadline", deadline_seconds=deadline)
    done = job.reached.tally.done
    planned = len(job.reached.plan.actions) if job.reached.plan is not None else 0
    where = (
        f"{planned - done} of {planned} action(s) not attempted or cut off; the next run does them"
        if planned
        else "stopped before writing"
    )
    return job.result(
        run_id,
        RunStatus.INTERRUPTED,
        message=f"run deadline of {deadline:g} s reached (IDSYNC_RUN_DEADLINE_SECONDS): {where}",
    )


async def _pipeline(job: Job, ports: Ports, run_id: str) -> RunResult:
    store = ports.state
    async with ports.protime as client:
        try:
            inputs = await read_inputs(job, ports, client, settle_as=run_id if plain(job) else None)
            if inputs.settled is not None:
                return await settled_step(job, ports, run_id, inputs, client)
            _phase(job, "planning")
            decision = await asyncio.to_thread(decide, job, inputs, store)
            the_plan = decision.plan
            counts = summarize(the_plan)
            job.reached.plan, job.reached.counts = the_plan, counts
            if decision.would_block and not job.force:
                await keep_read(job, ports, run_id, inputs, doubted=decision.gate_blocked)
                # Blocked before any write. The plan is stored for review and approval (not on
                # a dry run: `idsync plan` stores one), with the figures the run reached.
                message = "blocked before any write: " + "; ".join(
                    line.rstrip(".") for line in decision.would_block
                )
                plan_id = None
                if job.dry_run:
                    message += ". Store this plan for review and approval with `idsync plan`."
                else:
                    header = await asyncio.to_thread(
                        partial(
                            store_plan,
                            settings=job.settings,
                            store=store,
                            run_id=run_id,
                            decision=decision,
                            inputs=inputs,
                        )
                    )
                    plan_id = header.id
                    short = plan_id[:8]
                    if decision.gate_blocked:
                        message += (
                            f". The plan is stored for review (`idsync plan show {short}`); the"
                            " input gate blocks `idsync apply` too."
                        )
                    else:
                        message += (
                            f". The plan is stored: review it with `idsync plan show {short}`,"
                            f" approve it with `idsync apply {short}`."
                        )
                return job.result(
                    run_id,
                    RunStatus.BLOCKED,
                    message=message,
                    plan=the_plan,
                    counts=counts,
                    actions=_planned(the_plan),
                    plan_id=plan_id,
                    would_block=decision.would_block,
                    client=client,
                    inputs=inputs,
                )
            if job.dry_run:
                return job.result(
                    run_id,
                    RunStatus.SUCCEEDED,
                    plan=the_plan,
                    counts=counts,
                    actions=_planned(the_plan),
                    would_block=decision.would_block,
                    client=client,
                    inputs=inputs,
                )
            if job.stopping:
                # Asked to stop while planning (a stop while reading cut the read off already:
                # StoppedReading): leave before the first write, map untouched, the full read
                # kept. Also with nothing to write: a stop request ends the run `interrupted`
                # in every phase, and the map is saved by the next run.
                await keep_read(job, ports, run_id, inputs, doubted=False)
                return job.result(
                    run_id,
                    RunStatus.INTERRUPTED,
                    message=f"stopped before writing ({lock_lost(job.stop) or 'shutdown requested'})",
                    plan=the_plan,
                    counts=counts,
                    client=client,
                    inputs=inputs,
                )
            # A full run classifies every key there is, so rows it did not classify (an HR id
            # that left and holds nothing in Protime, the <row N> key of a blank id that moved)
            # are stale and go; admins' links and ignores stay. --only runs leave the map be.
            _phase(job, "saving", total=len(the_plan.classifications))
            own_rows = await asyncio.to_thread(
                store.save_classifications,
                run_id=run_id,
                classifications=the_plan.classifications,
                now=datetime.now(UTC),
                prune=not job.only,
                # Read from the snapshot and the delta: rows are not re-verified against Protime,
                # and only those that changed are written.
                verified=job.reached.read is None or job.reached.read.kind == FULL,
            )
            tally = await apply_step(
                job=job,
                ports=ports,
                client=client,
                run_id=run_id,
                actions=the_plan.actions,
                preconditions=iter_preconditions(the_plan, inputs.hr),
            )
            await advance_snapshot(job, ports, run_id, inputs, tally)
        finally:
            unbind_context("hr_id")
    status, message = await finish_writes(job, ports, tally, total=len(the_plan.actions))
    if (
        status is RunStatus.SUCCEEDED
        and plain(job)
        and not the_plan.actions
        and not decision.would_block
        and own_rows
    ):
        await settle(job, ports, run_id, inputs)
    return job.result(
        run_id,
        status,
        message=message,
        plan=the_plan,
        counts=counts,
        actions=dict(tally.outcomes),
        client=client,
        inputs=inputs,
    )


def _planned(the_plan: Plan) -> dict[str, int]:
    return dict(Counter(f"{a.kind}:planned" for a in the_plan.actions))


def _tracker(job: Job, store: RunState, run_id: str) -> RunProgress:
    """The run's progress, reported to the log, its run row and the caller, on a clock."""

    def save(snapshot: ProgressSnapshot) -> None:
        try:
            store.set_progress(run_id=run_id, progress=snapshot.as_dict())
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


def _requests(client: ProtimeAPI) -> dict[str, int]:
    return {f"{kind}:{status or 'error'}": n for (kind, status), n in client.stats.requests.items()}


def _summary(result: RunResult, *, adaptive: bool = False) -> RunSummary:
    by_kind: dict[str, dict[str, int]] = {}
    for key, n in result.actions_by_outcome.items():
        kind, _, outcome = key.partition(":")
        by_kind.setdefault(kind, {})[outcome] = n
    return RunSummary(
        hr_count=result.hr_count,
        protime_count=result.protime_count,
        counts_by_situation=result.counts_by_situation,
        actions_by_outcome=by_kind,
        api_calls=result.api_requests,
        duration_seconds=result.duration_seconds,
        error=result.message or None,
        # Only what "auto" learned is kept: a fixed rate says nothing about Protime's limit.
        rate_per_second=result.rate_per_second if adaptive else None,
        protime_read=result.protime_read,
        protime_read_reason=result.protime_read_reason,
    )
