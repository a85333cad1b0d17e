"""Metrics after crafted run results: every counter and gauge the service exposes."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sync.names import DEFAULT_SYNC
from sync.reconcile._result import RunResult, RunStatus
from sync.service import Metrics


def _result(status: RunStatus, **fields: object) -> RunResult:
    values: dict[str, object] = {
        "run_id": "r",
        "status": status,
        "dry_run": False,
        "duration_seconds": 2.5,
    }
    values.update(fields)
    return RunResult(**values)


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """A sample of the default sync unless ``sync`` says another (process-wide ones: _process)."""
    return metrics.registry.get_sample_value(name, {"sync": DEFAULT_SYNC, **labels})


def _process(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def test_succeeded_run_counts_everything() -> None:
    """A succeeded run counts its status, duration, writes, API requests, retries and success time."""
    metrics = Metrics(clock=lambda: 1_700_000_000.0)
    metrics.observe_run(
        _result(
            RunStatus.SUCCEEDED,
            actions_by_outcome={"write:succeeded": 5, "delete:failed": 1, "write:retriable": 2},
            api_requests={"token:200": 1, "people:200": 3, "put:429": 4, "put:error": 1},
            retries=5,
        )
    )
    assert _value(metrics, "idsync_runs_total", status="succeeded") == 1
    assert _value(metrics, "idsync_runs_total", status="failed") == 0
    assert _value(metrics, "idsync_run_duration_seconds_count") == 1
    assert _value(metrics, "idsync_run_duration_seconds_sum") == 2.5
    assert _value(metrics, "idsync_writes_total", action="write", outcome="succeeded") == 5
    assert _value(metrics, "idsync_writes_total", action="write", outcome="retriable") == 2
    assert _value(metrics, "idsync_writes_total", action="delete", outcome="failed") == 1
    assert _value(metrics, "idsync_writes_total", action="delete", outcome="succeeded") == 0
    assert _value(metrics, "idsync_api_requests_total", kind="put", status="429") == 4
    assert _value(metrics, "idsync_api_requests_total", kind="put", status="error") == 1
    assert _value(metrics, "idsync_api_requests_total", kind="people", status="200") == 3
    assert _value(metrics, "idsync_retries_total") == 5
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 1_700_000_000.0


def test_counts_accumulate_over_runs() -> None:
    """Counters add up across runs; the last-success time follows the latest completed run."""
    now = iter([100.0, 200.0])
    metrics = Metrics(clock=lambda: next(now))
    metrics.observe_run(_result(RunStatus.SUCCEEDED, actions_by_outcome={"write:succeeded": 2}))
    metrics.observe_run(
        _result(RunStatus.PARTIAL, actions_by_outcome={"write:succeeded": 3, "write:failed": 1})
    )
    assert _value(metrics, "idsync_writes_total", action="write", outcome="succeeded") == 5
    assert _value(metrics, "idsync_runs_total", status="partial") == 1
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 200.0


def test_skipped_failed_and_dry_runs_are_not_successes() -> None:
    """Skipped runs add no duration; failed, blocked and dry runs are no success; dry runs write nothing."""
    metrics = Metrics(clock=lambda: 999.0)
    metrics.observe_run(_result(RunStatus.SKIPPED, duration_seconds=0.01))
    metrics.observe_run(_result(RunStatus.FAILED))
    metrics.observe_run(_result(RunStatus.BLOCKED))
    metrics.observe_run(
        _result(RunStatus.SUCCEEDED, dry_run=True, actions_by_outcome={"write:planned": 4})
    )
    assert _value(metrics, "idsync_runs_total", status="skipped") == 1
    assert _value(metrics, "idsync_runs_total", status="blocked") == 1
    assert _value(metrics, "idsync_run_duration_seconds_count") == 3
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 0
    assert _value(metrics, "idsync_writes_total", action="write", outcome="planned") is None


def test_exception_counts_as_failed_run() -> None:
    """A run that raised is a failed run and an exception."""
    metrics = Metrics()
    metrics.observe_exception()
    assert _value(metrics, "idsync_runs_total", status="failed") == 1
    assert _value(metrics, "idsync_run_exceptions_total") == 1


def test_mappings_gauge_is_replaced_not_added() -> None:
    """Each refresh replaces the situation counts; a situation that disappears reads 0."""
    metrics = Metrics()
    metrics.set_mappings({"linked": 10, "unmatched": 2})
    metrics.set_mappings({"linked": 12})
    assert _value(metrics, "idsync_mappings", situation="linked") == 12
    assert _value(metrics, "idsync_mappings", situation="unmatched") == 0
    assert _value(metrics, "idsync_mappings", situation="disputed") == 0


def test_seeded_last_success_never_moves_back() -> None:
    """The value read from the state database at start never overrides a newer one."""
    metrics = Metrics(clock=lambda: 500.0)
    metrics.set_last_success(300.0)
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 300.0
    metrics.observe_run(_result(RunStatus.SUCCEEDED))
    metrics.set_last_success(400.0)
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 500.0


def test_exposition_parses_and_uses_a_private_registry() -> None:
    """The text format parses and names every metric; nothing lands in the global registry."""
    metrics = Metrics()
    metrics.observe_run(_result(RunStatus.SUCCEEDED, api_requests={"people:200": 1}))
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert names >= {
        "idsync_up",
        "idsync_build_info",
        "idsync_runs",
        "idsync_run_duration_seconds",
        "idsync_run_in_progress",
        "idsync_run_exceptions",
        "idsync_writes",
        "idsync_api_requests",
        "idsync_retries",
        "idsync_mappings",
        "idsync_last_success_timestamp_seconds",
        "idsync_runs_running",
        "idsync_syncs",
        "idsync_sync_overdue_seconds",
    }
    assert REGISTRY.get_sample_value("idsync_up") is None
    assert _process(metrics, "idsync_up") == 1


def test_the_rate_gauge_follows_the_last_run() -> None:
    """idsync_protime_rate_per_second is the rate of the last run that ran (0: no limit)."""
    metrics = Metrics()
    metrics.sync(DEFAULT_SYNC)
    assert _value(metrics, "idsync_protime_rate_per_second") == 0
    metrics.observe_run(_result(RunStatus.SUCCEEDED, rate_per_second=42.5))
    assert _value(metrics, "idsync_protime_rate_per_second") == 42.5
    metrics.observe_run(_result(RunStatus.SKIPPED, rate_per_second=None))
    assert _value(metrics, "idsync_protime_rate_per_second") == 42.5
    metrics.observe_run(_result(RunStatus.SUCCEEDED))
    assert _value(metrics, "idsync_protime_rate_per_second") == 0


def _series_of(metrics: Metrics, sync: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        # _created is the creation time of a counter or histogram, not a value.
        if s.labels.get("sync") == sync and not s.name.endswith("_created")
    }


def test_two_syncs_keep_separate_counts() -> None:
    """A run, an exception, mappings and a success of one sync leave the other sync's series alone."""
    metrics = Metrics(clock=lambda: 1_000.0)
    hr, payroll = metrics.sync("hr-main"), metrics.sync("payroll")
    hr.observe_run(
        _result(
            RunStatus.SUCCEEDED,
            actions_by_outcome={"write:succeeded": 4},
            api_requests={"put:200": 4},
            retries=2,
        )
    )
    payroll.observe_exception()
    payroll.set_mappings({"disputed": 3})
    assert _value(metrics, "idsync_runs_total", sync="hr-main", status="succeeded") == 1
    assert _value(metrics, "idsync_runs_total", sync="hr-main", status="failed") == 0
    assert _value(metrics, "idsync_runs_total", sync="payroll", status="failed") == 1
    assert _value(metrics, "idsync_runs_total", sync="payroll", status="succeeded") == 0
    assert _value(metrics, "idsync_run_exceptions_total", sync="hr-main") == 0
    assert (
        _value(metrics, "idsync_writes_total", sync="payroll", action="write", outcome="succeeded")
        == 0
    )
    assert (
        _value(metrics, "idsync_api_requests_total", sync="payroll", kind="put", status="200")
        is None
    )
    assert _value(metrics, "idsync_retries_total", sync="payroll") == 0
    assert _value(metrics, "idsync_last_success_timestamp_seconds", sync="hr-main") == 1_000.0
    assert _value(metrics, "idsync_last_success_timestamp_seconds", sync="payroll") == 0
    assert _value(metrics, "idsync_mappings", sync="hr-main", situation="disputed") == 0
    assert metrics.sync("hr-main") is hr  # the view is cached, not made again at 0


