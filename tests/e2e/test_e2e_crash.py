"""Crash consistency: a reconcile killed mid-apply (SIGKILL) or stopped (SIGTERM's stop event)
loses nothing; the next run converges and no event stays pending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from e2e.harness import HRRow, hook, is_put, row_for, sim_config, store_engine, wait_until
from sync.reconcile import RunStatus
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from e2e.harness import Harness
    from sync.simulator import Simulator

CRASH_PEOPLE = 300


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:04d}") for i, p in enumerate(sim.world.people_list())]


def _expected(h: Harness) -> dict[str, int]:
    return {f"E{i:04d}": p.id for i, p in enumerate(h.sim.world.people_list())}


def _event_counts(h: Harness) -> dict[str, int]:
    with h.store() as store, store_engine(store).connect() as conn:
        rows = conn.execute(text("SELECT outcome, count(*) FROM events GROUP BY outcome"))
        return {str(outcome): int(n) for outcome, n in rows}


def idsync_command() -> list[str]:
    """The installed console script next to this interpreter (the venv's ``idsync``)."""
    script = Path(sys.executable).parent / "idsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sync"]


@pytest.mark.slow
def test_a_reconcile_killed_mid_apply_converges_on_the_next_run(
    make_harness: Callable[..., Harness], tmp_path: Path, state_url: str
) -> None:
    """SIGKILL while writing leaves pending events and a 'running' run; the next run (no wait for
    the lock) marks it interrupted, closes its events, finishes the writes, and a rerun plans
    nothing."""
    h = make_harness(
        config=sim_config(people=CRASH_PEOPLE, latency_ms=20), rows=_everyone, state_url=state_url
    )
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        env = {**os.environ, **h.env(IDSYNC_PROTIME__CONCURRENCY="2")}
        with (tmp_path / "reconcile.log").open("wb") as log:
            proc = subprocess.Popen(
                [*idsync_command(), "reconcile"], env=env, stdout=log, stderr=log
            )
            try:
                wait_until(
                    lambda: _event_counts(h).get("succeeded", 0) > 0 or proc.poll() is not None,
                    timeout=60,
                    what="the first recorded outcomes",
                )
                assert proc.poll() is None, (tmp_path / "reconcile.log").read_text()
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait(timeout=30)
        at_kill = _event_counts(h)
        assert at_kill.get("pending", 0) > 0
        assert 0 < len(h.references()) < CRASH_PEOPLE
        with h.store() as store:
            (killed,) = store.runs.runs()
        assert killed.status == "running"

        h.sim.set_faults(latency_ms=0.0)
        result = h.run()
        assert result.status is RunStatus.SUCCEEDED, result.message
        assert h.references() == _expected(h)
        with h.store() as store:
            killed_after = store.runs.run(killed.id)
        assert killed_after is not None
        assert killed_after.status == "interrupted"
        assert h.pending_events() == 0

        writes = h.writes()
        again = h.run()
        assert again.plan is not None
        assert again.plan.actions == ()
        assert h.writes() == writes


def test_a_stop_request_ends_the_run_interrupted_and_the_next_run_finishes(
    make_harness: Callable[..., Harness],
) -> None:
    """The service's stop event (SIGTERM) lets calls in flight finish, attempts nothing new, ends
    the run `interrupted` (exit 1) with its unattempted events closed; the next run converges."""
    stop = threading.Event()
    puts: list[str] = []

    def stop_after_five(request: httpx.Request) -> None:
        if is_put(request):
            puts.append(request.url.path)
            if len(puts) == 5:
                stop.set()

    h = make_harness(
        config=sim_config(people=60),
        rows=_everyone,
        protime={"concurrency": 2},
        wrap_transport=hook(stop_after_five),
    )
    result = h.run(stop=stop)
    assert result.status is RunStatus.INTERRUPTED
    assert result.exit_code == 1
    done = sum(result.actions_by_outcome.values())
    assert 5 <= done < 60
    assert len(h.references()) == done
    assert h.pending_events() == 0
    assert _event_counts(h).get("skipped", 0) == 60 - done

    h.wrap_transport = None
    healed = h.run()
    assert healed.status is RunStatus.SUCCEEDED
    assert healed.actions_by_outcome == {"write:succeeded": 60 - done}
    assert h.references() == _expected(h)


@pytest.mark.slow
def test_ctrl_c_stops_a_cli_reconcile_cleanly(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT) lets the calls in flight finish, records them, ends the run `interrupted`
    at once with exit 1 and no traceback; the next run does the rest."""
    h = make_harness(config=sim_config(people=CRASH_PEOPLE, latency_ms=20), rows=_everyone)
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        env = {**os.environ, **h.env(IDSYNC_PROTIME__CONCURRENCY="2")}
        proc = subprocess.Popen(
            [*idsync_command(), "reconcile"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: _event_counts(h).get("succeeded", 0) > 0 or proc.poll() is not None,
                timeout=60,
                what="the first recorded outcomes",
            )
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == 1, stderr[-2000:]
        assert "stopping after the calls in flight" in stderr
        assert "Traceback" not in stdout + stderr
        with h.store() as store:
            (stopped,) = store.runs.runs()
        assert stopped.status == "interrupted"
        assert stopped.error is not None
        assert "not attempted" in stopped.error
        assert h.pending_events() == 0
        written = len(h.references())
        assert _event_counts(h)["succeeded"] == written

        h.sim.set_faults(latency_ms=0.0)
        rest = h.run()
        assert rest.status is RunStatus.SUCCEEDED
        assert rest.actions_by_outcome == {"write:succeeded": CRASH_PEOPLE - written}
        assert h.references() == _expected(h)


def test_a_stop_before_writing_leaves_everything_untouched(
    make_harness: Callable[..., Harness],
) -> None:
    """A stop requested while reading ends the run `interrupted` before its first write, even
    with nothing left to write (the read is cut off, so nothing is known to be done)."""
    stop = threading.Event()
    stop.set()
    h = make_harness(config=sim_config(people=20), rows=_everyone)
    result = h.run(stop=stop)
    assert result.status is RunStatus.INTERRUPTED
    assert "before writing" in result.message
    assert h.writes() == 0
    with h.store() as store:
        assert list(store.map.iter_mappings()) == []
    assert h.pending_events() == 0

    assert h.run().status is RunStatus.SUCCEEDED
    assert h.run(stop=stop).status is RunStatus.INTERRUPTED  # the read is cut off all the same
