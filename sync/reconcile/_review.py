"""Plans an operator reviews, approves, applies exactly, and undoes.

* :func:`make_plan` — a run (trigger ``plan``) that reads, decides and stores a plan with every
  action's precondition; never blocked: what a reconcile would block on is in ``would_block``.
* :func:`apply_plan` — a run (trigger ``apply``) that re-reads HR and Protime, checks each action's
  precondition and performs exactly the actions still valid (``_preconditions``); the thresholds
  do not block it (the review is the approval), the input gate does.
* :func:`rollback` — builds the plan that undoes a run's Protime changes from its events
  (``_rollback``), stores it, and with ``apply_now`` applies it in a run (trigger ``rollback``).

They share :func:`~sync.reconcile._decide.decide` and :func:`~sync.reconcile._run.apply_step` with
:func:`~sync.reconcile.run`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sync.domain import Outcome, Plan
from sync.errors import BlockedError
from sync.logging import get_logger, unbind_context
from sync.reconcile._classify import classify
from sync.reconcile._decide import decide, store_plan
from sync.reconcile._gates import check_input_gate
from sync.reconcile._plan import summarize
from sync.reconcile._preconditions import Current, hr_fingerprints, settings_digest, verdicts
from sync.reconcile._result import RunResult, RunStatus
from sync.reconcile._rollback import rollback_actions
from sync.reconcile._run import Job, execute
from sync.reconcile._steps import (
    advance_snapshot,
    apply_step,
    finish_writes,
    keep_read,
    read_inputs,
)
from sync.state import ActionOutcome, PlanRow, StateStore

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

    from sync.config import Settings
    from sync.domain import Action, Precondition
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState
    from sync.reconcile._run import Ports

log = get_logger(__name__)


def make_plan(
    *,
    settings: Settings,
    only: Sequence[str] = (),
    retry_failed: bool = False,
    full: bool = False,
    hr: HRSource | None = None,
    state: RunState | None = None,
    protime: ProtimeAPI | None = None,
) -> RunResult:
    """Compute what a reconcile would do and store it as a plan (``result.plan_id``).

    It reads Protime as a reconcile would (the delta between full reads; ``full`` in full) and,
    like a dry run, never advances the snapshot: only a run that writes does.
    """
    job = Job(
        settings=settings,
        trigger="plan",
        dry_run=True,
        force=False,
        full=full,
        only=tuple(only),
        retry_failed=retry_failed,
        stop=None,
        progress=None,
    )
    return execute(job, _plan_pipeline, hr=hr, state=state, protime=protime)


async def _plan_pipeline(job: Job, ports: Ports, run_id: str) -> RunResult:
    async with ports.protime as client:
        inputs = await read_inputs(job, ports, client)
        decision = await asyncio.to_thread(decide, job, inputs, ports.state)
        header = await asyncio.to_thread(
            partial(
                store_plan,
                settings=job.settings,
                store=ports.state,
                run_id=run_id,
                decision=decision,
                inputs=inputs,
            )
        )
    the_plan = decision.plan
    return job.result(
        run_id,
        RunStatus.SUCCEEDED,
        plan=the_plan,
        counts=summarize(the_plan),
        actions=dict(Counter(f"{a.kind}:planned" for a in the_plan.actions)),
        plan_id=header.id,
        would_block=decision.would_block,
        client=client,
        inputs=inputs,
    )


def apply_plan(
    *,
    settings: Settings,
    plan_id: str,
    strict: bool = False,
    trigger: str = "apply",
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    hr: HRSource | None = None,
    state: RunState | None = None,
    protime: ProtimeAPI | None = None,
) -> RunResult:
    """Apply the stored plan ``plan_id`` (a full id): exactly its actions whose preconditions hold.

    ``strict`` applies nothing when any action is stale. A plan older than
    ``IDSYNC_SAFETY__PLAN_TTL_HOURS``, or made under other settings, is refused (blocked).
    Protime is read in full: a precondition is judged on what Protime holds, and a reference
    changed there by someone else shows only in a full read.
    """
    job = Job(
        settings=settings,
        trigger=trigger,
        dry_run=False,
        force=False,
        full=True,
        only=(),
        retry_failed=False,
        stop=stop,
        progress=progress,
        plan_id=plan_id,
    )
    pipeline = partial(_apply_pipeline, strict=strict)
    return execute(job, pipeline, hr=hr, state=state, protime=protime)


def _refusal(settings: Settings, header: PlanRow | None, plan_id: str) -> str | None:
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


async def _apply_pipeline(job: Job, ports: Ports, run_id: str, *, strict: bool) -> RunResult:
    store = ports.state
    plan_id = job.plan_id
    assert plan_id is not None  # apply_plan always sets it
    header = await asyncio.to_thread(store.plan, plan_id)
    refused = _refusal(job.settings, header, plan_id)
    if refused is not None:
        return job.result(run_id, RunStatus.BLOCKED, message=refused, plan_id=plan_id)
    settings = job.settings
    async with ports.protime as client:
        try:
            inputs = await read_inputs(job, ports, client)
            hr, people, prior = inputs.hr, inputs.people, inputs.prior
            # The review approved the actions, not a source that emptied since: the gate stays.
            try:
                check_input_gate(
                    hr_count=len(hr.employees),
                    protime_count=len(people),
                    prior=prior,
                    safety=settings.safety,
                )
            except BlockedError:
                await keep_read(job, ports, run_id, inputs, doubted=True)
                raise
            planned = await asyncio.to_thread(lambda: list(store.iter_plan_actions(plan_id)))
            current = Current.for_actions(people, planned)
            hr_now = hr_fingerprints(hr, {a.hr_id for a, _ in planned})
            checked = verdicts(planned, current, hr_now)
            to_apply = [p for p, v in zip(planned, checked, strict=True) if v.state == "apply"]
            stale = [
                (p, v.why) for p, v in zip(planned, checked, strict=True) if v.state == "stale"
            ]
            done = sum(1 for v in checked if v.state == "done")
            stale_list = tuple((_describe(a), why) for (a, _), why in stale)
            log.info("apply.checked", apply=len(to_apply), stale=len(stale), done=done)
            classifications = classify(
                hr=hr,
                people=people,
                prior=prior,
                rules=settings.match.rules,
                reference_name=settings.protime.reference_name,
                normalize=settings.match.normalizers(),
            )
            counts = summarize(Plan(classifications=tuple(classifications), actions=()))
            if strict and stale:
                await keep_read(job, ports, run_id, inputs, doubted=False)
                return job.result(
                    run_id,
                    RunStatus.BLOCKED,
                    message=(
                        f"--strict: {len(stale)} action(s) of plan {plan_id[:8]} are stale;"
                        " nothing applied. Make a new plan with `idsync plan`"
                    ),
                    counts=counts,
                    plan_id=plan_id,
                    stale=stale_list,
                    done=done,
                    client=client,
                    inputs=inputs,
                )
            await asyncio.to_thread(
                store.save_classifications,
                run_id=run_id,
                classifications=classifications,
                now=datetime.now(UTC),
                prune=True,
            )
            await asyncio.to_thread(_record_stale, store, run_id, stale)
            tally = await apply_step(
                job=job,
                ports=ports,
                client=client,
                run_id=run_id,
                actions=[a for a, _ in to_apply],
                preconditions=[pre for _, pre in to_apply],
            )
            await advance_snapshot(job, ports, run_id, inputs, tally)
        finally:
            unbind_context("hr_id")
    await asyncio.to_thread(partial(store.mark_plan_applied, plan_id=plan_id, run_id=run_id))
    status, message = await finish_writes(job, ports, tally, total=len(to_apply))
    if stale and not message:
        message = f"{len(stale)} stale action(s) not applied (their inputs moved since the plan)"
    actions = dict(tally.outcomes)
    for (a, _), _why in stale:
        key = f"{a.kind}:stale"
        actions[key] = actions.get(key, 0) + 1
    return job.result(
        run_id,
        status,
        message=message,
        counts=counts,
        actions=actions,
        plan_id=plan_id,
        stale=stale_list,
        done=done,
        client=client,
        inputs=inputs,
    )


def _describe(a: Action) -> str:
    return f"{a.kind} {a.value} on person {a.protime_id} ({a.hr_id})"


def _record_stale(
    store: RunState, run_id: str, stale: Sequence[tuple[tuple[Action, Precondition], str]]
) -> None:
    """Stale actions are events too (outcome ``stale``, with why): the audit shows the plan."""
    if not stale:
        return
    actions = [a for (a, _), _ in stale]
    ids = store.record_pending(
        run_id=run_id, actions=actions, preconditions=[pre for (_, pre), _ in stale]
    )
    store.record_outcomes(
        [
            ActionOutcome(event_id=i, action=a, outcome=Outcome.STALE, error=why, attempts=0)
            for i, ((a, _), why) in zip(ids, stale, strict=True)
        ]
    )


def rollback(
    *,
    settings: Settings,
    run_id: str,
    store: StateStore,
    keep: bool = True,
) -> tuple[PlanRow, list[tuple[Action, Precondition]]]:
    """Build the plan that undoes the Protime changes of run ``run_id`` (a full id); ``keep``
    stores it (``--dry-run`` only shows it)."""
    calls = list(store.iter_run_calls(run_id))
    planned = rollback_actions(calls, run_id=run_id, reference_name=settings.protime.reference_name)
    header = PlanRow(
        id=str(uuid.uuid4()),
        kind="rollback",
        created_at=datetime.now(UTC),
        run_id=None,
        rollback_of=run_id,
        settings_digest=settings_digest(settings),
        snapshot_fingerprint=None,
        counts_by_situation={},
        actions_by_kind=dict(Counter(a.kind.value for a, _ in planned)),
        would_block=(),
        action_count=len(planned),
    )
    if keep:
        store.save_plan(header, planned)
    return header, planned
