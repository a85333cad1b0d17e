"""Fixtures of the service tests: a log capture, settings without the environment, a fake state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from process_support import Serve, World
from service_support import FakeState, LogCapture

from sync.logging import configure_logging
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _reset_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "idsync"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Logging configured at DEBUG, JSON, into a buffer; undone after the test."""
    stream = LogCapture()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    yield stream
    _reset_logging()


@pytest.fixture
def reset_logging() -> Iterator[None]:
    """Undo whatever logging setup the test made (serve() configures logging itself)."""
    yield
    _reset_logging()


@pytest.fixture
def fake_state() -> FakeState:
    return FakeState()


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Any]:
    """Start a simulator over HTTP; yields a function (people, latency) -> (World, base URL)."""
    stack: list[Any] = []

    def make(*, people: int, latency_ms: float = 0.0) -> tuple[World, str]:
        world = World(tmp_path, people=people, latency_ms=latency_ms)
        server = serve_in_thread(world.sim)
        base_url = server.__enter__()
        stack.append(server)
        return world, base_url

    yield make
    for server in reversed(stack):
        server.__exit__(None, None, None)


@pytest.fixture
def processes() -> Iterator[list[Serve]]:
    """Every serve a test starts is killed at the end if it is still running."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()
