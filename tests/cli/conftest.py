"""CLI fixtures: an installation served over real HTTP, and ``idsync`` run in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cli_support import COUNT, CliResult, everyone, run_idsync

from e2e.harness import Harness, migrate, sim_config, write_hr
from sync.simulator import Simulator, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IDSYNC_* variable or .env file of the developer's shell reaches a test."""
    for name in list(os.environ):
        if name.startswith("IDSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Build installations whose simulator is served over HTTP for the test's duration.

    ``served(rows=..., config=..., migrated=True)``; ``rows`` may be a function of the simulator.
    """
    servers: list[Any] = []

    def make(
        *,
        rows: Any = everyone,
        config: Any = None,
        migrated: bool = True,
        **fields: Any,
    ) -> Harness:
        sim = Simulator(config or sim_config(people=COUNT + 10))
        hr_path = tmp_path / "hr.db"
        write_hr(hr_path, rows(sim) if callable(rows) else rows)
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
        if migrated:
            migrate(state_url)
        server = serve_in_thread(sim)
        base_url = server.__enter__()
        servers.append(server)
        return Harness(sim=sim, hr_path=hr_path, state_url=state_url, base_url=base_url, **fields)

    yield make
    for server in reversed(servers):
        server.__exit__(None, None, None)


@pytest.fixture
def idsync() -> Callable[..., CliResult]:
    """``idsync(*args, env=...)``: the CLI in-process."""

    def call(*args: str, env: dict[str, str]) -> CliResult:
        return run_idsync(args, env)

    return call


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that serve the simulator over a real socket are `slow` (they stay in the default run)."""
    here = Path(__file__).parent
    for item in items:
        if "served" in getattr(item, "fixturenames", ()) and here in item.path.parents:
            item.add_marker(pytest.mark.slow)
