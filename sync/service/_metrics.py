"""Prometheus metrics of the service, in a registry of their own (never the global one).

The run itself knows nothing of Prometheus: the service feeds each :class:`RunResult` to
:meth:`Metrics.observe_run` and the mapping counts from the state database to
:meth:`Metrics.set_mappings`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from sync import __version__
from sync.domain import ActionKind, Outcome, Situation
from sync.reconcile._progress import PHASES
from sync.status import Health, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sync.reconcile._progress import ProgressSnapshot
    from sync.reconcile._result import RunResult

# Runs last from seconds (a small tenant, nothing to do) to an hour (a first sync of a large one).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
_SITUATIONS = frozenset(s.value for s in Situation)


def _split(key: str) -> tuple[str, str]:
    first, _, second = key.rpartition(":")
    return (first, second) if first else (key, "unknown")


class Metrics:
    """Every metric of ``idsync serve``; :attr:`registry` is what ``/metrics`` exposes."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._mapping_labels = set(_SITUATIONS)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge("idsync_up", "1 while the idsync service process runs.", registry=r)
        self.build_info = Gauge(
            "idsync_build_info",
            "Always 1; the version label says which idsync runs.",
            ["version"],
            registry=r,
        )
        self.runs = Counter(
            "idsync_runs",
            "Reconciliation runs started by this process, by final status.",
            ["status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "idsync_run_duration_seconds",
            "Wall time of the runs that did work (skipped runs excluded).",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.run_in_progress = Gauge(
            "idsync_run_in_progress", "1 while this process executes a run.", registry=r
        )
        self.run_exceptions = Counter(
            "idsync_run_exceptions",
            "Runs that raised instead of returning a result (a bug; also counted as failed runs).",
            registry=r,
        )
        self.writes = Counter(
            "idsync_writes",
            "Writes to Protime by action (write, delete) and outcome.",
            ["action", "outcome"],
            registry=r,
        )
        self.api_requests = Counter(
            "idsync_api_requests",
            "Requests to Protime by kind (token, people, put, delete...) and HTTP status ('error': no answer).",
            ["kind", "status"],
            registry=r,
        )
        self.retries = Counter(
            "idsync_retries", "Protime requests retried (429, 5xx, network errors).", registry=r
        )
        self.mappings = Gauge(
            "idsync_mappings",
            "Mapping rows in the state database by situation.",
            ["situation"],
            registry=r,
        )
        self.last_success = Gauge(
            "idsync_last_success_timestamp_seconds",
            "Unix time at which the last completed (succeeded or partial) non-dry run ended; 0: none yet.",
            registry=r,
        )
        self.rate = Gauge(
            "idsync_protime_rate_per_second",
            "The client-side request rate to Protime at the end of the last run: with "
            "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND=auto, the rate it learned; 0: no limit.",
            registry=r,
        )
        self.run_phase = Gauge(
            "idsync_run_phase",
            "1 for the phase the current run is in (reading, planning, saving, writing, write_back); all 0 between runs.",
            ["phase"],
            registry=r,
        )
        self.run_progress_done = Gauge(
            "idsync_run_progress_done",
            "Items the current phase has done (people read, actions written); 0 between runs.",
            registry=r,
        )
        self.run_progress_total = Gauge(
            "idsync_run_progress_total",
            "Items the current phase has in all; 0 when unknown or between runs.",
            registry=r,
        )
        self.up.set(1)
        self.build_info.labels(version=__version__).set(1)
        self.clear_progress()
        # Every known series exists from the start at 0, so rate() and alerts see the first change.
        for status in RunStatus:
            if status.finished:
                self.runs.labels(status=status.value)
        for kind in ActionKind:
            for outcome in Outcome:
                if outcome is not Outcome.PENDING:
                    self.writes.labels(action=kind.value, outcome=outcome.value)
        self.set_mappings({})

    def observe_run(self, result: RunResult) -> None:
        """Count one finished run: its status, duration, writes, API requests and retries."""
        self.runs.labels(status=result.status.value).inc()
        if result.status is not RunStatus.SKIPPED:
            self.run_duration.observe(max(result.duration_seconds, 0.0))
        # A dry run's actions were only planned: nothing was written.
        written = {} if result.dry_run else result.actions_by_outcome
        for key, count in written.items():
            action, outcome = _split(key)
            if count > 0:
                self.writes.labels(action=action, outcome=outcome).inc(count)
        for key, count in result.api_requests.items():
            kind, status = _split(key)
            if count > 0:
                self.api_requests.labels(kind=kind, status=status).inc(count)
        if result.retries > 0:
            self.retries.inc(result.retries)
        if result.status is not RunStatus.SKIPPED:
            self.rate.set(result.rate_per_second or 0.0)
        # A run that completed its work: every record was tried (some may have failed, see
        # writes_total).
        if result.status.health is Health.COMPLETED and not result.dry_run:
            self.last_success.set(self._clock())

    def observe_progress(self, snapshot: ProgressSnapshot) -> None:
        """Show where the current run is (called from the run's progress ticker)."""
        for phase in PHASES:
            self.run_phase.labels(phase=phase).set(1 if phase == snapshot.phase else 0)
        self.run_progress_done.set(snapshot.done)
        self.run_progress_total.set(snapshot.total or 0)

    def clear_progress(self) -> None:
        """No run in progress: every phase 0, done and total 0."""
        for phase in PHASES:
            self.run_phase.labels(phase=phase).set(0)
        self.run_progress_done.set(0)
        self.run_progress_total.set(0)

    def observe_exception(self) -> None:
        """Count a run that raised: a failed run, and an exception (which a result never is)."""
        self.runs.labels(status=RunStatus.FAILED.value).inc()
        self.run_exceptions.inc()

    def set_mappings(self, counts: Mapping[str, int]) -> None:
        """Replace the mappings gauge; a situation absent from ``counts`` has none (0)."""
        self._mapping_labels |= set(counts)
        for name in sorted(self._mapping_labels):
            self.mappings.labels(situation=name).set(counts.get(name, 0))

    def set_last_success(self, timestamp: float) -> None:
        """Seed the last-success gauge (from the state database at start), never moving it back."""
        self.last_success.set(max(timestamp, self._current_last_success()))

    def _current_last_success(self) -> float:
        value = self.registry.get_sample_value("idsync_last_success_timestamp_seconds")
        return value or 0.0

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
