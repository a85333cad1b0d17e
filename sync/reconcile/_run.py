"""One reconciliation run, top to bottom: lock, read HR, read Protime, gate, classify, plan,
check thresholds, apply, record.

The CLI (`idsync reconcile`) and the scheduler (`idsync serve`) both call :func:`run`. Durability
rule: every action is recorded as ``pending`` before its call, and its outcome is recorded as soon
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync.domain import Action, ActionKind, Outcome, Plan, Rule
from sync.errors import (
    BlockedError,
    IdsyncError,
    LockHeldError,
    ProtimeAuthError,
    ProtimeError,
)
from sync.hr import read_hr, write_back
from sync.logging import bind_context, get_logger, unbind_context
from sync.protime import Backoff, ProtimeClient
from sync.reconcile._classify import classify
from sync.reconcile._gates import check_input_gate, check_thresholds
from sync.reconcile._plan import plan as make_plan
from sync.reconcile._plan import summarize
from sync.reconcile._result import RunResult, RunStatus
from sync.state import (
    ActionOutcome,
    RunSummary,
    StateStore,
    check_schema,
    create_state_engine,
    run_lock,
)

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator, Sequence

    import httpx

    from sync.config import Settings
    from sync.domain import HRSnapshot, Person, PriorState

log = get_logger(__name__)

# Container allocations between two young-generation collections during a run (default 700).
_GC_THRESHOLD = 10_000
# Outcomes are flushed to the state database in batches this large, or this often, whichever
# comes first: per-outcome commits would cap a 10,000-write initial sync at the disk's fsync rate.
_FLUSH_EVERY = 200
_FLUSH_SECONDS = 0.5


@dataclass(slots=True)
class _Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    fatal: str | None = None
    done: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    """One run as its caller asked for it, and when it started."""

    settings: Settings
    trigger: str
    dry_run: bool
    force: bool
    only: tuple[str, ...]
    retry_failed: bool
    transport: httpx.AsyncBaseTransport | None
    stop: threading.Event | None
    progress: Callable[[int, int], None] | None
    backoff: Backoff | None
    started: float = field(default_factory=time.monotonic)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def result(
        self,
        run_id: str | None,
        status: RunStatus,
        *,
        message: str = "",
        client: ProtimeClient | None = None,
        hr: HRSnapshot | None = None,
        people: Sequence[Person] | None = None,
        plan: Plan | None = None,
        counts: dict[str, int] | None = None,
        actions: dict[str, int] | None = None,
    ) -> RunResult:
        """The result of this job so far: whatever figures the run got to before it ended."""
        return RunResult(
            run_id=run_id,
            status=status,
            dry_run=self.dry_run,
            duration_seconds=time.monotonic() - self.started,
            counts_by_situation=counts or {},
            actions_by_outcome=actions or {},
            api_requests=_requests(client) if client is not None else {},
            retries=client.stats.retries if client is not None else 0,
            hr_count=len(hr.employees) if hr is not None else 0,
            protime_count=len(people) if people is not None else 0,
            plan=plan,
            message=message,
        )


def run(
    *,
    settings: Settings,
    trigger: str = "cli",
    dry_run: bool = False,
    force: bool = False,
    only: Sequence[str] = (),
    retry_failed: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    backoff: Backoff | None = None,
) -> RunResult:
    """Reconcile once. Never raises for a run-level problem: the result carries the status.

    Configuration errors (missing Protime settings, schema behind) do raise: they are the
    caller's to report with exit code 2 before any work. ``stop`` set while writing ends the run
    ``interrupted`` after the calls in flight; the rest stays unattempted. ``backoff`` shapes the
    waits between retries (tests shorten them; ``Retry-After`` stays a floor).
    """
    settings.protime.require()
    settings.hr.require()
    job = _Job(
        settings=settings,
        trigger=trigger,
        dry_run=dry_run,
        force=force,
        only=tuple(only),
        retry_failed=retry_failed,
        transport=transport,
        stop=stop,
        progress=progress,
        backoff=backoff,
    )
    engine = create_state_engine(settings.state_url)
    try:
        check_schema(engine)
        store = StateStore(engine)
        try:
            with run_lock(engine, timeout=settings.lock_timeout_seconds), _rare_collections():
                return _locked_run(job, store)
        except LockHeldError as exc:
            log.warning("run.skipped_locked", trigger=trigger, reason=str(exc))
            run_id = store.start_run(trigger=trigger, dry_run=dry_run, forced=force, only=only)
            result = job.result(run_id, RunStatus.SKIPPED, message=f"skipped: locked ({exc})")
            store.finish_run(run_id=run_id, status=result.status, summary=_summary(result))
            return result
    finally:
        engine.dispose()


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


def _locked_run(job: _Job, store: StateStore) -> RunResult:
    interrupted = store.mark_interrupted_runs()
    if interrupted:
        log.warning("run.found_interrupted", runs=interrupted)
    run_id = store.start_run(
        trigger=job.trigger, dry_run=job.dry_run, forced=job.force, only=job.only
    )
    bind_context(run_id=run_id)
    log.info(
        "run.start",
        trigger=job.trigger,
        dry_run=job.dry_run,
        force=job.force,
        only=len(job.only),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    try:
        result = asyncio.run(_pipeline(job, store, run_id))
    except BlockedError as exc:
        result = job.result(run_id, RunStatus.BLOCKED, message=str(exc))
    except IdsyncError as exc:
        result = job.result(run_id, RunStatus.FAILED, message=str(exc))
    except KeyboardInterrupt:
        # A second Ctrl-C (the first only sets `stop`): close the run now rather than leave it
        # `running` until the next run finds it.
        result = job.result(run_id, RunStatus.INTERRUPTED, message="interrupted (Ctrl-C)")
        store.finish_run(run_id=run_id, status=result.status, summary=_summary(result))
        unbind_context("run_id")
        raise
    except Exception as exc:
        # Unknown failures are recorded by type and message only; our own messages never carry
        # secrets, and a stack trace goes to the log at error level for the operator.
        log.exception("run.crashed")
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        result = job.result(run_id, RunStatus.FAILED, message=message)
    store.finish_run(run_id=run_id, status=result.status, summary=_summary(result))
    log.info(
        "run.finish",
        status=result.status,
        duration_seconds=round(result.duration_seconds, 3),
        message=result.message,
        situations=result.counts_by_situation,
        actions=result.actions_by_outcome,
    )
    unbind_context("run_id")
    return result


async def _pipeline(job: _Job, store: StateStore, run_id: str) -> RunResult:
    settings = job.settings
    async with ProtimeClient(
        settings.protime,
        transport=job.transport,
        backoff=job.backoff,
        read_email=Rule.EMAIL in settings.match.rules,
    ) as client:
        try:
            # The HR read and the state read run on worker threads while the event loop pages
            # through Protime: at 100,000 people the three reads overlap instead of adding up.
            hr_read = asyncio.create_task(
                asyncio.to_thread(
                    read_hr,
                    settings=settings.hr,
                    url=settings.hr_url,
                    max_value_length=settings.protime.max_value_length,
                )
            )
            prior_read = asyncio.create_task(asyncio.to_thread(store.load_prior))
            try:
                people = await client.read_people()
            finally:
                hr, prior = await asyncio.gather(hr_read, prior_read)
            log.info("run.hr_read", employees=len(hr.employees), invalid=len(hr.invalid))
            log.info("run.protime_read", people=len(people))
            try:
                the_plan = _decide(job, hr=hr, people=people, prior=prior)
            except BlockedError as exc:
                # Blocked before any write; the snapshot sizes go with it, for the operator (and
                # the runs table) to see what the gate saw.
                return job.result(
                    run_id, RunStatus.BLOCKED, message=str(exc), client=client, hr=hr, people=people
                )
            counts = summarize(the_plan)
            if job.dry_run:
                planned = dict(Counter(f"{a.kind}:planned" for a in the_plan.actions))
                return job.result(
                    run_id,
                    RunStatus.SUCCEEDED,
                    plan=the_plan,
                    counts=counts,
                    actions=planned,
                    client=client,
                    hr=hr,
                    people=people,
                )
            if job.stopping and the_plan.actions:
                # Asked to stop while reading: leave before the first write, map untouched.
                # (With nothing to write the run simply finishes: it is as good as done.)
                return job.result(
                    run_id,
                    RunStatus.INTERRUPTED,
                    message="stopped before writing (shutdown requested)",
                    plan=the_plan,
                    counts=counts,
                    client=client,
                    hr=hr,
                    people=people,
                )
            # A full run classifies every key there is, so rows it did not classify (an HR id
            # that left and holds nothing in Protime, the <row N> key of a blank id that moved)
            # are stale and go; admins' links and ignores stay. --only runs leave the map be.
            await asyncio.to_thread(
                store.save_classifications,
                run_id=run_id,
                classifications=the_plan.classifications,
                now=datetime.now(UTC),
                prune=not job.only,
            )
            tally = await _apply(
                client=client,
                store=store,
                run_id=run_id,
                actions=the_plan.actions,
                concurrency=settings.protime.concurrency,
                stop=job.stop,
                progress=job.progress,
            )
        finally:
            unbind_context("hr_id")
    if settings.hr.writeback_enabled:
        await asyncio.to_thread(_write_back, settings=settings, store=store)
    status = _status(tally=tally, stop=job.stop, total=len(the_plan.actions))
    message = tally.fatal or ""
    if status is RunStatus.INTERRUPTED:
        left = len(the_plan.actions) - tally.done
        message = (
            f"stopped on request: {left} of {len(the_plan.actions)} action(s) not attempted;"
            " the next run does them"
        )
    return job.result(
        run_id,
        status,
        message=message,
        plan=the_plan,
        counts=counts,
        actions=dict(tally.outcomes),
        client=client,
        hr=hr,
        people=people,
    )


def _decide(job: _Job, *, hr: HRSnapshot, people: Sequence[Person], prior: PriorState) -> Plan:
    """The pure part: gate, classify, plan, thresholds. No I/O, timed for the run log."""
    settings = job.settings
    cpu = time.process_time()
    if not job.force:
        check_input_gate(
            hr_count=len(hr.employees),
            protime_count=len(people),
            prior=prior,
            safety=settings.safety,
        )
    name = settings.protime.reference_name
    classifications = classify(
        hr=hr,
        people=people,
        prior=prior,
        rules=settings.match.rules,
        reference_name=name,
        normalize=settings.match.normalizers(),
    )
    the_plan = make_plan(
        classifications=classifications,
        reactions=settings.reactions,
        prior=prior,
        retry_failed=job.retry_failed,
        only=set(job.only) if job.only else None,
        reference_name=name,
    )
    if not job.force:
        check_thresholds(plan=the_plan, safety=settings.safety)
    log.info(
        "run.planned",
        actions=len(the_plan.actions),
        planning_cpu_seconds=round(time.process_time() - cpu, 3),
    )
    return the_plan


def _status(*, tally: _Tally, stop: threading.Event | None, total: int) -> RunStatus:
    if tally.fatal is not None:
        return RunStatus.FAILED
    if stop is not None and stop.is_set() and tally.done < total:
        return RunStatus.INTERRUPTED
    failed = sum(n for key, n in tally.outcomes.items() if not key.endswith(":succeeded"))
    return RunStatus.PARTIAL if failed else RunStatus.SUCCEEDED


async def _apply(
    *,
    client: ProtimeClient,
    store: StateStore,
    run_id: str,
    actions: Sequence[Action],
    concurrency: int,
    stop: threading.Event | None,
    progress: Callable[[int, int], None] | None,
) -> _Tally:
    """Run the actions phase by phase, concurrently within a phase, recording each outcome."""
    if not actions:
        return _Tally()
    event_ids = await asyncio.to_thread(store.record_pending, run_id=run_id, actions=actions)
    applier = _Applier(client=client, recorder=_Recorder(store), stop=stop, progress=progress)
    applier.total = len(actions)
    by_phase: dict[int, list[tuple[int, Action]]] = {}
    for event_id, action in zip(event_ids, actions, strict=True):
        by_phase.setdefault(action.phase, []).append((event_id, action))
    try:
        for phase in sorted(by_phase):
            queue = iter(by_phase[phase])
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, len(by_phase[phase]))):
                    group.create_task(applier.worker(queue))
    finally:
        await applier.recorder.close()
    return applier.tally


class _Applier:
    """Workers that take actions from a shared iterator, call Protime and record outcomes.

    A phase of 100,000 actions costs ``concurrency`` coroutines, not 100,000 tasks, and a stop
    request is seen before each new call.
    """

    def __init__(
        self,
        *,
        client: ProtimeClient,
        recorder: _Recorder,
        stop: threading.Event | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.stop = stop
        self.progress = progress
        self.tally = _Tally()
        self.total = 0
        # Records whose step did not succeed: their later steps, and the actions that depend on
        # them (a person they were to free), are skipped instead of failing or clobbering.
        self.unsettled: set[str] = set()

    async def worker(self, queue: Iterator[tuple[int, Action]]) -> None:
        for event_id, action in queue:
            if self.stop is not None and self.stop.is_set():
                # Shutdown: finish what is in flight, attempt nothing new. The events not
                # attempted stay pending until finish_run closes them as skipped.
                return
            outcome = await self._one(event_id, action)
            if outcome.outcome is not Outcome.SUCCEEDED:
                self.unsettled.add(action.hr_id)
            self.tally.outcomes[f"{action.kind}:{outcome.outcome}"] += 1
            self.tally.done += 1
            await self.recorder.add(outcome)
            if self.progress is not None:
                self.progress(self.tally.done, self.total)

    async def _one(self, event_id: int, action: Action) -> ActionOutcome:
        skip_reason = self._skip_reason(action)
        if skip_reason is not None:
            return ActionOutcome(
                event_id=event_id, action=action, outcome=Outcome.SKIPPED, error=skip_reason
            )
        bind_context(hr_id=action.hr_id)
        try:
            outcome = await _call(client=self.client, event_id=event_id, action=action)
        except ProtimeAuthError as exc:
            # Credentials or scopes are wrong for every call alike: stop instead of failing
            # thousands of records one by one.
            self.tally.fatal = str(exc)
            return ActionOutcome(
                event_id=event_id,
                action=action,
                outcome=Outcome.RETRIABLE,
                http_status=exc.status,
                error=str(exc),
            )
        if outcome.outcome is not Outcome.SUCCEEDED:
            log.warning(
                "write.not_done",
                action=str(action.kind),
                outcome=str(outcome.outcome),
                status=outcome.http_status,
                error=outcome.error,
            )
        return outcome

    def _skip_reason(self, action: Action) -> str | None:
        if self.tally.fatal is not None:
            return "run stopped by an earlier fatal error"
        if action.hr_id in self.unsettled:
            return "an earlier step of this record did not succeed"
        if action.depends_on is not None and action.depends_on in self.unsettled:
            return f"waits for {action.depends_on}, whose step did not succeed"
        return None


async def _call(*, client: ProtimeClient, event_id: int, action: Action) -> ActionOutcome:
    """One API call; maps its result to an outcome. Auth failures propagate (fatal)."""
    try:
        if action.kind is ActionKind.WRITE:
            created = await client.put_reference(value=action.value, protime_id=action.protime_id)
            status = 201 if created else 200
        else:
            existed = await client.delete_reference(value=action.value)
            status = 204 if existed else 404
    except ProtimeAuthError:
        raise
    except ProtimeError as exc:
        # 409 means Protime's view moved under us (the person already holds another value):
        # a later run re-reads and re-plans, so it is never a permanent failure.
        retriable = exc.retriable or exc.status == 409  # noqa: PLR2004 - HTTP 409 Conflict
        return ActionOutcome(
            event_id=event_id,
            action=action,
            outcome=Outcome.RETRIABLE if retriable else Outcome.FAILED,
            http_status=exc.status,
            error=str(exc),
        )
    return ActionOutcome(
        event_id=event_id, action=action, outcome=Outcome.SUCCEEDED, http_status=status
    )


class _Recorder:
    """Buffers outcomes and writes them in batches on a worker thread, in completion order."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._buffer: list[ActionOutcome] = []
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()

    async def add(self, outcome: ActionOutcome) -> None:
        self._buffer.append(outcome)
        due = time.monotonic() - self._last_flush >= _FLUSH_SECONDS
        if len(self._buffer) >= _FLUSH_EVERY or due:
            await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            if batch:
                await asyncio.to_thread(self._store.record_outcomes, batch)

    async def close(self) -> None:
        await self._flush()


def _write_back(*, settings: Settings, store: StateStore) -> None:
    pairs = {
        row.hr_id: row.protime_id
        for row in store.iter_mappings()
        if row.situation == "linked" and row.protime_id is not None
    }
    changed = write_back(settings=settings.hr, url=settings.hr_url, pairs=pairs)
    log.info("run.write_back", rows_changed=changed)


def _requests(client: ProtimeClient) -> dict[str, int]:
    return {f"{kind}:{status or 'error'}": n for (kind, status), n in client.stats.requests.items()}


def _summary(result: RunResult) -> RunSummary:
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
    )
