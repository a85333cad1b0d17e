"""The state database: engine factory per dialect, typed models, migrations, the run lock, the store.

Public surface (everything else is private)::

    engine = create_state_engine(settings.state_url)
    upgrade(engine)                      # `idsync db upgrade`; safe for two processes at once
    check_schema(engine)                 # SchemaNotCurrentError: "run `idsync db upgrade`"
    with run_lock(engine, timeout=settings.lock_timeout_seconds):   # LockHeldError
        store = StateStore(engine)
        ...

Migrating is explicit: commands that need the database call :func:`check_schema` and tell the
user to run ``idsync db upgrade``; ``idsync serve`` calls :func:`upgrade` at start (safe under two
replicas, see ``_migrate``).
"""

from sync.state._engine import create_state_engine, describe_error
from sync.state._lock import DEFAULT_LOCK_TTL_SECONDS, LockFence, run_lock
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
    RunStatus,
    RunSummary,
    Trigger,
)
from sync.state._snapshot import PeopleFeed
from sync.state._store import StateStore

__all__ = [
    "DEFAULT_LOCK_TTL_SECONDS",
    "KEY_LENGTH",
    "ActionOutcome",
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
    "Trigger",
    "alembic_config",
    "check_schema",
    "create_state_engine",
    "current_revision",
    "describe_error",
    "head_revision",
    "migrations_dir",
    "run_lock",
    "upgrade",
]
