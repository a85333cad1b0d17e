"""The one decide step of every run: gate, classify, plan, thresholds — and storing a plan.

Shared by ``reconcile``, ``plan`` and ``apply`` (which classifies its fresh read for the map).
Nothing here raises for a block: :func:`decide` collects what a reconcile would block on, and the
caller decides (a reconcile blocks, a plan prints "would block", an apply ignores thresholds).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync.domain import Plan, Situation
from sync.errors import BlockedError, UsageError
from sync.logging import get_logger
from sync.reconcile._classify import classify
from sync.reconcile._gates import check_input_gate, check_thresholds
from sync.reconcile._plan import plan as make_plan
from sync.reconcile._plan import summarize
from sync.reconcile._preconditions import (
    iter_preconditions,
    settings_digest,
    snapshot_fingerprint,
)
from sync.state import PlanRow, RunRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sync.config import Settings
    from sync.domain import Classification, HRSnapshot, Person, PriorState
    from sync.reconcile._ports import RunState
    from sync.reconcile._run import Job

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Inputs:
    """One read of everything a decision needs: HR, Protime, the state's prior."""

    hr: HRSnapshot
    people: list[Person]
    prior: PriorState
    # A settled run (_settled.py): the run whose plan this one takes; ``people`` is then empty
    # (the snapshot was not loaded). ``settled_key``: the inputs' digest, when it was made.
    settled: RunRow | None = None
    settled_key: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The decide step's answer: the plan, and what a reconcile would block on (never raised)."""

    plan: Plan
    would_block: tuple[str, ...]
    gate_blocked: bool = False  # the input gate is among them (it blocks an apply too)


def decide(job: Job, inputs: Inputs, store: RunState) -> Decision:
    """The one decide step: gate, classify, plan, thresholds; what would block is collected.

    Pure but for one small read: what idsync last wrote for the drifted records, so their
    reason says when a value changed in Protime since idsync wrote it. Timed for the run log.
    """
    settings = job.settings
    hr, people, prior = inputs.hr, inputs.people, inputs.prior
    cpu = time.process_time()
    would_block: list[str] = []
    gate_blocked = False
    try:
        check_input_gate(
            hr_count=len(hr.employees),
            protime_count=len(people),
            prior=prior,
            safety=settings.safety,
        )
    except BlockedError as exc:
        would_block.append(_reason(exc))
        gate_blocked = True
    name = settings.protime.reference_name
    classifications = classify(
        hr=hr,
        people=people,
        prior=prior,
        rules=settings.match.rules,
        reference_name=name,
        normalize=settings.match.normalizers(),
    )
    if job.only:
        _check_only(job.only, classifications)
    drifted = [c.hr_id for c in classifications if c.situation is Situation.DRIFTED]
    if drifted:
        classifications = annotate_drift(classifications, store.written(drifted))
    the_plan = make_plan(
        classifications=classifications,
        reactions=settings.reactions,
        prior=prior,
        retry_failed=job.retry_failed,
        only=set(job.only) if job.only else None,
        reference_name=name,
    )
    # Known before the thresholds judge the plan: a run they block still reports its situations.
    job.reached.counts = summarize(the_plan)
    try:
        check_thresholds(plan=the_plan, safety=settings.safety, prior=prior)
    except BlockedError as exc:
        would_block.append(_reason(exc))
    log.info(
        "run.planned",
        actions=len(the_plan.actions),
        would_block=len(would_block),
        planning_cpu_seconds=round(time.process_time() - cpu, 3),
    )
    return Decision(plan=the_plan, would_block=tuple(would_block), gate_blocked=gate_blocked)


def _reason(exc: BlockedError) -> str:
    return str(exc).removeprefix("blocked before any write: ")


def annotate_drift(
    classifications: Sequence[Classification],
    written: Mapping[str, tuple[int | None, str, datetime | None]],
) -> list[Classification]:
    """Say "changed in Protime since idsync wrote it on ..." where idsync wrote the drifted id."""
    out = list(classifications)
    for i, c in enumerate(out):
        w = written.get(c.hr_id)
        if c.situation is not Situation.DRIFTED or w is None or w[1] != c.hr_id:
            continue
        person, _, at = w
        when = at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "an unknown date"
        out[i] = replace(
            c,
            reason=f"changed in Protime since idsync wrote it on {when} (on person {person}):"
            f" {c.reason}",
        )
    return out


def store_plan(
    *,
    settings: Settings,
    store: RunState,
    run_id: str | None,
    decision: Decision,
    inputs: Inputs,
) -> PlanRow:
    """Store a decision as a plan (``kind`` reconcile) with every action's precondition."""
    the_plan = decision.plan
    hr, people = inputs.hr, inputs.people
    header = PlanRow(
        id=str(uuid.uuid4()),
        kind="reconcile",
        created_at=datetime.now(UTC),
        run_id=run_id,
        rollback_of=None,
        settings_digest=settings_digest(settings),
        snapshot_fingerprint=snapshot_fingerprint(hr, people),
        counts_by_situation=summarize(the_plan),
        actions_by_kind=dict(Counter(a.kind.value for a in the_plan.actions)),
        would_block=decision.would_block,
        action_count=len(the_plan.actions),
    )
    store.save_plan(header, zip(the_plan.actions, iter_preconditions(the_plan, hr), strict=True))
    log.info("run.plan_stored", plan_id=header.id, actions=header.action_count)
    return header


def _check_only(only: Sequence[str], classifications: Sequence[Classification]) -> None:
    """--only ids nobody has are a usage error when none is known, a warning otherwise."""
    known = {c.hr_id for c in classifications}
    unknown = [hr_id for hr_id in dict.fromkeys(only) if hr_id not in known]
    if unknown and len(unknown) == len(set(only)):
        raise UsageError(
            f"--only: {', '.join(unknown)}: no such HR employee or Protime reference value;"
            " nothing to do"
        )
    if unknown:
        log.warning("run.only_unknown", hr_ids=unknown)
