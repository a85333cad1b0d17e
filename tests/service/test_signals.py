"""SIGTERM at a random moment of a real `idsync serve`: never lost, always exit 0 in time (issue 8).

Each iteration starts `python -m sync serve` on a fresh SQLite state database (so the signal may
land while it migrates) against one simulator over HTTP, with its own reference name (so every
iteration has writes to make and a run can be cut mid-apply), and sends SIGTERM after a random
delay. Half the iterations draw it between 0 and 3 s after the process was started (the issue's
words, from before the first log line on). On a busy host loading idsync can take most of those
3 s, so the other half draw a shorter delay after a later moment the log shows (the service
starting, the scheduler started, a run started), so that every phase is hit in every run of the
test. A few processes run at a time to keep the whole test bounded.

Set IDSYNC_SIGNAL_SEED to replay the delays of a failed run (the seed is in the failure message).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from process_support import Serve, World

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

ITERATIONS = 100
AT_ONCE = 4
MAX_DELAY_SECONDS = 3.0
# Later moments to count from, with the longest delay drawn after each.
ANCHORS = (("service.start", 1.0), ("scheduler.started", 1.0), ("run.start", 0.4))
SLOW = 60.0  # a moment a process must reach, however loaded the host
GRACE_SECONDS = 5
# The promise under test: out within the shutdown grace plus 5 s, whatever the moment.
EXIT_BOUND_SECONDS = GRACE_SECONDS + 5
# The whole test's own bound: far above what 100 iterations take, far below "hangs".
BUDGET_SECONDS = 900


@dataclass
class _Shot:
    index: int
    serve: Serve
    state_path: Path
    anchor: str | None  # None: the process start
    delay: float
    started_at: float
    send_at: float | None = None
    sent_at: float | None = None

    def due(self, now: float) -> bool:
        """Whether the signal is due now; finds the anchor's moment in the log first."""
        if self.send_at is None:
            if self.anchor is not None and f'"event": "{self.anchor}"' not in self.serve.text():
                assert now - self.started_at < SLOW, (
                    f"iteration {self.index}: {self.anchor} not logged in {SLOW} s\n"
                    f"{self.serve.text()[-3000:]}"
                )
                return False
            self.send_at = now + self.delay
        return now >= self.send_at


def _statuses(state_path: Path) -> list[str]:
    if not state_path.exists():
        return []
    with sqlite3.connect(state_path) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []
        return [row[0] for row in db.execute("SELECT status FROM runs")]


def _moment(shot: _Shot) -> str:
    """Where the signal fell, from the events logged before ``service.signal``."""
    names: list[str] = []
    for event in shot.serve.events():
        if event["event"] == "service.signal":
            break
        names.append(event["event"])
    if not names:
        return "before the first log line"
    if "run.start" in names and "run.finish" not in names[names.index("run.start") :]:
        return "mid-run"
    if "scheduler.started" not in names:
        return "during start-up"
    return "between runs"


def _check(shot: _Shot, code: int, seed: int) -> str:
    where = f"iteration {shot.index} (seed {seed}, {shot.delay:.3f} s after {shot.anchor})"
    text = shot.serve.text()
    if code == -signal.SIGTERM and not text:
        # Before the interpreter ran idsync's first statement (docs/operations.md, Stopping):
        # nothing opened, nothing to record; the signal's default action ended the process.
        return "before the interpreter ran idsync"
    assert code == 0, f"{where}: exit code {code}\n{text[-3000:]}"
    if text.startswith("idsync serve: SIGTERM while starting, before anything was opened"):
        assert len(text.splitlines()) == 1, f"{where}\n{text[-3000:]}"
        assert not shot.state_path.exists(), f"{where}: the state database was opened"
        return "while loading"
    events = shot.serve.events()
    assert events, f"{where}: exit 0 without a log line"
    assert events[-1]["event"] == "service.stop", f"{where}\n{text[-3000:]}"
    assert any(e["event"] == "service.signal" for e in events), f"{where}: signal not seen"
    statuses = _statuses(shot.state_path)
    assert "running" not in statuses, f"{where}: a run left running: {statuses}"
    assert set(statuses) <= {"succeeded", "interrupted"}, f"{where}: {statuses}\n{text[-3000:]}"
    return _moment(shot)


