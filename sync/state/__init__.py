"""The state database: one handle per database, typed models, migrations, the run lock, the store.

Public surface (everything else is private)::

    db = open_database(settings.state_url, timeout=settings.state_timeout_seconds)
    upgrade(db)                          # `idsync db upgrade`; safe for two processes at once
    check_schema(db)                     # SchemaNotCurrentError: "run `idsync db upgrade`"
    store = StateStore(db)               # or StateStore.open(url, timeout=...): checked, owned
    store = StateStore(db, sync="hr-be") # one sync's rows; the default sync when none is named
    with store.lock(timeout=settings.lock_timeout_seconds):   # that sync's run lock; LockHeldError
        store.runs / .map / .events / .plans / .admin / .snapshot / .settled   # the parts
    sync_overview(db, names)             # per sync: latest run, running?, map counts
    syncs_in_database(db)                # the syncs that have rows
    db.dispose()

:func:`open_database` is the only place an engine for the state database is made: it picks the
dialect object (SQLite, PostgreSQL, MySQL/MariaDB, or a generic one) once from the URL, and
every difference between databases is asked of that object.

Migrating is explicit: commands that need the database call :func:`check_schema` and tell the
user to run ``idsync db upgrade``; ``idsync serve`` calls :func:`upgrade` at start (safe under two
replicas, see ``_migrate``).
"""

from sync.state._database import Database, describe_error, open_database
from sync.state._lock import DEFAULT_LOCK_TTL_SECONDS, LockFence, run_lock, sync_lock_name
from sync.state._migrate import (
    alembic_config,
    check_schema,
    current_revision,
    head_revision,
    migrations_dir,
    upgrade,
)
from sync.state._models import KEY_LENGTH
from sync.state._rows import (
    ActionOutcome,
    EventAction,
    EventRow,
    MappingRow,
    PlanRow,
    Rekey,
    RunRow,
    RunSummary,
)
from sync.state._snapshot import PeopleFeed
from sync.state._store import StateStore
from sync.state._syncs import SyncOverview, sync_overview, syncs_in_database
from sync.status import RunStatus, Trigger

__all__ = [
    "DEFAULT_LOCK_TTL_SECONDS",
    "KEY_LENGTH",
    "ActionOutcome",
    "Database",
    "EventAction",
    "EventRow",
    "LockFence",
    "MappingRow",
    "PeopleFeed",
    "PlanRow",
    "Rekey",
    "RunRow",
    "RunStatus",
    "RunSummary",
    "StateStore",
    "SyncOverview",
    "Trigger",
    "alembic_config",
    "check_schema",
    "current_revision",
    "describe_error",
    "head_revision",
    "migrations_dir",
    "open_database",
    "run_lock",
    "sync_lock_name",
    "sync_overview",
    "syncs_in_database",
    "upgrade",
]
