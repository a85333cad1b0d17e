"""State fixtures: every state test runs on SQLite, and on PostgreSQL in a schema of its own.

A fresh PostgreSQL schema per test (``search_path`` in the URL's ``options``) keeps tests and
parallel test runs on one server apart; it is dropped afterwards.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from sync.state import StateStore, create_state_engine, upgrade

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema (dropped after the test)."""
    schema = f"idsync_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty state database URL: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


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
