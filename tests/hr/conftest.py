"""HR database fixtures: SQLite always; PostgreSQL and MariaDB when reachable (mandatory in CI).

Each test gets a database of its own: a SQLite file, a fresh PostgreSQL schema (``search_path`` in the
URL), or a fresh MariaDB database, dropped afterwards, so parallel runs never meet.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine

from db_support import fresh_mariadb_database, fresh_postgres_schema

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True)
class HRDatabase:
    url: str
    engine: Engine  # for the test to create and inspect tables

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def hr_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HRDatabase]:
    """An empty HR database of each kind."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path / "hr.db"
            path.touch()
            url = f"sqlite:///{path}"
        elif request.param == "postgresql":
            url = stack.enter_context(
                fresh_postgres_schema(request.getfixturevalue("postgres_url"), prefix="idsync_hr")
            )
        else:
            url = stack.enter_context(
                fresh_mariadb_database(request.getfixturevalue("mariadb_url"), prefix="idsync_hr")
            )
        engine = create_engine(url)
        stack.callback(engine.dispose)
        yield HRDatabase(url=url, engine=engine)
