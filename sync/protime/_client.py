"""The async client of the Protime Connector API, as its documentation describes it (docs/protime-client.md).

One :class:`ProtimeClient` per run: it owns an ``httpx.AsyncClient``, one OAuth2 token shared by
all its calls, a semaphore bounding concurrent requests and a client-side rate limit. Every call
goes through one retry loop (stamina) whose single judge is :func:`is_retriable`; a final answer
(4xx other than 401/429) ends the call at once.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
import urllib.request
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

import httpx
import stamina
import structlog

from sync import __version__
from sync.config import redact_http_url, url_credentials
from sync.errors import (
    ConfigError,
    ProtimeAuthError,
    ProtimeConnectError,
    ProtimeError,
    ReferenceValueError,
)
from sync.protime._auth import TokenCache
from sync.protime._parse import (
    BADGE_NUMBER_REFERENCE,
    EMPLOYEE_NUMBER_REFERENCE,
    Change,
    MalformedAnswerError,
    check_accepted_answer,
    check_put_answer,
    decode_json,
    parse_changes_page,
    parse_error_body,
    parse_internal_reference,
    parse_list_page,
    parse_token,
)
from sync.protime._rate import FIRST_RATE, AdaptiveRate, RateLimiter
from sync.protime._retry import (
    Backoff,
    is_retriable,
    is_retriable_status,
    parse_retry_after,
)
from sync.values import name_problem, value_problem

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Awaitable, Callable, Container
    from types import TracebackType

    from sync.config import ProtimeSettings
    from sync.domain import Person
    from sync.strings import StringPool

log = structlog.get_logger(__name__)
# structlog runs its processors before the standard library drops a debug event: the hot path
# asks the level first (0.05 ms per request otherwise).
_stdlib_log = logging.getLogger(__name__)
T = TypeVar("T")

API_PATH = "/connector/protimeapi/api/v1"
PEOPLE_READ_SCOPE = "connector-protimeapi-people.read"
REFERENCES_WRITE_SCOPE = "connector-protimeapi-external-references.write"
REFERENCES_READ_SCOPE = "connector-protimeapi-external-references.read"
_DOT_SEGMENTS = frozenset({".", ".."})
_MAX_SHOWN_VALUE = 80
_MIN_PLAIN_REDACT = 8
_MAX_EMPTY_PAGES_IN_A_ROW = 1000


class RequestKind(StrEnum):
    """What a request was for; the first half of the keys of :attr:`ClientStats.requests`."""

    TOKEN = "token"  # noqa: S105 - a request kind, not a credential
    PEOPLE = "people"
    PUT_REFERENCE = "put_reference"
    GET_REFERENCE = "get_reference"
    DELETE_REFERENCE = "delete_reference"


_SCOPE_NEEDED = {
    RequestKind.PEOPLE: PEOPLE_READ_SCOPE,
    RequestKind.PUT_REFERENCE: REFERENCES_WRITE_SCOPE,
    RequestKind.DELETE_REFERENCE: REFERENCES_WRITE_SCOPE,
    RequestKind.GET_REFERENCE: f"{REFERENCES_READ_SCOPE} (or .write)",
}


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


@dataclass(frozen=True, slots=True)
class PeoplePage:
    """One page of a full read (``GET /people``, or the first round of a delta): the persons,
    their ``changeVersion`` (``versions[i]`` is that of ``people[i]``, None when not given) and,
    on the last page of a delta's first round, the ``deltaLink``."""

    people: list[Person]
    versions: list[str | None]
    delta_link: str | None = None


@dataclass(frozen=True, slots=True)
class ChangesPage:
    """One page of a set of changes (a call of the ``deltaLink``): the changes in the order
    Protime gave them (one person may appear several times) and, on the last page, the new
    ``deltaLink``."""

    changes: list[Change]
    delta_link: str | None = None


class RequestDeadlineError(httpx.TimeoutException):
    """One exchange outlasted ``IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS``: a timeout, retriable."""


class _TooLargeError(Exception):
    def __init__(self, status: int, limit: int) -> None:
        super().__init__(status, limit)
        self.status = status
        self.limit = limit


