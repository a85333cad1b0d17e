"""Alembic, driven from code: find the migrations, upgrade safely, tell whether the schema is current.

The migrations ship inside the installed wheel (``pyproject.toml`` force-includes ``migrations/``
as ``sync/_migrations``); in a source checkout they sit at the top level. :func:`migrations_dir`
looks in that order and :func:`alembic_config` builds the Alembic configuration in code, so nothing
depends on the working directory or on ``alembic.ini``. The database URL never goes through Alembic's
configuration: :func:`upgrade` hands Alembic an open connection.

**Two processes upgrading at once** (two replicas starting together) are serialised: on PostgreSQL
by a transaction-level advisory lock taken before Alembic reads the version table, on SQLite by the
``BEGIN IMMEDIATE`` that opens the migration transaction (DDL is transactional with the engine's
begin recipe). The second process then finds the schema at head and does nothing. Within one process
a lock serialises callers too, since Alembic's ``context`` is process-global.

**Checking is not migrating**: every command checks the schema, few migrate. Alembic's runtime
(about 10 MB of imports) is loaded only by :func:`alembic_config` and :func:`upgrade`; the check
reads the revision ids from the migration scripts' source (:func:`_revisions`), without running
them. A test compares that head with Alembic's.
"""

from __future__ import annotations

import ast
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from sync.errors import SchemaNotCurrentError, StateError
from sync.state._database import Database, describe_error

if TYPE_CHECKING:
    from alembic.config import Config

_PROCESS_LOCK = threading.Lock()


def migrations_dir(package_dir: Path | None = None) -> Path:
    """The Alembic script directory: the installed package's copy first, then the source tree.

    ``package_dir`` is the ``sync`` package folder (its real location by default).
    """
    package = package_dir if package_dir is not None else Path(__file__).resolve().parent.parent
    candidates = (package / "_migrations", package.parent / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise StateError(
        f"the database migrations are missing: neither {candidates[0]} nor {candidates[1]} "
        "holds env.py (a broken installation?)"
    )


def alembic_config() -> Config:
    """An Alembic :class:`Config` built in code; pass a connection in ``attributes['connection']``."""
    from alembic.config import Config  # Alembic's runtime only where we migrate

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    return config


def _literal_ids(node: ast.expr) -> tuple[str, ...]:
    # `down_revision` is None, one id, or a tuple/list of ids (a merge).
    value = ast.literal_eval(node)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


@lru_cache(maxsize=1)
def _revisions() -> dict[str, tuple[str, ...]]:
    """Each revision id of ``versions/`` and the ids it revises, read from the scripts' source."""
    revisions: dict[str, tuple[str, ...]] = {}
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        found: dict[str, ast.expr] = {}
        for statement in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(statement, ast.AnnAssign | ast.Assign) and statement.value is not None:
                targets = (
                    [statement.target]
                    if isinstance(statement, ast.AnnAssign)
                    else statement.targets
                )
                for target in targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = statement.value
        if "revision" not in found:
            continue  # not a migration script (Alembic skips it too)
        revision = _literal_ids(found["revision"])
        if len(revision) != 1:
            raise StateError(f"the migration {script.name} has no single revision id")
        down = _literal_ids(found["down_revision"]) if "down_revision" in found else ()
        revisions[revision[0]] = down
    return revisions


def head_revision() -> str:
    """The revision the code expects (the single head of ``migrations/versions``)."""
    revisions = _revisions()
    revised = {down for downs in revisions.values() for down in downs}
    heads = sorted(set(revisions) - revised)
    if not heads:
        raise StateError("the migrations define no revision")
    if len(heads) > 1:
        raise StateError(f"the migrations have several heads: {', '.join(heads)}")
    return heads[0]


def current_revision(db: Database) -> str | None:
    """The revision the database is at; ``None`` for a database idsync never migrated."""
    # Read alembic_version directly: a MigrationContext logs two INFO lines ("Context impl ...")
    # on every command that merely checks the schema.
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:
        raise StateError(f"the state database has several schema heads: {', '.join(versions)}")
    return versions[0] if versions else None


def check_schema(db: Database) -> None:
    """Raise unless the state database is reachable and at :func:`head_revision`.

    :class:`~sync.errors.SchemaNotCurrentError` (exit 2) tells the user to run ``idsync db
    upgrade``; :class:`~sync.errors.StateError` says the database cannot be reached.
    """
    missing = db.dialect.missing_file(db.url)
    if missing is not None:
        # Connecting would create an empty file (`idsync status` in the wrong folder left an
        # ./idsync.db behind): say what is wrong and create nothing.
        raise SchemaNotCurrentError(
            f"there is no state database at {missing} (IDSYNC_DATABASE_URL): run `idsync db "
            "upgrade` to create it, or point IDSYNC_DATABASE_URL at the existing one"
        )
    try:
        current = current_revision(db)
    except SQLAlchemyError as exc:
        raise StateError(f"state database unreachable: {describe_error(exc, url=db.url)}") from None
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaNotCurrentError(
            f"the state database has no idsync schema yet (expected revision {head}): "
            "run `idsync db upgrade`"
        )
    if current not in _revisions():
        raise SchemaNotCurrentError(
            f"the state database is at revision {current}, which this idsync does not know "
            "(was it migrated by a newer version?); install that version, or run `idsync db "
            "upgrade` with it"
        )
    raise SchemaNotCurrentError(
        f"the state database schema is at revision {current}, the code expects {head}: "
        "run `idsync db upgrade`"
    )


def upgrade(db: Database) -> None:
    """Migrate the state database to head; a no-op when it is there already.

    Safe when several processes (or threads) call it at the same moment; see the module doc.
    """
    from alembic import command  # Alembic's runtime only where we migrate

    config = alembic_config()
    try:
        with (
            _PROCESS_LOCK,
            db.engine.connect() as conn,
            db.dialect.migration_transaction(conn) as locked,
        ):
            config.attributes["connection"] = locked
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StateError(
            f"migrating the state database failed: {describe_error(exc, url=db.url)}"
        ) from None
