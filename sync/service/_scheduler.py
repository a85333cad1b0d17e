"""When runs happen: APScheduler decides the ticks, a pool of runner threads of ours does the runs.

Every sync is a *slot* with its own trigger. APScheduler only records that a slot's tick is due
(instantly, with the tick's scheduled time); ``workers`` daemon threads run the due slots, one run
per slot at a time and at most ``workers`` at once. So a tick that falls during a long run of its
sync is not dropped (APScheduler's ``max_instances`` would skip it with a warning): it is
coalesced into one run right after the current one. And a run never sits in APScheduler's
executor pool, whose worker threads the interpreter joins at exit: a run that misses the shutdown
grace cannot hold the process.

**Fairness.** A free worker takes the due slot that has waited longest; among slots due at the
same moment, an order of this process's own (a hash of a per-process token and the sync's name),
so replicas ticking together start on different syncs instead of all queueing on the first. A
slow, failing or blocked sync holds one worker for its own run only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sync.errors import ConfigError
from sync.logging import get_logger
from sync.names import DEFAULT_SYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from apscheduler.triggers.base import BaseTrigger

    from sync.config import ScheduleSettings

log = get_logger(__name__)

JOB_PREFIX = "reconcile:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CRON_VAR = "IDSYNC_SCHEDULE__CRON"
# crontab numbers days 0-7 from Sunday (0 and 7); APScheduler 3 numbers them from Monday. Numbers
# are translated to names, which both read alike, so `0 2 * * 0` means Sunday as in crontab(5).
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMERIC_WEEKDAYS = re.compile(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?")


def _weekday_field(field: str) -> str:
    names: list[str] = []
    for item in field.split(","):
        match = _NUMERIC_WEEKDAYS.fullmatch(item)
        if match is None or item == "*":
            names.append(item)  # names and name ranges: APScheduler reads them as crontab does
            continue
        whole, first, last, step = match.groups()
        if whole == "*":
            start, end = 0, 6
        else:
            start = int(first)
            end = int(last) if last is not None else (6 if step else start)
        if not 0 <= start <= end <= 7:  # noqa: PLR2004 - crontab's 7 is Sunday again
            raise ConfigError(f"{_CRON_VAR}: day of week {item!r} is not within 0-7")
        days = range(start, end + 1, int(step) if step else 1)
        names.extend(_WEEKDAYS[day % 7] for day in days)
    return ",".join(dict.fromkeys(names))


def timezone_of(schedule: ScheduleSettings) -> tzinfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"IDSYNC_SCHEDULE__TIMEZONE: unknown time zone {schedule.timezone!r} "
            "(use an IANA name such as UTC or Europe/Brussels)"
        ) from None


def cron_trigger(expression: str, *, timezone: tzinfo) -> CronTrigger:
    """A trigger for a five-field crontab expression, with crontab's day-of-week numbering."""
    fields = expression.split()
    if len(fields) != 5:  # noqa: PLR2004 - minute hour day month weekday
        raise ConfigError(
            f"{_CRON_VAR}: {expression!r} has {len(fields)} field(s); a crontab expression has 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
        )
    fields[4] = _weekday_field(fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{_CRON_VAR}: {expression!r} is not a valid crontab expression: {exc}"
        ) from None


def build_trigger(schedule: ScheduleSettings) -> BaseTrigger:
    """The trigger of the settings: interval, cron, or either (whichever fires first).

    Raises :class:`ConfigError` naming the variable when neither is set or one is wrong.
    """
    timezone = timezone_of(schedule)
    triggers: list[BaseTrigger] = []
    if schedule.interval_seconds is not None:
        # Ticks fall on multiples of the interval since the epoch (900 s: :00, :15, :30, :45 UTC),
        # not since this process started: replicas then tick together, one runs and the others
        # skip as locked, instead of each running its own out-of-phase schedule.
        triggers.append(
            IntervalTrigger(seconds=schedule.interval_seconds, start_date=_EPOCH, timezone=timezone)
        )
    if schedule.cron is not None and schedule.cron.strip():
        triggers.append(cron_trigger(schedule.cron, timezone=timezone))
    if not triggers:
        raise ConfigError(
            "no schedule: set IDSYNC_SCHEDULE__INTERVAL_SECONDS (e.g. 3600) and/or "
            f"{_CRON_VAR} (e.g. '0 2 * * *')"
        )
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


