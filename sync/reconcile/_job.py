"""The bottom floor of a run: what was asked (:class:`Job`), what it talks to (:class:`Ports`),
what it read (:class:`Inputs`) and what it measured on the way (:class:`Ledger`).

Every other module of the package imports these; this one imports none of them, so the run's
modules form no import circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.reconcile._apply import Tally
from sync.reconcile._fence import lock_lost
from sync.status import Trigger

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from datetime import datetime

    from sync.config import Settings
    from sync.domain import HRSnapshot, Person, Plan, PriorState
    from sync.reconcile._people import ProtimeRead
    from sync.reconcile._ports import HRSource, ProtimeAPI, RunState
    from sync.reconcile._progress import ProgressSnapshot, RunProgress
    from sync.state import RunRow


@dataclass(frozen=True, slots=True)
class Job:
    """One run as its caller asked for it, and when it started. Immutable: what a run measures
    goes into its :class:`Ledger`."""

    settings: Settings
    trigger: Trigger
    dry_run: bool = False
    force: bool = False
    only: tuple[str, ...] = ()
    retry_failed: bool = False
    stop: threading.Event | None = None
    progress: Callable[[int, int], None] | None = None
    plan_id: str | None = None  # an apply or rollback: the plan it runs
    strict: bool = False  # an apply: nothing when any action is stale (--strict)
    full: bool = False  # read Protime in full whatever the delta feed allows (--full)
    on_progress: Callable[[ProgressSnapshot], None] | None = None
    # A scheduled run: the tick it serves. Once the lock is held, a run of the sync that started
    # since then (another replica's) makes this one a skip: one run per tick, whoever runs it.
    due_at: datetime | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def stop_reason(self) -> str:
        """Why the run stops: the run lock lost, or a shutdown asked for."""
        return lock_lost(self.stop) or "shutdown requested"

    @property
    def plain(self) -> bool:
        """A run that may settle, or take a settled run's plan (``_settled.py``): none of the
        flags that ask for a plan of its own, and not a review run (plan, apply, rollback)."""
        return self.trigger in (Trigger.CLI, Trigger.SCHEDULE) and not (
            self.dry_run or self.only or self.force or self.retry_failed
        )


@dataclass(frozen=True, slots=True)
class Ports:
    """What a run talks to: HR, the state database, Protime."""

    hr: HRSource
    state: RunState
    protime: ProtimeAPI


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


@dataclass(slots=True)
class Ledger:
    """What a run has measured so far, written by the steps that measure it (the read, the
    apply step) and read once, by the report: a run that fails, blocks or stops half-way still
    reports the counts and calls it reached. The decision never sees it."""

    progress: RunProgress | None = None  # where the run is (run.progress, the run row, gauges)
    client: ProtimeAPI | None = None
    hr: HRSnapshot | None = None
    people: list[Person] | None = None
    read: ProtimeRead | None = None  # which read of Protime the run did
    plan: Plan | None = None  # the plan decided, once it is
    counts: dict[str, int] | None = None  # a settled run: the settled run's situations
    settled: RunRow | None = None  # a settled run: the run whose plan it takes
    tally: Tally = field(default_factory=Tally)

    def phase(
        self, name: str, *, total: int | None = None, poll: Callable[[], int] | None = None
    ) -> None:
        if self.progress is not None:
            self.progress.phase(name, total=total, poll=poll)
