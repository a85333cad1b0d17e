"""State fixtures: every state test runs on SQLite, and on PostgreSQL in a schema of its own.

A fresh PostgreSQL schema per test (``search_path`` in the URL's ``options``) keeps tests and
parallel test runs on one server apart; it is dropped afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sync.state import StateStore, create_state_engine, upgrade

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Engine


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    """An engine from the factory on the empty database (not migrated)."""
    made = create_state_engine(state_url)
    yield made
    made.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    """The engine, with the database upgraded to head."""
    upgrade(engine)
    return engine


@pytest.fixture
def store(migrated: Engine) -> StateStore:
    """A store on a migrated, empty database."""
    return StateStore(migrated)
