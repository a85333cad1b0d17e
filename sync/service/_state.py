"""What the service needs from the state database, behind one seam (tests pass a fake).

The default :class:`StateBackend` imports :mod:`sync.state` lazily: the service's modules import
without a database driver being touched, and a test can replace the whole seam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sync.names import DEFAULT_SYNC
from sync.status import Health, RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from sync.state import StateStore


class ServiceState(Protocol):
    """The state database as the service sees it."""

    def upgrade(self) -> None:
        """Migrate to head; safe when two replicas call it at the same moment."""

    def readiness_problem(
        self, *, failing_runs_unready: int | None, sync: str = DEFAULT_SYNC
    ) -> str | None:
        """None when the database is reachable, at head and (with a threshold) the sync's runs
        are not failing; else why not."""

    def counts_by_situation(self, *, sync: str = DEFAULT_SYNC) -> Mapping[str, int]:
        """Mapping rows of the sync by situation, for the ``idsync_mappings`` gauge."""

    def last_success_timestamp(self, *, sync: str = DEFAULT_SYNC) -> float | None:
        """Unix time at which the sync's last completed non-dry run ended, if any is recorded."""

    def last_run_started(self, *, sync: str = DEFAULT_SYNC) -> datetime | None:
        """When the sync's newest run that could do its work started (any process, any replica):
        not a dry run, a plan or a run skipped at the lock."""

    def close(self) -> None:
        """Release the connections."""


def failing_streak(statuses: Iterable[str]) -> int:
    """How many runs failed in a row, newest first, stepping over neutral ones (skipped...)."""
    streak = 0
    for status in statuses:
        health = _health(status)
        if health is Health.FAILING:
            streak += 1
        elif health is Health.COMPLETED:
            break
    return streak


def _health(status: str) -> Health:
    """What a run row's status says of health (sync.status); a status this version does not
    know says nothing."""
    try:
        return RunStatus(status).health
    except ValueError:
        return Health.NEUTRAL


def _streak_reason(streak: int, threshold: int) -> str | None:
    if streak < threshold:
        return None
    return (
        f"the last {streak} runs failed or were blocked (threshold "
        f"IDSYNC_HTTP__FAILING_RUNS_UNREADY={threshold}); see `idsync runs`"
    )


class StateBackend:
    """:class:`ServiceState` on the real state database (:mod:`sync.state`)."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        from sync.state import StateStore, open_database

        self._db = open_database(url, timeout=timeout)
        self._stores: dict[str, StateStore] = {DEFAULT_SYNC: StateStore(self._db)}

    def _store(self, sync: str) -> StateStore:
        from sync.state import StateStore

        store = self._stores.get(sync)
        if store is None:
            store = self._stores[sync] = StateStore(self._db, sync=sync)
        return store

    def upgrade(self) -> None:
        from sync.state import upgrade

        upgrade(self._db)

    def readiness_problem(
        self, *, failing_runs_unready: int | None, sync: str = DEFAULT_SYNC
    ) -> str | None:
        from sync.errors import StateError
        from sync.state import check_schema

        try:
            check_schema(self._db)
        except StateError as exc:
            return str(exc)
        if failing_runs_unready is None:
            return None
        # Enough rows to see N failures between the skipped rows of a second replica.
        rows = self._store(sync).runs.runs(limit=failing_runs_unready * 4 + 8)
        statuses = [row.status for row in rows]
        return _streak_reason(failing_streak(statuses), failing_runs_unready)

    def counts_by_situation(self, *, sync: str = DEFAULT_SYNC) -> Mapping[str, int]:
        return self._store(sync).map.counts_by_situation()

    def last_run_started(self, *, sync: str = DEFAULT_SYNC) -> datetime | None:
        return self._store(sync).runs.last_work_started()

    def last_success_timestamp(self, *, sync: str = DEFAULT_SYNC) -> float | None:
        for row in self._store(sync).runs.runs(limit=200):
            if (
                _health(row.status) is Health.COMPLETED
                and not row.dry_run
                and row.finished_at is not None
            ):
                return float(row.finished_at.timestamp())
        return None

    def close(self) -> None:
        self._db.dispose()
