"""Carry out a decision exactly (Terraform's apply): one function per kind of
:data:`~sync.reconcile._decide.Decision`, each returning how the run :class:`Ended`.

The decision was made once, on the run's read; nothing here decides again. The apply step checks
each action's precondition as it goes (``_apply.py``), and every write is recorded ``pending``
before its call and with its outcome after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from sync.domain import Outcome
from sync.logging import get_logger
from sync.reconcile._apply import Tally
from sync.reconcile._decide import (
    Apply,
    ApplyStored,
    Blocked,
    DryRun,
    Settled,
    describe_stale,
)
from sync.reconcile._people import FULL
from sync.reconcile._plan import summarize
from sync.reconcile._preconditions import (
    iter_preconditions,
    settings_digest,
    snapshot_fingerprint,
)
from sync.reconcile._report import Ended, planned
from sync.reconcile._steps import (
    advance_snapshot,
    apply_step,
    finish_writes,
    keep_read,
    settle,
)
from sync.state import ActionOutcome, PlanRow
from sync.status import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sync.config import Settings
    from sync.domain import Action, Plan, Precondition
    from sync.reconcile._decide import Decision, Stored
    from sync.reconcile._job import Inputs, Job, Ledger, Ports
    from sync.reconcile._ports import ProtimeAPI, RunState

log = get_logger(__name__)


class Executor:
    """Carries out one run's decision with the run's ports, ledger and client."""

    def __init__(
        self, *, job: Job, ports: Ports, ledger: Ledger, run_id: str, client: ProtimeAPI
    ) -> None:
        self.job, self.ports, self.ledger, self.run_id = job, ports, ledger, run_id
        self.client = client

    async def __call__(self, decision: Decision, inputs: Inputs) -> Ended:
        match decision:
            case Settled():
                return await self.settled(decision, inputs)
            case Blocked():
                return await self.blocked(decision, inputs)
            case DryRun():
                return await self.dry_run(decision, inputs)
            case Apply():
                return await self.apply(decision, inputs)
            case ApplyStored():
                return await self.apply_stored(decision, inputs)

    async def settled(self, decision: Settled, inputs: Inputs) -> Ended:
        """Report the settled run's figures and the map's unlinked records, advance the delta
        link, write back, and settle in turn."""
        job, ports, ledger = self.job, self.ports, self.ledger
        # A run that fails from here still reports the settled figures.
        ledger.settled = decision.since
        counts = ledger.counts = dict(decision.since.counts_by_situation)
        ledger.phase("saving")  # the map's records are read, the delta link saved
        records = await asyncio.to_thread(ports.state.map.unlinked_records)
        tally = Tally()
        await advance_snapshot(job, ports, ledger, run_id=self.run_id, inputs=inputs, tally=tally)
        status, message = await finish_writes(job, ports, ledger, tally, total=0)
        if status is RunStatus.SUCCEEDED:
            await settle(job, ports, self.run_id, inputs)
        return Ended(
            status,
            message=message,
            counts=counts,
            settled=decision.since,
            records=tuple(records),
        )

    async def blocked(self, decision: Blocked, inputs: Inputs) -> Ended:
        """Nothing is written. A real run keeps what it read (forgets it when the input gate
        doubts it); a reconcile stores its plan for review and approval."""
        job = self.job
        await keep_read(
            job,
            self.ports,
            self.ledger,
            run_id=self.run_id,
            inputs=inputs,
            doubted=decision.gate_blocked,
        )
        if decision.plan is None:  # an apply: the message says it all
            return Ended(
                RunStatus.BLOCKED,
                message=decision.message or "",
                counts=decision.counts,
                plan_id=decision.plan_id,
                stale=decision.stale,
                done=decision.done,
            )
        message = "blocked before any write: " + "; ".join(
            line.rstrip(".") for line in decision.would_block
        )
        plan_id = None
        if job.dry_run:
            message += ". Store this plan for review and approval with `idsync plan`."
        else:
            plan_id = (await self._store(decision.plan, decision.would_block, inputs)).id
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
        return Ended(
            RunStatus.BLOCKED,
            message=message,
            plan=decision.plan,
            actions=planned(decision.plan),
            plan_id=plan_id,
            would_block=decision.would_block,
        )

    async def dry_run(self, decision: DryRun, inputs: Inputs) -> Ended:
        """Report the plan; ``idsync plan`` stores it."""
        plan_id = None
        if decision.store:
            plan_id = (await self._store(decision.plan, decision.would_block, inputs)).id
        return Ended(
            RunStatus.SUCCEEDED,
            plan=decision.plan,
            actions=planned(decision.plan),
            plan_id=plan_id,
            would_block=decision.would_block,
        )

    async def apply(self, decision: Apply, inputs: Inputs) -> Ended:
        """Save the classifications, apply the plan, advance the snapshot, write back; settle
        when the decision says so and the run saved the map's rows itself."""
        job, ports, ledger, run_id = self.job, self.ports, self.ledger, self.run_id
        the_plan = decision.plan
        if job.stopping:
            # Asked to stop while planning (a stop while reading cut the read off already):
            # leave before the first write, map untouched, the read kept. Also with nothing to
            # write: a stop request ends the run `interrupted` in every phase.
            await keep_read(job, ports, ledger, run_id=run_id, inputs=inputs, doubted=False)
            return Ended(
                RunStatus.INTERRUPTED,
                message=f"stopped before writing ({job.stop_reason})",
                plan=the_plan,
            )
        # A full run classifies every key there is, so rows it did not classify (an HR id that
        # left and holds nothing in Protime, the <row N> key of a blank id that moved) are
        # stale and go; admins' links and ignores stay. --only runs leave the map be.
        ledger.phase("saving", total=len(the_plan.classifications))
        own_rows = await asyncio.to_thread(
            ports.state.map.save_classifications,
            run_id=run_id,
            classifications=the_plan.classifications,
            now=datetime.now(UTC),
            prune=not job.only,
            # Read from the snapshot and the delta: rows are not re-verified against Protime,
            # and only those that changed are written.
            verified=ledger.read is None or ledger.read.kind == FULL,
        )
        tally = await self._write(the_plan.actions, iter_preconditions(the_plan, inputs.hr), inputs)
        status, message = await finish_writes(
            job, ports, ledger, tally, total=len(the_plan.actions)
        )
        if status is RunStatus.SUCCEEDED and decision.settles and own_rows:
            await settle(job, ports, run_id, inputs)
        return Ended(status, message=message, plan=the_plan, actions=dict(tally.outcomes))

    async def apply_stored(self, decision: ApplyStored, inputs: Inputs) -> Ended:
        """Keep the map true, record the stale actions, apply the still-valid ones, and mark
        the plan applied."""
        job, ports, ledger, run_id = self.job, self.ports, self.ledger, self.run_id
        store, plan_id = ports.state, job.plan_id
        assert plan_id is not None  # only an apply or a rollback decides so
        await asyncio.to_thread(
            store.map.save_classifications,
            run_id=run_id,
            classifications=decision.classifications,
            now=datetime.now(UTC),
            prune=True,
        )
        await asyncio.to_thread(record_stale, store, run_id, decision.stale)
        tally = await self._write(
            [a for a, _ in decision.to_apply], [pre for _, pre in decision.to_apply], inputs
        )
        await asyncio.to_thread(
            partial(store.plans.mark_plan_applied, plan_id=plan_id, run_id=run_id)
        )
        status, message = await finish_writes(
            job, ports, ledger, tally, total=len(decision.to_apply)
        )
        stale = decision.stale
        if stale and not message:
            message = (
                f"{len(stale)} stale action(s) not applied (their inputs moved since the plan)"
            )
        actions = Counter(tally.outcomes)
        actions.update(f"{a.kind}:stale" for (a, _), _why in stale)
        return Ended(
            status,
            message=message,
            counts=decision.counts,
            actions=dict(actions),
            plan_id=plan_id,
            stale=describe_stale(stale),
            done=decision.done,
        )

    async def _write(
        self, actions: Sequence[Action], preconditions: Iterable[Precondition], inputs: Inputs
    ) -> Tally:
        """The apply step, then the snapshot takes the read and our succeeded calls."""
        job, ports, ledger, run_id = self.job, self.ports, self.ledger, self.run_id
        tally = await apply_step(
            job=job,
            ports=ports,
            ledger=ledger,
            client=self.client,
            run_id=run_id,
            actions=actions,
            preconditions=preconditions,
        )
        await advance_snapshot(job, ports, ledger, run_id=run_id, inputs=inputs, tally=tally)
        return tally

    async def _store(self, the_plan: Plan, would_block: tuple[str, ...], inputs: Inputs) -> PlanRow:
        return await asyncio.to_thread(
            partial(
                store_plan,
                settings=self.job.settings,
                store=self.ports.state,
                run_id=self.run_id,
                the_plan=the_plan,
                would_block=would_block,
                inputs=inputs,
            )
        )


