"""A run's report: what the executor says of how the run ended (:class:`Ended`), with the
figures its :class:`~sync.reconcile._job.Ledger` measured, made into the :class:`RunResult` the
caller gets and the :class:`~sync.state.RunSummary` the run row keeps."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync.reconcile._plan import summarize
from sync.reconcile._result import RunResult
from sync.state import RunSummary

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sync.domain import Classification, Plan
    from sync.reconcile._job import Job, Ledger
    from sync.reconcile._ports import ProtimeAPI
    from sync.state import RunRow
    from sync.status import RunStatus


@dataclass(frozen=True, slots=True)
class Ended:
    """How a run ended, as the step that ended it says; figures it leaves out come from the
    ledger (the counts of a plan, the outcomes the apply step tallied)."""

    status: RunStatus
    message: str = ""
    plan: Plan | None = None
    counts: Mapping[str, int] | None = None
    actions: Mapping[str, int] | None = None
    plan_id: str | None = None  # the plan stored (blocked reconcile, plan) or applied
    would_block: tuple[str, ...] = ()
    stale: tuple[tuple[str, str], ...] = ()  # apply: (action, why) of each stale action
    done: int = 0  # apply: actions already in effect
    settled: RunRow | None = None  # a settled run: the run whose plan it took
    records: tuple[Classification, ...] | None = None  # ... and the map's unlinked rows
    config_error: bool = False  # a wrong setting or argument found mid-run: exit 2
    retry_at: datetime | None = None  # Protime asked to be called again no earlier


def planned(the_plan: Plan) -> dict[str, int]:
    """A plan's actions as ``"<kind>:planned"`` counts (what a dry run or a block reports)."""
    return dict(Counter(f"{a.kind}:planned" for a in the_plan.actions))


def report(job: Job, run_id: str | None, ledger: Ledger, ended: Ended) -> RunResult:
    """The run's result: how it ended, with every figure it reached."""
    client, hr, people, read = ledger.client, ledger.hr, ledger.people, ledger.read
    settled = ended.settled or ledger.settled
    the_plan = ended.plan or ledger.plan
    counts = ended.counts or ledger.counts
    if not counts and the_plan is not None:
        counts = summarize(the_plan)
    actions = ended.actions
    if actions is None and ledger.tally.outcomes:
        actions = dict(ledger.tally.outcomes)
    if settled is not None:
        protime_count = settled.protime_count or 0
    else:
        protime_count = len(people) if people is not None else 0
    return RunResult(
        run_id=run_id,
        status=ended.status,
        dry_run=job.dry_run,
        duration_seconds=time.monotonic() - job.started,
        counts_by_situation=dict(counts or {}),
        actions_by_outcome=dict(actions or {}),
        api_requests=_requests(client) if client is not None else {},
        retries=client.stats.retries if client is not None else 0,
        rate_per_second=client.rate_per_second if client is not None else None,
        hr_count=len(hr.employees) if hr is not None else 0,
        protime_count=protime_count,
        plan=the_plan,
        records=ended.records,
        settled_since=settled.id if settled is not None else None,
        message=ended.message,
        plan_id=ended.plan_id,
        would_block=ended.would_block,
        stale=ended.stale,
        done=ended.done,
        protime_read=read.kind if read is not None else None,
        protime_read_reason=read.reason if read is not None else None,
        config_error=ended.config_error,
        retry_at=ended.retry_at
        or (ledger.tally.backoff.retry_at if ledger.tally.backoff is not None else None),
    )


def summary(result: RunResult) -> RunSummary:
    """What the run row keeps of a result."""
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
        protime_read=result.protime_read,
        protime_read_reason=result.protime_read_reason,
    )


def _requests(client: ProtimeAPI) -> dict[str, int]:
    return {f"{kind}:{status or 'error'}": n for (kind, status), n in client.stats.requests.items()}
