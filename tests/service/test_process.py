"""`idsync serve` as real processes against the Protime simulator over HTTP (issue 4, done means).

The simulator runs in this test process on a loopback port; each `serve` is a subprocess with
its settings in the environment and its client secret in a secrets directory, logging JSON at
DEBUG to a file the test reads (tests/service/process_support.py).
"""

from __future__ import annotations

import itertools
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from process_support import (
    CLIENT_SECRET,
    ROOT,
    SLOW,
    Serve,
    clean_env,
    finished,
    linked_ids,
    runs,
    situations,
)
from service_support import wait_for
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.slow


def test_serve_runs_on_schedule_probes_and_metrics_agree_and_sigterm_exits_0(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """Several scheduled runs over HTTP; /healthz, /readyz, /metrics agree with the run table; exit 0."""
    world, base_url = world_factory(people=40)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    serve = Serve(world=world, base_url=base_url, state_url=state_url, workdir=tmp_path)
    processes.append(serve)
    serve.wait_healthy()
    wait_for(lambda: sum(r.status == "succeeded" for r in runs(state_url)) >= 3, timeout=SLOW)

    assert serve.get("/healthz").json() == {"alive": True}
    assert serve.get("/readyz").json() == {"ready": True}

    def agree() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        before = serve.metrics()
        table = Counter(r.status for r in finished(runs(state_url)))
        after = serve.metrics()
        counted = {
            dict(labels)["status"]: int(value)
            for (name, labels), value in after.items()
            if name == "idsync_runs_total" and value
        }
        return after if before == after and counted == dict(table) else None

    metrics = wait_for(agree, timeout=SLOW)
    assert world.references() == world.expected  # every employee linked in Protime
    assert metrics[("idsync_mappings", (("situation", "linked"), ("sync", "default")))] == len(
        world.expected
    )
    assert situations(state_url) == {"linked": len(world.expected)}
    writes = metrics[
        (
            "idsync_writes_total",
            (("action", "write"), ("outcome", "succeeded"), ("sync", "default")),
        )
    ]
    assert writes == len(world.expected)  # the first run wrote them all, later runs nothing
    assert metrics[("idsync_last_success_timestamp_seconds", (("sync", "default"),))] > 0
    assert (
        metrics[
            (
                "idsync_api_requests_total",
                (("kind", "people"), ("status", "200"), ("sync", "default")),
            )
        ]
        >= 3
    )

    assert serve.terminate() == 0
    events = serve.events()
    assert events[-1]["event"] == "service.stop"
    assert events[-1]["clean"] is True
    # Secrets: the client secret and every token the simulator issued never reach a log line,
    # with httpx and httpcore logging at DEBUG.
    log_text = serve.text()
    assert {"httpx", "httpcore.http11"} <= {e["logger"] for e in events}
    tokens = world.tokens()
    assert tokens
    for secret in [CLIENT_SECRET, *tokens]:
        assert secret not in log_text


def test_sigterm_mid_run_leaves_a_consistent_state_and_the_next_run_converges(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """SIGTERM during the writes: exit 0, run interrupted, state matches Protime; a new serve converges."""
    world, base_url = world_factory(people=150, latency_ms=30)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    first = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=tmp_path,
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
        IDSYNC_PROTIME__CONCURRENCY="2",
    )
    processes.append(first)
    wait_for(lambda: len(world.references()) >= 10, timeout=SLOW)
    assert first.terminate() == 0
    assert first.named("service.stop")[0]["clean"] is True

    (cut,) = runs(state_url)  # the one run, cut short
    written = world.references()
    assert 10 <= len(written) < len(world.expected)  # really cut short
    # Consistent: what the state says is linked is exactly what Protime holds, nothing pending.
    assert linked_ids(state_url) == set(written)

    world.sim.set_faults(latency_ms=0.0)
    second = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=tmp_path,
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
    )
    processes.append(second)
    wait_for(lambda: any(r.status == "succeeded" for r in runs(state_url)), timeout=SLOW)
    assert second.terminate() == 0
    assert world.references() == world.expected
    assert linked_ids(state_url) == set(world.expected)
    assert cut.status == "interrupted"