class _SeenPeople:
    """What a read has seen so far: the person ids of a full read, to refuse pages that repeat
    them (issue 9), and the items and empty pages of any read, to bound its paging.

    A set of changes may list one person several times by design: only its items are counted.
    """

    __slots__ = ("changes", "empty_pages", "ids")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.changes = 0
        self.empty_pages = 0

    @property
    def items(self) -> int:
        return len(self.ids) + self.changes

    def add_page(self, people: list[Person]) -> None:
        if not people:
            self.empty_pages += 1
            return
        before = len(self.ids)
        self.ids.update(p.id for p in people)
        repeated = len(people) - (len(self.ids) - before)
        if repeated:
            raise MalformedAnswerError(
                f"the page repeats {repeated} person(s) already read: Protime's paging is "
                "inconsistent, the read is stopped",
                status=200,
            )

    def add_changes(self, count: int) -> None:
        if not count:
            self.empty_pages += 1
        self.changes += count

    def implausible(self, page: int) -> bool:
        # Empty pages between full ones happen ("nothing yet, ask again"), but never more of
        # them than a margin plus one per page that held items.
        return self.empty_pages > _MAX_EMPTY_PAGES_IN_A_ROW + (page - self.empty_pages)


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
            raise _TooLargeError(self._status, self._limit)
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


# What a lane sends with: a transport of its own (or the given one), or a client when the
# environment names a proxy.
_Lane = httpx.AsyncBaseTransport | httpx.AsyncClient


@dataclass(frozen=True, slots=True)
class _Answer:
    """An answer read to its end (within the bounds): what the client looks at."""

    status_code: int
    headers: httpx.Headers
    content: bytes


@dataclass(slots=True)
class _Call:
    """One logical call (all its attempts)."""

    kind: RequestKind
    method: str
    path: str
    started: float
    attempts: int = 0
    reauthenticated: bool = False
    token_failed: bool = False  # the token could not be had; that path retried on its own


def _path_of(url: httpx.URL) -> str:
    # The encoded path without the query: continuation tokens stay out of logs and messages.
    return url.raw_path.partition(b"?")[0].decode("ascii", "replace")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 4] + "...'"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProtimeError) and exc.status is not None:
        return f"{exc.status} {exc.code}" if exc.code else str(exc.status)
    cause = exc.__cause__ if isinstance(exc, ProtimeConnectError) and exc.__cause__ else exc
    return type(cause).__name__


