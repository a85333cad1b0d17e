"""The I/O steps of a run, shared by every kind of run: read the inputs, apply actions, advance
the snapshot (or keep a read that wrote nothing), finish the writes (write-back, status), settle.

``_run.py`` holds a run's frame and its flow (read -> decide -> execute); ``_execute.py`` carries
out each kind of decision with these steps. Each step takes the run's :class:`Ledger` explicitly
and writes into it only what it measured.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from sync.logging import get_logger
from sync.reconcile._apply import Tally, apply_actions
from sync.reconcile._fence import lock_lost
from sync.reconcile._job import Inputs
from sync.reconcile._people import load_deferred, read_fingerprint, read_protime
from sync.reconcile._settled import settled_key
from sync.reconcile._snapshot import save_snapshot
from sync.status import RunStatus
from sync.strings import StringPool

if TYPE_CHECKING:
    import threading
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from sync.domain import Action, Precondition
    from sync.reconcile._job import Job, Ledger, Ports
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState

log = get_logger(__name__)

_T = TypeVar("_T")

# How often the read looks at the stop event (a threading.Event: set from a signal's watcher
# thread, the service's stop, or the run lock's fence; no loop callback reaches it).
_STOP_POLL_SECONDS = 0.1


class StoppedReading(Exception):  # noqa: N818 - it names the outcome, not an error
    """The run was asked to stop (SIGINT, SIGTERM, the lock lost) while reading its inputs.

    Nothing was planned, saved or written: neither the partial read nor its delta link is
    kept, and the next run reads again. The run ends ``interrupted``.
    """


async def read_inputs(
    job: Job, ports: Ports, ledger: Ledger, client: ProtimeAPI, *, settle_as: str | None = None
) -> Inputs:
    """Read HR, Protime and the prior state, overlapped; what was read goes into the ``ledger``
    as it comes, for a run that fails half-way to report.

    ``settle_as``: the id of a run that may take a settled run's plan (``_settled.py``). When the
    delta changed nothing and the inputs are the settled run's, the snapshot is not loaded and
    ``Inputs.settled`` names that run.
    """
    ledger.client = client
    # The HR read and the state read run on worker threads while the event loop pages through
    # Protime: at 100,000 people the three reads overlap instead of adding up.
    # Progress counts the people read, out of the last good run's count once it is known.
    people = ledger.people = []
    # Both reads make their objects from one pool: the employee number a matched person holds is
    # the employee's string object, not a second copy (sync.strings).
    strings = StringPool()
    ledger.phase("reading", poll=people.__len__)
    hr_read = asyncio.create_task(asyncio.to_thread(ports.hr.read, strings=strings))
    prior_read = asyncio.create_task(asyncio.to_thread(ports.state.map.load_prior))
    tracker = ledger.progress
    if tracker is not None:
        prior_read.add_done_callback(
            lambda t: (
                None
                if t.cancelled() or t.exception()
                else tracker.set_total(t.result().last_good_protime_count)
            )
        )
    try:
        try:
            # Cancelled at once when the run is asked to stop: the page in flight is dropped.
            read = ledger.read = await _unless_stopped(
                job,
                read_protime(
                    settings=job.settings,
                    store=ports.state,
                    client=client,
                    people=people,
                    # apply and rollback read in full by design, not because anyone asked.
                    full=(
                        f"{job.trigger} judges every precondition on a full read"
                        if job.plan_id is not None
                        else job.full
                    ),
                    # A dry run (and a plan) keeps nothing: it must not start a delta round.
                    keep_link=not job.dry_run,
                    prior=prior_read,
                    strings=strings,
                    defer=settle_as is not None,
                ),
            )
        finally:
            # The HR read and the state read run on threads, which cannot be cancelled: a stopped
            # run waits for them (they are bounded, local reads) so that nothing is left using
            # the HR or state connections when the run closes them.
            hr, prior = await asyncio.gather(hr_read, prior_read)
            ledger.hr = hr
        _stop_if_asked(job)
        log.info("run.hr_read", employees=len(hr.employees), invalid=len(hr.invalid))
        settled, key = None, None
        if read.deferred:
            assert settle_as is not None  # only such a run defers
            key = await _inputs_key(job, Inputs(hr=hr, people=people, prior=prior))
            settled = await asyncio.to_thread(
                partial(ports.state.settled.settled_run, key=key, run_id=settle_as)
            )
            if settled is None:
                await load_deferred(store=ports.state, read=read, people=people, strings=strings)
        _stop_if_asked(job)
    finally:
        strings.clear()  # the reads are over: planning does not carry the pool
    if settled is not None:
        log.info("run.settled", since_run_id=settled.id, employees=len(hr.employees))
        return Inputs(hr=hr, people=people, prior=prior, settled=settled, settled_key=key)
    log.info("run.protime_read", people=len(people), read=read.kind, reason=read.reason)
    return Inputs(hr=hr, people=people, prior=prior, settled_key=key)


def _stop_if_asked(job: Job) -> None:
    if job.stopping:
        why = job.stop_reason
        log.warning("run.stopped_reading", reason=why)
        raise StoppedReading(
            f"stopped while reading, before writing ({why}): nothing planned or written;"
            " the next run reads again"
        )


async def _unless_stopped(job: Job, work: Awaitable[_T]) -> _T:
    """``work``, cancelled as soon as the run's stop event is set (:class:`StoppedReading`).

    The stop event is polled every ``_STOP_POLL_SECONDS``; the cancelled work is awaited, so a
    page request in flight is closed before the run goes on to record its end.
    """
    task = asyncio.ensure_future(work)
    if job.stop is None:
        return await task
    watch = asyncio.create_task(_stopped(job))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((task,))
    if task.cancelled():
        _stop_if_asked(job)
    return task.result()


async def _stopped(job: Job) -> None:
    # A poll, not an asyncio.Event: the stop is a threading.Event set from other threads, and
    # a FencedStop is set by the lock's fence without anyone calling set().
    while not job.stopping:  # noqa: ASYNC110
        await asyncio.sleep(_STOP_POLL_SECONDS)


async def apply_step(
    *,
    job: Job,
    ports: Ports,
    ledger: Ledger,
    client: ProtimeAPI,
    run_id: str,
    actions: Sequence[Action],
    preconditions: Iterable[Precondition],
) -> Tally:
    """The one apply step of every run that writes: record pending, call, record outcomes."""
    ledger.phase("writing", total=len(actions))
    tracker = ledger.progress
    return await apply_actions(
        client=client,
        store=ports.state,
        run_id=run_id,
        actions=actions,
        preconditions=preconditions,
        concurrency=job.settings.protime.concurrency,
        stop=job.stop,
        progress=_each(tracker.update if tracker is not None else None, job.progress),
        tally=ledger.tally,
    )


async def advance_snapshot(
    job: Job, ports: Ports, ledger: Ledger, *, run_id: str, inputs: Inputs, tally: Tally
) -> None:
    """After the apply step, every outcome recorded: the snapshot of Protime takes the read and
    our succeeded calls, and the delta link advances (one transaction; never on a dry run)."""
    read = ledger.read
    if read is None or job.dry_run:
        return
    await save_snapshot(
        store=ports.state,
        read=read,
        people=inputs.people,
        succeeded=tally.succeeded,
        run_id=run_id,
        unconfirmed=tally.accepted,
    )


async def keep_read(
    job: Job, ports: Ports, ledger: Ledger, *, run_id: str, inputs: Inputs, doubted: bool
) -> None:
    """A real run that writes nothing (blocked, or stopped before writing) keeps what it read:
    a read that started a delta round replaced the stored link, so dropping it would throw the
    round away. A read the input gate doubts (``doubted``) is not kept: the link is forgotten
    and the next run reads in full."""
    if job.dry_run or ledger.read is None:
        return
    if doubted:
        await asyncio.to_thread(ports.state.snapshot.forget_people_feed)
        log.info("protime.read_not_kept", reason="the input gate blocked the run")
        return
    await advance_snapshot(job, ports, ledger, run_id=run_id, inputs=inputs, tally=Tally())


async def finish_writes(
    job: Job, ports: Ports, ledger: Ledger, tally: Tally, *, total: int
) -> tuple[RunStatus, str]:
    """After the apply step: write-back, then the run's status and message."""
    if ports.hr.writeback_enabled:
        ledger.phase("write_back")
        await asyncio.to_thread(_write_back, hr=ports.hr, store=ports.state)
    status = _status(tally=tally, stop=job.stop)
    message = tally.fatal or ""
    if tally.backoff is not None:
        left = total - tally.done
        message = (
            f"{tally.backoff}: {left} of {total} action(s) not attempted; the next run does them"
        )
    elif status is RunStatus.INTERRUPTED:
        left = total - tally.done
        why = lock_lost(job.stop)
        message = (
            f"{f'run lock lost, stopped writing: {why}' if why else 'stopped on request'}: "
            f"{left} of {total} action(s) not attempted; the next run does them"
        )
    return status, message