class _Background(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 ships no types
    def thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and bool(thread.is_alive())


def _flag_only() -> None:
    """The APScheduler job: the submission listener records the tick; nothing runs here."""


@dataclass
class _Slot:
    """One sync's schedule and where its runs stand (guarded by the scheduler's condition)."""

    name: str
    trigger: BaseTrigger
    run_once: Callable[[], None]
    run_at_start: bool
    misfire_grace_seconds: int
    order: bytes
    pending: bool = False
    due_at: datetime | None = None  # the scheduled time of the oldest tick not yet run
    waiting_since: float | None = None  # monotonic time of that tick
    busy: bool = False
    started: float | None = None  # monotonic start of the run in progress
    running_due: datetime | None = None  # the tick the run in progress serves


class Scheduler:
    """Calls each slot's ``run_once`` on every tick of its trigger, one call per slot at a time,
    at most ``workers`` at once, in threads of its own.

    Built with ``trigger`` and ``run_once`` it has one slot (the ``default`` sync), as a
    deployment of one sync has; :meth:`add` adds slots before :meth:`start`. ``run_once`` should
    not raise; if it does, the error is logged and the next tick runs anyway. ``stop``, once set,
    keeps any new run from starting.
    """

    def __init__(
        self,
        *,
        stop: threading.Event,
        trigger: BaseTrigger | None = None,
        run_once: Callable[[], None] | None = None,
        run_at_start: bool = False,
        misfire_grace_seconds: int = 3600,
        timezone: tzinfo = UTC,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        self._stop = stop
        self._workers = workers
        # Per process: two replicas order equally-due slots differently (see the module doc).
        self._token = secrets.token_bytes(8)
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {}
        self._closing = False
        self._runners: list[threading.Thread] = []
        self._scheduler = _Background(
            timezone=timezone,
            # The job only flags a tick: one worker is plenty.
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        if trigger is not None and run_once is not None:
            self.add(
                DEFAULT_SYNC,
                trigger=trigger,
                run_once=run_once,
                run_at_start=run_at_start,
                misfire_grace_seconds=misfire_grace_seconds,
            )

    def add(
        self,
        name: str,
        *,
        trigger: BaseTrigger,
        run_once: Callable[[], None],
        run_at_start: bool = False,
        misfire_grace_seconds: int = 3600,
    ) -> None:
        """A slot for sync ``name`` (before :meth:`start`)."""
        if self._runners:
            raise RuntimeError("slots are added before the scheduler starts")
        if name in self._slots:
            raise ValueError(f"sync {name!r} is scheduled twice")
        order = hashlib.blake2b(name.encode(), key=self._token, digest_size=8).digest()
        self._slots[name] = _Slot(
            name=name,
            trigger=trigger,
            run_once=run_once,
            run_at_start=run_at_start,
            misfire_grace_seconds=misfire_grace_seconds,
            order=order,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._slots)

    @property
    def workers(self) -> int:
        """How many runs may go at once."""
        return self._workers

    def start(self) -> None:
        for number in range(self._workers):
            runner = threading.Thread(
                target=self._run_loop, name=f"idsync-runner-{number}", daemon=True
            )
            runner.start()
            self._runners.append(runner)
        for slot in self._slots.values():
            options: dict[str, Any] = {}
            if slot.run_at_start:
                options["next_run_time"] = datetime.now(UTC)
            self._scheduler.add_job(
                _flag_only,
                trigger=slot.trigger,
                id=JOB_PREFIX + slot.name,
                name=f"reconcile {slot.name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=slot.misfire_grace_seconds,
                **options,
            )
        self._scheduler.start()
        for slot in self._slots.values():
            log.info(
                "scheduler.started",
                sync=slot.name,
                trigger=str(slot.trigger),
                next_run_time=self.next_run_time(slot.name),
                workers=self._workers,
            )

    def next_run_time(self, name: str = DEFAULT_SYNC) -> str | None:
        job = self._scheduler.get_job(JOB_PREFIX + name)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.isoformat() if when is not None else None

    @property
    def busy(self) -> bool:
        """True while a run is in progress."""
        with self._cond:
            return any(slot.busy for slot in self._slots.values())

    @property
    def running(self) -> int:
        """How many runs are in progress."""
        with self._cond:
            return sum(slot.busy for slot in self._slots.values())

    @property
    def _pending(self) -> bool:
        with self._cond:
            return any(slot.pending for slot in self._slots.values())

    def running_for(self) -> float | None:
        """Seconds the longest run in progress has been going; None when none runs."""
        now = time.monotonic()
        with self._cond:
            started = [s.started for s in self._slots.values() if s.started is not None]
        return None if not started else now - min(started)

    def waiting(self) -> Mapping[str, float]:
        """Seconds each due sync has waited for a worker (a sync not waiting is absent)."""
        now = time.monotonic()
        with self._cond:
            return {
                s.name: now - s.waiting_since
                for s in self._slots.values()
                if s.pending and not s.busy and s.waiting_since is not None
            }

    def serving(self, name: str) -> datetime | None:
        """The scheduled time of the tick the run of ``name`` in progress serves."""
        with self._cond:
            slot = self._slots.get(name)
            return None if slot is None else slot.running_due

    def problem(self) -> str | None:
        """None while the scheduler and the runners are alive; else what is dead."""
        if not self._scheduler.running or not self._scheduler.thread_alive():
            return "the scheduler is not running"
        if not self._runners or not all(runner.is_alive() for runner in self._runners):
            return "a run thread is not running"
        return None

    def trigger_now(self, name: str = DEFAULT_SYNC) -> None:
        """Ask for a run of ``name`` as soon as a worker is free (what a tick does)."""
        self._tick(name, due_at=datetime.now(UTC))

    def _submitted(self, event: JobSubmissionEvent) -> None:
        name = str(event.job_id).removeprefix(JOB_PREFIX)
        times = list(event.scheduled_run_times or ())
        self._tick(name, due_at=max(times) if times else datetime.now(UTC))

    def _tick(self, name: str, *, due_at: datetime) -> None:
        with self._cond:
            slot = self._slots.get(name)
            if slot is None or self._closing or self._stop.is_set():
                return  # stopping: a tick now would start no run, so it is no tick at all
            if slot.busy or slot.pending:
                # Not dropped: one run follows, however many ticks fall meanwhile.
                reason = "a run is in progress" if slot.busy else "waiting for a free worker"
                log.info("scheduler.tick_coalesced", sync=name, reason=reason)
            else:
                log.info("scheduler.tick", sync=name)
            if not slot.pending:
                slot.pending = True
                slot.waiting_since = time.monotonic()
            # The newest tick: the run that follows serves it (and every one coalesced before).
            slot.due_at = due_at
            self._cond.notify_all()

    def _next_slot(self) -> _Slot | None:
        """The due, idle slot that has waited longest (see the module doc); None if none."""
        ready = [s for s in self._slots.values() if s.pending and not s.busy]
        if not ready:
            return None
        return min(ready, key=lambda s: (s.waiting_since or 0.0, s.order))

    def _run_loop(self) -> None:
        while True:
            with self._cond:
                slot = self._next_slot()
                while slot is None and not self._closing:
                    self._cond.wait()
                    slot = self._next_slot()
                if self._closing or slot is None:
                    return
                slot.pending = False
                slot.waiting_since = None
                slot.busy = True
                slot.started = time.monotonic()
                slot.running_due, slot.due_at = slot.due_at, None
            try:
                if not self._stop.is_set():
                    slot.run_once()
            except Exception:
                log.exception("scheduler.run_crashed", sync=slot.name)
            finally:
                with self._cond:
                    slot.busy = False
                    slot.started = None
                    slot.running_due = None
                    self._cond.notify_all()

    def shutdown(self, *, grace_seconds: float) -> bool:
        """Take no new tick, wait up to ``grace_seconds`` for the runs; True if they all ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace_seconds
        for runner in self._runners:
            runner.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(runner.is_alive() for runner in self._runners)
