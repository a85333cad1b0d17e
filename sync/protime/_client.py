"""The async client of the Protime Connector API, as its documentation describes it (docs/protime-client.md).

One :class:`ProtimeClient` per run: the endpoints (people, the people delta, the reference) on
one ``httpx.AsyncClient`` built from httpx's own seams (:mod:`sync.protime._session`). The token
is its ``httpx.Auth`` (:mod:`sync.protime._auth`); the lanes, the rate, the counting and the
bounds are transports stacked under it (:mod:`sync.protime._transports`); every call goes through
one retry loop (:mod:`sync.protime._retry`) whose single judge is :func:`is_retriable`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

import httpx

from sync import __version__
from sync.contract import (
    BADGE_NUMBER_REFERENCE,
    EMPLOYEE_NUMBER_REFERENCE,
    PEOPLE_PATH,
    REFERENCES_PATH,
)
from sync.errors import ConfigError, ReferenceValueError
from sync.protime._errors import show
from sync.protime._paging import Origin, SeenPeople, pages
from sync.protime._parse import (
    Change,
    MalformedAnswerError,
    check_accepted_answer,
    check_put_answer,
    decode_json,
    parse_changes_page,
    parse_internal_reference,
    parse_list_page,
)
from sync.protime._session import Session
from sync.protime._stats import RequestKind, log, path_of
from sync.values import name_problem, value_problem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

    from sync.config import ProtimeSettings
    from sync.domain import Person
    from sync.protime._rate import RateMemory
    from sync.protime._retry import Backoff
    from sync.protime._stats import RequestEvent
    from sync.strings import StringPool

_DOT_SEGMENTS = frozenset({".", ".."})


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


class ProtimeClient:
    """Reads people and manages one custom external reference through the Connector API.

    ``transport`` replaces the network (the simulator's in-process transport, or
    ``httpx.MockTransport`` in tests). ``clock`` (monotonic seconds) decides token expiry and the
    retry budget. ``backoff`` shapes the waits between tries (a ``Retry-After`` is a floor under it).
    ``read_email=False`` leaves ``Person.email`` empty: only the ``email`` matching rule needs it.
    ``read_names=True`` reads :class:`~sync.domain.NamedPerson` objects (``idsync suggest``).
    ``rate_memory``: with ``auto``, where the learned rate is recalled from when the client opens
    and remembered to when it closes.
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
        rate_memory: RateMemory | None = None,
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
        self._origin = Origin(self._base)
        self._client_id = settings.client_id
        self._read_email = read_email
        self._read_names = read_names
        self._rate_memory = rate_memory
        self._session = Session(
            settings,
            transport=transport,
            user_agent=f"idsync/{version} ({settings.user_agent_company})",
            on_request=on_request,
            clock=clock,
            backoff=backoff,
        )
        self.stats = self._session.stats
        people_refs = "".join(
            f"(people,{name})"
            for name in (
                EMPLOYEE_NUMBER_REFERENCE,
                BADGE_NUMBER_REFERENCE,
                settings.reference_name,
            )
        )
        self._people_url = httpx.URL(
            f"{self._base}{PEOPLE_PATH}", params={"externalReferences": people_refs}
        )
        # A delta's first round asks for the same references; its links keep them (the changes
        # carry the references the round started with).
        # Sent as the documentation writes it: a bare `delta`, first (`?delta&externalReferences=`).
        self._delta_url = httpx.URL(str(self._people_url).replace("?", "?delta&", 1))
        self._references_url = f"{self._base}{REFERENCES_PATH}/{settings.reference_name}"

    def __repr__(self) -> str:
        return (
            f"ProtimeClient(base_url={self._base!r}, client_id={self._client_id!r}, "
            f"reference_name={self._settings.reference_name!r})"
        )

    # ------------------------------------------------------------------------------- lifetime

    async def __aenter__(self) -> Self:
        if self._rate_memory is not None and self._settings.adaptive_rate:
            self.resume_rate(self._rate_memory.recall())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._rate_memory is not None and self._settings.adaptive_rate:
                self._rate_memory.remember(self.rate_per_second)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    @property
    def rate_per_second(self) -> float | None:
        """The client-side rate now (with ``auto``: what it has learned so far); None: off."""
        limiter = self._session.limiter
        return limiter.rate if limiter is not None else None

    def keep_rate_in(self, memory: RateMemory) -> None:
        """With ``auto``, recall the rate from ``memory`` when the client opens and remember it
        there when it closes (as ``rate_memory=`` does); before the client opens."""
        self._rate_memory = memory

    def resume_rate(self, rate: float | None) -> None:
        """Start an ``auto`` rate at ``rate`` (the last run's); before the first request."""
        if rate is not None and rate > 0 and self._settings.adaptive_rate:
            self._session.resume_rate(rate)

    # ----------------------------------------------------------------------------- endpoints

    async def check_token(self) -> None:
        """Fetch a token now, to prove the token URL and the credentials (``config check``)."""
        await self._session.tokens.refresh()

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
        seen = SeenPeople()
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

        async for page in pages(
            url, get=self._get_page, parse=parse, seen=seen, origin=self._origin
        ):
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
        url = self._origin.next_url(link, 0)
        seen = SeenPeople()
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

        async for page in pages(
            url, get=self._get_page, parse=parse, seen=seen, origin=self._origin
        ):
            yield page

    async def _get_page(self, url: httpx.URL) -> httpx.Response:
        return await self._session.call(RequestKind.PEOPLE, "GET", url, expected=(200,))

    def _skipped(self, url: httpx.URL, page: int, indexes: list[int]) -> None:
        """Report the persons of one page left out for an id the state cannot hold (issue 22)."""
        self.stats.people_skipped += len(indexes)
        log.warning(
            "protime.people_skipped",
            path=path_of(url),
            page=page,
            count=len(indexes),
            items=indexes[:10],
            reason="'id' is not an integer from 1 to 2**63-1; these persons are left out",
        )

    async def read_people(self) -> list[Person]:
        """Every person, all pages read."""
        people: list[Person] = []
        async for page in self.iter_people():
            people.extend(page)
        return people

    async def person_exists(self, protime_id: int) -> bool:
        """Whether Protime has person ``protime_id`` (``GET people/{id}``: 200 yes, 404 no)."""
        _check_id(protime_id)
        url = httpx.URL(f"{self._base}{PEOPLE_PATH}/{protime_id}")
        response = await self._session.call(RequestKind.PEOPLE, "GET", url, expected=(200, 404))
        return response.status_code == 200  # noqa: PLR2004

    async def put_reference(self, *, value: str, protime_id: int) -> bool | None:
        """Point ``value`` at person ``protime_id``. True when created (201), False when updated
        (200), None when Protime accepted the write without confirming it: 202 Accepted (with or
        without ``Operation-Location``), or a 200/201/204 with an empty body. The next full read
        confirms such a write (docs/protime-client.md, "Writes")."""
        url = self._reference_url(value)
        _check_id(protime_id)
        # json.dumps({"internalReference": str(protime_id)}), byte for byte, at a tenth of the
        # cost: the id is a positive int (checked above), whose digits need no escaping.
        body = b'{"internalReference": "%d"}' % protime_id
        response = await self._session.call(
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
            raise MalformedAnswerError(f"PUT {path_of(url)}: {exc}", status=status) from None
        if accepted:
            log.info("protime.write_accepted", path=path_of(url), status=status)
            return None
        return status == 201  # noqa: PLR2004

    async def delete_reference(self, *, value: str) -> bool:
        """Remove ``value``. True when deleted, False when Protime no longer had it (404)."""
        url = self._reference_url(value)
        response = await self._session.call(
            RequestKind.DELETE_REFERENCE, "DELETE", url, expected=(200, 204, 404)
        )
        return response.status_code != 404  # noqa: PLR2004

    async def get_reference(self, *, value: str) -> int | None:
        """The Protime id ``value`` points at, or None when Protime has no such value."""
        url = self._reference_url(value)
        response = await self._session.call(
            RequestKind.GET_REFERENCE, "GET", url, expected=(200, 404)
        )
        if response.status_code == 404:  # noqa: PLR2004
            return None
        try:
            return parse_internal_reference(
                decode_json(response.content, what="reference answer", status=200)
            )
        except MalformedAnswerError as exc:
            raise MalformedAnswerError(f"GET {path_of(url)}: {exc}", status=200) from None

    # ------------------------------------------------------------------------------- internals

    def _reference_url(self, value: object) -> httpx.URL:
        problem = value_problem(value, max_length=self._settings.max_value_length)
        if problem is None and value in _DOT_SEGMENTS:
            # "." and ".." would be resolved away as path segments and address another resource.
            problem = "only dots (a relative path segment)"
        if problem is not None:
            raise ReferenceValueError(f"reference value {show(value)} cannot be sent: {problem}")
        return httpx.URL(f"{self._references_url}/{quote(str(value), safe='')}")


def _check_id(protime_id: object) -> None:
    if type(protime_id) is not int or protime_id <= 0:
        raise ReferenceValueError(f"protime_id {show(protime_id)} is not a positive integer")