class ProtimeClient:
    """Reads people and manages one custom external reference through the Connector API.

    ``transport`` replaces the network (the simulator's in-process transport, or
    ``httpx.MockTransport`` in tests). ``clock`` (monotonic seconds) decides token expiry and the
    retry budget. ``backoff`` shapes the waits between tries (a ``Retry-After`` is a floor under it).
    ``read_email=False`` leaves ``Person.email`` empty: only the ``email`` matching rule needs it.
    ``read_names=True`` reads :class:`~sync.domain.NamedPerson` objects (``idsync suggest``).
    """

    def __init__(
        self,
        settings: ProtimeSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        version: str = __version__,
        on_request: Callable[[RequestEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        read_email: bool = True,
        read_names: bool = False,
    ) -> None:
        settings.require()
        problem = name_problem(settings.reference_name)
        if problem:
            raise ConfigError(f"IDSYNC_PROTIME__REFERENCE_NAME {problem}")
        token_url = settings.resolved_token_url
        # require() guarantees these; the checks only narrow the types.
        if not (settings.base_url and token_url and settings.client_id and settings.client_secret):
            raise ConfigError("IDSYNC_PROTIME__BASE_URL and the client credentials are required")
        self._settings = settings
        self._base = settings.base_url
        base = httpx.URL(self._base)
        self._origin = (base.scheme, base.host, base.port)
        self._origin_text = f"{base.scheme}://{base.netloc.decode('ascii')}"
        self._token_url = httpx.URL(token_url)
        self._client_id = settings.client_id
        self._secret = settings.client_secret.get_secret_value()
        # Credentials in a URL's user-info are secrets too: scrubbed from every message.
        self._url_secrets = [*url_credentials(self._base), *url_credentials(token_url)]
        self._token_url_shown = redact_http_url(token_url)
        self._on_request = on_request
        self._read_email = read_email
        self._read_names = read_names
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._issued: deque[str] = deque(maxlen=4)  # recent tokens, scrubbed from any message
        self._client_options: dict[str, Any] = {
            "headers": {
                "User-Agent": f"idsync/{version} ({settings.user_agent_company})",
                "Accept": "application/json",
                # What _BoundedDecoder inflates within the size cap; nothing else is accepted.
                "Accept-Encoding": "gzip, deflate",
            },
            "timeout": httpx.Timeout(
                settings.read_timeout_seconds,
                connect=settings.connect_timeout_seconds,
            ),
            "follow_redirects": False,  # a redirect must not carry our token to another place
        }
        # One CA bundle load for the token client and every lane (each client would load its
        # own, 50 ms or more each). A given transport brings its own TLS, or none.
        self._ssl_context: ssl.SSLContext | None = (
            httpx.create_ssl_context() if transport is None else None
        )
        # The token requests, and every request when a transport is given (it has no pool).
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=self._ssl_context or True,
            limits=httpx.Limits(
                max_connections=settings.concurrency + 1,  # +1: the token request
                max_keepalive_connections=settings.concurrency + 1,
            ),
            **self._client_options,
        )
        self._tokens = TokenCache(
            self._fetch_token, clock=clock, margin=settings.token_refresh_margin_seconds
        )
        # API calls go out on `concurrency` lanes, each with one connection, made when first
        # needed. httpcore's pool walks all its connections (a socket poll for each idle one)
        # whenever a request starts or ends: one pool of 16 connections spent more CPU managing
        # itself than sending the requests. A lane is taken for one request at a time, so the
        # lanes also bound the calls in flight.
        self._lanes: asyncio.Queue[_Lane | None] = asyncio.Queue()
        for _ in range(settings.concurrency):
            self._lanes.put_nowait(None)
        self._lane_owned: list[_Lane] = []
        self._given_transport = transport
        # A lane is an httpx transport, not a client: AsyncClient.send's auth flow, redirect
        # and cookie handling, header merging and event hooks cost about 0.2 ms per request, of
        # which an API call with a bearer token and no redirects needs nothing. Only when the
        # environment names a proxy (which the client would mount) do lanes stay clients.
        self._direct_lanes = transport is not None or not urllib.request.getproxies()
        self._api_headers = {**self._client_options["headers"], "Connection": "keep-alive"}
        self._timeout = self._client_options["timeout"].as_dict()
        self._limiter = _rate_limiter(settings, learned_rate=None)
        people_refs = "".join(
            f"(people,{name})"
            for name in (
                EMPLOYEE_NUMBER_REFERENCE,
                BADGE_NUMBER_REFERENCE,
                settings.reference_name,
            )
        )
        self._people_url = httpx.URL(
            f"{self._base}{API_PATH}/people", params={"externalReferences": people_refs}
        )
        # A delta's first round asks for the same references; its links keep them (the changes
        # carry the references the round started with).
        # Sent as the documentation writes it: a bare `delta`, first (`?delta&externalReferences=`).
        self._delta_url = httpx.URL(str(self._people_url).replace("?", "?delta&", 1))
        self._references_url = (
            f"{self._base}{API_PATH}/external-references/people/{settings.reference_name}"
        )
        self.stats = ClientStats()

    def __repr__(self) -> str:
        return (
            f"ProtimeClient(base_url={self._base!r}, client_id={self._client_id!r}, "
            f"reference_name={self._settings.reference_name!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for lane in self._lane_owned:
            await lane.aclose()
        await self._http.aclose()

    # ----------------------------------------------------------------------------- public calls

    @property
    def rate_per_second(self) -> float | None:
        """The client-side rate now (with ``auto``: what it has learned so far); None: off."""
        return self._limiter.rate if self._limiter is not None else None

    def resume_rate(self, rate: float | None) -> None:
        """Start an ``auto`` rate at ``rate`` (the last run's); before the first request."""
        if rate is not None and rate > 0 and self._settings.rate_limit_per_second == "auto":
            self._limiter = _rate_limiter(self._settings, learned_rate=rate)

    async def check_token(self) -> None:
        """Fetch a token now, to prove the token URL and the credentials (``config check``)."""
        await self._tokens.refresh()

    async def iter_people(self) -> AsyncIterator[list[Person]]:
        """Every person, one list per page, following ``nextLink`` to the end (empty pages too).

        The read stops with :class:`MalformedAnswerError` when a page repeats a person already
        read, or ``nextLink`` points back at a page read, or empty pages outnumber what a real
        listing could hold: a server serving the same people under fresh links would otherwise
        be paged for ever.
        """
        async for page in self.iter_full(start_delta=False):
            yield page.people

    async def iter_full(
        self, *, start_delta: bool, strings: StringPool | None = None
    ) -> AsyncIterator[PeoplePage]:
        """Every person, a page at a time: with ``start_delta`` as the first round of a new people
        delta (``GET /people?delta``; its last page carries the ``deltaLink``), else a plain
        ``GET /people`` that starts nothing.

        Protime keeps one active delta per collection: a new round makes the links of the one
        before invalid, so only a read that will keep its ``deltaLink`` should start one.
        Paging has the bounds of :meth:`iter_people`. ``strings``: the persons' keys and
        references are the pool's objects (the run shares it with its HR read, :mod:`sync.strings`).
        """
        url = self._delta_url if start_delta else self._people_url
        seen = _SeenPeople()
        name = self._settings.reference_name

        def parse(payload: object, number: int) -> tuple[PeoplePage, str | None]:
            skipped: list[int] = []
            page = parse_list_page(
                payload,
                reference_name=name,
                with_email=self._read_email,
                with_names=self._read_names,
                strings=strings,
                skipped=skipped,
            )
            if skipped:
                self._skipped(url, number, skipped)
            seen.add_page(page.people)
            delta_link = page.delta_link if start_delta else None
            if start_delta and page.next_link is None and delta_link is None:
                raise MalformedAnswerError(
                    "the last page of a delta's first round has no deltaLink"
                )
            return PeoplePage(page.people, page.versions, delta_link), page.next_link

        async for page in self._pages(url, parse, seen):
            yield page

    async def iter_changes(
        self, link: str, *, strings: StringPool | None = None
    ) -> AsyncIterator[ChangesPage]:
        """The changes since the call that gave ``link`` (a stored ``deltaLink``), a page at a
        time; the last page carries the next ``deltaLink``.

        A person may appear several times, in no promised order: the caller applies each by
        ``changeVersion``. Calling a link does not change what an older link of the same delta
        returns, so a read that will not keep the new link may still call the stored one. An
        expired or replaced link is a :class:`ProtimeError` with status 410. ``strings`` as for
        :meth:`iter_full`.
        """
        url = self._next_url(link, 0)
        seen = _SeenPeople()
        name = self._settings.reference_name

        def parse(payload: object, number: int) -> tuple[ChangesPage, str | None]:
            skipped: list[int] = []
            changes, next_link, delta_link = parse_changes_page(
                payload,
                reference_name=name,
                with_email=self._read_email,
                strings=strings,
                skipped=skipped,
            )
            if skipped:
                self._skipped(url, number, skipped)
            seen.add_changes(len(changes))
            return ChangesPage(changes, delta_link), next_link

        async for page in self._pages(url, parse, seen):
            yield page

    def _skipped(self, url: httpx.URL, page: int, indexes: list[int]) -> None:
        """Report the persons of one page left out for an id the state cannot hold (issue 22)."""
        self.stats.people_skipped += len(indexes)
        log.warning(
            "protime.people_skipped",
            path=_path_of(url),
            page=page,
            count=len(indexes),
            items=indexes[:10],
            reason="'id' is not an integer from 1 to 2**63-1; these persons are left out",
        )

    async def _pages(
        self,
        url: httpx.URL,
        parse: Callable[[object, int], tuple[T, str | None]],
        seen: _SeenPeople,
    ) -> AsyncIterator[T]:
        # URLs that gave people: asking one again would read the same people twice. An empty
        # page may point at its own URL ("nothing yet, ask again"), but not forever.
        read: set[str] = set()
        empty_in_a_row = 0
        page = 0
        while True:
            page += 1
            response = await self._api(RequestKind.PEOPLE, "GET", url, expected=(200,))
            items_before = seen.items
            try:
                payload = decode_json(response.content, what="people page", status=200)
                parsed, next_link = parse(payload, page)
            except MalformedAnswerError as exc:
                raise MalformedAnswerError(
                    f"GET {_path_of(url)} page {page}: {exc}", status=200
                ) from None
            yield parsed
            if next_link is None:
                return
            if seen.items > items_before:
                read.add(str(url))
                empty_in_a_row = 0
            else:
                empty_in_a_row += 1
            url = self._next_url(next_link, page)
            if str(url) in read:
                raise MalformedAnswerError(
                    f"GET {_path_of(url)} page {page}: nextLink repeats an earlier page", status=200
                )
            if empty_in_a_row >= _MAX_EMPTY_PAGES_IN_A_ROW or seen.implausible(page):
                raise MalformedAnswerError(
                    f"GET {_path_of(url)} page {page}: {empty_in_a_row} empty pages in a row "
                    f"({seen.empty_pages} in all, for {seen.items} items): the paging is not "
                    "plausible",
                    status=200,
                )

    async def read_people(self) -> list[Person]:
        """Every person, all pages read."""
        people: list[Person] = []
        async for page in self.iter_people():
            people.extend(page)
        return people

    async def person_exists(self, protime_id: int) -> bool:
        """Whether Protime has person ``protime_id`` (``GET people/{id}``: 200 yes, 404 no)."""
        if type(protime_id) is not int or protime_id <= 0:
            raise ReferenceValueError(f"protime_id {_show(protime_id)} is not a positive integer")
        url = httpx.URL(f"{self._base}{API_PATH}/people/{protime_id}")
        response = await self._api(RequestKind.PEOPLE, "GET", url, expected=(200, 404))
        return response.status_code == 200  # noqa: PLR2004

    async def put_reference(self, *, value: str, protime_id: int) -> bool | None:
        """Point ``value`` at person ``protime_id``. True when created (201), False when updated
        (200), None when Protime accepted the write without confirming it: 202 Accepted (with or
        without ``Operation-Location``), or a 200/201/204 with an empty body. The next full read
        confirms such a write (docs/protime-client.md, "Writes")."""
        url = self._reference_url(value)
        if type(protime_id) is not int or protime_id <= 0:
            raise ReferenceValueError(f"protime_id {_show(protime_id)} is not a positive integer")
        body = json.dumps({"internalReference": str(protime_id)}).encode()
        response = await self._api(
            RequestKind.PUT_REFERENCE, "PUT", url, content=body, expected=(200, 201, 202, 204)
        )
        status = response.status_code
        accepted = status == 202 or not response.content.strip()  # noqa: PLR2004 - Accepted
        try:
            check = check_accepted_answer if accepted else check_put_answer
            check(response.content, status=status, value=value, protime_id=protime_id)
        except MalformedAnswerError as exc:
            # Not the documented answer: the write is not counted as done (the next read sees
            # whether Protime holds it).
            raise MalformedAnswerError(f"PUT {_path_of(url)}: {exc}", status=status) from None
        if accepted:
            log.info("protime.write_accepted", path=_path_of(url), status=status)
            return None
        return status == 201  # noqa: PLR2004

    async def delete_reference(self, *, value: str) -> bool:
        """Remove ``value``. True when deleted, False when Protime no longer had it (404)."""
        url = self._reference_url(value)
        response = await self._api(
            RequestKind.DELETE_REFERENCE, "DELETE", url, expected=(200, 204, 404)
        )
        return response.status_code != 404  # noqa: PLR2004

    async def get_reference(self, *, value: str) -> int | None:
        """The Protime id ``value`` points at, or None when Protime has no such value."""
        url = self._reference_url(value)
        response = await self._api(RequestKind.GET_REFERENCE, "GET", url, expected=(200, 404))
        if response.status_code == 404:  # noqa: PLR2004
            return None
        try:
            return parse_internal_reference(
                decode_json(response.content, what="reference answer", status=200)
            )
        except MalformedAnswerError as exc:
            raise MalformedAnswerError(f"GET {_path_of(url)}: {exc}", status=200) from None

    # ------------------------------------------------------------------------------- internals

    def _reference_url(self, value: object) -> httpx.URL:
        problem = value_problem(value, max_length=self._settings.max_value_length)
        if problem is None and value in _DOT_SEGMENTS:
            # "." and ".." would be resolved away as path segments and address another resource.
            problem = "only dots (a relative path segment)"
        if problem is not None:
            raise ReferenceValueError(f"reference value {_show(value)} cannot be sent: {problem}")
        return httpx.URL(f"{self._references_url}/{quote(str(value), safe='')}")

    def _next_url(self, link: str, page: int) -> httpx.URL:
        if link.startswith("/") and not link.startswith("//"):
            return httpx.URL(self._origin_text + link)
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL:
            url = None
        if (
            url is not None
            and url.is_absolute_url
            and (url.scheme, url.host, url.port) == self._origin
        ):
            return url
        # Never follow a link elsewhere: the next request carries our token.
        raise MalformedAnswerError(
            (f"people page {page}: nextLink" if page else "the stored deltaLink")
            + f" is not a path on {self._origin_text}",
            status=200,
        )

    def _redact(self, text: str) -> str:
        for secret in (self._secret, *self._url_secrets, *self._issued):
            if len(secret) >= _MIN_PLAIN_REDACT:
                text = text.replace(secret, "***")
            elif secret:
                # A short secret also hides inside ordinary words; scrub it where it stands alone.
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
        return text

    def _record(
        self, call: _Call, status: int | None, started: float, error: str | None = None
    ) -> None:
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

    async def _send(
        self,
        call: _Call,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        data: dict[str, str] | None = None,
        client: _Lane | None = None,
    ) -> _Answer:
        started = time.perf_counter()
        try:
            response = await self._bounded_exchange(
                client or self._http, call.method, url, headers=headers, content=content, data=data
            )
        except _TooLargeError as exc:
            self._record(call, exc.status, started, error="TooLarge")
            raise MalformedAnswerError(
                f"{call.method} {call.path}: the answer is larger than "
                f"IDSYNC_PROTIME__MAX_RESPONSE_BYTES ({exc.limit} bytes after decompression)",
                status=exc.status,
            ) from None
        except MalformedAnswerError as exc:
            self._record(call, exc.status, started, error="MalformedAnswer")
            raise MalformedAnswerError(
                f"{call.method} {call.path}: {exc}", status=exc.status
            ) from None
        except (httpx.HTTPError, ConnectionError) as exc:
            self._record(call, None, started, error=type(exc).__name__)
            where = "the token endpoint" if call.kind is RequestKind.TOKEN else "Protime"
            detail = str(exc) or "no detail"
            raise ProtimeConnectError(
                self._redact(
                    f"{call.method} {call.path}: no answer from {where} "
                    f"({type(exc).__name__}: {detail})"
                ),
                retriable=is_retriable(exc),
            ) from exc
        self._record(call, response.status_code, started)
        return response

    # ------------------------------------------------------- bounds on one exchange (issue 9)

    async def _bounded_exchange(
        self,
        client: _Lane,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None,
        content: bytes | None,
        data: dict[str, str] | None,
    ) -> _Answer:
        """One request and its whole answer, within the request deadline and the size cap.

        httpx's read timeout bounds the wait for the next byte only: a server trickling one
        byte a second would hold a call (and the run, and its lock) for ever. The deadline
        bounds the exchange as a whole. The body is counted as it is decompressed, so neither
        a gzip bomb nor an endless chunked body can take the process's memory.
        """
        limit = self._settings.max_response_bytes
        deadline = self._settings.request_deadline
        try:
            async with asyncio.timeout(deadline):
                if isinstance(client, httpx.AsyncClient):
                    request = client.build_request(
                        method, url, headers=headers, content=content, data=data
                    )
                    response = await client.send(request, stream=True)
                else:
                    response = await self._direct_send(client, method, url, headers, content)
                try:
                    declared = response.headers.get("Content-Length", "")
                    if declared.isdecimal() and int(declared) > limit:
                        raise _TooLargeError(response.status_code, limit)
                    if response.is_stream_consumed:
                        # An in-process transport (simulator, tests) hands the body over read
                        # and decoded already; the cap still applies.
                        decoder = _BoundedDecoder("", response.status_code, limit)
                        decoder.feed(response.content)
                    else:
                        decoder = _BoundedDecoder(
                            response.headers.get("Content-Encoding", ""),
                            response.status_code,
                            limit,
                        )
                        async for raw in response.aiter_raw():
                            decoder.feed(raw)
                    decoder.finish()
                finally:
                    await response.aclose()
        except TimeoutError:
            raise RequestDeadlineError(
                f"no complete answer within the request deadline of {deadline:g} s "
                "(IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS)"
            ) from None
        return _Answer(response.status_code, response.headers, decoder.body())

    async def _direct_send(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: httpx.URL,
        headers: dict[str, str] | None,
        content: bytes | None,
    ) -> httpx.Response:
        """An API request straight to a lane's transport, with the client's headers and timeouts."""
        request = httpx.Request(
            method,
            url,
            headers={**self._api_headers, **headers} if headers else self._api_headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        response = await transport.handle_async_request(request)
        response.request = request
        return response

    async def _api_send(
        self, call: _Call, url: httpx.URL, content: bytes | None, *, stale: str | None = None
    ) -> tuple[_Answer, str]:
        """Send one request on a lane, after its rate slot; the answer and the token it carried.

        The token is taken when the request goes, after its slot, never before it waits: under
        a slow rate a token taken first could expire in the queue, and so could the fresh one
        of the retry (issue 22: `401 ... (even with a fresh token)` with 5-second tokens).
        ``stale``: the token a 401 refused; a new one is fetched instead of it.
        """
        lane = await self._lanes.get()
        try:
            if lane is None:
                lane = self._new_lane()
            limiter = self._limiter
            if limiter is not None:
                await limiter.acquire()
            token = await self._token(call, stale=stale)
            headers = {"Authorization": f"Bearer {token}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if limiter is not None:
                answer = await self._paced_send(
                    limiter, call, url, headers=headers, content=content, lane=lane
                )
            else:
                answer = await self._send(call, url, headers=headers, content=content, client=lane)
            return answer, token
        finally:
            self._lanes.put_nowait(lane)

    async def _paced_send(
        self,
        limiter: RateLimiter,
        call: _Call,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        content: bytes | None,
        lane: _Lane,
    ) -> _Answer:
        """The rate limit's second hook (the slot was taken): tell it how the answer came."""
        started = time.perf_counter()
        response = await self._send(call, url, headers=headers, content=content, client=lane)
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

    def _new_lane(self) -> _Lane:
        lane: _Lane
        if self._given_transport is not None:
            return self._given_transport if self._direct_lanes else self._http
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        if self._direct_lanes:
            lane = httpx.AsyncHTTPTransport(limits=one, verify=self._ssl_context or True)
        else:
            lane = httpx.AsyncClient(
                limits=one, verify=self._ssl_context or True, **self._client_options
            )
        self._lane_owned.append(lane)
        return lane

    async def _token(self, call: _Call, *, stale: str | None = None) -> str:
        try:
            if stale is None:
                return await self._tokens.get()
            return await self._tokens.renew(stale=stale)
        except ProtimeError:
            call.token_failed = True
            raise

    async def _api(
        self,
        kind: RequestKind,
        method: str,
        url: httpx.URL,
        *,
        expected: Container[int],
        content: bytes | None = None,
    ) -> _Answer:
        call = _Call(kind=kind, method=method, path=_path_of(url), started=self._clock())

        async def attempt() -> _Answer:
            # A token before queueing too: during a token outage every call waiting shares the
            # one failed fetch instead of each asking again once its slot comes. Cheap when held.
            await self._token(call)
            response, token = await self._api_send(call, url, content)
            if response.status_code == 401 and not call.reauthenticated:  # noqa: PLR2004
                # The token expired early or was revoked: one new token, one more try.
                call.reauthenticated = True
                log.info("protime.reauthenticate", kind=kind.value, method=method, path=call.path)
                response, _ = await self._api_send(call, url, content, stale=token)
            if response.status_code in expected:
                return response
            raise self._api_error(call, response)

        return await self._with_retries(call, attempt)

    def _api_error(self, call: _Call, response: _Answer) -> ProtimeError:
        status = response.status_code
        code, message = parse_error_body(response.content)
        detail = f"{call.method} {call.path} answered {status}"
        detail += f" {code}" if code else ""
        detail += f": {message}" if message else ""
        scope = _SCOPE_NEEDED.get(call.kind, "?")
        scopes = self._settings.scopes
        if status == 401:  # noqa: PLR2004
            return ProtimeAuthError(
                self._redact(
                    f"{detail} (even with a fresh token): the credentials are no longer accepted, "
                    f"or the API client lacks the scope {scope} (configured scopes: {scopes})"
                ),
                status=status,
                code=code,
            )
        if status == 403:  # noqa: PLR2004
            return ProtimeAuthError(
                self._redact(
                    f"{detail}: the API client lacks the scope {scope} (configured scopes: "
                    f"{scopes}); grant it in Protime or set IDSYNC_PROTIME__SCOPES"
                ),
                status=status,
                code=code,
            )
        if is_retriable_status(status, method=call.method):
            return ProtimeError(
                self._redact(detail),
                status=status,
                code=code,
                retriable=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return ProtimeError(self._redact(detail), status=status, code=code)

    async def _fetch_token(self) -> tuple[str, float | None]:
        call = _Call(
            kind=RequestKind.TOKEN,
            method="POST",
            path=_path_of(self._token_url),
            started=self._clock(),
        )
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret,
            "scope": self._settings.scopes,
        }

        async def attempt() -> tuple[str, float | None]:
            self.stats.token_fetches += 1
            response = await self._send(call, self._token_url, data=form)
            if response.status_code == 200:  # noqa: PLR2004
                token, expires_in = parse_token(
                    decode_json(response.content, what="token answer", status=200)
                )
                self._issued.append(token)
                log.debug("protime.token", expires_in=expires_in)
                return token, expires_in
            raise self._token_error(response)

        return await self._with_retries(call, attempt)

    def _token_error(self, response: _Answer) -> ProtimeError:
        status = response.status_code
        code, message = parse_error_body(response.content)
        detail = f"the token endpoint {self._token_url_shown} answered {status}"
        detail += f" {code}" if code else ""
        detail += f": {message}" if message else ""
        if is_retriable_status(status, method="POST"):
            return ProtimeError(
                self._redact(detail),
                status=status,
                code=code,
                retriable=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return ProtimeAuthError(
            self._redact(
                f"{detail}; check IDSYNC_PROTIME__CLIENT_ID ({self._client_id!r}), "
                "IDSYNC_PROTIME__CLIENT_SECRET, IDSYNC_PROTIME__TOKEN_URL and the scopes "
                f"({self._settings.scopes})"
            ),
            status=status,
            code=code,
        )

    async def _with_retries(self, call: _Call, attempt: Callable[[], Awaitable[T]]) -> T:
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
                on=partial(self._retry_wait, call),
                attempts=self._settings.retry_attempts,
                timeout=self._settings.retry_timeout_seconds,
            ):
                with try_:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure
                    call.attempts += 1
                    return await attempt()
        except ProtimeError as exc:
            if exc.retriable and call.attempts > 1 and not call.token_failed:
                final = copy.copy(exc)
                final.args = (f"{exc} (gave up after {call.attempts} attempts)",)
                raise final from exc
            raise
        raise AssertionError("unreachable: stamina either returns or raises")

    def _retry_wait(self, call: _Call, exc: BaseException) -> bool | float:
        """stamina's backoff hook: False to stop, else the seconds to wait before the next try."""
        if call.token_failed or not is_retriable(exc):
            return False
        if call.attempts >= self._settings.retry_attempts:
            return False
        retry_after = exc.retry_after if isinstance(exc, ProtimeError) else None
        wait = self._backoff.wait(call.attempts, retry_after=retry_after)
        remaining = self._settings.retry_timeout_seconds - (self._clock() - call.started)
        if wait > remaining:
            log.info(
                "protime.retry_abandoned",
                kind=call.kind.value,
                method=call.method,
                path=call.path,
                reason=_reason(exc),
                wait_seconds=round(wait, 3),
                remaining_seconds=round(max(remaining, 0.0), 3),
            )
            return False
        self.stats.retries += 1
        self.stats.retry_wait_seconds += wait
        log.info(
            "protime.retry",
            kind=call.kind.value,
            method=call.method,
            path=call.path,
            attempt=call.attempts,
            reason=_reason(exc),
            retry_after=retry_after,
            wait_seconds=round(wait, 3),
        )
        return wait


def _rate_limiter(settings: ProtimeSettings, *, learned_rate: float | None) -> RateLimiter | None:
    """The client-side limit the settings ask for: ``auto``, a fixed rate, or none (0)."""
    rate = settings.rate_limit_per_second
    if rate == "auto":
        # No bursts: Protime's bucket is small, and requests bunched by a busy event loop would
        # be refused although the average is below the limit, and then cut the rate for nothing.
        control = AdaptiveRate(
            start=learned_rate or FIRST_RATE,
            maximum=settings.max_rate_per_second,
            adaptive=True,
            learned=learned_rate is not None,
            burst=1.0,
            clock=time.monotonic,
        )
    elif rate > 0:
        # Bursts of at most `concurrency`: a burst as large as the rate would fire a second's
        # worth of calls at once into Protime's own (unpublished, likely smaller) allowance.
        control = AdaptiveRate(
            start=rate,
            maximum=rate,
            adaptive=False,
            burst=float(settings.concurrency),
            clock=time.monotonic,
        )
    else:
        return None
    return RateLimiter(control)
