"""deploy/prometheus and deploy/grafana: valid, and naming only metrics idsync really exports."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import yaml
from deploy_support import DEPLOY, METRIC_NAME, promtool
from prometheus_client.parser import text_string_to_metric_families

from sync.reconcile._result import RunResult, RunStatus
from sync.service._health import HealthServer
from sync.service._metrics import Metrics

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "idsync.json"
# An aggregation and its `by (...)` labels, if any: `sum by (sync, status) (`, `max(`.
AGGREGATION = re.compile(r"\b(?:sum|max|min|avg|count)\s*(?:by\s*\(([^)]*)\))?\s*\(")
# A metric name and its selector, if any.
SELECTOR = re.compile(r"\b(idsync_[a-z_]+)\b(\{[^}]*\})?")


def _real_metrics_answer() -> str:
    """The text a live /metrics answers after one run, over HTTP."""
    metrics = Metrics()
    metrics.observe_run(
        RunResult(
            run_id="r1",
            status=RunStatus.SUCCEEDED,
            dry_run=False,
            duration_seconds=2.0,
            actions_by_outcome={"write:succeeded": 3},
            api_requests={"people:200": 2, "put:429": 1},
            retries=1,
        )
    )
    server = HealthServer(
        host="127.0.0.1", port=0, metrics=metrics, liveness=lambda: None, readiness=lambda: None
    )
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    finally:
        server.stop()


def _exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


def _per_sync_names(text: str) -> set[str]:
    """The sample names of a /metrics answer that carry a `sync` label."""
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "sync" in sample.labels
    }


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _rule_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in _rules()]


def _dashboard_targets() -> list[dict[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t for panel in dashboard["panels"] for t in panel.get("targets", [])]


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for t in _dashboard_targets()]


def _aggregations_without_sync(expr: str) -> list[str]:
    return [
        match.group(0)
        for match in AGGREGATION.finditer(expr)
        if "sync" not in [label.strip() for label in (match.group(1) or "").split(",")]
    ]


def test_promtool_checks_the_alert_rules() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yml."""
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fire_the_alerts() -> None:
    """The rules' unit tests (deploy/prometheus/alerts.test.yml) pass: each alert fires when it should."""
    result = subprocess.run(
        [promtool(), "test", "rules", str(ALERTS.with_name("alerts.test.yml"))],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_named_by_a_rule_or_panel_is_exported() -> None:
    """Each idsync_* name in the alert rules and the dashboard appears in a real /metrics answer."""
    exported = _exported_names(_real_metrics_answer())
    named = {m for expr in _rule_exprs() + _dashboard_exprs() for m in METRIC_NAME.findall(expr)}
    assert len(named) >= 8
    assert named - exported == set()


def test_alerts_cover_the_issues_operators_care_about() -> None:
    """Alerts exist for failing runs, no recent success, 429s and growth of records needing a person."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    names = {rule["alert"] for group in groups for rule in group["rules"]}
    assert {
        "IdsyncRunsFailing",
        "IdsyncNoRecentSuccess",
        "IdsyncRateLimited",
        "IdsyncNeedsAttentionGrowing",
    } <= names


def test_dashboard_is_grafana_json() -> None:
    """The dashboard parses, has a uid and panels, each with a Prometheus query."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "idsync"
    assert dashboard["panels"]
    assert all(panel["targets"] for panel in dashboard["panels"])


def test_the_export_labels_every_per_sync_series_with_its_sync() -> None:
    """In a real /metrics answer every series but the process-wide ones carries `sync`."""
    text = _real_metrics_answer()
    process_wide = {"idsync_up", "idsync_build_info", "idsync_runs_running", "idsync_syncs"}
    unlabelled = _exported_names(text) - _per_sync_names(text)
    assert unlabelled == process_wide
    assert 'idsync_runs_total{status="succeeded",sync="default"} 1.0' in text


def test_every_per_sync_alert_fires_per_sync() -> None:
    """A rule over a per-sync metric keeps `sync` in each aggregation and names it in its summary."""
    per_sync = _per_sync_names(_real_metrics_answer())
    checked = 0
    for rule in _rules():
        expr = str(rule["expr"])
        if not set(METRIC_NAME.findall(expr)) & per_sync:
            continue
        checked += 1
        assert _aggregations_without_sync(expr) == [], rule["alert"]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert "$labels.sync" in annotations["summary"], rule["alert"]
    assert checked >= 6


def test_the_dashboard_filters_every_per_sync_panel_by_the_sync_variable() -> None:
    """A multi-select `sync` variable exists; each per-sync query filters by it, keeps `sync` and shows it."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["sync"]["multi"] is True
    assert variables["sync"]["definition"] == "label_values(idsync_runs_total, sync)"
    per_sync = _per_sync_names(_real_metrics_answer())
    checked = 0
    for target in _dashboard_targets():
        expr = target["expr"]
        selectors = [(name, sel or "") for name, sel in SELECTOR.findall(expr) if name in per_sync]
        if not selectors:
            continue
        checked += 1
        assert all('sync=~"$sync"' in selector for _, selector in selectors), expr
        assert _aggregations_without_sync(expr) == [], expr
        assert "{{sync}}" in target["legendFormat"], expr
    assert checked >= 12
