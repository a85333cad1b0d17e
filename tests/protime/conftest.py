"""Fixtures the client tests share: the fake Protime, a frozen clock, and a client builder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import stamina

from protime_fakes import FakeClock, FakeProtime, make_settings
from sync.protime import Backoff, ProtimeClient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """stamina's test mode: the waits are still computed and logged, but not slept."""
    with stamina.set_testing(True, attempts=1000, cap=True):
        yield


@pytest.fixture
def fake() -> FakeProtime:
    return FakeProtime()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake: FakeProtime, clock: FakeClock) -> Callable[..., ProtimeClient]:
    """Build a client on the fake; keyword arguments override settings."""

    def build(*, on_request: Any = None, backoff: Backoff | None = None, **overrides: Any):
        return ProtimeClient(
            make_settings(**overrides),
            transport=fake.transport(),
            version="9.8.7",
            on_request=on_request,
            clock=clock,
            backoff=backoff,
        )

    return build
