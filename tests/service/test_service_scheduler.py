"""The schedule: configuration errors, crontab weekdays, one run at a time, coalesced ticks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from service_support import LogCapture, wait_for

from sync.config import ScheduleSettings
from sync.errors import ConfigError
from sync.service import Scheduler, build_trigger


def test_no_schedule_is_a_config_error_naming_both_variables() -> None:
    """Neither an interval nor a cron expression: the error names both variables."""
    with pytest.raises(ConfigError) as caught:
        build_trigger(ScheduleSettings())
    assert "IDSYNC_SCHEDULE__INTERVAL_SECONDS" in str(caught.value)
    assert "IDSYNC_SCHEDULE__CRON" in str(caught.value)


@pytest.mark.parametrize("cron", ["61 * * * *", "0 2 * *", "every day", "0 2 * * 9", "0 2 * * 5-2"])
def test_bad_cron_is_a_config_error_naming_the_variable(cron: str) -> None:
    """A wrong crontab expression is a ConfigError that names IDSYNC_SCHEDULE__CRON."""
    with pytest.raises(ConfigError, match="IDSYNC_SCHEDULE__CRON"):
        build_trigger(ScheduleSettings(cron=cron))


def test_bad_timezone_is_a_config_error_naming_the_variable() -> None:
    """An unknown time zone is a ConfigError that names IDSYNC_SCHEDULE__TIMEZONE."""
    with pytest.raises(ConfigError, match="IDSYNC_SCHEDULE__TIMEZONE"):
        build_trigger(ScheduleSettings(cron="0 2 * * *", timezone="Mars/Olympus"))


def test_interval_cron_or_both() -> None:
    """Interval alone, cron alone, or both combined: whichever fires first."""
    assert isinstance(build_trigger(ScheduleSettings(interval_seconds=60)), IntervalTrigger)
    assert isinstance(build_trigger(ScheduleSettings(cron="*/5 * * * *")), CronTrigger)
    assert isinstance(
        build_trigger(ScheduleSettings(interval_seconds=60, cron="0 2 * * *")), OrTrigger
    )


def _fire_days(cron: str, *, count: int = 7) -> list[str]:
    trigger = build_trigger(ScheduleSettings(cron=cron))
    moment = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)  # a Sunday
    days: list[str] = []
    previous = None
    for _ in range(count):
        moment = trigger.get_next_fire_time(previous, moment)
        days.append(moment.strftime("%a"))
        previous = moment
        moment = moment.replace(hour=23, minute=59)
    return days


@pytest.mark.parametrize(
    ("cron", "days"),
    [
        ("0 2 * * 0", {"Sun"}),
        ("0 2 * * 7", {"Sun"}),
        ("0 2 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 2 * * */2", {"Sun", "Tue", "Thu", "Sat"}),
        ("0 2 * * 6,0", {"Sat", "Sun"}),
        ("0 2 * * mon-fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
    ],
)
def test_cron_weekdays_read_as_crontab(cron: str, days: set[str]) -> None:
    """Day-of-week numbers mean what crontab(5) says (0 and 7 are Sunday), unlike APScheduler 3."""
    assert set(_fire_days(cron, count=10)) == days


class Runs:
    """A run_once that counts calls, can block, and can raise."""

    def __init__(self, *, block_first: bool = False, fail_first: int = 0) -> None:
        self.count = 0
        self.release = threading.Event()
        self.started = threading.Event()
        self.block_first = block_first
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1
            count = self.count
        self.started.set()
        if self.block_first and count == 1:
            self.release.wait(10)
        if count <= self.fail_first:
            raise RuntimeError(f"run {count} broke")


def _scheduler(runs: Runs, *, seconds: float, stop: threading.Event | None = None) -> Scheduler:
    return Scheduler(
        trigger=IntervalTrigger(seconds=seconds),
        run_once=runs,
        stop=stop or threading.Event(),
        run_at_start=True,
    )


def test_runs_happen_on_every_tick() -> None:
    """The runner calls the run on the start tick and on each interval tick."""
    runs = Runs()
    scheduler = _scheduler(runs, seconds=0.05)
    scheduler.start()
    try:
        wait_for(lambda: runs.count >= 3)
        assert scheduler.problem() is None
    finally:
        assert scheduler.shutdown(grace_seconds=5)


def test_an_exception_does_not_kill_the_scheduler(logs: LogCapture) -> None:
    """A run that raises is logged; the following ticks still run and the scheduler stays alive."""
    runs = Runs(fail_first=2)
    scheduler = _scheduler(runs, seconds=0.05)
    scheduler.start()
    try:
        wait_for(lambda: runs.count >= 4)
        assert scheduler.problem() is None
    finally:
        scheduler.shutdown(grace_seconds=5)
    crashed = logs.named("scheduler.run_crashed")
    assert len(crashed) == 2
    assert "run 1 broke" in crashed[0]["exception"]


def test_ticks_during_a_run_coalesce_into_one_follow_up(logs: LogCapture) -> None:
    """Ticks that fall during a run are not dropped: exactly one run follows, however many fell."""
    runs = Runs(block_first=True)
    scheduler = _scheduler(runs, seconds=3600)  # only the start tick and ours
    scheduler.start()
    try:
        runs.started.wait(5)
        for _ in range(3):
            scheduler.trigger_now()
        assert runs.count == 1
        runs.release.set()
        wait_for(lambda: runs.count == 2 and not scheduler.busy)
        assert not scheduler._pending  # nothing more queued: three ticks became one run
    finally:
        scheduler.shutdown(grace_seconds=5)
    assert runs.count == 2
    assert len(logs.named("scheduler.tick_coalesced")) == 3


def test_no_run_starts_once_stop_is_set() -> None:
    """With the stop event set, a tick does not start a run."""
    runs = Runs()
    stop = threading.Event()
    stop.set()
    scheduler = _scheduler(runs, seconds=3600, stop=stop)
    scheduler.start()
    try:
        scheduler.trigger_now()
        wait_for(lambda: not scheduler.busy and not scheduler._pending)
    finally:
        scheduler.shutdown(grace_seconds=5)
    assert runs.count == 0


def test_shutdown_waits_for_the_run_within_the_grace() -> None:
    """Shutdown reports whether the run in progress ended within the grace, and stops the ticks."""
    runs = Runs(block_first=True)
    scheduler = _scheduler(runs, seconds=3600)
    scheduler.start()
    runs.started.wait(5)
    assert scheduler.shutdown(grace_seconds=0.05) is False  # the run is still blocked
    assert scheduler.problem() is not None
    runs.release.set()
    assert scheduler.shutdown(grace_seconds=5) is True
    assert runs.count == 1


def test_interval_ticks_are_aligned_on_the_epoch() -> None:
    """Interval ticks fall on multiples of the interval since the epoch, so replicas tick together."""
    trigger = build_trigger(ScheduleSettings(interval_seconds=900))
    now = datetime(2025, 6, 1, 10, 7, 31, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first == datetime(2025, 6, 1, 10, 15, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first) == datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
