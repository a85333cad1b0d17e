"""The service put together, with a fake run function: runs, probes, metrics, signals, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from service_support import FakeState, LogCapture, make_settings, wait_for
from sqlalchemy.exc import OperationalError

from sync.config import HttpSettings
from sync.errors import ConfigError, StateError
from sync.names import DEFAULT_SYNC
from sync.reconcile._result import RunResult, RunStatus
from sync.service import Service, serve
from sync.service._serve import _stop_on_signals
from sync.state import check_schema, open_database

# The labels of the default sync's series, the one sync these services run.
DEFAULT = {"sync": DEFAULT_SYNC}

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sync.config import Settings


class FakeRun:
    """A run function: records its calls; returns scripted statuses, raises, or blocks until stop.

    ``hold`` maps a call index to an event that call waits for before answering.
    """

    def __init__(
        self,
        *,
        statuses: list[RunStatus | type[Exception]] | None = None,
        block_until_stop: bool = False,
        ignore_stop: threading.Event | None = None,
        hold: dict[int, threading.Event] | None = None,
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.statuses = statuses or []
        self.block_until_stop = block_until_stop
        self.ignore_stop = ignore_stop
        self.hold = hold or {}
        self.entered = threading.Event()
        self.lock = threading.Lock()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.calls)

    def __call__(
        self, *, settings: Settings, trigger: str, stop: threading.Event, **_: object
    ) -> RunResult:
        with self.lock:
            self.calls.append({"settings": settings, "trigger": trigger, "stop": stop})
            index = len(self.calls) - 1
        self.entered.set()
        if index in self.hold:
            self.hold[index].wait(10)
        if self.ignore_stop is not None:
            self.ignore_stop.wait(10)  # a run that never reaches a safe point in time
        if self.block_until_stop:
            stop.wait(10)
            return RunResult(
                run_id=f"r{index}",
                status=RunStatus.INTERRUPTED,
                dry_run=False,
                duration_seconds=0.1,
            )
        status = self.statuses[index] if index < len(self.statuses) else RunStatus.SUCCEEDED
        if isinstance(status, type):
            raise status(f"run {index} exploded")
        return RunResult(
            run_id=f"r{index}",
            status=status,
            dry_run=False,
            duration_seconds=0.5,
            actions_by_outcome={"write:succeeded": 1},
            message="lock held by another run" if status is RunStatus.SKIPPED else "",
        )


@pytest.fixture
def started() -> Iterator[list[Service]]:
    """Services a test starts; shut down at the end whatever happened."""
    services: list[Service] = []
    yield services
    for service in services:
        service.shutdown()


def _start(
    started: list[Service],
    run: FakeRun,
    state: FakeState,
    *,
    seconds: float = 0.05,
    **settings: Any,
) -> Service:
    service = Service(
        settings=make_settings(**settings),
        run_fn=run,
        state=state,
        trigger=IntervalTrigger(seconds=seconds),
    )
    started.append(service)
    service.start()
    return service


def _get(service: Service, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{service.http_port}{path}", timeout=5)


def test_runs_happen_and_the_probes_and_metrics_agree(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """Scheduled runs call the run function with trigger=schedule; metrics count exactly those runs."""
    run = FakeRun()
    service = _start(started, run, fake_state)
    wait_for(lambda: run.count >= 3)
    assert _get(service, "/healthz").json() == {"alive": True}
    assert _get(service, "/readyz").json() == {"ready": True}
    assert (
        'idsync_mappings{situation="linked",sync="default"} 3.0' in _get(service, "/metrics").text
    )
    assert service.shutdown() is True
    assert fake_state.upgrades == 1
    assert fake_state.closed
    assert {call["trigger"] for call in run.calls} == {"schedule"}
    assert all(call["stop"] is service.stop_event for call in run.calls)
    runs = service.metrics.registry.get_sample_value(
        "idsync_runs_total", {**DEFAULT, "status": "succeeded"}
    )
    assert runs == run.count
    assert len(logs.named("scheduler.run_finished")) == run.count
    assert [e["event"] for e in logs.events() if e["event"].startswith("service.")][:2] == [
        "service.start",
        "service.migrated",
    ]
    assert logs.named("service.stop")[0]["clean"] is True


def test_readyz_follows_the_state(started: list[Service], fake_state: FakeState) -> None:
    """/readyz passes on the state's reason (schema behind, failing runs) and the configured threshold."""
    service = _start(started, FakeRun(), fake_state, seconds=3600)
    fake_state.problem = "the state database schema is at revision 0001, the code expects 0002"
    response = _get(service, "/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == fake_state.problem
    assert fake_state.threshold_seen == 3
    assert _get(service, "/healthz").status_code == 200  # alive all the same


def test_a_run_that_raises_is_counted_and_the_service_goes_on(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """Exceptions from the run function are logged and counted; later runs still happen."""
    run = FakeRun(statuses=[RuntimeError, RuntimeError, RunStatus.SUCCEEDED])
    service = _start(started, run, fake_state)
    wait_for(lambda: run.count >= 4)
    assert _get(service, "/healthz").status_code == 200
    service.shutdown()
    assert service.metrics.registry.get_sample_value("idsync_run_exceptions_total", DEFAULT) == 2
    assert len(logs.named("scheduler.run_crashed")) == 2


def test_runs_raising_in_a_row_make_the_service_unready(
    started: list[Service], fake_state: FakeState
) -> None:
    """N exceptions in a row make /readyz 503 (the state knows nothing of them); a result clears it."""
    held = threading.Event()
    run = FakeRun(statuses=[RuntimeError] * 3, hold={3: held})  # the 4th run waits for us
    service = _start(started, run, fake_state)
    wait_for(lambda: run.count >= 4)
    response = _get(service, "/readyz")
    assert response.status_code == 503
    assert "the last 3 runs raised an error" in response.json()["reason"]
    held.set()  # the 4th run returns a result
    wait_for(lambda: _get(service, "/readyz").status_code == 200)


def test_a_locked_run_is_counted_as_skipped(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """A run that found the lock held is counted as skipped, and does not count as a failure."""
    run = FakeRun(statuses=[RunStatus.SKIPPED])
    service = _start(started, run, fake_state, seconds=3600)
    wait_for(lambda: logs.named("scheduler.run_finished"))
    service.shutdown()
    assert logs.named("scheduler.run_finished")[0]["status"] == "skipped"
    assert (
        service.metrics.registry.get_sample_value(
            "idsync_runs_total", {**DEFAULT, "status": "skipped"}
        )
        == 1
    )
    assert (
        service.metrics.registry.get_sample_value("idsync_run_duration_seconds_count", DEFAULT) == 0
    )


def test_a_known_error_is_one_line_without_traceback(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """An IdsyncError from the run (state database down) is logged as one line, no traceback."""
    run = FakeRun(statuses=[StateError])
    service = _start(started, run, fake_state, seconds=3600)
    wait_for(lambda: logs.named("scheduler.run_error"))
    service.shutdown()
    (event,) = logs.named("scheduler.run_error")
    assert event["error"] == "run 0 exploded"
    assert event["error_type"] == "StateError"
    assert "exception" not in event
    assert not logs.named("scheduler.run_crashed")


class _ReadOnlyStateError(OperationalError):
    """What a driver raises on a write to a read-only state database (wrapped by SQLAlchemy)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            "INSERT INTO runs (id) VALUES (%(id)s)",
            {"id": "r0"},
            Exception("cannot execute INSERT in a read-only transaction\nCONTEXT: ..."),
        )
        self.message = message


def test_a_state_database_that_refuses_a_write_is_one_line_without_traceback(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """A database error the store did not wrap (a read-only state database) is one
    `scheduler.run_error` line with the database's reason, never a traceback."""
    run = FakeRun(statuses=[_ReadOnlyStateError])
    service = _start(started, run, fake_state, seconds=3600)
    wait_for(lambda: logs.named("scheduler.run_error"))
    service.shutdown()
    (event,) = logs.named("scheduler.run_error")
    assert event["error"] == (
        "the state database refused: cannot execute INSERT in a read-only transaction"
    )
    assert event["error_type"] == "_ReadOnlyStateError"
    assert "exception" not in event
    assert not logs.named("scheduler.run_crashed")


def test_stop_interrupts_the_running_run_and_shuts_down_cleanly(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """The stop event reaches the running run, which returns interrupted; shutdown is clean."""
    run = FakeRun(block_until_stop=True)
    service = _start(started, run, fake_state, seconds=3600)
    run.entered.wait(5)
    assert service.shutdown() is True
    (finished,) = logs.named("scheduler.run_finished")
    assert finished["status"] == "interrupted"
    assert logs.named("service.stopping")[0]["run_in_progress"] is True
    assert _closed(service)


def _closed(service: Service) -> bool:
    try:
        _get(service, "/healthz")
    except httpx.ConnectError:
        return True
    return False


def test_a_run_past_the_grace_is_left_behind(
    started: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """A run that ignores stop past the grace does not hold the service: shutdown returns, says so."""
    stuck = threading.Event()
    run = FakeRun(ignore_stop=stuck)
    service = _start(started, run, fake_state, seconds=3600, shutdown_grace_seconds=0.1)
    run.entered.wait(5)
    try:
        assert service.shutdown() is False
        assert logs.named("service.stop_timeout")[0]["grace_seconds"] == 0.1
        assert not fake_state.closed  # the run may still use its connections
    finally:
        stuck.set()


def test_a_run_stuck_past_the_run_deadline_makes_healthz_unhealthy(
    started: list[Service], fake_state: FakeState
) -> None:
    """A run going past the run deadline plus the grace (a call that never returns) fails /healthz."""
    stuck = threading.Event()
    run = FakeRun(ignore_stop=stuck)
    service = _start(
        started,
        run,
        fake_state,
        seconds=3600,
        run_deadline_seconds=0.2,
        shutdown_grace_seconds=0.1,
    )
    try:
        run.entered.wait(5)
        response = wait_for(lambda: (r := _get(service, "/healthz")).status_code == 503 and r)
        assert "past the run deadline" in response.json()["reason"]
        assert "IDSYNC_RUN_DEADLINE_SECONDS=0.2" in response.json()["reason"]
    finally:
        stuck.set()
    wait_for(lambda: _get(service, "/healthz").status_code == 200)  # the run ended: alive again


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    """A real SIGTERM to this process sets the stop event; the previous handler comes back after."""
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with _stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_serve_migrates_runs_and_returns_0_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reset_logging: None
) -> None:
    """serve() on a real SQLite state: migrates, runs, and returns 0 after a SIGTERM mid-run."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    run = FakeRun(block_until_stop=True)

    def send_sigterm() -> None:
        # Generous: on a loaded 2-core machine the first tick can take a while to start; a
        # signal before the run starts would prove nothing about stopping mid-run.
        run.entered.wait(120)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=send_sigterm, daemon=True)
    killer.start()
    assert serve(settings=make_settings(database_url=url), run_fn=run) == 0
    killer.join(5)
    events = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    check_schema(open_database(url))  # migrated at start: at head
    names = [e["event"] for e in events]
    for expected in (
        "service.start",
        "service.migrated",
        "http.listening",
        "scheduler.started",
        "service.signal",
    ):
        assert expected in names
    assert names[-1] == "service.stop"
    assert events[-1]["clean"] is True
    assert [e["status"] for e in events if e["event"] == "scheduler.run_finished"] == [
        "interrupted"
    ]


def test_serve_with_a_stop_event_from_another_thread(tmp_path: Path, reset_logging: None) -> None:
    """serve() in a thread returns 0 soon after its stop event is set (no signal involved)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    run = FakeRun()
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            serve(settings=make_settings(database_url=url), run_fn=run, stop=stop)
        )
    )
    thread.start()
    wait_for(lambda: run.count >= 1)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert codes == [0]


def test_serve_with_no_schedule_fails_before_touching_anything(
    tmp_path: Path, reset_logging: None
) -> None:
    """A missing schedule is a ConfigError raised before the state database is even created."""
    database = tmp_path / "state.db"
    settings = make_settings(database_url=f"sqlite:///{database}", interval_seconds=None)
    with pytest.raises(ConfigError, match="IDSYNC_SCHEDULE__INTERVAL_SECONDS"):
        serve(settings=settings, run_fn=FakeRun())
    assert not database.exists()


def test_a_port_in_use_is_a_config_error(fake_state: FakeState, logs: LogCapture) -> None:
    """A listener port already taken stops the start with a ConfigError naming the variable."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service(
            settings=make_settings(http=HttpSettings(host="127.0.0.1", port=port)),
            run_fn=FakeRun(),
            state=fake_state,
        )
        try:
            with pytest.raises(ConfigError, match="IDSYNC_HTTP__PORT"):
                service.start()
        finally:
            assert service.shutdown() is True


def test_after_protime_asks_for_hours_no_run_starts_before_then(
    fake_state: FakeState, logs: LogCapture
) -> None:
    """A run that ended because Protime asked to be called again at a time (a Retry-After past
    IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS) keeps the ticks before that time from starting a
    run; the first tick after it runs the sync again."""
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    retry_at = now[0] + timedelta(hours=24)
    calls: list[dict[str, Any]] = []

    def run_fn(**kwargs: Any) -> RunResult:
        calls.append(kwargs)
        return RunResult(
            run_id=f"r{len(calls)}",
            status=RunStatus.INTERRUPTED,
            dry_run=False,
            duration_seconds=0.1,
            retry_at=retry_at if len(calls) == 1 else None,
        )

    service = Service(
        settings=make_settings(),
        run_fn=run_fn,
        state=fake_state,
        trigger=IntervalTrigger(seconds=3600),
        clock=lambda: now[0],
    )
    service.runners["default"].run_once()
    now[0] += timedelta(hours=23)
    service.runners["default"].run_once()
    assert len(calls) == 1
    assert logs.named("scheduler.waiting_for_protime")[0]["not_before"] == retry_at.isoformat()
    now[0] += timedelta(hours=2)
    service.runners["default"].run_once()
    service.runners["default"].run_once()
    assert len(calls) == 3  # the wait is over, and the later runs asked for none
