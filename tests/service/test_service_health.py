"""The health listener on a random port: /healthz, /readyz and /metrics, with fake and real probes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync.service import HealthServer, Metrics, StateBackend, failing_streak
from sync.state import RunSummary, StateStore, open_database, upgrade

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from sync.service._health import Probe


class Probes:
    def __init__(self) -> None:
        self.alive: str | None = None
        self.ready: Callable[[], str | None] = lambda: None

    def readiness(self) -> str | None:
        return self.ready()  # looked up per request: a test swaps `ready` while serving


@pytest.fixture
def probes() -> Probes:
    return Probes()


@pytest.fixture
def listener(probes: Probes) -> Iterator[tuple[HealthServer, Metrics]]:
    metrics = Metrics()
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        metrics=metrics,
        liveness=lambda: probes.alive,
        readiness=probes.readiness,
    )
    server.start()
    yield server, metrics
    server.stop()


def _get(server: HealthServer, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)


def test_bound_port_is_exposed_for_port_zero(listener: tuple[HealthServer, Metrics]) -> None:
    """Port 0 binds a free port, which the server reports and answers on."""
    server, _ = listener
    assert server.port > 0
    assert _get(server, "/healthz").status_code == 200


def test_healthz_reports_liveness(listener: tuple[HealthServer, Metrics], probes: Probes) -> None:
    """/healthz is 200 while alive, 503 with the reason otherwise."""
    server, _ = listener
    assert _get(server, "/healthz").json() == {"alive": True}
    probes.alive = "the scheduler is not running"
    response = _get(server, "/healthz")
    assert response.status_code == 503
    assert response.json() == {"alive": False, "reason": "the scheduler is not running"}


def test_readyz_reports_the_reason(listener: tuple[HealthServer, Metrics], probes: Probes) -> None:
    """/readyz is 200 when ready, 503 with a JSON reason when not."""
    server, _ = listener
    assert _get(server, "/readyz").json() == {"ready": True}
    probes.ready = lambda: "the last 3 runs failed"
    response = _get(server, "/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ready": False, "reason": "the last 3 runs failed"}


def test_a_probe_that_raises_is_not_ready_and_leaks_nothing(
    listener: tuple[HealthServer, Metrics], probes: Probes
) -> None:
    """A probe exception becomes a 503 naming the error, with any password masked."""
    server, _ = listener

    def broken() -> str | None:
        raise ConnectionError("cannot reach postgresql://idsync:s3cr3t-pw@db/idsync")

    probes.ready = broken
    response = _get(server, "/readyz")
    assert response.status_code == 503
    assert (
        response.json()["reason"]
        == "ConnectionError: cannot reach postgresql://idsync:***@db/idsync"
    )


def test_metrics_endpoint_serves_parseable_text(listener: tuple[HealthServer, Metrics]) -> None:
    """/metrics is the Prometheus text format of the service's registry, current values included."""
    server, metrics = listener
    metrics.set_mappings({"linked": 7})
    response = _get(server, "/metrics")
    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("idsync_up", ())] == 1
    assert samples[("idsync_mappings", (("situation", "linked"), ("sync", "default")))] == 7


def test_unknown_path_is_404(listener: tuple[HealthServer, Metrics]) -> None:
    """Anything but the three paths is a 404 that lists them."""
    server, _ = listener
    response = _get(server, "/nope")
    assert response.status_code == 404
    assert response.json()["paths"] == ["/healthz", "/metrics", "/readyz", "/syncs"]


def test_stop_releases_the_port(probes: Probes) -> None:
    """After stop the port is free again (a restart in the same process can bind it)."""
    first = HealthServer(
        host="127.0.0.1", port=0, metrics=Metrics(), liveness=lambda: None, readiness=lambda: None
    )
    first.start()
    port = first.port
    first.stop()
    second = HealthServer(
        host="127.0.0.1",
        port=port,
        metrics=Metrics(),
        liveness=lambda: None,
        readiness=lambda: None,
    )
    second.start()
    try:
        assert _get(second, "/healthz").status_code == 200
    finally:
        second.stop()


# -- readiness on a real state database ------------------------------------------------------------


