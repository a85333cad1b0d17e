"""HR database fixtures: SQLite always; PostgreSQL and MariaDB when reachable (mandatory in CI).

Each test gets a database of its own: a SQLite file, a fresh PostgreSQL schema (``search_path`` in the
URL), or a fresh MariaDB database, dropped afterwards, so parallel runs never meet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

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


def _postgres(base: str) -> Iterator[str]:
    schema = f"idsync_hr_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _mariadb(base: str) -> Iterator[str]:
    name = f"idsync_hr_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        url = make_url(base).set(database=name).update_query_dict({"charset": "utf8mb4"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE `{name}`"))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def hr_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HRDatabase]:
    """An empty HR database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "hr.db"
        path.touch()
        urls: Iterator[str] = iter([f"sqlite:///{path}"])
    elif request.param == "postgresql":
        urls = _postgres(request.getfixturevalue("postgres_url"))
    else:
        urls = _mariadb(request.getfixturevalue("mariadb_url"))
    url = next(urls)
    engine = create_engine(url)
    try:
        yield HRDatabase(url=url, engine=engine)
    finally:
        engine.dispose()
        next(urls, None)  # runs the generator's cleanup
