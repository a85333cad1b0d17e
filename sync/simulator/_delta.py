"""The people delta (change feed) as Protime publishes it, plus the simulator's assumptions.

* ``GET /people?delta`` starts a **round**: the people as plain objects (exactly as ``GET /people``
  renders them), paged with ``nextLink``s that carry ``continuationToken`` and ``deltaToken``; the
  last page carries a ``deltaLink`` (and no ``nextLink``) and may be empty.
* The ``deltaLink`` is ``/delta/people?deltaToken=…``: the token is Base64 of the JSON object
  ``{"DeltaId", "StartingCursor", "TimeStamp"}``. Calling it answers every change with
  ``StartingCursor < sequence <= the sequence at the call`` (the same person once per change),
  paged (``nextLink`` = ``/delta/people?deltaToken=…&continuationToken=…``), the last page with a
  fresh ``deltaLink``.
* One delta per collection is active: a new round replaces it, and every link of the old one
  answers 410. Links of the active delta stay valid (an older ``deltaLink`` answers the changes
  since its own cursor). A delta expires ``delta_token_ttl_seconds`` after its last request.

See docs/simulator.md, "Delta feed", for which of these are published and which are assumptions.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.simulator._filter import people_filter
from sync.simulator._http import (
    Resp,
    b64,
    dumps,
    error,
    link,
    page,
    parse_query,
    token_ints,
    unb64,
)
from sync.simulator._people import change_version_text
from sync.simulator._render import renderer

if TYPE_CHECKING:
    from sync.simulator._filter import PeopleFilter
    from sync.simulator._inject import FaultInjector
    from sync.simulator._people_api import PeopleEndpoints
    from sync.simulator._types import SimHost
    from sync.simulator._world import Change

# Below the simulator's api_path (which a multi-tenant simulator prefixes with the tenant's mount).
DELTA_PATH = "/delta/people"
PEOPLE_PATH = "/people"
TOKEN_KEYS = ("DeltaId", "StartingCursor", "TimeStamp")
_CHANGES_PARAMS = frozenset({"deltaToken", "continuationToken"})
_CURSOR_DIGITS = 20
# Sets of changes kept ordered for paging (a client reads one set at a time; a few spare).
_ORDERED_SETS = 4


@dataclass(frozen=True, slots=True)
class DeltaToken:
    """A decoded ``deltaToken``: which delta, the change sequence it continues from, and when it
    was issued (ISO 8601, informative: expiry counts from the delta's last request)."""

    delta_id: str
    cursor: int
    timestamp: str


def encode_delta_token(delta_id: str, cursor: int, when: float) -> str:
    """Base64 of ``{"DeltaId", "StartingCursor", "TimeStamp"}`` (the cursor as a changeVersion)."""
    stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    payload = {
        "DeltaId": delta_id,
        "StartingCursor": change_version_text(cursor),
        "TimeStamp": stamp,
    }
    return base64.b64encode(dumps(payload)).decode("ascii")


def decode_delta_token(text: str) -> DeltaToken | None:
    """The token's fields, or None when it is not a token this simulator issued the form of."""
    raw = unb64(text)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != set(TOKEN_KEYS):
        return None
    delta_id, cursor, stamp = (data[k] for k in TOKEN_KEYS)
    if not (isinstance(delta_id, str) and isinstance(cursor, str) and isinstance(stamp, str)):
        return None
    if len(cursor) != _CURSOR_DIGITS:
        return None
    try:
        return DeltaToken(delta_id, int(cursor, 16), stamp)
    except ValueError:
        return None


@dataclass(slots=True)
class _Delta:
    """The collection's active delta: what its round asked for and when it was last used."""

    delta_id: str
    generation: int
    start: int  # the change sequence when the round began (its deltaLink continues from here)
    last_request: float
    names: list[str] | None  # the externalReferences of the request that started it
    flt: PeopleFilter | None  # the filter of the request that started it


def _gone(message: str) -> Resp:
    return error(410, "Gone", message, ["start a new round with GET /people?delta (a full read)"])


class DeltaFeed:
    """The people delta of one simulator: the active delta, its rounds and its sets of changes."""

    def __init__(self, sim: SimHost, inject: FaultInjector, people: PeopleEndpoints) -> None:
        self._sim = sim
        self._inject = inject
        self._people = people
        self._lock = threading.Lock()
        self._active: _Delta | None = None
        self._sets: OrderedDict[tuple[str, int, int], list[Change]] = OrderedDict()

    def forget(self) -> None:
        """No active delta any more (its links answer 410)."""
        with self._lock:
            self._active = None
            self._sets.clear()

    def describe(self) -> dict[str, Any] | None:
        """The active delta for ``/_sim/state`` (None when there is none)."""
        delta = self._active
        if delta is None:
            return None
        return {
            "deltaId": delta.delta_id,
            "startingCursor": change_version_text(delta.start),
            "lastRequest": delta.last_request,
            "expired": self._sim.now() - delta.last_request
            > self._sim.config.delta_token_ttl_seconds,
        }

    # ---- GET /people?delta ---------------------------------------------------------------------

    def people_delta(self, params: dict[str, str], names: list[str] | None) -> Resp:
        """``/people?delta``: a new round, or (with both tokens) a later page of the round."""
        if params.get("delta") != "":
            reason = "use ?delta (no value); a round's pages carry continuationToken and deltaToken"
            return error(400, "BadRequest", "invalid delta request", [reason])
        flt = people_filter(params)
        if isinstance(flt, Resp):
            return flt
        has_page, has_token = "continuationToken" in params, "deltaToken" in params
        if not has_page and not has_token:
            return self._start(params, names, flt)
        if not (has_page and has_token):
            where = self._sim.api_path + DELTA_PATH
            reason = f"a round's pages carry both tokens; a deltaLink goes to {where}"
            return error(400, "BadRequest", "invalid delta request", [reason])
        token = decode_delta_token(params["deltaToken"])
        if token is None:
            return error(400, "BadRequest", "invalid deltaToken")
        after = token_ints(params["continuationToken"], "dp", 1)
        if after is None:
            return error(400, "BadRequest", "invalid continuationToken")
        delta = self._live(token)
        if isinstance(delta, Resp):
            return delta
        return self._round_page(
            delta, params, cursor=token.cursor, after=after[0], names=names, flt=flt
        )

    def _start(
        self, params: dict[str, str], names: list[str] | None, flt: PeopleFilter | None
    ) -> Resp:
        sim = self._sim
        world = sim.world
        with self._lock:
            delta = _Delta(
                str(uuid.uuid4()), world.generation, world.change_sequence, sim.now(), names, flt
            )
            self._active = delta
            self._sets.clear()
        # Only the new delta's links can ask for changes now, and none before its start.
        world.forget_changes_upto(delta.start)
        return self._round_page(delta, params, cursor=delta.start, after=0, names=names, flt=flt)

    def _round_page(
        self,
        delta: _Delta,
        params: dict[str, str],
        *,
        cursor: int,
        after: int,
        names: list[str] | None,
        flt: PeopleFilter | None,
    ) -> Resp:
        """One page of a round: people after id ``after``; the deltaLink continues from ``cursor``."""
        now = self._sim.now()
        token = params.get("deltaToken") or encode_delta_token(delta.delta_id, cursor, now)
        kept: list[tuple[str, str | None]] = [("delta", None)]
        kept += [(k, params[k]) for k in ("externalReferences", "filter") if k in params]

        def next_link(last: int) -> str:
            page_token = b64(f"dp:{last}")
            return link(
                self._sim.api_path + PEOPLE_PATH,
                [*kept, ("continuationToken", page_token), ("deltaToken", token)],
            )

        if self._inject.empty_page():
            return page([], next_link(after))
        items, last, more = self._people.page(flt, names, after)
        # A full page always has a nextLink: the round ends on the first page that is not full,
        # which is empty when the people fill the pages exactly ("its value may be empty").
        if more or len(items) == self._sim.config.page_size:
            return page(items, next_link(last))
        return page(items, None, self._delta_link(delta, cursor, now))

    # ---- GET /delta/people ---------------------------------------------------------------------

    def changes(self, query: bytes) -> Resp:
        """``/delta/people?deltaToken=…[&continuationToken=…]``: a page of one set of changes."""
        params = parse_query(query, _CHANGES_PARAMS)
        if "deltaToken" not in params:
            return error(
                400, "BadRequest", "deltaToken is required", ["call the deltaLink as given"]
            )
        token = decode_delta_token(params["deltaToken"])
        if token is None:
            return error(400, "BadRequest", "invalid deltaToken")
        delta = self._live(token)
        if isinstance(delta, Resp):
            return delta
        position = self._position(token, params.get("continuationToken"))
        if isinstance(position, Resp):
            return position
        upper, offset = position
        changes = self._ordered(delta, token.cursor, upper)
        if changes is None:
            return _gone("the delta link is older than the changes the service keeps")

        def next_link(position: int) -> str:
            page_token = b64(f"dc:{upper}:{position}")
            return link(
                self._sim.api_path + DELTA_PATH,
                [("deltaToken", params["deltaToken"]), ("continuationToken", page_token)],
            )

        if self._inject.empty_page():
            return page([], next_link(offset))
        size = self._sim.config.page_size
        chunk = changes[offset : offset + size]
        items = self._items(delta, chunk)
        if len(chunk) == size:
            return page(items, next_link(offset + size))
        return page(items, None, self._delta_link(delta, upper, self._sim.now()))

    def _position(self, token: DeltaToken, continuation: str | None) -> tuple[int, int] | Resp:
        """``(upper bound, offset)`` of the page asked for: a new set of changes up to now, or
        where the continuation token says; 400 when a token does not fit."""
        upper = self._sim.world.change_sequence
        if token.cursor > upper:
            return error(400, "BadRequest", "invalid deltaToken", ["its cursor is in the future"])
        if continuation is None:
            return upper, 0
        position = token_ints(continuation, "dc", 2)
        if position is None or not token.cursor <= position[0] <= upper or position[1] < 0:
            return error(400, "BadRequest", "invalid continuationToken")
        return position[0], position[1]

    def _items(self, delta: _Delta, chunk: list[Change]) -> list[bytes]:
        """The changes as items: the person as it was at the change (references as they are
        now), or a Delete with only ``id`` and ``changeVersion``."""
        render = renderer(self._sim.world, delta.names, cached=False)
        items: list[bytes] = []
        for change in chunk:
            if change.person is None:
                version = change_version_text(change.seq)
                data = {"id": change.person_id, "changeVersion": version}
                items.append(dumps({"changeType": "Delete", "data": data}))
            else:
                person = render(change.person)
                items.append(b'{"changeType":"InsertOrUpdate","data":' + person + b"}")
        return items

    def _ordered(self, delta: _Delta, cursor: int, upper: int) -> list[Change] | None:
        """The set of changes ``cursor < sequence <= upper`` in the configured order, ordered once
        and kept for its pages; None when the history no longer reaches back to ``cursor``."""
        key = (delta.delta_id, cursor, upper)
        with self._lock:
            cached = self._sets.get(key)
            if cached is not None:
                self._sets.move_to_end(key)
                return cached
        changes = self._sim.world.changes_between(cursor, upper)
        if changes is None:
            return None
        flt = delta.flt
        if flt is not None:
            # Every Delete, and an InsertOrUpdate only when the person matched at that change.
            changes = [c for c in changes if c.person is None or flt.matches(c.person)]
        config = self._sim.config
        if config.delta_order == "newest-first":
            changes.reverse()
        elif config.delta_order == "shuffled":
            seed = f"{config.order_seed}:{cursor}:{upper}"
            random.Random(seed).shuffle(changes)  # noqa: S311 - a reproducible order, not security
        with self._lock:
            self._sets[key] = changes
            while len(self._sets) > _ORDERED_SETS:
                self._sets.popitem(last=False)
        return changes

    # ---- the active delta ----------------------------------------------------------------------

    def _live(self, token: DeltaToken) -> _Delta | Resp:
        """The active delta when ``token`` is one of its links (its last request is now), or 410."""
        sim = self._sim
        now = sim.now()
        with self._lock:
            delta = self._active
            if delta is None or delta.generation != sim.world.generation:
                self._active = None
                return _gone("this delta is no longer active (a newer round or a restore)")
            if token.delta_id != delta.delta_id:
                return _gone("a newer delta round replaced this one (one delta per collection)")
            if now - delta.last_request > sim.config.delta_token_ttl_seconds:
                self._active = None
                self._sets.clear()
                return _gone("the delta has expired (no request for longer than its lifetime)")
            delta.last_request = now
            return delta

    def _delta_link(self, delta: _Delta, cursor: int, now: float) -> str:
        token = encode_delta_token(delta.delta_id, cursor, now)
        return link(self._sim.api_path + DELTA_PATH, [("deltaToken", token)])
