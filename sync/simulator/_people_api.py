"""``GET /people`` (a plain list) and ``GET /people/{id}``; the delta round pages through here too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.simulator._filter import people_filter
from sync.simulator._http import (
    Resp,
    b64,
    error,
    internal_id,
    link,
    list_cursor,
    page,
    parse_query,
)
from sync.simulator._people import change_version_text
from sync.simulator._render import ref_names, renderer

if TYPE_CHECKING:
    from sync.simulator._filter import PeopleFilter
    from sync.simulator._inject import FaultInjector
    from sync.simulator._types import SimHost

# A people or reference page examines at most this many people; past it the page ends early with a
# nextLink (possibly with an empty value), as a real API bounds the work of one request.
SCAN_BUDGET = 5000
_PEOPLE_ONE_PARAMS = frozenset({"externalReferences"})


class PeopleEndpoints:
    """The people list and the single person, after the route, scope and query checks."""

    def __init__(self, sim: SimHost, inject: FaultInjector) -> None:
        self.sim = sim
        self._inject = inject

    def listing(self, params: dict[str, str], names: list[str] | None) -> Resp:
        """A page of ``GET /people`` without ``delta`` (the query and names already parsed)."""
        flt = people_filter(params)
        if isinstance(flt, Resp):
            return flt
        cursor = list_cursor(params, "p")
        if isinstance(cursor, Resp):
            return cursor
        kept: list[tuple[str, str | None]] = [
            (k, params[k]) for k in ("filter", "externalReferences") if k in params
        ]

        def next_link(after: int) -> str:
            token = b64(f"p:{after}")
            return link(f"{self.sim.api_path}/people", [*kept, ("continuationToken", token)])

        if self._inject.empty_page():
            return page([], next_link(cursor))
        items, last, more = self.page(flt, names, cursor)
        return page(items, next_link(last) if more else None)

    def page(
        self, flt: PeopleFilter | None, names: list[str] | None, cursor: int
    ) -> tuple[list[bytes], int, bool]:
        """One page of people after id ``cursor``: their JSON, the last id examined, and whether
        more may follow (a filtered page may end early, even empty, past its scan budget)."""
        world = self.sim.world
        size = self.sim.config.page_size
        render = renderer(world, names)
        if flt is None:
            people, more = world.page_after(cursor, size)
            return [render(p) for p in people], people[-1].id if people else cursor, more
        candidates = flt.candidates(world)
        if candidates is not None:
            source = iter([c for c in candidates if c > cursor])
        else:
            source = world.iter_ids_after(cursor)
        items: list[bytes] = []
        last = cursor
        examined = 0
        for pid in source:
            person = world.people.get(pid)
            if person is None:
                continue
            if len(items) == size or examined >= SCAN_BUDGET:
                return items, last, True
            examined += 1
            last = pid
            if flt.matches(person):
                items.append(render(person))
        return items, last, False

    def one(self, reference: str, query: bytes, headers: dict[bytes, bytes]) -> Resp:
        """``GET /people/{id}``: the person with its ETag, 304 when it still matches, or 404."""
        params = parse_query(query, _PEOPLE_ONE_PARAMS)
        names = ref_names(params)
        if isinstance(names, Resp):
            return names
        pid = internal_id(reference)
        if pid is None:
            reason = "the simulator addresses people by internal id only"
            return error(400, "BadRequest", "invalid PersonReference", [reason])
        person = self.sim.world.people.get(pid)
        if person is None:
            return error(404, "NotFound", f"no person with id {pid}")
        etag = f'W/"{change_version_text(person.change_version)}"'.encode()
        if headers.get(b"if-none-match") == etag:
            return Resp(304, headers=[(b"etag", etag)], json=False)
        return Resp(200, renderer(self.sim.world, names)(person), [(b"etag", etag)])
