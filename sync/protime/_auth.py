"""The OAuth2 token, shared by every call of one client and fetched once however many wait for it,
and the ``httpx.Auth`` that puts it on each API request."""

from __future__ import annotations

import asyncio
import copy
from functools import partial
from typing import TYPE_CHECKING

import httpx

from sync.errors import ProtimeError
from sync.protime._parse import decode_json, parse_token
from sync.protime._stats import CALL, Call, RequestKind, api_sending, call_of, log, path_of
from sync.protime._transports import ON_SEND

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

    from sync.protime._errors import Errors
    from sync.protime._retry import Retrier
    from sync.protime._stats import ClientStats

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

    def fresh(self) -> str | None:
        """The token held, if it is still fresh; None: :meth:`get` would fetch one."""
        value = self._value
        return value if value is not None and self._clock() < self._fresh_until else None

    async def get(self) -> str:
        """A fresh token: the held one, or a new one fetched once for all waiting callers."""
        return self.fresh() or await self._renew(self.fresh)

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


class BearerAuth(httpx.Auth):
    """The token as httpx's auth flow: each API request carries a fresh bearer, and a 401 renews
    the token once per call and sends the request again.

    The bearer is added when the request leaves its lane and rate queues (:data:`ON_SEND`), not
    when the flow starts: under a slow rate a token taken first could expire in the queue, and
    so could the fresh one of the retry (issue 22). One token is still had before queueing:
    during a token outage, every call waiting shares the one failed fetch.
    """

    def __init__(self, tokens: TokenCache) -> None:
        self._tokens = tokens

    def sync_auth_flow(
        self,
        request: httpx.Request,  # noqa: ARG002 - httpx.Auth's signature
    ) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("the Protime client is asynchronous only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        call = call_of(request)
        if call is None:  # not the client's request: nothing to add
            yield request
            return
        if self._tokens.fresh() is None:
            await self._token(call, stale=None)
        request.extensions[ON_SEND] = partial(self._sign, call, None)
        response = yield request
        if response.status_code != 401 or call.reauthenticated:  # noqa: PLR2004
            return
        # The token expired early or was revoked: one new token, one more try.
        call.reauthenticated = True
        log.info("protime.reauthenticate", kind=call.kind.value, method=call.method, path=call.path)
        stale = request.headers.get("Authorization", "").removeprefix("Bearer ")
        # A request of its own: the one refused stays as it was sent (in history, to a mock).
        yield httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            extensions={**request.extensions, ON_SEND: partial(self._sign, call, stale)},
        )

    async def _sign(self, call: Call, stale: str | None, request: httpx.Request) -> None:
        # Nearly always the token held is fresh: taken without the awaits of a fetch.
        token = self._tokens.fresh() if stale is None else None
        if token is None:
            token = await self._token(call, stale=stale)
        request.headers["Authorization"] = f"Bearer {token}"

    async def _token(self, call: Call, *, stale: str | None) -> str:
        try:
            if stale is None:
                return await self._tokens.get()
            return await self._tokens.renew(stale=stale)
        except ProtimeError:
            call.token_failed = True
            raise


class TokenEndpoint:
    """Asks the token endpoint for a token (client credentials grant), with the client's retries."""

    __slots__ = ("_clock", "_errors", "_form", "_http", "_retrier", "_stats", "_url")

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        url: httpx.URL,
        form: dict[str, str],
        retrier: Retrier,
        errors: Errors,
        stats: ClientStats,
        clock: Callable[[], float],
    ) -> None:
        self._http = http
        self._url = url
        self._form = form
        self._retrier = retrier
        self._errors = errors
        self._stats = stats
        self._clock = clock

    def __repr__(self) -> str:
        return f"<TokenEndpoint {path_of(self._url)}>"

    async def fetch(self) -> tuple[str, float | None]:
        """A new token and its ``expires_in`` (None when the endpoint does not say)."""
        call = Call(
            kind=RequestKind.TOKEN, method="POST", path=path_of(self._url), started=self._clock()
        )

        async def attempt() -> tuple[str, float | None]:
            self._stats.token_fetches += 1
            request = self._http.build_request(
                "POST", self._url, data=self._form, extensions={CALL: call}
            )
            # Its own line from httpx, as always, though it may be fetched inside an API call.
            sending = api_sending.set(False)
            try:
                response = await self._http.send(request)
            finally:
                api_sending.reset(sending)
            if response.status_code == 200:  # noqa: PLR2004
                token, expires_in = parse_token(
                    decode_json(response.content, what="token answer", status=200)
                )
                self._errors.issued(token)
                log.debug("protime.token", expires_in=expires_in)
                return token, expires_in
            raise self._errors.token_error(response)

        return await self._retrier.run(call, attempt)
