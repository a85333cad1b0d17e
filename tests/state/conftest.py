"""State fixtures: every state test runs on SQLite, and on PostgreSQL in a schema of its own.

A fresh PostgreSQL schema per test (``search_path`` in the URL's ``options``) keeps tests and
parallel test runs on one server apart; it is dropped afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from db_support import fresh_mariadb_database
from sync.state import Database, StateStore, open_database, upgrade

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def any_state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty state database URL on each database idsync supports: a SQLite file, a fresh
    PostgreSQL schema or a fresh MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    elif request.param == "postgresql":
        yield str(request.getfixturevalue("pg_schema_url"))
    else:
        with fresh_mariadb_database(request.getfixturevalue("mariadb_url")) as url:
            yield url


@pytest.fixture
def db(state_url: str) -> Iterator[Database]:
    """The empty database (not migrated), opened the one way the code opens it."""
    made = open_database(state_url)
    yield made
    made.dispose()


@pytest.fixture
def migrated(db: Database) -> Database:
    """The database, upgraded to head."""
    upgrade(db)
    return db


@pytest.fixture
def store(migrated: Database) -> StateStore:
    """A store on a migrated, empty database."""
    return StateStore(migrated)