def _pg_state_url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_two_serve_processes_on_one_postgresql_never_overlap(
    tmp_path: Path, world_factory: Any, processes: list[Serve], postgres_url: str
) -> None:
    """Two replicas, one PostgreSQL state: no two runs overlap, and every tick ran or was skipped."""
    world, base_url = world_factory(people=30, latency_ms=150)
    schema = f"idsync_svc_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        state_url = _pg_state_url(postgres_url, schema)
        common = {
            "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "2",
            "IDSYNC_SCHEDULE__RUN_AT_START": "false",
        }
        replicas = [
            Serve(world=world, base_url=base_url, state_url=state_url, workdir=tmp_path, **common)
            for _ in range(2)
        ]
        processes.extend(replicas)
        for replica in replicas:
            replica.wait_healthy()

        def enough() -> bool:
            rows = finished(runs(state_url))
            return (
                sum(r.status != "skipped" for r in rows) >= 4
                and sum(r.status == "skipped" for r in rows) >= 3
            )

        wait_for(enough, timeout=SLOW)
        # Stop both at once between two ticks (ticks fall on even seconds).
        wait_for(lambda: 0.8 <= time.time() % 2 <= 1.2, timeout=5)
        for replica in replicas:
            replica.process.send_signal(signal.SIGTERM)
        assert [replica.wait_exit() for replica in replicas] == [0, 0]

        rows = finished(runs(state_url))
        assert not [r for r in runs(state_url) if r.status == "running"]
        worked = sorted((r for r in rows if r.status != "skipped"), key=lambda r: r.started_at)
        for earlier, later in itertools.pairwise(worked):
            assert earlier.finished_at is not None
            assert earlier.finished_at <= later.started_at, (earlier.id, later.id)
        assert {r.status for r in worked} <= {"succeeded"}
        for replica in replicas:
            # Every tick became exactly one run row, worked or skipped as locked; ticks that fell
            # during a run of this replica are coalesced into one more run, by design.
            mine = [r for r in rows if r.pid == replica.pid]
            ticks = len(replica.named("scheduler.tick"))
            coalesced = len(replica.named("scheduler.tick_coalesced"))
            assert len(mine) == len(replica.named("scheduler.run_finished"))
            assert ticks <= len(mine) <= ticks + coalesced
        # Whether the other replica's tick finds the lock still held depends on how late its
        # process wakes (a loaded machine); what never happens is two runs at once (above).
        assert Counter(r.status for r in rows)["skipped"] >= 3
        assert world.references() == world.expected
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_the_wheel_installed_in_a_fresh_venv_upgrades_and_serves(
    tmp_path: Path, world_factory: Any, processes: list[Serve]
) -> None:
    """The built wheel, installed outside the checkout, carries its migrations and serves."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("protime_idsync-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", str(wheel)],
        check=True,
        timeout=600,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import sync; print(sync.__file__)"],
        cwd=workdir,
        env=clean_env(installed=True),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv)  # not the checkout

    world, base_url = world_factory(people=10)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    env = clean_env(installed=True)
    upgrade = subprocess.run(
        [str(venv / "bin" / "idsync"), "db", "upgrade"],
        cwd=workdir,
        env={**env, "IDSYNC_DATABASE_URL": state_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    serve = Serve(
        world=world,
        base_url=base_url,
        state_url=state_url,
        workdir=workdir,
        command=[str(venv / "bin" / "idsync"), "serve"],
        IDSYNC_SCHEDULE__INTERVAL_SECONDS="3600",
    )
    processes.append(serve)
    serve.wait_healthy()
    wait_for(lambda: any(r.status == "succeeded" for r in runs(state_url)), timeout=SLOW)
    assert serve.get("/readyz").status_code == 200
    assert serve.terminate() == 0
    assert world.references() == world.expected
