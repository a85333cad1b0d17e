"""What one reconciliation run reports to its caller (the CLI, the scheduler, the metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.status import RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from sync.domain import Classification, Plan


# The CLI's exit code of each status a run ends with (``RunStatus.exit_code``).
EXIT_CODES = {status: status.exit_code for status in RunStatus if status.finished}


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of :func:`sync.reconcile.run`.

    ``actions_by_outcome`` keys are ``"<action>:<outcome>"`` (``"write:succeeded"``);
    ``api_requests`` keys are ``"<kind>:<status>"`` (``"people:200"``, ``"put:429"``,
    ``"token:200"``, ``"put:error"`` for a network error).
    """

    run_id: str | None
    status: RunStatus
    dry_run: bool
    duration_seconds: float
    counts_by_situation: dict[str, int] = field(default_factory=dict)
    actions_by_outcome: dict[str, int] = field(default_factory=dict)
    api_requests: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    hr_count: int = 0
    protime_count: int = 0
    plan: Plan | None = None
    # The client-side rate at the end of the run: with "auto", what it learned (None: no limit).
    rate_per_second: float | None = None
    message: str = ""  # why blocked/failed/skipped, one line, never a secret
    plan_id: str | None = None  # the plan stored (blocked reconcile, plan) or applied
    would_block: tuple[str, ...] = ()  # what a reconcile blocks on (or would, for a plan)
    stale: tuple[tuple[str, str], ...] = ()  # apply: (action, why) of each stale action
    done: int = 0  # apply: actions of the plan already in effect (nothing to call)
    # How Protime was read: "full" or "incremental" (None: not read), and why a full read.
    protime_read: str | None = None
    protime_read_reason: str | None = None
    # A settled run (nothing changed since the run ``settled_since`` settled: not planned
    # again): ``plan`` is None and ``records`` holds the map's unlinked rows instead.
    settled_since: str | None = None
    records: tuple[Classification, ...] | None = None
    # Failed on a configuration error (the message names the variable): exit 2, not 1.
    config_error: bool = False
    # Interrupted because Protime asked to be called again this late (a Retry-After longer than
    # IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS): `idsync serve` starts no run before it.
    retry_at: datetime | None = None

    @property
    def exit_code(self) -> int:
        return 2 if self.config_error else self.status.exit_code
