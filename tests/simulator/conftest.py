"""Fixtures for the simulator tests: every API test runs in-process AND over real HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from sim_helpers import GUIDE_PEOPLE, Harness
from sync.simulator import Simulator, SimulatorConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def guide_file(tmp_path: Path) -> Path:
    """The guide's people as a people file."""
    path = tmp_path / "people.json"
    path.write_text(json.dumps({"people": GUIDE_PEOPLE}), encoding="utf-8")
    return path


class _Switch:
    """Stands in for a Simulator in `serve_in_thread`: forwards to whichever simulator is current.

    One uvicorn server per session (instead of one per test) keeps the HTTP half of the suite fast;
    every request still crosses a real socket to a fresh simulator.
    """

    def __init__(self) -> None:
        self.current: Simulator | None = None

    async def app(self, scope, receive, send):
        assert self.current is not None, "no simulator behind the shared server"
        await self.current.app(scope, receive, send)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[tuple[_Switch, str]]:
    """A real HTTP server for the whole session, pointed at each test's simulator in turn."""
    switch = _Switch()
    with serve_in_thread(switch) as base_url:  # type: ignore[arg-type]
        yield switch, base_url


@pytest.fixture(params=["in-process", "http"])
def make_harness(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    """Build a simulator from config keywords (or ``config=``/``clock=``) and reach it both ways."""
    mode = request.param
    switch, base_url = request.getfixturevalue("shared_server") if mode == "http" else (None, "")

    def make(
        config: SimulatorConfig | None = None,
        clock: Callable[[], float] | None = None,
        **fields: object,
    ) -> Harness:
        sim = Simulator(config or SimulatorConfig(**fields), clock=clock)  # type: ignore[arg-type]
        if switch is not None:
            switch.current = sim
            return Harness(sim, base_url, mode)
        return Harness(sim, sim.base_url, mode)

    yield make
    if switch is not None:
        switch.current = None


@pytest.fixture
def guide(make_harness: Callable[..., Harness], guide_file: Path) -> Harness:
    """The guide's world, reached in-process or over HTTP."""
    return make_harness(people_file=guide_file)