def store_plan(
    *,
    settings: Settings,
    store: RunState,
    run_id: str | None,
    the_plan: Plan,
    would_block: tuple[str, ...],
    inputs: Inputs,
) -> PlanRow:
    """Store a plan (``kind`` reconcile) with every action's precondition."""
    header = new_plan_row(
        settings,
        kind="reconcile",
        actions=the_plan.actions,
        run_id=run_id,
        snapshot_fingerprint=snapshot_fingerprint(inputs.hr, inputs.people),
        counts=summarize(the_plan),
        would_block=would_block,
    )
    store.plans.save_plan(
        header, zip(the_plan.actions, iter_preconditions(the_plan, inputs.hr), strict=True)
    )
    log.info("run.plan_stored", plan_id=header.id, actions=header.action_count)
    return header


def new_plan_row(
    settings: Settings,
    *,
    kind: str,
    actions: Sequence[Action],
    run_id: str | None = None,
    rollback_of: str | None = None,
    snapshot_fingerprint: str | None = None,
    counts: dict[str, int] | None = None,
    would_block: tuple[str, ...] = (),
) -> PlanRow:
    """A new plan's header: made now, under these settings, for these actions."""
    return PlanRow(
        id=str(uuid.uuid4()),
        kind=kind,
        created_at=datetime.now(UTC),
        run_id=run_id,
        rollback_of=rollback_of,
        settings_digest=settings_digest(settings),
        snapshot_fingerprint=snapshot_fingerprint,
        counts_by_situation=counts or {},
        actions_by_kind=dict(Counter(a.kind.value for a in actions)),
        would_block=would_block,
        action_count=len(actions),
    )


def record_stale(store: RunState, run_id: str, stale: Sequence[tuple[Stored, str]]) -> None:
    """Stale actions are events too (outcome ``stale``, with why): the audit shows the plan."""
    if not stale:
        return
    actions = [a for (a, _), _ in stale]
    ids = store.events.record_pending(
        run_id=run_id, actions=actions, preconditions=[pre for (_, pre), _ in stale]
    )
    store.events.record_outcomes(
        [
            ActionOutcome(event_id=i, action=a, outcome=Outcome.STALE, error=why, attempts=0)
            for i, ((a, _), why) in zip(ids, stale, strict=True)
        ]
    )
