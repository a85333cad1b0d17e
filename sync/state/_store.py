"""The state store: one object over the state database, made of one part per concern.

* :class:`~sync.state._runs.RunStore` — runs: start, finish, the ones a dead process left;
* :class:`~sync.state._map.MapStore` — the map: what the planner needs, classifications, lookups;
* :class:`~sync.state._events.EventStore` — the audit trail of calls: pending, then the outcome;
* :class:`~sync.state._plans.PlanStore` — stored plans and their actions, for review and apply;
* :class:`~sync.state._admin.AdminStore` — an admin's changes to the map;
* :class:`~sync.state._snapshot.SnapshotStore` — the Protime people as last seen and the delta
  feed's position (incremental reads).

Every method opens its own connection and transaction, so one :class:`StateStore` may be shared by
threads. Writers use :func:`~sync.state._engine.write_transaction` (``BEGIN IMMEDIATE`` on SQLite).

Order of calls in one run (``sync.reconcile``)::

    with store.lock(timeout=...):
        store.mark_interrupted_runs()        # runs a dead process left 'running'
        run_id = store.start_run(...)
        prior = store.load_prior()
        ...classify and plan...
        store.save_classifications(run_id=run_id, classifications=..., now=..., prune=not only)
        ids = store.record_pending(run_id=run_id, actions=plan.actions)    # before any call
        store.record_outcomes([...])         # as calls complete, in batches
        store.finish_run(run_id=run_id, status=..., summary=...)

``save_classifications`` goes before ``record_outcomes``: an outcome updates the row the
classification wrote (a successful write turns it ``linked``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from sync.state._admin import AdminStore
from sync.state._engine import DEFAULT_STATE_TIMEOUT_SECONDS, create_state_engine
from sync.state._events import EventStore
from sync.state._lock import LockFence, run_lock
from sync.state._map import MapStore
from sync.state._migrate import check_schema
from sync.state._plans import PlanStore
from sync.state._runs import RunStore
from sync.state._snapshot import SnapshotStore

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy import Engine


class StateStore(RunStore, MapStore, EventStore, PlanStore, AdminStore, SnapshotStore):
    """The state database behind one engine (see :func:`~sync.state.create_state_engine`).

    Built on an engine the caller owns (``StateStore(engine)``), or with :meth:`open` on a URL,
    in which case :meth:`close` disposes of the engine it made.
    """

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._owns_engine = owns_engine

    @classmethod
    def open(cls, url: str, *, timeout: float = DEFAULT_STATE_TIMEOUT_SECONDS) -> Self:
        """A store on its own engine, after checking the schema is at head (else exit 2).

        ``timeout`` bounds each statement (see :func:`~sync.state.create_state_engine`)."""
        engine = create_state_engine(url, timeout=timeout)
        try:
            check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, owns_engine=True)

    def lock(self, *, timeout: float = 0.0) -> AbstractContextManager[LockFence]:
        """The run lock of this database (:class:`~sync.errors.LockHeldError` when held)."""
        return run_lock(self._engine, timeout=timeout)

    def close(self) -> None:
        """Dispose of the engine when :meth:`open` made it; a caller's engine stays open."""
        if self._owns_engine:
            self._engine.dispose()
