"""Shared fixtures. Database servers: mandatory when CI=true, skipped with a reason elsewhere."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from db_support import fresh_postgres_schema

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "IDSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("IDSYNC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _server_url(url: str, what: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"{what} at {url} is unreachable in CI: {exc}")
        pytest.skip(f"{what} not reachable at {url} (set CI=true to make this a failure)")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL URL (database `test`), or skip/fail as above."""
    return _server_url(POSTGRES_URL, "PostgreSQL")


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """A reachable MariaDB URL (database `test`), or skip/fail as above."""
    return _server_url(MARIADB_URL, "MariaDB")


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema (dropped after the test)."""
    with fresh_postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state database URL: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_schema_url"))
