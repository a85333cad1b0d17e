"""Fixtures of the service tests: a log capture, settings without the environment, a fake state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from service_support import FakeState, LogCapture

from sync.logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator


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
