"""End-to-end fixtures: a clean environment, state databases, and a factory of installations."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from e2e.harness import Harness, HRRow, migrate, sim_config, write_hr
from sync.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
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
