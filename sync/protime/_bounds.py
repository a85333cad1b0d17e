"""The bounds on one exchange (issue 9), as a transport: a deadline on the whole of it, and a cap
on the size of the answer's body after decompression."""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, Any

import httpx

from sync.protime._parse import MalformedAnswerError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# The headers that describe the body as it came over the wire; the body handed on is decoded
# and whole, so they no longer hold (httpx would decode a gzip body twice).
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# The Content-Encoding of a body that needs no inflating.
_UNENCODED = ("", "identity")


class RequestDeadlineError(httpx.TimeoutException):
    """One exchange outlasted ``IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS``: a timeout, retriable."""


class TooLargeError(Exception):
    """The answer's body is larger than the cap (it was not read further)."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(status, limit)
        self.status = status
        self.limit = limit


class _BoundedDecoder:
    """Decompresses an answer as it arrives, never past ``limit`` bytes (issue 9).

    httpx's own decoders inflate each network chunk whole: one 64 KiB chunk of a gzip bomb is
    64 MiB before any cap can look at it, per call in flight. Here zlib is asked for at most what
    the cap still allows. We ask for ``gzip, deflate`` only; any other encoding is refused.
    """

    def __init__(self, encoding: str, status: int, limit: int) -> None:
        self._status = status
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        coding = encoding.strip().lower()
        self._zlib: Any = None
        if coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib-wrapped or gzip
        elif coding not in _UNENCODED:
            raise MalformedAnswerError(
                f"the answer is encoded as {coding[:40]!r}, which was not asked for", status=status
            )

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise TooLargeError(self._status, self._limit)
        if data:
            self._parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._zlib is None:
            self._add(raw)
            return
        data = raw
        try:
            while data:
                # One byte more than the cap allows is enough to know it is exceeded.
                self._add(self._zlib.decompress(data, self._limit - self._size + 1))
                data = self._zlib.unconsumed_tail
        except zlib.error:
            raise MalformedAnswerError(
                "the answer's compressed body is corrupt", status=self._status
            ) from None

    def finish(self) -> None:
        if self._zlib is not None:
            try:
                self._add(self._zlib.flush())
            except zlib.error:
                raise MalformedAnswerError(
                    "the answer's compressed body is corrupt", status=self._status
                ) from None

    def body(self) -> bytes:
        return b"".join(self._parts)


class _Capped(httpx.AsyncByteStream):
    """An answer's body as it arrives, refused once it passes ``limit`` bytes."""

    def __init__(self, inner: httpx.AsyncByteStream, *, status: int, limit: int) -> None:
        self._inner = inner
        self._status = status
        self._limit = limit
        self._chunks = inner.__aiter__()
        self._size = 0

    # An iterator of its own, not an async generator: asyncio registers each of those (1 us).
    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        self._size += len(chunk)
        if self._size > self._limit:
            raise TooLargeError(self._status, self._limit)
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedBody(httpx.AsyncBaseTransport):
    """Sends on ``inner`` and reads the whole answer, within the deadline and the size cap.

    httpx's read timeout bounds the wait for the next byte only: a server trickling one byte a
    second would hold a call (and the run, and its lock) for ever. The deadline bounds the
    exchange as a whole. The body is counted as it is decompressed, so neither a gzip bomb nor an
    endless chunked body can take the process's memory. The answer handed on is read and decoded.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, max_bytes: int, deadline: float) -> None:
        self._inner = inner
        self._limit = max_bytes
        self._deadline = deadline

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._inner.handle_async_request(request)
                try:
                    return await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise RequestDeadlineError(
                f"no complete answer within the request deadline of {self._deadline:g} s "
                "(IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS)"
            ) from None

    async def _read(self, response: httpx.Response) -> httpx.Response:
        """``response`` read whole, decoded and within the cap (itself, or one holding its body)."""
        limit = self._limit
        status = response.status_code
        declared = response.headers.get("Content-Length", "")
        if declared.isdecimal() and int(declared) > limit:
            raise TooLargeError(status, limit)
        if response.is_stream_consumed:
            # An in-process transport (simulator, tests) hands the body over read and decoded
            # already: the cap still applies, and the answer goes on as it is.
            if len(response.content) > limit:
                raise TooLargeError(status, limit)
            return response
        encoding = response.headers.get("Content-Encoding", "")
        stream = response.stream
        if encoding.strip().lower() in _UNENCODED and isinstance(stream, httpx.AsyncByteStream):
            # Nothing to inflate (nearly every answer): httpx reads the body into the answer
            # itself, counted on its way in. Building a second answer to hold it cost 15 us.
            response.stream = _Capped(stream, status=status, limit=limit)
            await response.aread()
            return response
        decoder = _BoundedDecoder(encoding, status, limit)
        async for raw in response.aiter_raw():
            decoder.feed(raw)
        decoder.finish()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _WIRE_HEADERS
        ]
        return httpx.Response(
            status, headers=headers, content=decoder.body(), extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
