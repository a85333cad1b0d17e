"""How far the current run is: its phase, done and total, rate and ETA, reported on a clock.

A run moves through phases (``reading``, ``planning``, ``saving``, ``writing``, ``write_back``);
:class:`RunProgress` holds where it is, and a ticker thread reports it every
``IDSYNC_LOG__PROGRESS_SECONDS``: a ``run.progress`` log line, the run's row in the state
database (what ``idsync status`` shows) and the listeners (the service's gauges). A thread rather
than a hook in the loops, so a line comes on time even while a phase blocks in one long call (a big
HR query, a page of people that takes its time). It knows nothing of logs or databases itself: the
run passes the sinks in.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# The phases in the order a run goes through them.
PHASES = ("reading", "planning", "saving", "writing", "write_back")


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where a run is. ``total`` is ``None`` when unknown (then no ETA); rate is per second."""

    run_id: str
    phase: str
    done: int
    total: int | None
    rate_per_second: float | None
    eta_seconds: float | None
    elapsed_seconds: float
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The form the state database keeps and ``--json`` shows."""
        return {
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "rate_per_second": self.rate_per_second,
            "eta_seconds": self.eta_seconds,
            "updated_at": self.at.isoformat(),
        }


class RunProgress:
    """The progress of one run. Thread-safe: the run updates it, the ticker reads it."""

    def __init__(
        self,
        *,
        run_id: str,
        interval: float,
        sinks: Sequence[Callable[[ProgressSnapshot], None]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self._interval = interval
        self._sinks = list(sinks)
        self._clock = clock
        self._lock = threading.Lock()
        self._phase = "starting"
        self._done = 0
        self._total: int | None = None
        self._poll: Callable[[], int] | None = None
        self._started = clock()
        self._phase_started = self._started
        self._seconds: dict[str, float] = {}  # phase -> seconds spent in it, phases left
        self._stopped_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log: Callable[[ProgressSnapshot], None] | None = None
        self._sink_thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._pending: ProgressSnapshot | None = None
        self._draining = True

    # -- what the run calls ----------------------------------------------------------------------

    def phase(
        self, name: str, *, total: int | None = None, poll: Callable[[], int] | None = None
    ) -> None:
        """Enter a phase; ``poll`` gives ``done`` when the phase cannot report each step."""
        with self._lock:
            now = self._clock()
            self._close_phase(now)
            self._phase, self._done, self._total, self._poll = name, 0, total, poll
            self._phase_started = now
        self._emit(log=False)

    def phase_seconds(self) -> dict[str, float]:
        """Seconds spent in each phase so far (the current one up to now, or up to :meth:`stop`);
        the ``run.finish`` line carries them, so where a long run's time went is in its log."""
        with self._lock:
            seconds = dict(self._seconds)
            end = self._stopped_at if self._stopped_at is not None else self._clock()
            seconds[self._phase] = seconds.get(self._phase, 0.0) + end - self._phase_started
        return {name: round(value, 3) for name, value in seconds.items()}

    def _close_phase(self, now: float) -> None:
        # Under the lock. A phase entered twice (an apply that reads again) adds up.
        self._seconds[self._phase] = self._seconds.get(self._phase, 0.0) + now - self._phase_started

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self._total = total

    def update(self, done: int, total: int | None = None) -> None:
        with self._lock:
            self._done = done
            if total is not None:
                self._total = total

    # -- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            phase, total, poll, since = self._phase, self._total, self._poll, self._phase_started
            done = self._done
        if poll is not None:
            done = poll()
        now = self._clock()
        elapsed = now - since
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        eta = None
        if rate and total is not None and total >= done:
            eta = round((total - done) / rate, 1)
        return ProgressSnapshot(
            run_id=self.run_id,
            phase=phase,
            done=done,
            total=total,
            rate_per_second=round(rate, 1) if rate is not None else None,
            eta_seconds=eta,
            elapsed_seconds=round(now - self._started, 1),
            at=datetime.now(UTC),
        )

    # -- the ticker ------------------------------------------------------------------------------

    def start(self, log: Callable[[ProgressSnapshot], None]) -> None:
        """Report every ``interval`` seconds until :meth:`stop`.

        Two threads: the ticker logs on a fixed schedule (deadlines, not sleeps after the work, so
        a slow line never pushes the next one back), and hands each snapshot to the sink thread,
        which writes the latest one to the sinks. A sink that waits (the state database busy
        while the run saves 100,000 rows) delays only itself, never the next log line.
        """
        self._log = log
        self._sink_thread = threading.Thread(
            target=self._drain, name="idsync-progress-sinks", daemon=True
        )
        self._sink_thread.start()
        self._thread = threading.Thread(target=self._tick, name="idsync-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the ticker and hand the sinks the final figures (the run row keeps them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._stopped_at is None:
                self._stopped_at = self._clock()
        self._emit(log=False)
        if self._sink_thread is not None:
            with self._lock:
                self._draining = False
            self._wake.set()
            self._sink_thread.join()

    def _tick(self) -> None:
        due = self._clock() + self._interval
        while not self._stop.wait(max(due - self._clock(), 0.0)):
            due += self._interval
            now = self._clock()
            if due <= now:  # behind (a suspended host): the next line one interval from now
                due = now + self._interval
            self._emit(log=True)

    def _emit(self, *, log: bool) -> None:
        snapshot = self.snapshot()
        if log and self._log is not None:
            self._log(snapshot)
        if self._sink_thread is None:
            self._sink(snapshot)
            return
        with self._lock:
            self._pending = snapshot
        self._wake.set()

    def _drain(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                snapshot, self._pending = self._pending, None
                draining = self._draining
            if snapshot is not None:
                self._sink(snapshot)
            if not draining:
                return

    def _sink(self, snapshot: ProgressSnapshot) -> None:
        for sink in self._sinks:
            sink(snapshot)
