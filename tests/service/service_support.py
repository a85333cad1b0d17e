"""Helpers of the service tests (a distinct module name: conftest is not importable twice)."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from sync.config import HttpSettings, LogSettings, ScheduleSettings, Settings
from sync.names import DEFAULT_SYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

DEADLINE_SECONDS = 10.0


def wait_for(condition: Callable[[], Any], *, timeout: float = DEADLINE_SECONDS) -> Any:
    """Poll ``condition`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


class LogCapture(io.StringIO):
    """The log stream of a test: the text, and each line parsed as JSON."""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


def make_settings(**schedule: Any) -> Settings:
    """Settings for a service test: port 0, a short grace, DEBUG JSON logs, no environment or .env."""
    http = schedule.pop("http", None) or HttpSettings(host="127.0.0.1", port=0)
    database_url = schedule.pop("database_url", "sqlite:///:memory:")
    top: dict[str, Any] = {}
    if "run_deadline_seconds" in schedule:
        top["run_deadline_seconds"] = schedule.pop("run_deadline_seconds")
    log = LogSettings(level="DEBUG", format="json")
    values: dict[str, Any] = {
        "interval_seconds": 3600,
        "run_at_start": True,
        "shutdown_grace_seconds": 5.0,
    }
    values.update(schedule)
    return Settings(
        _env_file=None,
        database_url=database_url,
        schedule=ScheduleSettings(**values),
        http=http,
        log=log,
        **top,
    )


class FakeState:
    """A :class:`~sync.service.ServiceState` with scripted answers."""

    def __init__(self) -> None:
        self.upgrades = 0
        self.closed = False
        self.problem: str | None = None
        self.counts: Mapping[str, int] = {"linked": 3, "unmatched": 1}
        self.last_success: float | None = None
        self.lock = threading.Lock()
        self.threshold_seen: int | None = None
        self.started: datetime | None = None  # the newest run's start, as another replica left it

    def upgrade(self) -> None:
        with self.lock:
            self.upgrades += 1

    def readiness_problem(
        self, *, failing_runs_unready: int | None, sync: str = DEFAULT_SYNC
    ) -> str | None:
        del sync
        self.threshold_seen = failing_runs_unready
        return self.problem

    def counts_by_situation(self, *, sync: str = DEFAULT_SYNC) -> Mapping[str, int]:
        del sync
        return self.counts

    def last_success_timestamp(self, *, sync: str = DEFAULT_SYNC) -> float | None:
        del sync
        return self.last_success

    def last_run_started(self, *, sync: str = DEFAULT_SYNC) -> datetime | None:
        del sync
        return self.started

    def close(self) -> None:
        self.closed = True
