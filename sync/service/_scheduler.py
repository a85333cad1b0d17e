"""When runs happen: APScheduler decides the ticks, one runner thread of ours does the runs.

APScheduler's job only records that a tick is due (instantly); a dedicated daemon thread runs
one run at a time. So a tick that falls during a long run is not dropped (APScheduler's
``max_instances`` would skip it with a warning): it is coalesced into one run right after the
current one. And the run never sits in APScheduler's executor pool, whose worker threads the
interpreter joins at exit: a run that misses the shutdown grace cannot hold the process.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sync.errors import ConfigError
from sync.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from apscheduler.triggers.base import BaseTrigger

    from sync.config import ScheduleSettings

log = get_logger(__name__)

JOB_ID = "reconcile"
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


class Scheduler:
    """Calls ``run_once`` on every tick of ``trigger``, one call at a time, in its own thread.

    ``run_once`` should not raise; if it does, the error is logged and the next tick runs anyway.
    ``stop``, once set, keeps any new run from starting.
    """

    def __init__(
        self,
        *,
        trigger: BaseTrigger,
        run_once: Callable[[], None],
        stop: threading.Event,
        run_at_start: bool = False,
        misfire_grace_seconds: int = 3600,
        timezone: tzinfo = UTC,
    ) -> None:
        self._trigger = trigger
        self._run_once = run_once
        self._stop = stop
        self._run_at_start = run_at_start
        self._misfire_grace_seconds = misfire_grace_seconds
        self._cond = threading.Condition()
        self._pending = False
        self._busy = False
        self._run_started: float | None = None
        self._closing = False
        self._runner: threading.Thread | None = None
        self._scheduler = _Background(
            timezone=timezone,
            # The job only flags a tick: one worker is plenty.
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_seconds,
            },
        )

    def start(self) -> None:
        self._runner = threading.Thread(target=self._run_loop, name="idsync-runner", daemon=True)
        self._runner.start()
        options: dict[str, Any] = {}
        if self._run_at_start:
            options["next_run_time"] = datetime.now(UTC)
        self._scheduler.add_job(
            self._tick,
            trigger=self._trigger,
            id=JOB_ID,
            name="reconcile",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=self._misfire_grace_seconds,
            **options,
        )
        self._scheduler.start()
        log.info(
            "scheduler.started", trigger=str(self._trigger), next_run_time=self.next_run_time()
        )

    def next_run_time(self) -> str | None:
        job = self._scheduler.get_job(JOB_ID)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.isoformat() if when is not None else None

    @property
    def busy(self) -> bool:
        """True while a run is in progress."""
        with self._cond:
            return self._busy

    def running_for(self) -> float | None:
        """Seconds the current run has been going; None between runs."""
        with self._cond:
            started = self._run_started
        return None if started is None else time.monotonic() - started

    def problem(self) -> str | None:
        """None while the scheduler and the runner are alive; else what is dead."""
        if not self._scheduler.running or not self._scheduler.thread_alive():
            return "the scheduler is not running"
        if self._runner is None or not self._runner.is_alive():
            return "the run thread is not running"
        return None

    def trigger_now(self) -> None:
        """Ask for a run as soon as the runner is free (what a tick does)."""
        self._tick()

    def _tick(self) -> None:
        with self._cond:
            if self._closing or self._stop.is_set():
                return  # stopping: a tick now would start no run, so it is no tick at all
            if self._busy:
                # Not dropped: one run follows the current one, however many ticks fall meanwhile.
                log.info("scheduler.tick_coalesced", reason="a run is in progress")
            else:
                log.info("scheduler.tick")
            self._pending = True
            self._cond.notify_all()

    def _run_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                self._pending = False
                self._busy = True
                self._run_started = time.monotonic()
            try:
                if not self._stop.is_set():
                    self._run_once()
            except Exception:
                log.exception("scheduler.run_crashed")
            finally:
                with self._cond:
                    self._busy = False
                    self._run_started = None
                    self._cond.notify_all()

    def shutdown(self, *, grace_seconds: float) -> bool:
        """Take no new tick, wait up to ``grace_seconds`` for the current run; True if it ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._runner is None:
            return True
        self._runner.join(timeout=grace_seconds)
        return not self._runner.is_alive()
