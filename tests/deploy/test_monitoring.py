"""deploy/prometheus and deploy/grafana: valid, and naming only metrics idsync really exports."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import yaml
from deploy_support import DEPLOY, METRIC_NAME, promtool

from sync.reconcile._result import RunResult, RunStatus
from sync.service._health import HealthServer
from sync.service._metrics import Metrics

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "idsync.json"


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


def _rule_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


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
