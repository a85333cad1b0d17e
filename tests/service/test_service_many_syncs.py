"""`serve` with many syncs, with a fake run function: the cap on runs at once, the longest-waiting
sync first, isolation of one sync's trouble, one run per tick across replicas, readiness."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from service_support import FakeState, LogCapture, make_settings, wait_for

from sync.config import ProtimeSettings
from sync.errors import StateError
from sync.reconcile._result import RunResult, RunStatus
from sync.service import Service

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sync.config import Settings


def _syncs(*names: str, quiet_at_start: tuple[str, ...] = ()) -> dict[str, Settings]:
    """One settings object per sync, told apart by their tenant; the ``quiet_at_start`` ones do
    not run when the service starts."""
    return {
        name: make_settings(run_at_start=name not in quiet_at_start).model_copy(
            update={"protime": ProtimeSettings(tenant=name)}
        )
        for name in names
    }


class Runs:
    """A run function keyed by the sync (its tenant): records the order of starts, holds the
    syncs in ``held`` until released, raises for the syncs in ``raising``."""

    def __init__(self, *, held: set[str] = frozenset(), raising: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.started: list[str] = []
        self.held = set(held)
        self.raising = set(raising)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.retry_at: dict[str, datetime] = {}

    def count(self, name: str) -> int:
        with self.lock:
            return self.started.count(name)

    def __call__(self, *, settings: Settings, **_: Any) -> RunResult:
        name = str(settings.protime.tenant)
        with self.lock:
            self.started.append(name)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if name in self.held:
                self.release.wait(10)
            if name in self.raising:
                raise StateError(f"{name}: the state database is unreachable")
            return RunResult(
                run_id=f"{name}-{self.count(name)}",
                status=RunStatus.SUCCEEDED,
                dry_run=False,
                duration_seconds=0.01,
                retry_at=self.retry_at.get(name),
            )
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def services() -> Iterator[list[Service]]:
    made: list[Service] = []
    yield made
    for service in made:
        service.shutdown()


def _service(
    services: list[Service],
    runs: Runs,
    state: FakeState,
    *names: str,
    workers: int,
    seconds: float = 3600,
    quiet_at_start: tuple[str, ...] = (),
) -> Service:
    service = Service(
        syncs=_syncs(*names, quiet_at_start=quiet_at_start),
        max_concurrent_runs=workers,
        run_fn=runs,
        state=state,
        trigger=IntervalTrigger(seconds=seconds),
    )
    services.append(service)
    return service


def test_no_more_runs_at_once_than_the_cap(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """Six syncs due at once with a cap of two: two run, the rest wait, and all six run."""
    del logs
    runs = Runs(held={"a", "b", "c", "d", "e", "f"})
    service = _service(services, runs, fake_state, "a", "b", "c", "d", "e", "f", workers=2)
    service.start()
    wait_for(lambda: len(runs.started) == 2)
    assert runs.running == 2
    assert set(service._scheduler.waiting()) == {"a", "b", "c", "d", "e", "f"} - set(runs.started)
    runs.release.set()
    wait_for(lambda: len(runs.started) == 6)
    assert runs.most_at_once == 2
    assert sorted(runs.started) == ["a", "b", "c", "d", "e", "f"]


def test_the_sync_waiting_longest_goes_first(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """With the one worker busy, syncs asked for in the order c, a, b run in that order."""
    del logs
    runs = Runs(held={"x"})
    service = _service(
        services, runs, fake_state, "x", "a", "b", "c", workers=1, quiet_at_start=("a", "b", "c")
    )
    service.start()
    wait_for(lambda: runs.started == ["x"])
    for name in ("c", "a", "b"):
        service._scheduler.trigger_now(name)
    runs.release.set()
    wait_for(lambda: len(runs.started) == 4)
    assert runs.started == ["x", "c", "a", "b"]


def test_a_stuck_sync_holds_one_worker_and_the_others_go_on(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """A sync whose run never returns takes one of two workers; the other syncs keep running on
    every tick through the other."""
    del logs
    runs = Runs(held={"stuck"})
    service = _service(services, runs, fake_state, "stuck", "a", "b", workers=2, seconds=0.05)
    service.start()
    wait_for(lambda: runs.count("a") >= 3 and runs.count("b") >= 3)
    assert runs.count("stuck") == 1
    runs.release.set()


def test_one_sync_raising_leaves_the_others_and_readiness_alone(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """Runs of one sync that raise are that sync's: the others succeed and the service stays
    ready; only when every sync's runs raise is the service unready."""
    runs = Runs(raising={"broken"})
    service = _service(services, runs, fake_state, "broken", "fine", workers=2, seconds=0.05)
    service.start()
    threshold = service.settings.http.failing_runs_unready
    wait_for(lambda: runs.count("broken") > threshold and runs.count("fine") > threshold)
    assert service.runners["broken"].raise_streak >= threshold
    assert service.runners["fine"].raise_streak == 0
    assert service.readiness_problem() is None
    assert fake_state.threshold_seen is None  # many syncs: the runs' statuses are per sync
    errors = logs.named("scheduler.run_error")
    assert errors
    assert {e["sync"] for e in errors} == {"broken"}
    runs.raising.add("fine")
    wait_for(lambda: service.readiness_problem() is not None)
    assert "every sync" in str(service.readiness_problem())


def test_protime_asking_one_sync_to_wait_holds_that_sync_only(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """A Retry-After of hours on one tenant stops that sync's ticks; the other keeps running."""
    runs = Runs()
    runs.retry_at["slow"] = datetime.now(UTC) + timedelta(hours=5)
    service = _service(services, runs, fake_state, "slow", "fast", workers=1, seconds=0.05)
    service.start()
    wait_for(lambda: runs.count("fast") >= 4)
    assert runs.count("slow") == 1
    waiting = logs.named("scheduler.waiting_for_protime")
    assert waiting
    assert {e["sync"] for e in waiting} == {"slow"}


def test_a_tick_another_replica_already_ran_is_skipped(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """When the state database shows a run of the sync that started after the tick was due
    (another replica took it), this replica does not run it again."""
    runs = Runs()
    fake_state.started = datetime.now(UTC) + timedelta(minutes=1)  # "after" every tick of ours
    service = _service(services, runs, fake_state, "a", workers=1)
    service.start()
    wait_for(lambda: logs.named("scheduler.already_run"))
    assert runs.started == []
    fake_state.started = datetime.now(UTC) - timedelta(hours=1)  # an old run only: ours to do
    service._scheduler.trigger_now("a")
    wait_for(lambda: runs.started == ["a"])


def test_each_run_gets_its_own_syncs_settings(
    services: list[Service], fake_state: FakeState, logs: LogCapture
) -> None:
    """Every sync's run is called with that sync's settings, and the metrics carry its name."""
    del logs
    runs = Runs()
    service = _service(services, runs, fake_state, "acme", "globex", workers=2)
    service.start()
    wait_for(lambda: sorted(runs.started) == ["acme", "globex"])
    text = service.metrics.render()[0].decode()
    for name in ("acme", "globex"):
        assert f'idsync_runs_total{{status="succeeded",sync="{name}"}} 1.0' in text
