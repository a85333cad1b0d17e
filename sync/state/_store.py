"""The state store: one object over the state database, holding one part per concern.

* ``store.runs`` (:class:`~sync.state._runs.RunStore`) — runs: start, finish, the ones a dead
  process left;
* ``store.map`` (:class:`~sync.state._map.MapStore`) — the map: what the planner needs,
  classifications, lookups;
* ``store.events`` (:class:`~sync.state._events.EventStore`) — the audit trail of calls: pending,
  then the outcome;
* ``store.plans`` (:class:`~sync.state._plans.PlanStore`) — stored plans and their actions;
* ``store.admin`` (:class:`~sync.state._admin.AdminStore`) — an admin's changes to the map;
* ``store.snapshot`` (:class:`~sync.state._snapshot.SnapshotStore`) — the Protime people as last
  seen and the delta feed's position (incremental reads);
* ``store.settled`` (:class:`~sync.state._settled.SettledStore`) — the run that settled on the
  current inputs.

A store works on one sync's rows (``StateStore(db, sync="payroll-be")``; the default sync,
:data:`~sync.names.DEFAULT_SYNC`, when none is named): every part's queries filter by it and its
inserts set it, and :meth:`StateStore.lock` is that sync's run lock. Another sync's run or plan id
reads as unknown.

Every method opens its own connection and transaction, so one :class:`StateStore` may be shared by
threads. Writers use :meth:`~sync.state._database.Database.write` (``BEGIN IMMEDIATE`` on SQLite).

Order of calls in one run (``sync.reconcile``)::

    with store.lock(timeout=...):
        store.runs.mark_interrupted_runs()   # runs a dead process left 'running'
        run_id = store.runs.start_run(...)
        prior = store.map.load_prior()
        ...classify and plan...
        store.map.save_classifications(run_id=run_id, classifications=..., now=..., prune=...)
        ids = store.events.record_pending(run_id=run_id, actions=plan.actions)  # before any call
        store.events.record_outcomes([...])  # as calls complete, in batches
        store.runs.finish_run(run_id=run_id, status=..., summary=...)

``save_classifications`` goes before ``record_outcomes``: an outcome updates the row the
classification wrote (a successful write turns it ``linked``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from sync.names import DEFAULT_SYNC
from sync.state._admin import AdminStore
from sync.state._base import checked_sync
from sync.state._database import DEFAULT_STATE_TIMEOUT_SECONDS, Database, open_database
from sync.state._events import EventStore
from sync.state._lock import LockFence, run_lock, sync_lock_name
from sync.state._map import MapStore
from sync.state._migrate import check_schema
from sync.state._plans import PlanStore
from sync.state._runs import RunStore
from sync.state._settled import SettledStore
from sync.state._snapshot import SnapshotStore

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class StateStore:
    """The state database's parts for one sync, on one :class:`~sync.state.Database`.

    Built on a database the caller owns (``StateStore(db)``), or with :meth:`open` on a URL, in
    which case :meth:`close` disposes of the database it opened. ``sync`` names the sync whose rows
    it reads and writes (:class:`~sync.errors.UsageError` for a name :mod:`sync.names` refuses).
    """

    def __init__(self, db: Database, *, sync: str = DEFAULT_SYNC, owns_db: bool = False) -> None:
        self.db = db
        self._sync = checked_sync(sync)
        self._owns_db = owns_db
        self.runs = RunStore(db, sync=sync)
        self.map = MapStore(db, sync=sync)
        self.events = EventStore(db, sync=sync)
        self.plans = PlanStore(db, sync=sync)
        self.admin = AdminStore(db, sync=sync)
        self.snapshot = SnapshotStore(db, sync=sync)
        self.settled = SettledStore(db, sync=sync)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        sync: str = DEFAULT_SYNC,
        timeout: float = DEFAULT_STATE_TIMEOUT_SECONDS,
    ) -> Self:
        """A store of sync ``sync`` on a database of its own, after checking the schema is at
        head (else exit 2).

        ``timeout`` bounds each statement (see :func:`~sync.state.open_database`)."""
        checked_sync(sync)  # before anything is opened
        db = open_database(url, timeout=timeout)
        try:
            check_schema(db)
        except BaseException:
            db.dispose()
            raise
        return cls(db, sync=sync, owns_db=True)

    def lock(self, *, timeout: float = 0.0) -> AbstractContextManager[LockFence]:
        """This sync's run lock (:class:`~sync.errors.LockHeldError` when held): another sync
        of the same database runs meanwhile, this one never twice."""
        return run_lock(self.db, name=sync_lock_name(self._sync), timeout=timeout)

    def close(self) -> None:
        """Dispose of the database when :meth:`open` opened it; a caller's stays open."""
        if self._owns_db:
            self.db.dispose()