def test_a_new_view_starts_every_series_of_its_sync_at_0() -> None:
    """metrics.sync(name) creates that sync's known series at 0, so rate() and alerts see the first change."""
    metrics = Metrics()
    metrics.sync("payroll")
    series = _series_of(metrics, "payroll")
    assert set(series.values()) == {0.0}
    names = {name for name, _ in series}
    assert names >= {
        "idsync_runs_total",
        "idsync_run_duration_seconds_count",
        "idsync_run_in_progress",
        "idsync_run_exceptions_total",
        "idsync_writes_total",
        "idsync_retries_total",
        "idsync_mappings",
        "idsync_last_success_timestamp_seconds",
        "idsync_protime_rate_per_second",
        "idsync_run_phase",
        "idsync_run_progress_done",
        "idsync_run_progress_total",
        "idsync_sync_overdue_seconds",
    }
    assert _value(metrics, "idsync_runs_total", sync="payroll", status="blocked") == 0
    assert _value(metrics, "idsync_mappings", sync="payroll", situation="unmatched") == 0
    assert _process(metrics, "idsync_syncs") == 1


def test_metrics_alone_exposes_no_sync() -> None:
    """Before any view exists there is no per-sync series: a multi-sync deployment shows no phantom default."""
    metrics = Metrics()
    assert _series_of(metrics, DEFAULT_SYNC) == {}
    assert _process(metrics, "idsync_syncs") == 0
    assert _process(metrics, "idsync_runs_running") == 0


