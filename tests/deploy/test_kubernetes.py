"""deploy/kubernetes/: valid against the Kubernetes schemas, and consistent with idsync itself."""

from __future__ import annotations

import subprocess

import yaml
from deploy_support import DEPLOY, tool
from test_env_example import settings_variables

from sync.config import ScheduleSettings

K8S = DEPLOY / "kubernetes"


def _load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text(encoding="utf-8"))


def test_manifests_pass_kubernetes_validate_strict() -> None:
    """Every core manifest passes `kubernetes-validate --strict`; only the CRDs lack a schema."""
    files = sorted(K8S.glob("*.yaml"))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = {
        line.split()[1].rsplit("/", 1)[-1]
        for line in result.stdout.splitlines()
        if " passed " in line
    }
    schemaless = {"servicemonitor.yaml", "kustomization.yaml"}  # CRDs: no published schema
    assert {f.name for f in files} - schemaless <= passed, result.stdout
    kinds = {_load(f.name)["kind"] for f in files}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceMonitor",
        "PodDisruptionBudget",
    } <= kinds


def test_deployment_probes_grace_and_resources() -> None:
    """Probes hit /healthz and /readyz; the kill timeout exceeds the shutdown grace; sized."""
    deployment = _load("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = _load("configmap.yaml")["data"]
    grace = float(
        config.get(
            "IDSYNC_SCHEDULE__SHUTDOWN_GRACE_SECONDS",
            ScheduleSettings().shutdown_grace_seconds,
        )
    )
    assert pod["terminationGracePeriodSeconds"] > grace
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    port = int(config["IDSYNC_HTTP__PORT"])
    assert container["ports"][0]["containerPort"] == port


def test_service_monitor_and_pdb_select_the_pods() -> None:
    """The ServiceMonitor selects the Service and scrapes its named port; the PDB the pods."""
    pod_labels = _load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    service = _load("service.yaml")
    monitor = _load("servicemonitor.yaml")
    pdb = _load("poddisruptionbudget.yaml")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_config_map_and_secret_name_known_variables_only() -> None:
    """A typo in a ConfigMap or Secret key would be ignored by idsync: every key must exist."""
    known = set(settings_variables())
    keys = set(_load("configmap.yaml")["data"]) | set(_load("secret.example.yaml")["stringData"])
    assert keys - known == set()


def test_systemd_unit_serves_and_outlasts_the_shutdown_grace() -> None:
    """The unit runs `idsync serve` as its own user and waits longer than the grace on stop."""
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "idsync.service", encoding="utf-8")
    service = unit["Service"]
    assert service["ExecStart"].endswith("idsync serve")
    assert service["User"] == "idsync"
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > ScheduleSettings().shutdown_grace_seconds
    assert service["ReadWritePaths"] == "/var/lib/idsync"
    assert service["ProtectSystem"] == "strict"
