"""The learned rate behind its own port: recalled when the client opens, remembered when it closes."""

from __future__ import annotations

import asyncio

import pytest

from protime_fakes import FakeProtime, make_settings
from sync.protime import ProtimeClient, RateMemory
from sync.protime._rate import FIRST_RATE


class Memory:
    """A RateMemory that holds one rate and logs what it was asked."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.asked: list[str] = []

    def recall(self) -> float | None:
        self.asked.append("recall")
        return self.rate

    def remember(self, rate: float | None) -> None:
        self.asked.append("remember")
        self.rate = rate


def _client(memory: RateMemory, **overrides: object) -> ProtimeClient:
    settings = make_settings(max_rate_per_second=80, **overrides)
    return ProtimeClient(settings, transport=FakeProtime().transport(), rate_memory=memory)


def test_auto_starts_at_the_recalled_rate_and_remembers_where_it_ended() -> None:
    """With `auto`, opening recalls the last run's rate and closing remembers the rate now."""
    memory = Memory(42.0)

    async def scenario() -> float | None:
        async with _client(memory, rate_limit_per_second="auto") as client:
            assert memory.asked == ["recall"]
            client._session.resume_rate(33.0)  # what this run learned
            return client.rate_per_second

    assert asyncio.run(scenario()) == 33.0
    assert memory.asked == ["recall", "remember"]
    assert memory.rate == 33.0


def test_auto_with_nothing_recalled_starts_at_the_first_rate() -> None:
    """A memory that holds nothing yet leaves `auto` at its first rate, which is then remembered."""
    memory = Memory(None)

    async def scenario() -> float | None:
        async with _client(memory, rate_limit_per_second="auto") as client:
            return client.rate_per_second

    assert asyncio.run(scenario()) == FIRST_RATE
    assert memory.rate == FIRST_RATE


def test_the_rate_is_remembered_when_the_run_fails() -> None:
    """Closing after an error still remembers the rate: what was learned holds whatever failed."""
    memory = Memory(20.0)

    async def scenario() -> None:
        async with _client(memory, rate_limit_per_second="auto"):
            raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError):
        asyncio.run(scenario())
    assert memory.asked == ["recall", "remember"]
    assert memory.rate == 20.0


@pytest.mark.parametrize("rate", [0, 25.0])
def test_a_fixed_rate_or_none_neither_recalls_nor_remembers(rate: float) -> None:
    """With a fixed rate, or no client-side limit, the memory is not asked at all."""
    memory = Memory(42.0)

    async def scenario() -> float | None:
        async with _client(memory, rate_limit_per_second=rate) as client:
            return client.rate_per_second

    assert asyncio.run(scenario()) == (rate or None)
    assert memory.asked == []
