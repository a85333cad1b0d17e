"""Prometheus metrics of the service, in a registry of their own (never the global one).

The run itself knows nothing of Prometheus: the service feeds each :class:`RunResult` of a sync
to :meth:`SyncMetrics.observe_run` of that sync's view (``metrics.sync(name)``) and the mapping
counts from the state database to :meth:`SyncMetrics.set_mappings`.

Every series about a sync's runs carries a ``sync`` label, so alerts and panels work per sync and
one sync's failures neither hide nor raise another's. ``idsync_up``, ``idsync_build_info``,
``idsync_runs_running`` and ``idsync_syncs`` describe the process and carry none.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from sync import __version__
from sync.domain import ActionKind, Outcome, Situation
from sync.names import DEFAULT_SYNC, sync_name_problem
from sync.reconcile._progress import PHASES
from sync.status import Health, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sync.reconcile._progress import ProgressSnapshot
    from sync.reconcile._result import RunResult

# Runs last from seconds (a small tenant, nothing to do) to an hour (a first sync of a large one).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
_SITUATIONS = frozenset(s.value for s in Situation)
# The label every per-sync series carries: the sync's name (sync.names).
SYNC_LABEL = "sync"

_Family = TypeVar("_Family", bound=MetricWrapperBase)


def _split(key: str) -> tuple[str, str]:
    first, _, second = key.rpartition(":")
    return (first, second) if first else (key, "unknown")


class Metrics:
    """Every metric of ``idsync serve``; :attr:`registry` is what ``/metrics`` exposes.

    :meth:`sync` gives the view of one sync. The methods of this class itself (``observe_run``,
    ``set_mappings``...) act on the ``default`` sync, the one sync of an environment-only
    configuration, so a caller that knows of one sync only keeps working.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, SyncMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = [SYNC_LABEL]
        self.up = Gauge("idsync_up", "1 while the idsync service process runs.", registry=r)
        self.build_info = Gauge(
            "idsync_build_info",
            "Always 1; the version label says which idsync runs.",
            ["version"],
            registry=r,
        )
        self.runs_running = Gauge(
            "idsync_runs_running",
            "Runs this process executes now, over all its syncs.",
            registry=r,
        )
        self.syncs = Gauge(
            "idsync_syncs",
            "Syncs whose series this process exposes (the syncs it serves).",
            registry=r,
        )
        self.runs = Counter(
            "idsync_runs",
            "Reconciliation runs started by this process, by sync and final status.",
            [*labels, "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "idsync_run_duration_seconds",
            "Wall time of the runs that did work (skipped runs excluded).",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.run_in_progress_by_sync = Gauge(
            "idsync_run_in_progress",
            "1 while this process executes a run of the sync.",
            labels,
            registry=r,
        )
        self.run_exceptions = Counter(
            "idsync_run_exceptions",
            "Runs that raised instead of returning a result (a bug; also counted as failed runs).",
            labels,
            registry=r,
        )
        self.writes = Counter(
            "idsync_writes",
            "Writes to Protime by action (write, delete) and outcome.",
            [*labels, "action", "outcome"],
            registry=r,
        )
        self.api_requests = Counter(
            "idsync_api_requests",
            "Requests to Protime by kind (token, people, put, delete...) and HTTP status ('error': no answer).",
            [*labels, "kind", "status"],
            registry=r,
        )
        self.retries = Counter(
            "idsync_retries",
            "Protime requests retried (429, 5xx, network errors).",
            labels,
            registry=r,
        )
        self.mappings = Gauge(
            "idsync_mappings",
            "Mapping rows in the state database by situation.",
            [*labels, "situation"],
            registry=r,
        )
        self.last_success = Gauge(
            "idsync_last_success_timestamp_seconds",
            "Unix time at which the last completed (succeeded or partial) non-dry run ended; 0: none yet.",
            labels,
            registry=r,
        )
        self.rate = Gauge(
            "idsync_protime_rate_per_second",
            "The client-side request rate to Protime at the end of the last run: with "
            "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND=auto, the rate it learned; 0: no limit.",
            labels,
            registry=r,
        )
        self.run_phase = Gauge(
            "idsync_run_phase",
            "1 for the phase the current run is in (reading, planning, saving, writing, write_back); all 0 between runs.",
            [*labels, "phase"],
            registry=r,
        )
        self.run_progress_done = Gauge(
            "idsync_run_progress_done",
            "Items the current phase has done (people read, actions written); 0 between runs.",
            labels,
            registry=r,
        )
        self.run_progress_total = Gauge(
            "idsync_run_progress_total",
            "Items the current phase has in all; 0 when unknown or between runs.",
            labels,
            registry=r,
        )
        self.sync_overdue = Gauge(
            "idsync_sync_overdue_seconds",
            "How long the sync's due run has waited for a free run slot; 0 when it is not waiting.",
            labels,
            registry=r,
        )
        self.up.set(1)
        self.build_info.labels(version=__version__).set(1)
        # Derived at each scrape from the per-sync series, so no caller has to keep a second count
        # in step (and a direct set of a sync's in-progress gauge still counts).
        self.runs_running.set_function(self._count_running)
        self.syncs.set_function(self._count_syncs)

    # -- per sync --------------------------------------------------------------------------------

    def sync(self, name: str) -> SyncMetrics:
        """The view of sync ``name``, created (its series at 0) on first use and cached.

        Raises ValueError for a name that cannot name a sync (it would be a label value of every
        per-sync series).
        """
        with self._lock:
            view = self._views.get(name)
            if view is None:
                problem = sync_name_problem(name)
                if problem is not None:
                    raise ValueError(problem)
                view = SyncMetrics(self, name, clock=self._clock)
                self._views[name] = view
            return view

    def remove_sync(self, name: str) -> None:
        """Drop every series of sync ``name`` (gone from the configuration); a no-op if unknown.

        Its alerts resolve instead of firing forever on frozen values. The removed view turns
        inert: a run of that sync still finishing cannot bring its series back. A later
        :meth:`sync` of the same name starts again at 0.
        """
        with self._lock:
            view = self._views.pop(name, None)
        if view is not None:
            view.remove()

    def sync_names(self) -> list[str]:
        """The syncs that have a view, sorted."""
        with self._lock:
            return sorted(self._views)

    def _count_running(self) -> float:
        return sum(
            sample.value
            for family in self.run_in_progress_by_sync.collect()
            for sample in family.samples
        )

    def _count_syncs(self) -> float:
        with self._lock:
            return len(self._views)

    # -- the default sync (one sync, environment-only configuration) -----------------------------

    @property
    def run_in_progress(self) -> Gauge:
        """The default sync's ``idsync_run_in_progress`` series, for callers that set it directly."""
        return self.sync(DEFAULT_SYNC).in_progress

    def observe_run(self, result: RunResult) -> None:
        """:meth:`SyncMetrics.observe_run` of the default sync."""
        self.sync(DEFAULT_SYNC).observe_run(result)

    def observe_progress(self, snapshot: ProgressSnapshot) -> None:
        """:meth:`SyncMetrics.observe_progress` of the default sync."""
        self.sync(DEFAULT_SYNC).observe_progress(snapshot)

    def clear_progress(self) -> None:
        """:meth:`SyncMetrics.clear_progress` of the default sync."""
        self.sync(DEFAULT_SYNC).clear_progress()

    def observe_exception(self) -> None:
        """:meth:`SyncMetrics.observe_exception` of the default sync."""
        self.sync(DEFAULT_SYNC).observe_exception()

    def set_mappings(self, counts: Mapping[str, int]) -> None:
        """:meth:`SyncMetrics.set_mappings` of the default sync."""
        self.sync(DEFAULT_SYNC).set_mappings(counts)

    def set_last_success(self, timestamp: float) -> None:
        """:meth:`SyncMetrics.set_last_success` of the default sync."""
        self.sync(DEFAULT_SYNC).set_last_success(timestamp)

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class SyncMetrics:
    """The series of one sync: every per-sync metric with ``sync=<name>``.

    Made by :meth:`Metrics.sync`, never directly. Its methods may be called from the sync's run
    thread and its progress ticker at once: a lock keeps each update whole.
    """

    def __init__(self, metrics: Metrics, name: str, *, clock: Callable[[], float]) -> None:
        self.name = name
        self._m = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._removed = False
        # Every series this view made, so remove() drops exactly this sync's (prometheus_client
        # removes a child by its full label values only).
        self._series: set[tuple[MetricWrapperBase, tuple[str, ...]]] = set()
        self._mapping_labels = set(_SITUATIONS)
        self._last_success = 0.0
        m = metrics
        # Every known series exists from the start at 0, so rate() and alerts see the first change.
        for status in RunStatus:
            if status.finished:
                self._child(m.runs, status.value)
        for kind in ActionKind:
            for outcome in Outcome:
                if outcome is not Outcome.PENDING:
                    self._child(m.writes, kind.value, outcome.value)
        self._child(m.run_duration)
        self._child(m.run_exceptions)
        self._child(m.retries)
        self._child(m.last_success).set(0)
        self._child(m.rate).set(0)
        self._child(m.sync_overdue).set(0)
        self.in_progress: Gauge = self._child(m.run_in_progress_by_sync)
        self.in_progress.set(0)
        self._clear_progress()
        self._set_mappings({})

    def _child(self, family: _Family, *values: str) -> _Family:
        self._series.add((family, values))
        return family.labels(self.name, *values)

    def observe_run(self, result: RunResult) -> None:
        """Count one finished run: its status, duration, writes, API requests and retries."""
        m = self._m
        with self._lock:
            if self._removed:
                return
            self._child(m.runs, result.status.value).inc()
            if result.status is not RunStatus.SKIPPED:
                self._child(m.run_duration).observe(max(result.duration_seconds, 0.0))
            # A dry run's actions were only planned: nothing was written.
            written = {} if result.dry_run else result.actions_by_outcome
            for key, count in written.items():
                action, outcome = _split(key)
                if count > 0:
                    self._child(m.writes, action, outcome).inc(count)
            for key, count in result.api_requests.items():
                kind, status = _split(key)
                if count > 0:
                    self._child(m.api_requests, kind, status).inc(count)
            if result.retries > 0:
                self._child(m.retries).inc(result.retries)
            if result.status is not RunStatus.SKIPPED:
                self._child(m.rate).set(result.rate_per_second or 0.0)
            # A run that completed its work: every record was tried (some may have failed, see
            # writes_total).
            if result.status.health is Health.COMPLETED and not result.dry_run:
                self._last_success = self._clock()
                self._child(m.last_success).set(self._last_success)

    def observe_progress(self, snapshot: ProgressSnapshot) -> None:
        """Show where the sync's current run is (called from the run's progress ticker)."""
        m = self._m
        with self._lock:
            if self._removed:
                return
            for phase in PHASES:
                self._child(m.run_phase, phase).set(1 if phase == snapshot.phase else 0)
            self._child(m.run_progress_done).set(snapshot.done)
            self._child(m.run_progress_total).set(snapshot.total or 0)

    def clear_progress(self) -> None:
        """No run of this sync in progress: every phase 0, done and total 0."""
        with self._lock:
            if not self._removed:
                self._clear_progress()

    def _clear_progress(self) -> None:
        m = self._m
        for phase in PHASES:
            self._child(m.run_phase, phase).set(0)
        self._child(m.run_progress_done).set(0)
        self._child(m.run_progress_total).set(0)

    def observe_exception(self) -> None:
        """Count a run that raised: a failed run, and an exception (which a result never is)."""
        with self._lock:
            if self._removed:
                return
            self._child(self._m.runs, RunStatus.FAILED.value).inc()
            self._child(self._m.run_exceptions).inc()

    def set_mappings(self, counts: Mapping[str, int]) -> None:
        """Replace the sync's mappings gauge; a situation absent from ``counts`` has none (0)."""
        with self._lock:
            if not self._removed:
                self._set_mappings(counts)

    def _set_mappings(self, counts: Mapping[str, int]) -> None:
        self._mapping_labels |= set(counts)
        for name in sorted(self._mapping_labels):
            self._child(self._m.mappings, name).set(counts.get(name, 0))

    def set_last_success(self, timestamp: float) -> None:
        """Seed the last-success gauge (from the state database at start), never moving it back."""
        with self._lock:
            if self._removed:
                return
            self._last_success = max(timestamp, self._last_success)
            self._child(self._m.last_success).set(self._last_success)

    def set_in_progress(self, running: bool) -> None:
        """1 while this process executes a run of the sync, 0 otherwise."""
        with self._lock:
            if not self._removed:
                self.in_progress.set(1 if running else 0)

    def set_overdue(self, seconds: float) -> None:
        """How long the sync's due run has waited for a free run slot; 0 once it runs or is not due."""
        with self._lock:
            if not self._removed:
                self._child(self._m.sync_overdue).set(max(seconds, 0.0))

    def remove(self) -> None:
        """Drop every series of this sync and ignore later updates (:meth:`Metrics.remove_sync`)."""
        with self._lock:
            self._removed = True
            for family, values in self._series:
                # Already gone is as good as removed.
                with contextlib.suppress(KeyError):
                    family.remove(self.name, *values)
            self._series.clear()
