"""Migration 0009 (state per sync): rows from before it become the default sync's and read as they
did; downgrading is refused while another sync has rows (SQLite, PostgreSQL and MariaDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import inspect, text
from sync_support import fill, view

from sync.state import (
    StateStore,
    alembic_config,
    current_revision,
    head_revision,
    open_database,
    upgrade,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sync.state import Database

PER_SYNC = ("mappings", "runs", "events", "plans", "protime_people", "protime_feed")


@pytest.fixture
def db(any_state_url: str) -> Iterator[Database]:
    """The empty database, not migrated."""
    made = open_database(any_state_url)
    yield made
    made.dispose()


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    """Up or down to ``revision``, the way ``upgrade`` runs Alembic (one locked transaction)."""
    from alembic import command

    config = alembic_config()
    with db.engine.connect() as conn, db.dialect.migration_transaction(conn) as locked:
        config.attributes["connection"] = locked
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _syncs(db: Database, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(text(f"SELECT DISTINCT sync FROM {table}")).scalars())  # noqa: S608


def test_rows_of_a_0008_database_become_the_default_syncs_and_read_the_same(db: Database) -> None:
    """A 0008 database holding a map, runs, events, a plan, a snapshot, a feed link, a settlement
    and a learned rate upgrades to rows of the default sync that read back exactly as before."""
    upgrade(db)
    fill(StateStore(db), 10)
    before = view(StateStore(db))
    _migrate(db, "0008", down=True)  # the rows, in the schema 0008 made
    assert current_revision(db) == "0008"
    for table in PER_SYNC:
        assert "sync" not in {c["name"] for c in inspect(db.engine).get_columns(table)}
    upgrade(db)
    assert current_revision(db) == head_revision()
    for table in PER_SYNC:
        assert _syncs(db, table) == {"default"}, table
    assert view(StateStore(db)) == before
    assert view(StateStore(db, sync="other"))["map"] == []


def test_downgrade_is_refused_while_another_sync_has_rows(db: Database) -> None:
    """Downgrading below 0009 with rows of a sync other than the default one fails, naming the
    tables, and leaves the database at head with its rows."""
    upgrade(db)
    fill(StateStore(db, sync="north"), 10)
    with pytest.raises(RuntimeError, match=r"other than 'default'.*mappings: 2"):
        _migrate(db, "0008", down=True)
    assert current_revision(db) == head_revision()
    assert _syncs(db, "mappings") == {"north"}
