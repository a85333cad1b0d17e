"""The apply step shared by every run that writes: reconcile, apply of a stored plan, rollback.

Durability rule: every action is recorded as ``pending`` before its call, and its outcome is
recorded as soon as it completes (flushed in small batches), so a crash at any moment leaves either
a finished outcome or a pending one; the next run re-reads Protime and converges either way.
Phases run in order, concurrently within a phase.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.domain import ActionKind, Outcome
from sync.errors import ProtimeAuthError, ProtimeBackoffError, ProtimeError
from sync.logging import bind_context, get_logger
from sync.state import ActionOutcome

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from sync.domain import Action, Precondition
    from sync.reconcile._ports import ProtimeAPI, RunState

log = get_logger(__name__)

# Outcomes are flushed to the state database in batches this large, or this often, whichever
# comes first: per-outcome commits would cap a 10,000-write initial sync at the disk's fsync rate.
# A crash loses at most the unflushed batch: its events stay `pending` and the next run, which
# re-reads Protime, converges them. Large batches: a batch costs a transaction and a few
# statements whatever its size, and the time bound below still comes first for all but the
# fastest runs, so only those batch more (figures: docs/benchmarks.md).
FLUSH_EVERY = 1000
_FLUSH_SECONDS = 0.5
_ACCEPTED = 202  # how a write Protime accepted without confirming it is recorded


@dataclass(slots=True)
class Tally:
    """What the apply step did: ``"<kind>:<outcome>"`` counts, a fatal error, actions done, and
    the actions that succeeded in the order they completed (the snapshot of Protime takes them;
    ``accepted`` of them were not confirmed, and the next run reads in full to see them)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    fatal: str | None = None
    # Protime asked to be called again hours from now (a Retry-After past the setting): the
    # apply step attempts nothing more, and the run ends interrupted.
    backoff: ProtimeBackoffError | None = None
    done: int = 0
    succeeded: list[Action] = field(default_factory=list)
    accepted: int = 0  # writes among them Protime accepted without confirming (202)


async def apply_actions(
    *,
    client: ProtimeAPI,
    store: RunState,
    run_id: str,
    actions: Sequence[Action],
    preconditions: Iterable[Precondition] | None = None,
    concurrency: int,
    stop: threading.Event | None,
    progress: Callable[[int, int], None] | None,
    tally: Tally | None = None,
) -> Tally:
    """Run the actions phase by phase, concurrently within a phase, recording each outcome.

    ``tally`` (the run's own, when given) is filled as outcomes come in, so a run cut off by its
    deadline still knows what it did.
    """
    if not actions:
        return tally or Tally()
    event_ids = await asyncio.to_thread(
        store.events.record_pending, run_id=run_id, actions=actions, preconditions=preconditions
    )
    applier = _Applier(client=client, recorder=_Recorder(store), stop=stop, progress=progress)
    if tally is not None:
        applier.tally = tally
    applier.total = len(actions)
    # Per phase, how many actions; each phase's queue walks the plan again instead of holding a
    # (event id, action) pair per action for the whole apply step.
    sizes = Counter(a.phase for a in actions)
    try:
        for phase in sorted(sizes):
            queue = _in_phase(event_ids, actions, phase)
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, sizes[phase])):
                    group.create_task(applier.worker(queue))
    finally:
        await applier.recorder.close()
    return applier.tally


def _in_phase(
    event_ids: Sequence[int], actions: Sequence[Action], phase: int
) -> Iterator[tuple[int, Action]]:
    """The actions of one phase with their event ids, in plan order (workers share it)."""
    return (
        (event_id, action)
        for event_id, action in zip(event_ids, actions, strict=True)
        if action.phase == phase
    )


class _Applier:
    """Workers that take actions from a shared iterator, call Protime and record outcomes.

    A phase of 100,000 actions costs ``concurrency`` coroutines, not 100,000 tasks, and a stop
    request is seen before each new call.
    """

    def __init__(
        self,
        *,
        client: ProtimeAPI,
        recorder: _Recorder,
        stop: threading.Event | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.stop = stop
        self.progress = progress
        self.tally = Tally()
        self.total = 0
        # Records whose step did not succeed: their later steps, and the actions that depend on
        # them (a person they were to free), are skipped instead of failing or clobbering.
        self.unsettled: set[str] = set()

    async def worker(self, queue: Iterator[tuple[int, Action]]) -> None:
        for event_id, action in queue:
            if (self.stop is not None and self.stop.is_set()) or self.tally.backoff is not None:
                # Shutdown, or Protime asked us to go away for hours: finish what is in flight,
                # attempt nothing new. The events not attempted stay pending until finish_run
                # closes them as skipped.
                return
            outcome = await self._one(event_id, action)
            if outcome.outcome is not Outcome.SUCCEEDED:
                self.unsettled.add(action.hr_id)
            else:
                self.tally.succeeded.append(action)
                if outcome.http_status == _ACCEPTED:
                    self.tally.accepted += 1
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
        except (ProtimeBackoffError, ProtimeAuthError) as exc:
            if isinstance(exc, ProtimeBackoffError):
                self.tally.backoff = exc  # Protime asked for hours: attempt nothing more
            else:
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


async def _call(*, client: ProtimeAPI, event_id: int, action: Action) -> ActionOutcome:
    """One API call; maps its result to an outcome. Auth failures (fatal) and a Retry-After of
    hours (the run stops) propagate."""
    try:
        if action.kind is ActionKind.WRITE:
            created = await client.put_reference(value=action.value, protime_id=action.protime_id)
            # None: accepted without confirmation, recorded as 202; the next run reads in full
            # to see it (docs/protime-client.md, "Writes").
            status = _ACCEPTED if created is None else 201 if created else 200
        else:
            existed = await client.delete_reference(value=action.value)
            status = 204 if existed else 404
    except (ProtimeAuthError, ProtimeBackoffError):
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

    def __init__(self, store: RunState) -> None:
        self._store = store
        self._buffer: list[ActionOutcome] = []
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()

    async def add(self, outcome: ActionOutcome) -> None:
        self._buffer.append(outcome)
        due = time.monotonic() - self._last_flush >= _FLUSH_SECONDS
        if len(self._buffer) >= FLUSH_EVERY or due:
            await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            if batch:
                await asyncio.to_thread(self._store.events.record_outcomes, batch)

    async def close(self) -> None:
        await self._flush()
