"""The transports under the client's one ``httpx.AsyncClient``, outermost first:

* :class:`Lanes`: an API request takes one of ``concurrency`` lanes (which bounds the calls in
  flight); the token request goes on its own way, unpaced.
* :class:`Paced`: the lane's request waits for its rate slot, then is signed (the bearer is
  added as it leaves the queues), then tells the rate how its answer came.
* :class:`Recorded`: each exchange is counted and reported; a failure becomes idsync's error.
* :class:`~sync.protime._bounds.BoundedBody`: the deadline and the size cap.
* the innermost transport: the network (one connection a lane), or the one given for tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from sync.protime._bounds import TooLargeError
from sync.protime._parse import MalformedAnswerError
from sync.protime._retry import parse_retry_after
from sync.protime._stats import RequestKind, call_of, log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sync.protime._errors import Errors
    from sync.protime._rate import RateLimiter
    from sync.protime._stats import Recorder

# The key of request.extensions holding what to do the moment a request leaves its queues (the
# auth flow puts the bearer there): a token taken before a wait could expire in the queue.
ON_SEND = "idsync.on_send"


class Recorded(httpx.AsyncBaseTransport):
    """Counts each exchange of the client's calls, and turns a failed one into idsync's error."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, recorder: Recorder, errors: Errors
    ) -> None:
        self._inner = inner
        self._recorder = recorder
        self._errors = errors

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = call_of(request)
        if call is None:
            return await self._inner.handle_async_request(request)
        record = self._recorder.record
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except TooLargeError as exc:
            record(call, exc.status, started, "TooLarge")
            raise MalformedAnswerError(
                f"{call.method} {call.path}: the answer is larger than "
                f"IDSYNC_PROTIME__MAX_RESPONSE_BYTES ({exc.limit} bytes after decompression)",
                status=exc.status,
            ) from None
        except MalformedAnswerError as exc:
            record(call, exc.status, started, "MalformedAnswer")
            raise MalformedAnswerError(
                f"{call.method} {call.path}: {exc}", status=exc.status
            ) from None
        except (httpx.HTTPError, ConnectionError) as exc:
            record(call, None, started, type(exc).__name__)
            raise self._errors.no_answer(call, exc) from exc
        record(call, response.status_code, started, None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(slots=True)
class Pacing:
    """The client-side rate every lane shares; ``resume_rate`` may replace its limiter."""

    limiter: RateLimiter | None


class Paced(httpx.AsyncBaseTransport):
    """Waits for the request's rate slot, signs it, sends it and tells the rate how it went."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, pacing: Pacing) -> None:
        self._inner = inner
        self._pacing = pacing

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limiter = self._pacing.limiter
        if limiter is not None:
            await limiter.acquire()
        on_send: Callable[[httpx.Request], Awaitable[None]] | None = request.extensions.get(ON_SEND)
        if on_send is not None:
            await on_send(request)
        if limiter is None:
            return await self._inner.handle_async_request(request)
        started = time.perf_counter()
        response = await self._inner.handle_async_request(request)
        status = response.status_code
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None  # noqa: PLR2004
        )
        control = limiter.control
        cuts = control.cuts
        control.observe(
            status=status, latency=time.perf_counter() - started, retry_after=retry_after
        )
        if control.cuts != cuts:
            log.info(
                "protime.rate_cut",
                status=status,
                retry_after=retry_after,
                rate_per_second=round(control.rate, 2),
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Lanes(httpx.AsyncBaseTransport):
    """API requests go out on ``count`` lanes, each made by ``new_lane`` when first needed.

    httpcore's pool walks all its connections (a socket poll for each idle one) whenever a
    request starts or ends: one pool of 16 connections spent more CPU managing itself than
    sending the requests. A lane has one connection and is taken for one request at a time, so
    the lanes also bound the calls in flight. Other requests (the token's) go to ``other``.
    Closing closes ``other`` only: whoever made the lanes' networks closes them.
    """

    def __init__(
        self,
        *,
        count: int,
        new_lane: Callable[[], httpx.AsyncBaseTransport],
        other: httpx.AsyncBaseTransport,
    ) -> None:
        self._new_lane = new_lane
        self._other = other
        self._free: asyncio.Queue[httpx.AsyncBaseTransport | None] = asyncio.Queue()
        for _ in range(count):
            self._free.put_nowait(None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = call_of(request)
        if call is None or call.kind is RequestKind.TOKEN:
            return await self._other.handle_async_request(request)
        lane = await self._free.get()
        try:
            if lane is None:
                lane = self._new_lane()
            return await lane.handle_async_request(request)
        finally:
            self._free.put_nowait(lane)

    async def aclose(self) -> None:
        await self._other.aclose()


class ClientTransport(httpx.AsyncBaseTransport):
    """An httpx client as a transport: when the environment names a proxy, a client mounts it
    (and honours ``NO_PROXY``) where a bare transport would go direct."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)

    async def aclose(self) -> None:
        await self.client.aclose()