async def settle(job: Job, ports: Ports, run_id: str, inputs: Inputs) -> None:
    """Store that this run settled: its plan was empty, nothing blocked it, it succeeded
    (``_settled.py``). Called last, after its snapshot and write-back."""
    key = inputs.settled_key or await _inputs_key(job, inputs)
    await asyncio.to_thread(partial(ports.state.settled.settle, run_id=run_id, key=key))


async def _inputs_key(job: Job, inputs: Inputs) -> str:
    """The digest of a run's inputs (``_settled.settled_key``), off the event loop."""
    key: str = await asyncio.to_thread(
        partial(
            settled_key,
            settings=job.settings,
            hr=inputs.hr,
            prior=inputs.prior,
            snapshot_fingerprint=read_fingerprint(job.settings),
        )
    )
    return key


def _each(*callbacks: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
    present = [c for c in callbacks if c is not None]

    def call(done: int, total: int) -> None:
        for callback in present:
            callback(done, total)

    return call


def _status(*, tally: Tally, stop: threading.Event | None) -> RunStatus:
    if tally.fatal is not None:
        return RunStatus.FAILED
    if tally.backoff is not None:
        return RunStatus.INTERRUPTED
    if stop is not None and stop.is_set():
        # Also once every action is done (a stop while saving or writing back): a stop request
        # ends a run `interrupted` in every phase, and the next run confirms what this one did.
        return RunStatus.INTERRUPTED
    failed = sum(n for key, n in tally.outcomes.items() if not key.endswith(":succeeded"))
    return RunStatus.PARTIAL if failed else RunStatus.SUCCEEDED


def _write_back(*, hr: HRSource, store: RunState) -> None:
    """Make the HR column say what the map links now: the linked pairs are its whole state, so
    a record this run (or an admin, or a rollback) unlinked is cleared, and only rows that
    differ are written (``sync/hr/_writeback.py``)."""
    pairs = store.map.linked_pairs()
    changed = hr.write_back(pairs)
    log.info("run.write_back", rows_changed=changed, linked=len(pairs))
