"""Plain values the state layer hands out and takes in. No ORM object ever leaves ``sync.state``.

The run vocabulary (:class:`RunStatus`, :class:`Trigger`) is declared in :mod:`sync.status` and
re-exported here, as the values the run table stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sync.domain import Action, Outcome


class EventAction(StrEnum):
    """What an audit event records: a call to Protime, or an admin's change to the map."""

    WRITE = "write"
    DELETE = "delete"
    LINK = "link"
    UNLINK = "unlink"
    IGNORE = "ignore"
    UNIGNORE = "unignore"
    CLEAR_FAILED = "clear_failed"


@dataclass(frozen=True, slots=True)
class MappingRow:
    """One row of the map, as ``idsync show`` and ``export`` present it.

    ``hr_id`` is the HR id, or for an ``orphaned`` row the value Protime holds. ``manual`` means an
    admin linked it (``protime_id`` then wins over every matching rule); ``ignored`` that an admin
    excluded it. ``last_written_value`` is what idsync last wrote successfully; ``protime_value`` what
    the matched person held for the reference when last read (or after our last write).
    ``attempts`` counts failed attempts since the last success; ``failed_fingerprint`` is set when the
    last action failed permanently (``Action.fingerprint``), and blocks the same action until its
    inputs change or an admin clears it. ``last_run_id`` is the run that last classified or wrote it.
    ``previous_hr_id`` is the HR id the person held before idsync wrote this one over it (a re-key:
    a rehire, a contractor becoming an employee).
    """

    hr_id: str
    protime_id: int | None
    situation: str
    rule: str | None
    evidence: str | None
    reason: str
    manual: bool
    ignored: bool
    last_written_value: str | None
    protime_value: str | None
    candidates: tuple[int, ...]
    first_seen_at: datetime
    last_verified_at: datetime | None
    last_changed_at: datetime
    last_error: str | None
    attempts: int
    failed_fingerprint: str | None
    last_run_id: str | None
    previous_hr_id: str | None = None
    last_written_at: datetime | None = None

    @property
    def hr_wants(self) -> str | None:
        """The value HR wants on ``protime_id``: the HR id itself for an employee idsync keeps
        linked, nothing for an orphan (its HR id is gone or inactive) or a row HR cannot name."""
        if self.situation in ("orphaned", "invalid", "ignored") or self.protime_id is None:
            return None
        return self.hr_id


@dataclass(frozen=True, slots=True)
class Rekey:
    """One re-key: person ``protime_id`` held ``old`` and idsync wrote ``new`` over it."""

    old: str
    new: str
    protime_id: int | None
    at: datetime | None
    run_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One audit event.

    For ``write``/``delete``: ``value`` is the reference value of the call, ``previous_value`` what the
    person held before it as far as idsync knew, ``run_id`` the run. For admin actions ``run_id`` is
    ``None``; ``link`` keeps the Protime id (as text) in ``value`` and the previous manual link in
    ``previous_value``. ``outcome`` is one of :class:`~sync.domain.Outcome`; admin events are
    ``succeeded`` when written.
    """

    id: int
    run_id: str | None
    hr_id: str | None
    protime_id: int | None
    action: str
    situation: str | None
    value: str | None
    previous_value: str | None
    reason: str | None
    outcome: str
    http_status: int | None
    error: str | None
    attempts: int
    created_at: datetime
    completed_at: datetime | None
    previous_protime_id: int | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run. The three figure maps are :class:`RunSummary`'s, read back from JSON.

    ``only_ids`` is empty for a full run. ``host``/``pid`` identify the process that ran it.
    """

    id: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    dry_run: bool
    forced: bool
    only_ids: tuple[str, ...]
    hr_count: int | None
    protime_count: int | None
    counts_by_situation: dict[str, int]
    actions_by_outcome: dict[str, dict[str, int]]
    api_calls: dict[str, int]
    error: str | None
    duration_seconds: float | None
    host: str | None
    pid: int | None
    plan_id: str | None = None
    rate_per_second: float | None = None
    # Where the run is or ended: phase, done, total, rate_per_second, eta_seconds, updated_at.
    progress: dict[str, Any] = field(default_factory=dict)
    protime_read: str | None = None  # "full" or "incremental" (None: the run read nothing)
    protime_read_reason: str | None = None  # why a full read


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished run reports; see :meth:`~sync.state._runs.RunStore.finish_run`.

    * ``hr_count`` / ``protime_count`` — the snapshot sizes (valid in-scope HR employees; Protime
      people read). The input gate compares the next run's snapshots against the last good run's.
    * ``counts_by_situation`` — situation -> number of classifications.
    * ``actions_by_outcome`` — action kind -> outcome -> count, e.g. ``{"write": {"succeeded": 3}}``.
    * ``api_calls`` — free-form call counters, e.g. by HTTP status ``{"200": 10, "429": 2}``.
    * ``error`` — why the run failed or was blocked; never a secret (callers build it from names).
    * ``duration_seconds`` — measured by the caller; ``None`` to use finished minus started.
    * ``protime_read`` / ``protime_read_reason`` — "full" or "incremental", and why a full read.
    """

    hr_count: int | None = None
    protime_count: int | None = None
    counts_by_situation: Mapping[str, int] = field(default_factory=dict)
    actions_by_outcome: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    api_calls: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    duration_seconds: float | None = None
    protime_read: str | None = None
    protime_read_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """How one planned action ended, for :meth:`~sync.state._events.EventStore.record_outcomes`.

    ``event_id`` is what :meth:`~sync.state._events.EventStore.record_pending` returned for ``action``. ``error`` is a
    short text without secrets; ``attempts`` the number of HTTP attempts the call took.
    """

    event_id: int
    action: Action
    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class PlanRow:
    """A stored plan's header; its actions are read with :meth:`~sync.state._plans.PlanStore.iter_plan_actions`.

    ``kind`` is ``reconcile`` (from ``idsync plan`` or a blocked reconcile) or ``rollback``
    (``rollback_of`` names the run it undoes). ``would_block`` lists what a reconcile would have
    blocked on; ``applied_by`` is the last run that applied it.
    """

    id: str
    kind: str
    created_at: datetime
    run_id: str | None
    rollback_of: str | None
    settings_digest: str
    snapshot_fingerprint: str | None
    counts_by_situation: dict[str, int]
    actions_by_kind: dict[str, int]
    would_block: tuple[str, ...]
    action_count: int
    applied_at: datetime | None = None
    applied_by: str | None = None