def test_remove_sync_removes_its_series_only() -> None:
    """remove_sync drops every series of that sync, keeps the others, and its old view can no longer bring them back."""
    metrics = Metrics()
    gone, kept = metrics.sync("gone"), metrics.sync("kept")
    gone.observe_run(_result(RunStatus.SUCCEEDED, api_requests={"people:200": 1}))
    gone.set_mappings({"custom": 1})
    gone.set_in_progress(True)
    metrics.remove_sync("gone")
    assert _series_of(metrics, "gone") == {}
    assert _series_of(metrics, "kept") != {}
    assert metrics.sync_names() == ["kept"]
    assert _process(metrics, "idsync_syncs") == 1
    assert _process(metrics, "idsync_runs_running") == 0
    # A run of the removed sync that was still finishing.
    gone.observe_run(_result(RunStatus.FAILED))
    gone.set_overdue(10)
    assert _series_of(metrics, "gone") == {}
    metrics.remove_sync("never-known")  # a no-op
    assert metrics.sync("gone") is not gone
    assert _value(metrics, "idsync_runs_total", sync="gone", status="succeeded") == 0
    assert kept is metrics.sync("kept")


def test_metrics_own_methods_act_as_the_default_sync() -> None:
    """Metrics.observe_run, observe_exception, set_mappings... and run_in_progress are the default sync's."""
    metrics = Metrics(clock=lambda: 50.0)
    metrics.observe_run(_result(RunStatus.SUCCEEDED))
    metrics.observe_exception()
    metrics.set_mappings({"linked": 2})
    metrics.set_last_success(10.0)
    metrics.run_in_progress.set(1)
    default = metrics.sync(DEFAULT_SYNC)
    assert _value(metrics, "idsync_runs_total", status="succeeded") == 1
    assert _value(metrics, "idsync_runs_total", status="failed") == 1
    assert _value(metrics, "idsync_mappings", situation="linked") == 2
    assert _value(metrics, "idsync_last_success_timestamp_seconds") == 50.0
    assert _value(metrics, "idsync_run_in_progress") == 1
    assert _process(metrics, "idsync_runs_running") == 1
    default.observe_exception()
    assert _value(metrics, "idsync_run_exceptions_total") == 2
    assert metrics.sync_names() == [DEFAULT_SYNC]


def test_runs_running_counts_the_syncs_in_progress() -> None:
    """idsync_runs_running is the number of syncs whose run_in_progress is 1, across this process."""
    metrics = Metrics()
    a, b = metrics.sync("a"), metrics.sync("b")
    a.set_in_progress(True)
    b.set_in_progress(True)
    assert _process(metrics, "idsync_runs_running") == 2
    a.set_in_progress(False)
    assert _process(metrics, "idsync_runs_running") == 1
    assert _value(metrics, "idsync_run_in_progress", sync="a") == 0


def test_overdue_is_per_sync_and_never_negative() -> None:
    """set_overdue sets the waiting sync's idsync_sync_overdue_seconds only; a negative wait reads 0."""
    metrics = Metrics()
    waiting, other = metrics.sync("waiting"), metrics.sync("other")
    waiting.set_overdue(125.0)
    other.set_overdue(-3.0)
    assert _value(metrics, "idsync_sync_overdue_seconds", sync="waiting") == 125.0
    assert _value(metrics, "idsync_sync_overdue_seconds", sync="other") == 0
    waiting.set_overdue(0)
    assert _value(metrics, "idsync_sync_overdue_seconds", sync="waiting") == 0


def test_a_name_that_cannot_name_a_sync_is_refused() -> None:
    """metrics.sync rejects a name outside the sync-name rule instead of exposing it as a label."""
    metrics = Metrics()
    with pytest.raises(ValueError, match="is not a sync name"):
        metrics.sync("Bad Name")
    assert metrics.sync_names() == []
