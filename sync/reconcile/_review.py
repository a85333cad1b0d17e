"""Plans an operator reviews, approves, applies exactly, and undoes.

* :func:`make_plan` — a run (trigger ``plan``) that reads, decides and stores a plan with every
  action's precondition; never blocked: what a reconcile would block on is in ``would_block``.
* :func:`apply_plan` — a run (trigger ``apply``) that re-reads HR and Protime, checks each action's
  precondition and performs exactly the actions still valid (``_preconditions``); the thresholds
  do not block it (the review is the approval), the input gate does.
* :func:`rollback` — builds the plan that undoes a run's Protime changes from its events
  (``_rollback``), stores it, and with ``apply_now`` applies it in a run (trigger ``rollback``).

Each is a :class:`~sync.reconcile._job.Job` run through the one flow of ``_run.py`` (read ->
decide -> execute), like :func:`~sync.reconcile.run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.reconcile._execute import new_plan_row
from sync.reconcile._job import Job
from sync.reconcile._rollback import rollback_actions
from sync.reconcile._run import execute
from sync.status import Trigger

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

    from sync.config import Settings
    from sync.domain import Action, Precondition
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState
    from sync.reconcile._result import RunResult
    from sync.state import PlanRow, StateStore


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
        trigger=Trigger.PLAN,
        dry_run=True,
        full=full,
        only=tuple(only),
        retry_failed=retry_failed,
    )
    return execute(job, hr=hr, state=state, protime=protime)


def apply_plan(
    *,
    settings: Settings,
    plan_id: str,
    strict: bool = False,
    trigger: str = Trigger.APPLY,
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
        trigger=Trigger(trigger),
        full=True,
        stop=stop,
        progress=progress,
        plan_id=plan_id,
        strict=strict,
    )
    return execute(job, hr=hr, state=state, protime=protime)


def rollback(
    *,
    settings: Settings,
    run_id: str,
    store: StateStore,
    keep: bool = True,
) -> tuple[PlanRow, list[tuple[Action, Precondition]]]:
    """Build the plan that undoes the Protime changes of run ``run_id`` (a full id); ``keep``
    stores it (``--dry-run`` only shows it)."""
    calls = list(store.plans.iter_run_calls(run_id))
    planned = rollback_actions(calls, run_id=run_id, reference_name=settings.protime.reference_name)
    header = new_plan_row(
        settings, kind="rollback", actions=[a for a, _ in planned], rollback_of=run_id
    )
    if keep:
        store.plans.save_plan(header, planned)
    return header, planned
