"""Metrics after crafted run results: every counter and gauge the service exposes."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

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
    return metrics.registry.get_sample_value(name, labels)


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
    }
    assert REGISTRY.get_sample_value("idsync_up") is None
    assert _value(metrics, "idsync_up") == 1


def test_the_rate_gauge_follows_the_last_run() -> None:
    """idsync_protime_rate_per_second is the rate of the last run that ran (0: no limit)."""
    metrics = Metrics()
    assert _value(metrics, "idsync_protime_rate_per_second") == 0
    metrics.observe_run(_result(RunStatus.SUCCEEDED, rate_per_second=42.5))
    assert _value(metrics, "idsync_protime_rate_per_second") == 42.5
    metrics.observe_run(_result(RunStatus.SKIPPED, rate_per_second=None))
    assert _value(metrics, "idsync_protime_rate_per_second") == 42.5
    metrics.observe_run(_result(RunStatus.SUCCEEDED))
    assert _value(metrics, "idsync_protime_rate_per_second") == 0
