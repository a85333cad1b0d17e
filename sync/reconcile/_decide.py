"""The decide step of every run, pure: what was read in, one :data:`Decision` out.

A decision is one of a small closed set, and the executor (``_execute.py``) carries out each
kind exactly:

* :class:`Settled` — nothing changed since a run that settled: take its plan (``_settled.py``).
* :class:`Blocked` — nothing is written: the input gate, a safety threshold, a stale action
  under ``apply --strict``. A real reconcile stores its plan for review.
* :class:`DryRun` — the plan is shown (a dry run), or stored (``idsync plan``), never applied.
* :class:`Apply` — a reconcile's plan is applied.
* :class:`ApplyStored` — an approved plan's still-valid actions are applied (``apply``,
  ``rollback``).

Nothing here reads a database or the network, or writes into a shared object: what a decision
needs beyond the read (what idsync last wrote for the drifted records) is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sync.domain import Plan, Situation
from sync.errors import BlockedError, UsageError
from sync.logging import get_logger
from sync.reconcile._classify import classify
from sync.reconcile._gates import check_input_gate, check_thresholds
from sync.reconcile._plan import plan as make_plan
from sync.reconcile._plan import summarize
from sync.reconcile._preconditions import Current, hr_fingerprints, verdicts
from sync.status import Trigger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sync.domain import Action, Classification, Precondition
    from sync.reconcile._job import Inputs, Job
    from sync.state import RunRow

log = get_logger(__name__)

# What idsync last wrote for an HR id: (Protime id, value, when).
Written = tuple[int | None, str, "datetime | None"]
# A stored plan's action with its precondition.
Stored = tuple["Action", "Precondition"]


@dataclass(frozen=True, slots=True)
class Settled:
    """Nothing changed since run ``since`` settled: its plan would be empty again."""

    since: RunRow


@dataclass(frozen=True, slots=True)
class Blocked:
    """Nothing is written. ``would_block``: what blocks; ``gate_blocked``: the input gate is
    among it (the read is then doubted, not kept). A reconcile carries its ``plan`` (stored for
    review on a real run); an apply says why in ``message`` (with the stale actions)."""

    would_block: tuple[str, ...]
    gate_blocked: bool = False
    plan: Plan | None = None
    message: str | None = None
    counts: Mapping[str, int] | None = None
    stale: tuple[tuple[str, str], ...] = ()
    done: int = 0
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class DryRun:
    """The plan is reported, never applied; ``store``: ``idsync plan`` stores it for review."""

    plan: Plan
    would_block: tuple[str, ...]
    store: bool


@dataclass(frozen=True, slots=True)
class Apply:
    """A reconcile's plan is applied (``--force`` past what would block). ``settles``: an
    empty plan of a plain run that nothing blocked: the run settles when it succeeds."""

    plan: Plan
    would_block: tuple[str, ...]
    settles: bool


@dataclass(frozen=True, slots=True)
class ApplyStored:
    """An approved plan, judged against a fresh read: ``to_apply`` still valid, ``stale`` (with
    why) not, ``done`` already in effect; ``classifications`` keep the map true."""

    to_apply: tuple[Stored, ...]
    stale: tuple[tuple[Stored, str], ...]
    done: int
    classifications: tuple[Classification, ...]
    counts: Mapping[str, int]


Decision = Settled | Blocked | DryRun | Apply | ApplyStored


def classify_inputs(job: Job, inputs: Inputs) -> list[Classification]:
    """Every HR id and Protime person, classified; ``--only`` ids nobody has are a usage error
    when none is known, a warning otherwise."""
    settings = job.settings
    classifications = classify(
        hr=inputs.hr,
        people=inputs.people,
        prior=inputs.prior,
        rules=settings.match.rules,
        reference_name=settings.protime.reference_name,
        normalize=settings.match.normalizers(),
    )
    if job.only:
        _check_only(job.only, classifications)
    return classifications


def drifted_ids(classifications: Sequence[Classification]) -> list[str]:
    """The HR ids whose reference Protime changed: their reasons say when idsync wrote it."""
    return [c.hr_id for c in classifications if c.situation is Situation.DRIFTED]


def decide(
    job: Job,
    inputs: Inputs,
    classifications: Sequence[Classification],
    written: Mapping[str, Written],
) -> Decision:
    """A reconcile's (or a plan's) decision: gate, plan, thresholds; then what to do with it."""
    if inputs.settled is not None:
        return Settled(since=inputs.settled)
    settings = job.settings
    gate = _gate(inputs, job)
    would_block = [] if gate is None else [_reason(gate)]
    the_plan = make_plan(
        classifications=annotate_drift(classifications, written),
        reactions=settings.reactions,
        prior=inputs.prior,
        retry_failed=job.retry_failed,
        only=set(job.only) if job.only else None,
        reference_name=settings.protime.reference_name,
    )
    try:
        check_thresholds(plan=the_plan, safety=settings.safety, prior=inputs.prior)
    except BlockedError as exc:
        would_block.append(_reason(exc))
    blocks = tuple(would_block)
    if job.trigger is Trigger.PLAN:
        return DryRun(plan=the_plan, would_block=blocks, store=True)
    if blocks and not job.force:
        return Blocked(would_block=blocks, gate_blocked=gate is not None, plan=the_plan)
    if job.dry_run:
        return DryRun(plan=the_plan, would_block=blocks, store=False)
    return Apply(
        plan=the_plan,
        would_block=blocks,
        settles=job.plain and not the_plan.actions and not blocks,
    )


def decide_stored(job: Job, inputs: Inputs, planned: Sequence[Stored]) -> Decision:
    """An apply's (or a rollback's) decision: the input gate still holds (the review approved
    the actions, not a source that emptied since); each action is judged on the fresh read."""
    gate = _gate(inputs, job)
    if gate is not None:
        return Blocked(would_block=(), gate_blocked=True, message=str(gate))
    settings, hr, people = job.settings, inputs.hr, inputs.people
    current = Current.for_actions(people, planned)
    hr_now = hr_fingerprints(hr, {a.hr_id for a, _ in planned})
    checked = verdicts(planned, current, hr_now)
    to_apply = tuple(p for p, v in zip(planned, checked, strict=True) if v.state == "apply")
    stale = tuple((p, v.why) for p, v in zip(planned, checked, strict=True) if v.state == "stale")
    done = sum(1 for v in checked if v.state == "done")
    log.info("apply.checked", apply=len(to_apply), stale=len(stale), done=done)
    classifications = tuple(
        classify(
            hr=hr,
            people=people,
            prior=inputs.prior,
            rules=settings.match.rules,
            reference_name=settings.protime.reference_name,
            normalize=settings.match.normalizers(),
        )
    )
    counts = summarize(Plan(classifications=classifications, actions=()))
    if job.strict and stale:
        plan_id = job.plan_id or ""
        return Blocked(
            would_block=(),
            message=(
                f"--strict: {len(stale)} action(s) of plan {plan_id[:8]} are stale;"
                " nothing applied. Make a new plan with `idsync plan`"
            ),
            counts=counts,
            stale=describe_stale(stale),
            done=done,
            plan_id=plan_id,
        )
    return ApplyStored(
        to_apply=to_apply,
        stale=stale,
        done=done,
        classifications=classifications,
        counts=counts,
    )


def describe_stale(stale: Sequence[tuple[Stored, str]]) -> tuple[tuple[str, str], ...]:
    """Each stale action in a line, with why: what the run reports."""
    return tuple(
        (f"{a.kind} {a.value} on person {a.protime_id} ({a.hr_id})", why) for (a, _), why in stale
    )


def _gate(inputs: Inputs, job: Job) -> BlockedError | None:
    """The input gate's objection to this read, if it has one."""
    try:
        check_input_gate(
            hr_count=len(inputs.hr.employees),
            protime_count=len(inputs.people),
            prior=inputs.prior,
            safety=job.settings.safety,
        )
    except BlockedError as exc:
        return exc
    return None


def _reason(exc: BlockedError) -> str:
    return str(exc).removeprefix("blocked before any write: ")


def annotate_drift(
    classifications: Sequence[Classification], written: Mapping[str, Written]
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


def _check_only(only: Sequence[str], classifications: Sequence[Classification]) -> None:
    known = {c.hr_id for c in classifications}
    unknown = [hr_id for hr_id in dict.fromkeys(only) if hr_id not in known]
    if unknown and len(unknown) == len(set(only)):
        raise UsageError(
            f"--only: {', '.join(unknown)}: no such HR employee or Protime reference value;"
            " nothing to do"
        )
    if unknown:
        log.warning("run.only_unknown", hr_ids=unknown)
