"""End-to-end fixtures: a clean environment, state databases, and a factory of installations."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from e2e.harness import Harness, HRRow, migrate, sim_config, write_hr
from sync.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from sync.simulator import SimulatorConfig


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IDSYNC_* variable or .env file of the developer's shell reaches a test."""
    for name in list(os.environ):
        if name.startswith("IDSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema (dropped after the test)."""
    schema = f"idsync_e2e_{uuid.uuid4().hex[:12]}"
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
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., Harness]:
    """Build an installation: a simulator, an HR table with ``rows``, a migrated state database.

    ``rows`` may be a function of the simulator's people (to match them by employee number).
    """

    def make(
        *,
        config: SimulatorConfig | None = None,
        rows: Iterable[HRRow] | Callable[[Simulator], Iterable[HRRow]] = (),
        state_url: str | None = None,
        **fields: Any,
    ) -> Harness:
        sim = Simulator(config or sim_config())
        hr_path = tmp_path / "hr.db"
        write_hr(hr_path, rows(sim) if callable(rows) else rows)
        url = state_url or f"sqlite:///{tmp_path / 'state.db'}"
        migrate(url)
        return Harness(sim=sim, hr_path=hr_path, state_url=url, **fields)

    return make
