"""Fault injection at request time: latency, injected 429/500/503/409 answers, drops, empty pages.

Every decision comes from the simulator's one fault RNG, in request order, so a run with the same
``fault_seed`` and the same requests repeats exactly (docs/simulator.md, "Faults").
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from sync.simulator._http import Headers, Resp, error

if TYPE_CHECKING:
    from sync.simulator._types import SimHost

# The latency seam: a test may replace it to record the delays instead of waiting them out.
_sleep = asyncio.sleep


class FaultInjector:
    """Applies the simulator's current ``Faults`` to one request at a time."""

    def __init__(self, sim: SimHost) -> None:
        self.sim = sim
        self._seen = 0  # API requests so far, for fault_every_429

    def retry_after(self, seconds: float) -> Headers:
        """The ``Retry-After`` header in the configured style (none for ``none``)."""
        style = self.sim.faults.retry_after_style
        if style == "none":
            return []
        if style == "whole":
            return [(b"retry-after", str(max(1, math.ceil(seconds))).encode())]
        return [(b"retry-after", f"{max(seconds, 0.001):.3f}".encode())]

    def too_many(self, wait: float) -> Resp:
        """A 429 that asks the client to wait ``wait`` seconds."""
        return error(429, "TooManyRequests", "rate limit exceeded", headers=self.retry_after(wait))

    async def decide(self, *, conflict_possible: bool = False) -> tuple[Resp | None, bool]:
        """Latency, then at most one injected answer (429/500/503, 409 on the people GETs when
        ``conflict_possible``) or a drop decision."""
        faults = self.sim.faults
        rng = self.sim.rng
        if faults.latency_ms or faults.latency_jitter_ms:
            delay = faults.latency_ms + rng.random() * faults.latency_jitter_ms
            await _sleep(delay / 1000)
        if faults.fault_every_429:
            self._seen += 1
            if self._seen % faults.fault_every_429 == 0:
                return self.too_many(faults.retry_after_seconds), False
        p429, p500, p503 = faults.fault_rate_429, faults.fault_rate_500, faults.fault_rate_503
        p409 = faults.fault_rate_409_get
        if not (p429 or p500 or p503 or p409 or faults.fault_drop_rate):
            return None, False
        draw = rng.random()
        if draw < p429:
            return self.too_many(faults.retry_after_seconds), False
        if draw < p429 + p500:
            return error(500, "InternalServerError", "injected fault"), False
        if draw < p429 + p500 + p503:
            retry = self.retry_after(faults.retry_after_seconds)
            return error(503, "ServiceUnavailable", "injected fault", headers=retry), False
        # The 409 band is drawn for every request (so the drop band does not move) but answers
        # only a GET on people or the delta; for other requests it is "no fault".
        if draw < p429 + p500 + p503 + p409:
            if conflict_possible:
                reasons = ["concurrency conflict on a collection with an active delta"]
                return error(409, "Conflict", "injected fault", reasons), False
            return None, False
        return None, draw < p429 + p500 + p503 + p409 + faults.fault_drop_rate

    def empty_page(self) -> bool:
        """Whether this list page is answered empty (with a nextLink), per ``empty_page_rate``."""
        rate = self.sim.faults.empty_page_rate
        return bool(rate) and self.sim.rng.random() < rate
