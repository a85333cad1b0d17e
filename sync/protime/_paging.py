"""Following ``nextLink`` to the end of a read, within bounds a hostile server cannot stretch."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import httpx

from sync.protime._parse import MalformedAnswerError, decode_json
from sync.protime._stats import path_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sync.domain import Person

T = TypeVar("T")
_MAX_EMPTY_PAGES_IN_A_ROW = 1000


class SeenPeople:
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


class Origin:
    """The one place the client's requests may go: a link elsewhere would carry our token."""

    __slots__ = ("_origin", "text")

    def __init__(self, base_url: str) -> None:
        base = httpx.URL(base_url)
        self._origin = (base.scheme, base.host, base.port)
        self.text = f"{base.scheme}://{base.netloc.decode('ascii')}"

    def next_url(self, link: str, page: int) -> httpx.URL:
        """``link`` (a ``nextLink`` of page ``page``, or a stored ``deltaLink`` for page 0) as a
        URL, when it is a path on the origin."""
        if link.startswith("/") and not link.startswith("//"):
            return httpx.URL(self.text + link)
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
        raise MalformedAnswerError(
            (f"people page {page}: nextLink" if page else "the stored deltaLink")
            + f" is not a path on {self.text}",
            status=200,
        )


async def pages(
    url: httpx.URL,
    *,
    get: Callable[[httpx.URL], Awaitable[httpx.Response]],
    parse: Callable[[object, int], tuple[T, str | None]],
    seen: SeenPeople,
    origin: Origin,
) -> AsyncIterator[T]:
    """Each page from ``url`` on, parsed, until a page has no ``nextLink``."""
    # URLs that gave people: asking one again would read the same people twice. An empty page
    # may point at its own URL ("nothing yet, ask again"), but not forever.
    read: set[str] = set()
    empty_in_a_row = 0
    page = 0
    while True:
        page += 1
        response = await get(url)
        items_before = seen.items
        try:
            payload = decode_json(response.content, what="people page", status=200)
            parsed, next_link = parse(payload, page)
        except MalformedAnswerError as exc:
            raise MalformedAnswerError(
                f"GET {path_of(url)} page {page}: {exc}", status=200
            ) from None
        yield parsed
        if next_link is None:
            return
        if seen.items > items_before:
            read.add(str(url))
            empty_in_a_row = 0
        else:
            empty_in_a_row += 1
        url = origin.next_url(next_link, page)
        if str(url) in read:
            raise MalformedAnswerError(
                f"GET {path_of(url)} page {page}: nextLink repeats an earlier page", status=200
            )
        if empty_in_a_row >= _MAX_EMPTY_PAGES_IN_A_ROW or seen.implausible(page):
            raise MalformedAnswerError(
                f"GET {path_of(url)} page {page}: {empty_in_a_row} empty pages in a row "
                f"({seen.empty_pages} in all, for {seen.items} items): the paging is not "
                "plausible",
                status=200,
            )
