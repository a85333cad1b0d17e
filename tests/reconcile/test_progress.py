"""RunProgress: phases, done and total, rate and ETA, and a report on a clock."""

from __future__ import annotations

import threading

from sync.reconcile._progress import ProgressSnapshot, RunProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_phase_update_rate_and_eta() -> None:
    """Done over the phase's elapsed time gives the rate; the rest over the rate the ETA."""
    clock = Clock()
    seen: list[ProgressSnapshot] = []
    progress = RunProgress(run_id="r", interval=60, sinks=[seen.append], clock=clock)
    progress.phase("writing", total=1000)
    assert seen[-1].phase == "writing"
    assert seen[-1].done == 0
    clock.now += 10
    progress.update(250, 1000)
    snap = progress.snapshot()
    assert (snap.done, snap.total) == (250, 1000)
    assert snap.rate_per_second == 25.0
    assert snap.eta_seconds == 30.0
    assert snap.as_dict()["phase"] == "writing"


def test_phase_seconds_add_up_per_phase_and_end_at_stop() -> None:
    """Each phase's time is counted from its start to the next phase, a phase entered twice adds
    up, and the last one ends at stop, not when it is asked."""
    clock = Clock()
    progress = RunProgress(run_id="r", interval=60, clock=clock)
    clock.now += 1
    progress.phase("reading")
    clock.now += 4
    progress.phase("writing")
    clock.now += 2
    progress.phase("reading")
    clock.now += 3
    assert progress.phase_seconds() == {"starting": 1.0, "reading": 7.0, "writing": 2.0}
    progress.stop()
    clock.now += 50
    assert progress.phase_seconds()["reading"] == 7.0


def test_unknown_total_has_no_eta_and_poll_gives_done() -> None:
    """A phase that polls its count (people read) without a total has a rate but no ETA."""
    clock = Clock()
    people: list[int] = []
    progress = RunProgress(run_id="r", interval=60, clock=clock)
    progress.phase("reading", poll=people.__len__)
    people.extend(range(500))
    clock.now += 5
    snap = progress.snapshot()
    assert snap.done == 500
    assert snap.total is None
    assert snap.eta_seconds is None
    progress.set_total(1000)
    assert progress.snapshot().eta_seconds == 5.0


def test_the_ticker_reports_until_stopped_and_the_last_figures_reach_the_sinks() -> None:
    """Started, it logs on its clock even when nothing advances; stop hands the sinks the end."""
    logged: list[ProgressSnapshot] = []
    sunk: list[ProgressSnapshot] = []
    two = threading.Event()

    def log(snapshot: ProgressSnapshot) -> None:
        logged.append(snapshot)
        if len(logged) >= 2:
            two.set()

    progress = RunProgress(run_id="r", interval=0.01, sinks=[sunk.append])
    progress.phase("reading")
    progress.start(log=log)
    assert two.wait(timeout=30)
    progress.update(7, 7)
    progress.stop()
    assert all(s.phase == "reading" for s in logged)
    assert sunk[-1].done == 7
    assert progress._thread is not None
    assert not progress._thread.is_alive()  # stopped and joined: nothing more can come


def test_a_blocked_sink_never_holds_back_the_log_lines() -> None:
    """While the run-row sink waits (a busy database), the ticker keeps logging on schedule."""
    release = threading.Event()
    entered = threading.Event()
    three = threading.Event()
    logged: list[ProgressSnapshot] = []
    blocked_at: list[int] = []

    def slow_sink(snapshot: ProgressSnapshot) -> None:
        if not blocked_at:
            blocked_at.append(len(logged))
            entered.set()
            release.wait(timeout=60)

    def log(snapshot: ProgressSnapshot) -> None:
        logged.append(snapshot)
        if blocked_at and len(logged) >= blocked_at[0] + 3:
            three.set()

    progress = RunProgress(run_id="r", interval=0.01, sinks=[slow_sink])
    progress.start(log=log)
    progress.phase("saving", total=10)
    assert entered.wait(timeout=30)
    assert three.wait(timeout=30)  # three more lines while the sink is still blocked
    assert not release.is_set()
    release.set()
    progress.stop()
