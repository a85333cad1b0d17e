"""What may be retried, and how long to wait before the next try."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from sync.errors import ProtimeError

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
