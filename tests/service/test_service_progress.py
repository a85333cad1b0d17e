"""The current run's phase and done/total on /metrics, fed by the run's progress reports."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from apscheduler.triggers.interval import IntervalTrigger
from service_support import make_settings, wait_for

from sync.names import DEFAULT_SYNC
from sync.reconcile._progress import ProgressSnapshot
from sync.reconcile._result import RunResult, RunStatus
from sync.service import Service
from sync.service._metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import FakeState


def _snapshot(phase: str, done: int, total: int | None) -> ProgressSnapshot:
    return ProgressSnapshot(
        run_id="r",
        phase=phase,
        done=done,
        total=total,
        rate_per_second=None,
        eta_seconds=None,
        elapsed_seconds=1.0,
        at=datetime.now(UTC),
    )


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"sync": DEFAULT_SYNC, **labels})


def test_progress_gauges_follow_the_snapshot_and_clear() -> None:
    """One phase at 1, done and total as reported; all back to 0 between runs."""
    metrics = Metrics()
    metrics.observe_progress(_snapshot("writing", 40, 100))
    assert _value(metrics, "idsync_run_phase", phase="writing") == 1
    assert _value(metrics, "idsync_run_phase", phase="reading") == 0
    assert _value(metrics, "idsync_run_progress_done") == 40
    assert _value(metrics, "idsync_run_progress_total") == 100
    metrics.observe_progress(_snapshot("reading", 5, None))
    assert _value(metrics, "idsync_run_progress_total") == 0
    metrics.clear_progress()
    assert _value(metrics, "idsync_run_phase", phase="reading") == 0
    assert _value(metrics, "idsync_run_progress_done") == 0


def test_the_service_passes_its_gauges_to_the_run(fake_state: FakeState) -> None:
    """A scheduled run gets on_progress; what it reports is on /metrics while it runs."""
    reported = threading.Event()
    release = threading.Event()

    def run(*, on_progress: Callable[[ProgressSnapshot], None], **_: Any) -> RunResult:
        on_progress(_snapshot("writing", 3, 9))
        reported.set()
        release.wait(10)
        return RunResult(
            run_id="r", status=RunStatus.SUCCEEDED, dry_run=False, duration_seconds=0.1
        )

    service = Service(
        settings=make_settings(),
        run_fn=run,
        state=fake_state,
        trigger=IntervalTrigger(seconds=3600),
    )
    service.start()
    try:
        assert reported.wait(10)
        text = httpx.get(f"http://127.0.0.1:{service.http_port}/metrics", timeout=5).text
        assert 'idsync_run_phase{phase="writing",sync="default"} 1.0' in text
        assert 'idsync_run_progress_done{sync="default"} 3.0' in text
        assert 'idsync_run_progress_total{sync="default"} 9.0' in text
        release.set()
        wait_for(lambda: _value(service.metrics, "idsync_run_progress_total") == 0)
    finally:
        release.set()
        service.shutdown()
