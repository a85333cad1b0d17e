"""A state database that goes away in the middle of a run (issue 8).

`idsync reconcile` runs as a process against the simulator over HTTP, its PostgreSQL state behind
a loopback TCP proxy (tests/tcp_proxy.py). Mid-apply the proxy cuts every connection and refuses
new ones (the server went down), or stops forwarding (a half-open connection). The run must end
with exit 1 and one clear line, no traceback, within the bounds docs/operations.md gives; once the
database is back the next run converges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import make_url

from e2e.harness import Harness, HRRow, row_for, sim_config
from sync.reconcile._result import RunStatus
from sync.simulator import serve_in_thread
from tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sync.simulator import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

COUNT = 150
DEADLINE = 120.0


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _expected(h: Harness) -> dict[str, int]:
    return {f"E{i:03d}": p.id for i, p in enumerate(h.sim.world.people_list()[:COUNT])}


def _wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE} s"
        time.sleep(0.01)
    return value


@pytest.fixture
def proxied(
    make_harness: Callable[..., Harness], pg_schema_url: str, postgres_url: str
) -> Iterator[tuple[Harness, TcpProxy]]:
    """A harness whose PostgreSQL state is reached through a proxy, the simulator over HTTP."""
    server = make_url(postgres_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    url = make_url(pg_schema_url).set(host="127.0.0.1", port=proxy.port)
    h = make_harness(
        config=sim_config(people=COUNT, latency_ms=15),
        rows=_everyone,
        state_url=url.render_as_string(hide_password=False),
        protime={"concurrency": 2},
    )
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        try:
            yield h, proxy
        finally:
            proxy.close()


def _reconcile(h: Harness, **env: str) -> subprocess.Popen[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    variables.update(h.env(IDSYNC_PROTIME__CONCURRENCY="2", **env))
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "reconcile"],
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _one_clean_line(stderr: str) -> str:
    """The last line, which must be idsync's own; no traceback and no logged exception anywhere."""
    assert "Traceback" not in stderr, stderr[-4000:]
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            assert "exception" not in event, line
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("idsync: "), stderr[-4000:]
    return last


def _converges(h: Harness) -> None:
    h.base_url = None  # in-process from here: the next run, through the proxy that is back
    healed = h.run()
    assert healed.status is RunStatus.SUCCEEDED, healed.message
    assert h.references() == _expected(h)
    assert h.pending_events() == 0
    with h.store() as store:
        statuses = [r.status for r in store.runs.runs(limit=10)]
    assert "running" not in statuses


def test_state_database_cut_mid_apply_ends_the_run_with_one_line_and_exit_1(
    proxied: tuple[Harness, TcpProxy],
) -> None:
    """Every state connection cut, new ones refused, mid-apply: exit 1, one line; next run converges."""
    h, proxy = proxied
    process = _reconcile(h)
    try:
        _wait_for(lambda: len(h.references()) >= 20 or process.poll() is not None, "writes")
        assert process.poll() is None, process.communicate()
        proxy.cut()
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr[-4000:]
    last = _one_clean_line(stderr)
    assert "state database" in last, last
    assert len(h.references()) < COUNT  # really cut short
    proxy.resume()
    _converges(h)


def test_a_half_open_state_connection_ends_the_run_within_its_bound(
    proxied: tuple[Harness, TcpProxy],
) -> None:
    """The proxy stops forwarding mid-apply: the run ends with exit 1 and one line, no hang."""
    h, proxy = proxied
    process = _reconcile(h, IDSYNC_STATE_TIMEOUT_SECONDS="3")
    try:
        _wait_for(lambda: len(h.references()) >= 20 or process.poll() is not None, "writes")
        assert process.poll() is None, process.communicate()
        proxy.blackhole()
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr[-4000:]
    last = _one_clean_line(stderr)
    assert "state database" in last, last
    proxy.cut()  # the half-open connections go; the database is back for new ones
    proxy.resume()
    _converges(h)
