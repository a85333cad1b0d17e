"""The Connector API and token endpoint as one ASGI callable (the Connector API as documented plus the assumptions in docs/simulator.md).

Order of the checks every API request gets (the first that fails answers): URI length (414),
User-Agent (400), bearer token (401), the client's rate bucket (429), injected faults (latency,
429/500/503, drop), route (404/405), scope (403 or 401), then the endpoint's own validation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from sync.simulator._config import API_PREFIX, PEOPLE_READ, REFERENCES_READ, REFERENCES_WRITE
from sync.simulator._filter import FilterError, PeopleFilter, parse_filter
from sync.simulator._http import (
    BodyTooLargeError,
    Headers,
    QueryError,
    Receive,
    Resp,
    Scope,
    Send,
    decode_segment,
    dumps,
    error,
    internal_id,
    oauth_error,
    parse_query,
    read_body,
    send_resp,
    validation,
)
from sync.simulator._world import KNOWN_COLLECTIONS, PEOPLE, PREDEFINED, PutOutcome
from sync.values import name_problem, value_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.simulator._config import ClientSpec
    from sync.simulator._people import SimPerson
    from sync.simulator._simulator import Simulator, Token

_PREFIX = API_PREFIX.encode() + b"/"
_TOKEN_START = b"/tenants/"
_PAIR = re.compile(r"\(([^(),]*),([^(),]*)\)")
_MAX_PAIRS = 20
# A people or reference page examines at most this many people; past it the page ends early with a
# nextLink (possibly with an empty value), as a real API bounds the work of one request.
_SCAN_BUDGET = 5000
# Path shapes: people[/id], external-references/collection/name[/value], tenants/t/connect/token.
_PEOPLE_ONE_PARTS = 2
_REF_LIST_PARTS = 3
_REF_ONE_PARTS = 4
_TOKEN_PARTS = 3
_FORBIDDEN = 403
_UNAUTHORIZED = 401
_BAD_REQUEST = 400
_NO_BODY = (204, 304)
# A dropped answer announces this many bytes more than it sends, so the client waits for them.
_DROP_SHORTFALL = 64

_PEOPLE_LIST_PARAMS = frozenset(
    {"filter", "externalReferences", "continuationToken", "delta", "deltaToken"}
)
_PEOPLE_ONE_PARAMS = frozenset({"externalReferences"})
_REF_LIST_PARAMS = frozenset({"continuationToken"})
_NO_PARAMS: frozenset[str] = frozenset()
_PREDEFINED_FIELDS = {"@badge-number": "badge_number", "@employee-number": "employee_number"}
_TOKEN_FORM = frozenset({"grant_type", "client_id", "client_secret", "scope"})
# The latency seam: a test may replace it to record the delays instead of waiting them out.
_sleep = asyncio.sleep


class DroppedConnectionError(Exception):
    """Raised by the app after a deliberately truncated response: the connection must break.

    Over a socket uvicorn then closes the transport (the client sees an incomplete body); the
    in-process transport turns it into ``httpx.RemoteProtocolError``.
    """


@dataclass(frozen=True, slots=True)
class _Call:
    """One authenticated API request, as the route handlers need it."""

    method: str
    parts: list[bytes]
    query: bytes
    headers: dict[bytes, bytes]
    receive: Receive
    token: Token


@dataclass(frozen=True, slots=True)
class _RefTarget:
    collection: str
    name: str
    value: str | None
    location: str


@dataclass(frozen=True, slots=True)
class _DeltaRound:
    generation: int
    mode: int  # 0 = initial full read, 1 = changes since a delta token
    cursor: int  # last person id (mode 0) or last change sequence (mode 1) answered
    upper: int  # the change sequence the round ends at
    issued: int  # simulator time the round's token was issued (seconds)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _ints(token: str | None, kind: str, count: int) -> list[int] | None:
    """Decode an opaque token of ``kind`` with ``count`` integers; None when it is not one."""
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        parts = raw.split(":")
        if parts[0] != kind or len(parts) != count + 1:
            return None
        return [int(p) for p in parts[1:]]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _link(path: str, params: list[tuple[str, str | None]]) -> str:
    # Readable but unambiguous: the characters the API uses stay as they are, the rest is encoded.
    query = "&".join(k if v is None else f"{k}={quote(v, safe='(),@')}" for k, v in params)
    return f"{path}?{query}" if query else path


def _pair_problem(collection: str, name: str) -> str | None:
    if collection not in KNOWN_COLLECTIONS:
        return f"unknown collection {collection!r}"
    if name.startswith("@"):
        if name not in PREDEFINED.get(collection, frozenset()):
            return f"unknown predefined reference {name!r} for {collection}"
        return None
    problem = name_problem(name)
    return None if problem is None else f"reference name {name!r}: {problem}"


def _bad_pairs(reason: str) -> Resp:
    return error(400, "BadRequest", "invalid externalReferences parameter", [reason])


class ApiApp:
    """Routes API and token requests, applies the per-request checks and faults, counts answers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._seen = 0  # API requests so far, for fault_every_429

    # ---- entry ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        headers = dict(scope["headers"])
        endpoint = _label(scope["method"], raw_path, query)
        resp, drop = await self._handle(
            endpoint,
            method=scope["method"],
            raw_path=raw_path,
            query=query,
            headers=headers,
            receive=receive,
        )
        self.sim.world.counters.record(endpoint, 0 if drop else resp.status)
        if not drop:
            await send_resp(send, resp)
            return
        if resp.status in _NO_BODY:
            resp.status = 200  # a 204 with a length would look complete to the client
        await send_resp(send, resp, extra_length=_DROP_SHORTFALL)
        raise DroppedConnectionError(f"injected connection drop on {endpoint}")

    async def _handle(
        self,
        endpoint: str,
        *,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        receive: Receive,
    ) -> tuple[Resp, bool]:
        config = self.sim.config
        uri_length = len(raw_path) + (len(query) + 1 if query else 0)
        if uri_length > config.max_uri_length:
            message = f"the URI is longer than {config.max_uri_length} characters"
            return error(414, "UriTooLong", message), False
        if endpoint == "token":
            return await self._token_request(method, raw_path, headers, receive)
        if endpoint == "other":
            return error(404, "NotFound", "no such endpoint"), False
        if config.user_agent_required and not headers.get(b"user-agent", b"").strip():
            reason = "send User-Agent: ServiceName/Version (Company)"
            return error(400, "BadRequest", "a User-Agent header is required", [reason]), False
        token = self._bearer(headers)
        if isinstance(token, Resp):
            return token, False
        wait = self.sim.take_rate_token(token.client_id)
        if wait is not None:
            return self._too_many(wait), False
        injected, drop = await self._faults()
        if injected is not None:
            return injected, False
        call = _Call(method, raw_path[len(_PREFIX) :].split(b"/"), query, headers, receive, token)
        try:
            resp = await self._route(call)
        except UnicodeDecodeError:
            resp = error(400, "BadRequest", "the path is not valid UTF-8 after percent-decoding")
        except QueryError as exc:
            resp = error(400, "BadRequest", "invalid query string", [str(exc)])
        return resp, drop

    # ---- checks --------------------------------------------------------------------------------

    def _bearer(self, headers: dict[bytes, bytes]) -> Token | Resp:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() != b"bearer " or not auth[7:].strip():
            challenge = [(b"www-authenticate", b"Bearer")]
            return error(401, "Unauthorized", "a bearer token is required", headers=challenge)
        token = self.sim.valid_token(auth[7:].strip().decode("latin-1"))
        if token is None:
            challenge = [(b"www-authenticate", b'Bearer error="invalid_token"')]
            message = "the bearer token is invalid or expired"
            return error(401, "Unauthorized", message, headers=challenge)
        return token

    def _need(self, token: Token, *scopes: str) -> Resp | None:
        if any(s in token.scopes for s in scopes):
            return None
        status = self.sim.config.scope_error_status
        code = "Forbidden" if status == _FORBIDDEN else "Unauthorized"
        reason = f"required scope: {' or '.join(scopes)}"
        return error(status, code, f"the token lacks the scope {scopes[0]}", [reason])

    def _retry_after(self, seconds: float) -> Headers:
        style = self.sim.faults.retry_after_style
        if style == "none":
            return []
        if style == "whole":
            return [(b"retry-after", str(max(1, math.ceil(seconds))).encode())]
        return [(b"retry-after", f"{max(seconds, 0.001):.3f}".encode())]

    def _too_many(self, wait: float) -> Resp:
        return error(429, "TooManyRequests", "rate limit exceeded", headers=self._retry_after(wait))

    async def _faults(self) -> tuple[Resp | None, bool]:
        """Latency, then at most one injected answer (429/500/503) or a drop decision."""
        faults = self.sim.faults
        rng = self.sim.rng
        if faults.latency_ms or faults.latency_jitter_ms:
            delay = faults.latency_ms + rng.random() * faults.latency_jitter_ms
            await _sleep(delay / 1000)
        if faults.fault_every_429:
            self._seen += 1
            if self._seen % faults.fault_every_429 == 0:
                return self._too_many(faults.retry_after_seconds), False
        p429, p500, p503 = faults.fault_rate_429, faults.fault_rate_500, faults.fault_rate_503
        if not (p429 or p500 or p503 or faults.fault_drop_rate):
            return None, False
        draw = rng.random()
        if draw < p429:
            return self._too_many(faults.retry_after_seconds), False
        if draw < p429 + p500:
            return error(500, "InternalServerError", "injected fault"), False
        if draw < p429 + p500 + p503:
            retry = self._retry_after(faults.retry_after_seconds)
            return error(503, "ServiceUnavailable", "injected fault", headers=retry), False
        return None, draw < p429 + p500 + p503 + faults.fault_drop_rate

    def _empty_page(self) -> bool:
        rate = self.sim.faults.empty_page_rate
        return bool(rate) and self.sim.rng.random() < rate

    # ---- routing -------------------------------------------------------------------------------

    async def _route(self, call: _Call) -> Resp:
        head = call.parts[0]
        if head == b"people" and len(call.parts) <= _PEOPLE_ONE_PARTS:
            if call.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if (denied := self._need(call.token, PEOPLE_READ)) is not None:
                return denied
            if len(call.parts) == 1:
                return self._people_list(call.query)
            return self._people_one(decode_segment(call.parts[1]), call.query, call.headers)
        if head == b"external-references" and len(call.parts) in (_REF_LIST_PARTS, _REF_ONE_PARTS):
            return await self._references(call)
        return error(404, "NotFound", "no such resource", [f"unknown path under {API_PREFIX}"])

    # ---- people --------------------------------------------------------------------------------

    def _ref_names(self, params: dict[str, str]) -> list[str] | Resp | None:
        """Names of the people references asked for, or None when none is asked for."""
        text = params.get("externalReferences")
        if text is None:
            return None
        pairs: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _PAIR.match(text, pos)
            if match is None:
                return _bad_pairs("expected (collection,name)(collection,name)...")
            pairs.append((match[1], match[2]))
            pos = match.end()
        if not pairs or len(pairs) > _MAX_PAIRS:
            return _bad_pairs(f"give 1 to {_MAX_PAIRS} pairs")
        names: list[str] = []
        for collection, name in pairs:
            if (problem := _pair_problem(collection, name)) is not None:
                return _bad_pairs(problem)
            if collection == PEOPLE and name not in names:
                names.append(name)
        return names or None

    def _renderer(self, names: list[str] | None) -> Callable[[SimPerson], bytes]:
        """A function giving one person's JSON, with the ``externalReferences`` map when asked.

        The hot path of a people page: the person's own JSON is cached by the world, and the map
        is spliced in as text with C string escaping, several times cheaper than ``json.dumps``.
        """
        world = self.sim.world
        person_json = world.person_json
        if names is None:
            return person_json
        # (encoded name + ':', how to get that name's value from a person)
        plan: list[tuple[str, Callable[[SimPerson], str | None]]] = []
        for name in names:
            key = _json_string(name) + ":"
            if name in _PREDEFINED_FIELDS:
                plan.append((key, attrgetter(_PREDEFINED_FIELDS[name])))
            else:
                holders = world.reference_holders(name)
                plan.append((key, lambda person, h=holders: h.get(person.id)))  # type: ignore[misc]

        def render(person: SimPerson) -> bytes:
            parts = []
            for key, value_of in plan:
                value = value_of(person)
                if value is not None:
                    parts.append(key + _json_string(value))
            refs = ("{" + ",".join(parts) + "}").encode()
            return person_json(person)[:-1] + b',"externalReferences":' + refs + b"}"

        return render

    def _people_list(self, query: bytes) -> Resp:
        params = parse_query(query, _PEOPLE_LIST_PARAMS)
        names = self._ref_names(params)
        if isinstance(names, Resp):
            return names
        if "delta" in params or "deltaToken" in params:
            return self._delta(params, names)
        flt: PeopleFilter | None = None
        if "filter" in params:
            try:
                flt = parse_filter(params["filter"])
            except FilterError as exc:
                return error(400, "BadRequest", "invalid filter", [str(exc)])
        cursor = 0
        if "continuationToken" in params:
            decoded = _ints(params["continuationToken"], "p", 1)
            if decoded is None:
                return error(400, "BadRequest", "invalid continuationToken")
            cursor = decoded[0]
        kept: list[tuple[str, str | None]] = [
            (k, params[k]) for k in ("filter", "externalReferences") if k in params
        ]

        def link(after: int) -> str:
            token = _b64(f"p:{after}")
            return _link(f"{API_PREFIX}/people", [*kept, ("continuationToken", token)])

        if self._empty_page():
            return _page([], link(cursor))
        size = self.sim.config.page_size
        world = self.sim.world
        if flt is None:
            people, more = world.page_after(cursor, size)
            render = self._renderer(names)
            items = [render(person) for person in people]
            return _page(items, link(people[-1].id) if more else None)
        return self._filtered_page(flt, names, cursor, link)

    def _filtered_page(
        self,
        flt: PeopleFilter,
        names: list[str] | None,
        cursor: int,
        link: Callable[[int], str],
    ) -> Resp:
        world = self.sim.world
        size = self.sim.config.page_size
        render = self._renderer(names)
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
            if len(items) == size or examined >= _SCAN_BUDGET:
                return _page(items, link(last))
            examined += 1
            last = pid
            if flt.matches(person):
                items.append(render(person))
        return _page(items, None)

    def _people_one(self, reference: str, query: bytes, headers: dict[bytes, bytes]) -> Resp:
        params = parse_query(query, _PEOPLE_ONE_PARAMS)
        names = self._ref_names(params)
        if isinstance(names, Resp):
            return names
        pid = internal_id(reference)
        if pid is None:
            reason = "the simulator addresses people by internal id only"
            return error(400, "BadRequest", "invalid PersonReference", [reason])
        person = self.sim.world.people.get(pid)
        if person is None:
            return error(404, "NotFound", f"no person with id {pid}")
        etag = f'W/"{person.change_version}"'.encode()
        if headers.get(b"if-none-match") == etag:
            return Resp(304, headers=[(b"etag", etag)], json=False)
        return Resp(200, self._renderer(names)(person), [(b"etag", etag)])

    # ---- delta ---------------------------------------------------------------------------------

    def _delta_round(self, params: dict[str, str]) -> _DeltaRound | Resp:
        """Where this delta request stands: a new round, a round's next page, or an answer."""
        world = self.sim.world
        if "filter" in params:
            return error(400, "BadRequest", "filter cannot be combined with delta")
        if params.get("delta") != "":
            reason = "use ?delta (no value), with the deltaToken or continuationToken of a link"
            return error(400, "BadRequest", "invalid delta request", [reason])
        if "deltaToken" in params and "continuationToken" in params:
            return error(400, "BadRequest", "give deltaToken or continuationToken, not both")
        if "continuationToken" in params:
            state = _ints(params["continuationToken"], "dc", 5)
            if state is None:
                return error(400, "BadRequest", "invalid continuationToken")
            return _DeltaRound(*state)
        if "deltaToken" in params:
            token = _ints(params["deltaToken"], "d", 3)
            if token is None:
                return error(400, "BadRequest", "invalid deltaToken")
            generation, since, issued = token
            return _DeltaRound(generation, 1, since, world.change_sequence, issued)
        now = int(self.sim.now())
        return _DeltaRound(world.generation, 0, 0, world.change_sequence, now)

    def _delta(self, params: dict[str, str], names: list[str] | None) -> Resp:
        sim = self.sim
        world = sim.world
        state = self._delta_round(params)
        if isinstance(state, Resp):
            return state
        now = sim.now()
        expired = now - state.issued > sim.config.delta_token_ttl_seconds
        if state.generation != world.generation or expired:
            message = "the delta token has expired; read the collection in full again"
            return error(410, "Gone", message)
        kept: list[tuple[str, str | None]] = [("delta", None)]
        if "externalReferences" in params:
            kept.append(("externalReferences", params["externalReferences"]))

        def next_link(cursor: int) -> str:
            token = _b64(
                f"dc:{state.generation}:{state.mode}:{cursor}:{state.upper}:{state.issued}"
            )
            return _link(f"{API_PREFIX}/people", [*kept, ("continuationToken", token)])

        if self._empty_page():
            return _page([], next_link(state.cursor))
        items, cursor, more = self._delta_items(state, names)
        if more:
            return _page(items, next_link(cursor))
        delta_token = _b64(f"d:{state.generation}:{state.upper}:{int(now)}")
        delta_link = _link(f"{API_PREFIX}/people", [*kept, ("deltaToken", delta_token)])
        return _page(items, None, delta_link)

    def _delta_items(
        self, state: _DeltaRound, names: list[str] | None
    ) -> tuple[list[bytes], int, bool]:
        world = self.sim.world
        size = self.sim.config.page_size
        cursor = state.cursor
        render = self._renderer(names)
        if state.mode == 0:
            people, more = world.page_after(cursor, size)
            items = [_change(render(person)) for person in people]
            return items, people[-1].id if people else cursor, more
        items = []
        for seq, pid, deleted in world.changes_between(cursor, state.upper):
            if len(items) == size:
                return items, cursor, True
            cursor = seq
            person = None if deleted else world.person(pid)
            if person is None:
                items.append(dumps({"changeType": "Delete", "data": {"id": pid}}))
            else:
                items.append(_change(render(person)))
        return items, cursor, False

    # ---- custom references ---------------------------------------------------------------------

    def _ref_target(self, call: _Call) -> _RefTarget | Resp:
        """Check the path of a reference request (§7 names and values) and decode it."""
        config = self.sim.config
        collection = decode_segment(call.parts[1])
        name = decode_segment(call.parts[2])
        if collection not in KNOWN_COLLECTIONS:
            return error(404, "NotFound", f"unknown collection {collection!r}")
        if name.startswith("@"):
            status = config.predefined_write_status
            code = "BadRequest" if status == _BAD_REQUEST else "Forbidden"
            reason = f"{name!r} is managed by Protime; read it through the {collection} collection"
            return error(status, code, "predefined external references are read-only", [reason])
        if (problem := name_problem(name)) is not None:
            return error(400, "BadRequest", "invalid external reference name", [problem])
        path = b"/".join(call.parts).decode("latin-1")
        if len(call.parts) == _REF_LIST_PARTS:
            return _RefTarget(collection, name, None, f"{API_PREFIX}/{path}")
        value = decode_segment(call.parts[3])
        problem = value_problem(value, max_length=config.max_value_length)
        if problem is not None:
            return error(400, "BadRequest", "invalid external reference format", [problem])
        return _RefTarget(collection, name, value, f"{API_PREFIX}/{path}")

    async def _references(self, call: _Call) -> Resp:
        one = len(call.parts) == _REF_ONE_PARTS
        allowed = ("GET", "PUT", "DELETE") if one else ("GET",)
        reading = call.method in ("GET", "HEAD")
        if call.method not in allowed and not reading:
            return _not_allowed(*allowed)
        scopes = (REFERENCES_READ, REFERENCES_WRITE) if reading else (REFERENCES_WRITE,)
        if (denied := self._need(call.token, *scopes)) is not None:
            return denied
        params = parse_query(call.query, _NO_PARAMS if one else _REF_LIST_PARAMS)
        target = self._ref_target(call)
        if isinstance(target, Resp):
            return target
        if target.value is None:
            return self._reference_list(target, params)
        world = self.sim.world
        value = target.value
        missing = f"no {target.name} value {value!r} in {target.collection}"
        if reading:
            pid = world.reference_target(value, target.name, target.collection)
            if pid is None:
                return error(404, "NotFound", missing)
            return Resp(200, _ref_body(target, pid))
        if call.method == "DELETE":
            if not world.delete_reference(value, name=target.name, collection=target.collection):
                return error(404, "NotFound", missing)
            return Resp(204, json=False)
        return await self._reference_put(call, target)

    async def _reference_put(self, call: _Call, target: _RefTarget) -> Resp:
        body = await self._json_body(call.headers, call.receive)
        if isinstance(body, Resp):
            return body
        if "internalReference" not in body:
            return validation(("internalReference", "the field is required"))
        pid = internal_id(body["internalReference"])
        if pid is None:
            message = "must be a string holding a positive internal id (a JSON integer is accepted)"
            return validation(("internalReference", message))
        assert target.value is not None
        replace = self.sim.config.one_value_per_person == "replace"
        result = self.sim.world.put_reference(
            target.collection, target.name, target.value, pid, replace=replace
        )
        if result.outcome is PutOutcome.NO_OBJECT:
            return error(404, "NotFound", f"no {target.collection} object with internal id {pid}")
        if result.outcome is PutOutcome.CONFLICT:
            message = f"{target.collection} {pid} already holds a value for {target.name}"
            reasons = [f"current value: {result.held_value}", "delete it first, or PUT that value"]
            return error(409, "Conflict", message, reasons)
        if result.outcome is PutOutcome.CREATED:
            location = [(b"location", target.location.encode())]
            return Resp(201, _ref_body(target, pid), location)
        return Resp(200, _ref_body(target, pid))

    def _reference_list(self, target: _RefTarget, params: dict[str, str]) -> Resp:
        world = self.sim.world
        cursor = 0
        if "continuationToken" in params:
            decoded = _ints(params["continuationToken"], "r", 1)
            if decoded is None:
                return error(400, "BadRequest", "invalid continuationToken")
            cursor = decoded[0]

        def link(after: int) -> str:
            return _link(target.location, [("continuationToken", _b64(f"r:{after}"))])

        if self._empty_page():
            return _page([], link(cursor))
        holders = world.reference_holders(target.name, target.collection)
        size = self.sim.config.page_size
        items: list[bytes] = []
        last = cursor
        for examined, pid in enumerate(world.iter_ids_after(cursor)):
            if len(items) == size or examined >= _SCAN_BUDGET:
                return _page(items, link(last))
            last = pid
            value = holders.get(pid)
            if value is not None:
                items.append(dumps({"value": value, "internalReference": str(pid)}))
        return _page(items, None)

    async def _json_body(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> dict[str, Any] | Resp:
        limit = self.sim.config.max_body_bytes
        mime, _, rest = headers.get(b"content-type", b"").decode("latin-1").partition(";")
        if mime.strip().lower() != "application/json":
            shown = mime.strip() or "none"
            return validation(("", f"Content-Type must be application/json, got {shown!r}"))
        charset = rest.strip().lower().replace(" ", "")
        if charset and charset not in ("charset=utf-8", 'charset="utf-8"'):
            return validation(("", f"only UTF-8 JSON is accepted, got {rest.strip()!r}"))
        too_large = validation(("", f"the body is larger than {limit} bytes"))
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return too_large
        try:
            raw = await read_body(receive, limit)
        except BodyTooLargeError:
            return too_large
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            return validation(("", "the body is not valid UTF-8"))
        if not text.strip():
            return validation(("", "a JSON body is required"))
        try:
            body = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return validation(("", f"malformed JSON: {str(exc)[:120]}"))
        if not isinstance(body, dict):
            return validation(("", "the body must be a JSON object"))
        return body

    # ---- token endpoint ------------------------------------------------------------------------

    async def _token_request(
        self, method: str, raw_path: bytes, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[Resp, bool]:
        sim = self.sim
        parts = raw_path[len(_TOKEN_START) :].split(b"/")
        if len(parts) != _TOKEN_PARTS or parts[1:] != [b"connect", b"token"]:
            return error(404, "NotFound", "no such endpoint"), False
        if method != "POST":
            return _not_allowed("POST"), False
        if sim.config.user_agent_required and not headers.get(b"user-agent", b"").strip():
            return oauth_error(400, "invalid_request", "a User-Agent header is required"), False
        drop = False
        if sim.faults.faults_on_token:
            injected, drop = await self._faults()
            if injected is not None:
                return injected, False
        return await self._issue_token(parts[0], headers, receive), drop

    async def _issue_token(
        self, tenant_segment: bytes, headers: dict[bytes, bytes], receive: Receive
    ) -> Resp:
        config = self.sim.config
        try:
            tenant = decode_segment(tenant_segment)
        except UnicodeDecodeError:
            tenant = ""
        if tenant != config.tenant:
            return oauth_error(400, "invalid_request", "unknown tenant")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/x-www-form-urlencoded":
            message = "the body must be application/x-www-form-urlencoded"
            return oauth_error(400, "invalid_request", message)
        try:
            form = parse_query(await read_body(receive, config.max_body_bytes), _TOKEN_FORM)
        except BodyTooLargeError:
            return oauth_error(400, "invalid_request", "the body is too large")
        except QueryError as exc:
            return oauth_error(400, "invalid_request", str(exc))
        grant = form.get("grant_type")
        if grant is None:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            message = "only client_credentials is supported"
            return oauth_error(400, "unsupported_grant_type", message)
        spec = self._authenticate(form, headers)
        if isinstance(spec, Resp):
            return spec
        requested = form.get("scope")
        scopes = frozenset(requested.split()) if requested else spec.scopes
        if not scopes <= spec.scopes:
            missing = " ".join(sorted(scopes - spec.scopes))
            message = f"scope(s) not granted to this client: {missing}"
            return oauth_error(400, "invalid_scope", message)
        access = secrets.token_urlsafe(32)
        self.sim.register_token(access, spec.client_id, scopes)
        body = {
            "access_token": access,
            "expires_in": int(config.token_ttl_seconds),
            "token_type": "Bearer",
            "scope": " ".join(sorted(scopes)),
        }
        return Resp(200, dumps(body), [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")])

    def _authenticate(self, form: dict[str, str], headers: dict[bytes, bytes]) -> ClientSpec | Resp:
        config = self.sim.config
        client_id, secret, basic = _client_credentials(form, headers)
        if client_id is None:
            message = "client credentials are missing or given twice"
            return oauth_error(400, "invalid_request", message)
        spec = config.client(client_id)
        if spec is None or not hmac.compare_digest(spec.client_secret.encode(), secret.encode()):
            status = _UNAUTHORIZED if basic else config.invalid_client_status
            extra = (
                [(b"www-authenticate", b'Basic realm="token"')] if status == _UNAUTHORIZED else []
            )
            return oauth_error(status, "invalid_client", "unknown client or wrong secret", extra)
        return spec


def _label(method: str, raw_path: bytes, query: bytes) -> str:
    """The endpoint label requests are counted under."""
    if raw_path.startswith(_PREFIX):
        parts = raw_path[len(_PREFIX) :].split(b"/")
        if parts[0] == b"people":
            if len(parts) == 1:
                delta = any(
                    p.split(b"=")[0] in (b"delta", b"deltaToken") for p in query.split(b"&")
                )
                return "people.delta" if delta else "people.list"
            return "people.get"
        if parts[0] == b"external-references":
            if len(parts) == _REF_LIST_PARTS:
                return "references.list"
            return f"references.{method.lower()}"
        return "api.other"
    if raw_path.startswith(_TOKEN_START):
        return "token"
    return "other"


def _client_credentials(
    form: dict[str, str], headers: dict[bytes, bytes]
) -> tuple[str | None, str, bool]:
    """``(client_id, secret, used_basic_auth)`` from the form or an HTTP Basic header."""
    auth = headers.get(b"authorization", b"")
    if auth[:6].lower() == b"basic ":
        if "client_id" in form or "client_secret" in form:
            return None, "", True
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None, "", True
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret), True
    if "client_id" not in form:
        return None, "", False
    return form["client_id"], form.get("client_secret", ""), False


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _not_allowed(*methods: str) -> Resp:
    allow = ", ".join(methods)
    return error(405, "MethodNotAllowed", f"allowed: {allow}", headers=[(b"allow", allow.encode())])


def _ref_body(target: _RefTarget, pid: int) -> bytes:
    return dumps(
        {
            "collection": target.collection,
            "name": target.name,
            "value": target.value,
            "internalReference": str(pid),
        }
    )


def _change(person: bytes) -> bytes:
    return b'{"changeType":"InsertOrUpdate","data":' + person + b"}"


def _page(items: list[bytes], next_link: str | None, delta_link: str | None = None) -> Resp:
    body = b'{"value":[' + b",".join(items) + b"]"
    if next_link is not None:
        body += b',"nextLink":' + dumps(next_link)
    if delta_link is not None:
        body += b',"deltaLink":' + dumps(delta_link)
    return Resp(200, body + b"}")
