"""What one client counts and reports: requests by kind and status, retries, the metrics hook."""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

# Every line of the client's modules carries the one logger name it always had: dashboards and
# the log filters of operators select on it.
LOGGER_NAME = "sync.protime._client"
log = structlog.get_logger(LOGGER_NAME)
# structlog runs its processors before the standard library drops a debug event: the hot path
# asks the level first (0.05 ms per request otherwise).
_stdlib_log = logging.getLogger(LOGGER_NAME)

# httpx writes "HTTP Request: <method> <URL> ..." for every answer (INFO; idsync's logging shows
# it at DEBUG). For an API call that line would repeat protime.request with the whole URL: the
# continuation and delta tokens of the people pages, the reference values. Before issue 20 API
# calls went past AsyncClient.send and httpx never wrote them; the filter keeps it so. The token
# request's line stays, as it always was. True while the client sends an API request.
api_sending: ContextVar[bool] = ContextVar("idsync_protime_api_sending", default=False)
_HTTPX_LOGGER = "httpx"


class _NoApiLines(logging.Filter):
    """Drops httpx's lines of the client's API requests (see :data:`api_sending`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not api_sending.get()


_NO_API_LINES = _NoApiLines()


def quiet_httpx_api_lines() -> None:
    """Keep httpx from writing a line per API request (once per process; only at DEBUG did
    those lines pass the level anyway, so the filter costs nothing above it)."""
    httpx_logger = logging.getLogger(_HTTPX_LOGGER)
    if _NO_API_LINES not in httpx_logger.filters:
        httpx_logger.addFilter(_NO_API_LINES)


# The key of request.extensions under which a request carries its Call (transports and the auth
# flow read it); a request without one is not the client's and passes through untouched.
CALL = "idsync.call"


class RequestKind(StrEnum):
    """What a request was for; the first half of the keys of :attr:`ClientStats.requests`."""

    TOKEN = "token"  # noqa: S105 - a request kind, not a credential
    PEOPLE = "people"
    PUT_REFERENCE = "put_reference"
    GET_REFERENCE = "get_reference"
    DELETE_REFERENCE = "delete_reference"


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One HTTP exchange, reported to ``on_request`` (metrics) as it completes.

    ``status`` is ``None`` when no answer came (``error`` then names the exception type);
    ``path`` carries no query string; ``attempt`` counts tries of the same call from 1.
    """

    kind: RequestKind
    method: str
    path: str
    status: int | None
    duration_seconds: float
    attempt: int
    error: str | None = None


@dataclass(slots=True)
class ClientStats:
    """Counters of one client. Plain fields: cheap to read from the same event loop."""

    requests: Counter[tuple[str, int]] = field(
        default_factory=Counter
    )  # (kind, status); 0: no answer
    retries: int = 0
    retry_wait_seconds: float = 0.0  # total of the waits scheduled before retries
    token_fetches: int = 0  # token requests sent
    rate_limited: int = 0  # 429 answers
    # Persons left out of a read because their id is not an integer from 1 to 2**63-1
    # (``protime.people_skipped``): the state database cannot hold them.
    people_skipped: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, kind: str, status: int | None = None) -> int:
        """Requests of ``kind``, all of them or only those answered with ``status``."""
        return sum(n for (k, s), n in self.requests.items() if k == kind and status in (None, s))


@dataclass(slots=True)
class Call:
    """One logical call (all its attempts, and the 401 that may renew its token once)."""

    kind: RequestKind
    method: str
    path: str
    started: float
    attempts: int = 0
    reauthenticated: bool = False
    token_failed: bool = False  # the token could not be had; that path retried on its own


def call_of(request: httpx.Request) -> Call | None:
    """The call a request belongs to; None for a request the client did not build."""
    call = request.extensions.get(CALL)
    return call if isinstance(call, Call) else None


def path_of(url: httpx.URL) -> str:
    """The encoded path without the query: continuation tokens stay out of logs and messages."""
    return url.raw_path.partition(b"?")[0].decode("ascii", "replace")


class Recorder:
    """Counts each exchange in :class:`ClientStats`, logs it at DEBUG and tells ``on_request``."""

    __slots__ = ("_on_request", "stats")

    def __init__(
        self, stats: ClientStats, on_request: Callable[[RequestEvent], None] | None
    ) -> None:
        self.stats = stats
        self._on_request = on_request

    def record(self, call: Call, status: int | None, started: float, error: str | None) -> None:
        """One exchange of ``call`` ended with ``status`` (None: no answer) ``started`` ago."""
        duration = time.perf_counter() - started
        self.stats.requests[(call.kind.value, status or 0)] += 1
        if status == 429:  # noqa: PLR2004
            self.stats.rate_limited += 1
        if _stdlib_log.isEnabledFor(logging.DEBUG):
            log.debug(
                "protime.request",
                kind=call.kind.value,
                method=call.method,
                path=call.path,
                status=status,
                error=error,
                attempt=call.attempts,
                duration_ms=round(duration * 1000, 1),
            )
        if self._on_request is not None:
            event = RequestEvent(
                kind=call.kind,
                method=call.method,
                path=call.path,
                status=status,
                duration_seconds=duration,
                attempt=call.attempts,
                error=error,
            )
            try:
                self._on_request(event)
            except Exception:
                # A broken metrics hook must not fail a sync; it is reported, not hidden.
                log.warning("protime.on_request_failed", exc_info=True)