def test_failing_streak_steps_over_neutral_runs() -> None:
    """Skipped, interrupted and running rows neither count nor break a streak; success ends it."""
    assert (
        failing_streak(
            ["failed", "skipped", "blocked", "interrupted", "failed", "succeeded", "failed"]
        )
        == 3
    )
    assert failing_streak(["partial", "failed"]) == 0
    assert failing_streak([]) == 0


def _record(engine_url: str, statuses: list[str]) -> None:
    store = StateStore(open_database(engine_url))
    for status in statuses:  # oldest first
        run_id = store.runs.start_run(trigger="schedule", dry_run=False, forced=False)
        store.runs.finish_run(run_id=run_id, status=status, summary=RunSummary(error="boom"))


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(open_database(url))
    return url


def _ready_through_http(probe: Probe) -> httpx.Response:
    server = HealthServer(
        host="127.0.0.1", port=0, metrics=Metrics(), liveness=lambda: None, readiness=probe
    )
    server.start()
    try:
        return _get(server, "/readyz")
    finally:
        server.stop()


def test_readyz_on_a_migrated_database_is_ready(state_url: str) -> None:
    """A reachable database at head with no failing runs is ready."""
    backend = StateBackend(state_url)
    _record(state_url, ["failed", "failed", "succeeded"])
    response = _ready_through_http(lambda: backend.readiness_problem(failing_runs_unready=2))
    assert response.status_code == 200


def test_readyz_after_n_failed_runs_in_a_row(state_url: str) -> None:
    """N failed or blocked runs in a row (skipped ones between) make the service unready."""
    backend = StateBackend(state_url)
    _record(state_url, ["succeeded", "failed", "skipped", "blocked", "failed"])
    assert backend.readiness_problem(failing_runs_unready=4) is None
    response = _ready_through_http(lambda: backend.readiness_problem(failing_runs_unready=3))
    assert response.status_code == 503
    assert "the last 3 runs failed or were blocked" in response.json()["reason"]
    assert "IDSYNC_HTTP__FAILING_RUNS_UNREADY=3" in response.json()["reason"]


def test_readyz_when_the_schema_is_behind(tmp_path: Path) -> None:
    """A database that was never migrated is unready, and the reason says to run `idsync db upgrade`."""
    backend = StateBackend(f"sqlite:///{tmp_path / 'empty.db'}")
    response = _ready_through_http(lambda: backend.readiness_problem(failing_runs_unready=3))
    assert response.status_code == 503
    assert "idsync db upgrade" in response.json()["reason"]


def test_readyz_when_the_database_is_unreachable(tmp_path: Path) -> None:
    """A database that cannot be opened is unready, and the reason says unreachable."""
    backend = StateBackend(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'state.db'}")
    response = _ready_through_http(lambda: backend.readiness_problem(failing_runs_unready=3))
    assert response.status_code == 503
    assert "unreachable" in response.json()["reason"]


def test_state_backend_reads_counts_and_last_success(state_url: str) -> None:
    """The mapping counts and the last completed run's end time come from the state database."""
    backend = StateBackend(state_url)
    assert backend.last_success_timestamp() is None
    _record(state_url, ["partial", "failed"])
    assert backend.last_success_timestamp() is not None
    assert backend.counts_by_situation() == {}


def test_the_last_run_that_stands_for_a_tick_skips_dry_runs_plans_and_other_syncs(
    state_url: str,
) -> None:
    """A replica's "already run" check sees the newest run of its own sync that could write: not
    a dry run, not a plan, not another sync's run."""
    from sync.state import StateStore

    db = open_database(state_url)
    try:
        acme, other = StateStore(db, sync="acme"), StateStore(db, sync="other")
        acme.runs.start_run(trigger="schedule", dry_run=False, forced=False)
        real = acme.runs.runs(limit=1)[0].started_at
        acme.runs.start_run(trigger="cli", dry_run=True, forced=False)
        acme.runs.start_run(trigger="plan", dry_run=True, forced=False)
        other.runs.start_run(trigger="schedule", dry_run=False, forced=False)
    finally:
        db.dispose()
    backend = StateBackend(state_url)
    try:
        assert backend.last_run_started(sync="acme") == real
        assert backend.last_run_started(sync="nobody") is None
    finally:
        backend.close()
