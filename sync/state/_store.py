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

from sync.state._admin import AdminStore
from sync.state._database import DEFAULT_STATE_TIMEOUT_SECONDS, Database, open_database
from sync.state._events import EventStore
from sync.state._lock import LockFence, run_lock
from sync.state._map import MapStore
from sync.state._migrate import check_schema
from sync.state._plans import PlanStore
from sync.state._runs import RunStore
from sync.state._settled import SettledStore
from sync.state._snapshot import SnapshotStore

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class StateStore:
    """The state database's parts, on one :class:`~sync.state.Database`.

    Built on a database the caller owns (``StateStore(db)``), or with :meth:`open` on a URL, in
    which case :meth:`close` disposes of the database it opened.
    """

    def __init__(self, db: Database, *, owns_db: bool = False) -> None:
        self.db = db
        self._owns_db = owns_db
        self.runs = RunStore(db)
        self.map = MapStore(db)
        self.events = EventStore(db)
        self.plans = PlanStore(db)
        self.admin = AdminStore(db)
        self.snapshot = SnapshotStore(db)
        self.settled = SettledStore(db)

    @classmethod
    def open(cls, url: str, *, timeout: float = DEFAULT_STATE_TIMEOUT_SECONDS) -> Self:
        """A store on a database of its own, after checking the schema is at head (else exit 2).

        ``timeout`` bounds each statement (see :func:`~sync.state.open_database`)."""
        db = open_database(url, timeout=timeout)
        try:
            check_schema(db)
        except BaseException:
            db.dispose()
            raise
        return cls(db, owns_db=True)

    def lock(self, *, timeout: float = 0.0) -> AbstractContextManager[LockFence]:
        """The run lock of this database (:class:`~sync.errors.LockHeldError` when held)."""
        return run_lock(self.db, timeout=timeout)

    def close(self) -> None:
        """Dispose of the database when :meth:`open` opened it; a caller's stays open."""
        if self._owns_db:
            self.db.dispose()