@pytest.mark.timeout(BUDGET_SECONDS + 60)
def test_sigterm_at_a_random_moment_always_ends_serve_with_0_in_time(
    tmp_path: Path, world_factory: Any
) -> None:
    """100 real serves, each sent SIGTERM 0-3 s after start: all exit 0 within grace + 5 s."""
    seed = int(os.environ.get("IDSYNC_SIGNAL_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    world, base_url = world_factory(people=30, latency_ms=40)
    plans: list[tuple[str | None, float]] = [(None, 0.0)]  # once at the very start
    for index in range(1, ITERATIONS):
        if index % 2:
            plans.append((None, rng.uniform(0.0, MAX_DELAY_SECONDS)))
        else:
            anchor, longest = rng.choice(ANCHORS)
            plans.append((anchor, rng.uniform(0.0, longest)))
    moments: Counter[str] = Counter()
    live: list[_Shot] = []
    started = time.monotonic()
    next_index = 0
    try:
        while next_index < ITERATIONS or live:
            assert time.monotonic() - started < BUDGET_SECONDS, f"over budget (seed {seed})"
            while next_index < ITERATIONS and len(live) < AT_ONCE:
                anchor, delay = plans[next_index]
                live.append(_start(tmp_path, world, base_url, next_index, anchor, delay))
                next_index += 1
            for shot in list(live):
                outcome = _step(shot, seed)
                if outcome is not None:
                    moments[outcome] += 1
                    live.remove(shot)
            time.sleep(0.005)  # the poll of the loop above: signal times and exits
    finally:
        for shot in live:
            shot.serve.kill()
    assert sum(moments.values()) == ITERATIONS
    # Every phase was hit (the anchored half makes sure of it, however slow the host).
    assert {"mid-run", "during start-up"} <= set(moments), (seed, dict(moments))
    print(f"\nSIGTERM moments over {ITERATIONS} serves (seed {seed}): {dict(moments)}")  # noqa: T201 - the figures are the point


def _step(shot: _Shot, seed: int) -> str | None:
    """Signal the process when due; once it has exited, check it: the moment the signal fell."""
    now = time.monotonic()
    if shot.sent_at is None:
        early = shot.serve.process.poll()
        assert early is None, f"iteration {shot.index}: exit {early} unasked\n{shot.serve.text()}"
        if shot.due(now):
            shot.serve.process.send_signal(signal.SIGTERM)
            shot.sent_at = now
        return None
    code = shot.serve.process.poll()
    if code is None:
        if now - shot.sent_at > EXIT_BOUND_SECONDS:
            shot.serve.kill()
            pytest.fail(
                f"iteration {shot.index} (seed {seed}) still running "
                f"{EXIT_BOUND_SECONDS} s after SIGTERM\n{shot.serve.text()[-3000:]}"
            )
        return None
    shot.serve.wait_exit()
    return _check(shot, code, seed)


def _start(  # noqa: PLR0917 - a private helper of one test
    tmp_path: Path, world: World, base_url: str, index: int, anchor: str | None, delay: float
) -> _Shot:
    workdir = tmp_path / f"serve-{index}"
    workdir.mkdir()
    state_path = workdir / "state.db"
    serve = Serve(
        world=world,
        base_url=base_url,
        state_url=f"sqlite:///{state_path}",
        workdir=workdir,
        IDSYNC_PROTIME__REFERENCE_NAME=f"HRMID{index}",
        IDSYNC_PROTIME__CONCURRENCY="2",
        IDSYNC_SCHEDULE__SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        IDSYNC_LOG__LEVEL="INFO",
    )
    return _Shot(
        index=index,
        serve=serve,
        state_path=state_path,
        anchor=anchor,
        delay=delay,
        started_at=time.monotonic(),
    )
