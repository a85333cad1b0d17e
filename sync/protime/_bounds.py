"""The bounds on one exchange (issue 9), as a transport: a deadline on the whole of it, and a cap
on the size of the answer's body after decompression."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import httpx

from sync.protime._parse import MalformedAnswerError

# The headers that describe the body as it came over the wire; the body handed on is decoded
# and whole, so they no longer hold (httpx would decode a gzip body twice).
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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
        elif coding not in ("", "identity"):
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
                    body = await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise RequestDeadlineError(
                f"no complete answer within the request deadline of {self._deadline:g} s "
                "(IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS)"
            ) from None
        if body is None:
            return response
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _WIRE_HEADERS
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=body, extensions=response.extensions
        )

    async def _read(self, response: httpx.Response) -> bytes | None:
        """The body, decoded and within the cap; None when ``response`` holds it read already."""
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
            return None
        decoder = _BoundedDecoder(response.headers.get("Content-Encoding", ""), status, limit)
        async for raw in response.aiter_raw():
            decoder.feed(raw)
        decoder.finish()
        return decoder.body()

    async def aclose(self) -> None:
        await self._inner.aclose()
