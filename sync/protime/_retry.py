"""What may be retried, how long to wait before the next try, and the one retry loop (stamina)."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import httpx
import stamina

from sync.errors import ProtimeBackoffError, ProtimeConnectError, ProtimeError
from sync.protime._stats import log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sync.protime._stats import Call, ClientStats

T = TypeVar("T")

# Failures where the request may not have reached Protime, or its answer did not reach us; the
# same request may well succeed a moment later. Other transport errors (bad URL, unsupported
# scheme, a protocol error on our side) would fail the same way again.
_RETRIABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    ConnectionError,
)
RETRIABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retriable(exc: BaseException) -> bool:
    """Whether the call that raised ``exc`` may succeed if made again later.

    The one decision of retriable vs fatal: the client's retry loop asks it, and so does the
    engine when it records an outcome (retriable: the next run tries again; fatal: failed).
    """
    if isinstance(exc, ProtimeError):
        return exc.retriable
    return isinstance(exc, _RETRIABLE_TRANSPORT)


# A read answered 409 met a concurrency conflict on a collection with a delta (documented for
# GET): the same read a moment later may pass. A write answered 409 is a conflict of data (the
# person already holds another value), which the same request would meet again.
RETRIABLE_READ_STATUSES = frozenset({409})


def is_retriable_status(status: int, *, method: str) -> bool:
    """429, 408 and the 5xx family, and 409 on a read: Protime may answer differently a moment
    later."""
    if status in RETRIABLE_STATUSES or 500 <= status <= 599:  # noqa: PLR2004
        return True
    return method in ("GET", "HEAD") and status in RETRIABLE_READ_STATUSES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, fractional or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, floored by Protime's ``Retry-After`` when it gives one.

    The n-th retry waits ``min(maximum, initial * 2**(n-1))`` scaled by a random factor in
    ``[1 - jitter, 1]``, so clients that failed together do not retry together. A ``Retry-After``
    is honoured as the earliest moment to try again (plus up to ``retry_after_jitter`` of it, at
    most one second): the wait is the longer of the two. Without that floor-and-spread, many
    concurrent calls told "retry in 3 ms" would all wake together, and all but one be refused
    again until their attempts ran out.
    """

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    retry_after_jitter: float = 0.1

    def wait(self, retry_number: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        try:
            base = min(self.maximum, self.initial * 2.0 ** (retry_number - 1))
        except OverflowError:
            base = self.maximum
        backoff = base * (1 - random.uniform(0, self.jitter))  # noqa: S311 - jitter, not security
        if retry_after is None:
            return backoff
        spread = random.uniform(0, min(1.0, retry_after * self.retry_after_jitter))  # noqa: S311
        return max(retry_after + spread, backoff)


def reason(exc: BaseException) -> str:
    """Why a try failed, in a word or two (``503``, ``429 TooManyRequests``, ``ConnectError``)."""
    if isinstance(exc, ProtimeError) and exc.status is not None:
        return f"{exc.status} {exc.code}" if exc.code else str(exc.status)
    cause = exc.__cause__ if isinstance(exc, ProtimeConnectError) and exc.__cause__ else exc
    return type(cause).__name__


class Retrier:
    """Runs every try of a call through stamina, judged by :func:`is_retriable` alone.

    A call gives up after ``attempts`` tries, or when the next wait would end after ``timeout``
    seconds from its start (by ``clock``); a call whose token could not be had is not retried
    here (the token's own fetch retried already).
    """

    __slots__ = ("_attempts", "_backoff", "_clock", "_stats", "_timeout")

    def __init__(
        self,
        *,
        attempts: int,
        timeout: float,
        backoff: Backoff,
        clock: Callable[[], float],
        stats: ClientStats,
    ) -> None:
        self._attempts = attempts
        self._timeout = timeout
        self._backoff = backoff
        self._clock = clock
        self._stats = stats

    async def run(self, call: Call, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``'s result, trying again while the failure is retriable."""
        first_failure: Exception | None = None
        try:
            # Nearly every call succeeds at once, and building stamina's retry context costs
            # about 0.2 ms of CPU (a fifth of a call's own): the first try runs bare, and only a
            # failure enters the loop, where it is replayed as the loop's first try so that
            # stamina judges it, and waits, exactly as if it had run inside.
            call.attempts += 1
            try:
                return await attempt()
            except Exception as exc:  # handed to stamina below, which decides
                first_failure = exc
            async for try_ in stamina.retry_context(
                on=partial(self._wait, call),
                attempts=self._attempts,
                timeout=self._timeout,
            ):
                with try_:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure
                    call.attempts += 1
                    return await attempt()
        except ProtimeError as exc:
            if (
                exc.retriable
                and call.attempts > 1
                and not call.token_failed
                and not isinstance(exc, ProtimeBackoffError)
            ):
                final = copy.copy(exc)
                final.args = (f"{exc} (gave up after {call.attempts} attempts)",)
                raise final from exc
            raise
        raise AssertionError("unreachable: stamina either returns or raises")

    def _wait(self, call: Call, exc: BaseException) -> bool | float:
        """stamina's backoff hook: False to stop, else the seconds to wait before the next try."""
        if call.token_failed or not is_retriable(exc) or isinstance(exc, ProtimeBackoffError):
            # A Retry-After of hours: the next run retries, not this one.
            return False
        if call.attempts >= self._attempts:
            return False
        retry_after = exc.retry_after if isinstance(exc, ProtimeError) else None
        wait = self._backoff.wait(call.attempts, retry_after=retry_after)
        remaining = self._timeout - (self._clock() - call.started)
        if wait > remaining:
            log.info(
                "protime.retry_abandoned",
                kind=call.kind.value,
                method=call.method,
                path=call.path,
                reason=reason(exc),
                wait_seconds=round(wait, 3),
                remaining_seconds=round(max(remaining, 0.0), 3),
            )
            return False
        self._stats.retries += 1
        self._stats.retry_wait_seconds += wait
        log.info(
            "protime.retry",
            kind=call.kind.value,
            method=call.method,
            path=call.path,
            attempt=call.attempts,
            reason=reason(exc),
            retry_after=retry_after,
            wait_seconds=round(wait, 3),
        )
        return wait
