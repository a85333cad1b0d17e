"""The OAuth2 token, shared by every call of one client and fetched once however many wait for it."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

from sync.errors import ProtimeError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

# When Protime does not say how long a token lives (expires_in is only RECOMMENDED by RFC 6749),
# assume a short life rather than hammering the token endpoint or holding a dead token.
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0


class TokenCache:
    """Holds the current token and decides when to fetch a new one.

    A token is reused until ``margin`` seconds before it expires. The margin never exceeds half
    the token's life, so a short-lived token is still reused instead of being fetched per call.
    Fetches are serialised by one lock; callers that queued behind a fetch take its result
    (token or failure) instead of fetching again, so 50 calls finding the token stale cause one
    fetch, and 50 calls during an outage of the token endpoint cause one failed fetch, not 50.
    """

    __slots__ = (
        "_clock",
        "_failure",
        "_fetch",
        "_fresh_until",
        "_generation",
        "_lock",
        "_margin",
        "_value",
    )

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float | None]]],
        *,
        clock: Callable[[], float],
        margin: float,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._lock = asyncio.Lock()
        self._value: str | None = None
        self._fresh_until = 0.0
        self._generation = 0  # counts finished fetch attempts, successful or not
        self._failure: ProtimeError | None = None

    def __repr__(self) -> str:
        state = "empty" if self._value is None else "holding a token"
        return f"<TokenCache {state}>"

    @property
    def current(self) -> str | None:
        """The token now held, fresh or not (for redaction and staleness checks)."""
        return self._value

    def _fresh(self) -> str | None:
        value = self._value
        return value if value is not None and self._clock() < self._fresh_until else None

    async def get(self) -> str:
        """A fresh token: the held one, or a new one fetched once for all waiting callers."""
        return self._fresh() or await self._renew(self._fresh)

    async def renew(self, *, stale: str | None) -> str:
        """A token other than ``stale`` (rejected by Protime), fetched once for all who saw it fail."""
        return await self._renew(lambda: self._value if self._value != stale else None)

    async def refresh(self) -> str:
        """Fetch a new token now, whatever is held."""
        return await self._renew(lambda: None)

    async def _renew(self, usable: Callable[[], str | None]) -> str:
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                # Someone fetched while we queued: share their outcome.
                if self._failure is not None:
                    raise copy.copy(self._failure)
                if self._value is not None:
                    return self._value
            held = usable()
            if held is not None:
                return held
            started = self._clock()
            try:
                value, expires_in = await self._fetch()
            except ProtimeError as exc:
                self._failure = exc
                self._generation += 1
                raise
            lifetime = expires_in if expires_in is not None else DEFAULT_TOKEN_LIFETIME_SECONDS
            self._value = value
            self._fresh_until = started + lifetime - min(self._margin, lifetime / 2)
            self._failure = None
            self._generation += 1
            return value
