"""The Connector API and token endpoint as one ASGI callable (the Connector API as documented plus the assumptions in docs/simulator.md).

Order of the checks every API request gets (the first that fails answers): URI length (414),
User-Agent (400), bearer token (401), the client's rate bucket (429), injected faults (latency,
429/500/503, 409 on people GETs, drop), route (404/405), scope (403 or 401), then the endpoint's
own validation. The delta feed (``?delta`` and ``/delta/people``) lives in ``_delta``, person
rendering in ``_render`` and the token endpoint's form and credentials in ``_token``.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sync.simulator._config import API_PREFIX, PEOPLE_READ, REFERENCES_READ, REFERENCES_WRITE
from sync.simulator._delta import DeltaFeed
from sync.simulator._filter import PeopleFilter, people_filter
from sync.simulator._http import (
    BodyTooLargeError,
    Headers,
    QueryError,
    Receive,
    Resp,
    Scope,
    Send,
    b64,
    decode_segment,
    dumps,
    error,
    internal_id,
    link,
    oauth_error,
    page,
    parse_query,
    read_body,
    send_resp,
    token_ints,
    validation,
)
from sync.simulator._people import change_version_text
from sync.simulator._render import ref_names, renderer
from sync.simulator._token import issue_token
from sync.simulator._world import KNOWN_COLLECTIONS, PutOutcome
from sync.values import name_problem, value_problem

if TYPE_CHECKING:
    from sync.simulator._simulator import Simulator, Token

_PREFIX = API_PREFIX.encode() + b"/"
_TOKEN_START = b"/tenants/"
# A people or reference page examines at most this many people; past it the page ends early with a
# nextLink (possibly with an empty value), as a real API bounds the work of one request.
_SCAN_BUDGET = 5000
# Path shapes: people[/id], delta/people, external-references/collection/name[/value],
# tenants/t/connect/token.
_PEOPLE_ONE_PARTS = 2
_DELTA_PARTS = 2
_REF_LIST_PARTS = 3
_REF_ONE_PARTS = 4
_TOKEN_PARTS = 3
_FORBIDDEN = 403
_BAD_REQUEST = 400
_NO_BODY = (204, 304)
# A dropped answer announces this many bytes more than it sends, so the client waits for them.
_DROP_SHORTFALL = 64
# Endpoint labels of the GETs an injected 409 (concurrency conflict) may answer.
_CONFLICT_LABELS = frozenset(
    {"people.list", "people.get", "people.delta_start", "people.delta_page", "delta.changes"}
)

_PEOPLE_LIST_PARAMS = frozenset(
    {"filter", "externalReferences", "continuationToken", "delta", "deltaToken"}
)
_PEOPLE_ONE_PARAMS = frozenset({"externalReferences"})
_REF_LIST_PARAMS = frozenset({"continuationToken"})
_NO_PARAMS: frozenset[str] = frozenset()
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


class ApiApp:
    """Routes API and token requests, applies the per-request checks and faults, counts answers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._seen = 0  # API requests so far, for fault_every_429
        self.delta = DeltaFeed(self)

    # ---- entry ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        headers = dict(scope["headers"])
        method: str = scope["method"]
        endpoint = _label(method, raw_path, query)
        resp, drop = await self._handle(
            endpoint,
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            receive=receive,
        )
        status = 0 if drop else resp.status
        self.sim.world.counters.record(endpoint, status)
        self.sim.log_request(method, raw_path, query, status)
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
        conflict_possible = method == "GET" and endpoint in _CONFLICT_LABELS
        injected, drop = await self._faults(conflict_possible=conflict_possible)
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

    async def _faults(self, *, conflict_possible: bool = False) -> tuple[Resp | None, bool]:
        """Latency, then at most one injected answer (429/500/503, 409 on the people GETs when
        ``conflict_possible``) or a drop decision."""
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
        p409 = faults.fault_rate_409_get
        if not (p429 or p500 or p503 or p409 or faults.fault_drop_rate):
            return None, False
        draw = rng.random()
        if draw < p429:
            return self._too_many(faults.retry_after_seconds), False
        if draw < p429 + p500:
            return error(500, "InternalServerError", "injected fault"), False
        if draw < p429 + p500 + p503:
            retry = self._retry_after(faults.retry_after_seconds)
            return error(503, "ServiceUnavailable", "injected fault", headers=retry), False
        # The 409 band is drawn for every request (so the drop band does not move) but answers
        # only a GET on people or the delta; for other requests it is "no fault".
        if draw < p429 + p500 + p503 + p409:
            if conflict_possible:
                reasons = ["concurrency conflict on a collection with an active delta"]
                return error(409, "Conflict", "injected fault", reasons), False
            return None, False
        return None, draw < p429 + p500 + p503 + p409 + faults.fault_drop_rate

    def empty_page(self) -> bool:
        """Whether this list page is answered empty (with a nextLink), per ``empty_page_rate``."""
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
        if head == b"delta" and len(call.parts) == _DELTA_PARTS and call.parts[1] == b"people":
            if call.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if (denied := self._need(call.token, PEOPLE_READ)) is not None:
                return denied
            return self.delta.changes(call.query)
        if head == b"external-references" and len(call.parts) in (_REF_LIST_PARTS, _REF_ONE_PARTS):
            return await self._references(call)
        return error(404, "NotFound", "no such resource", [f"unknown path under {API_PREFIX}"])

    # ---- people --------------------------------------------------------------------------------

    def _people_list(self, query: bytes) -> Resp:
        params = parse_query(query, _PEOPLE_LIST_PARAMS)
        names = ref_names(params)
        if isinstance(names, Resp):
            return names
        if "delta" in params or "deltaToken" in params:
            return self.delta.people_delta(params, names)
        flt = people_filter(params)
        if isinstance(flt, Resp):
            return flt
        cursor = 0
        if "continuationToken" in params:
            decoded = token_ints(params["continuationToken"], "p", 1)
            if decoded is None:
                return error(400, "BadRequest", "invalid continuationToken")
            cursor = decoded[0]
        kept: list[tuple[str, str | None]] = [
            (k, params[k]) for k in ("filter", "externalReferences") if k in params
        ]

        def next_link(after: int) -> str:
            token = b64(f"p:{after}")
            return link(f"{API_PREFIX}/people", [*kept, ("continuationToken", token)])

        if self.empty_page():
            return page([], next_link(cursor))
        items, last, more = self.people_page(flt, names, cursor)
        return page(items, next_link(last) if more else None)

    def people_page(
        self, flt: PeopleFilter | None, names: list[str] | None, cursor: int
    ) -> tuple[list[bytes], int, bool]:
        """One page of people after id ``cursor``: their JSON, the last id examined, and whether
        more may follow (a filtered page may end early, even empty, past its scan budget)."""
        world = self.sim.world
        size = self.sim.config.page_size
        render = renderer(self.sim.world, names)
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
            if len(items) == size or examined >= _SCAN_BUDGET:
                return items, last, True
            examined += 1
            last = pid
            if flt.matches(person):
                items.append(render(person))
        return items, last, False

    def _people_one(self, reference: str, query: bytes, headers: dict[bytes, bytes]) -> Resp:
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
            decoded = token_ints(params["continuationToken"], "r", 1)
            if decoded is None:
                return error(400, "BadRequest", "invalid continuationToken")
            cursor = decoded[0]

        def next_link(after: int) -> str:
            return link(target.location, [("continuationToken", b64(f"r:{after}"))])

        if self.empty_page():
            return page([], next_link(cursor))
        holders = world.reference_holders(target.name, target.collection)
        size = self.sim.config.page_size
        items: list[bytes] = []
        last = cursor
        for examined, pid in enumerate(world.iter_ids_after(cursor)):
            if len(items) == size or examined >= _SCAN_BUDGET:
                return page(items, next_link(last))
            last = pid
            value = holders.get(pid)
            if value is not None:
                items.append(dumps({"value": value, "internalReference": str(pid)}))
        return page(items, None)

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
        return await issue_token(sim, parts[0], headers, receive), drop


def _label(method: str, raw_path: bytes, query: bytes) -> str:
    """The endpoint label requests are counted under."""
    if raw_path.startswith(_PREFIX):
        parts = raw_path[len(_PREFIX) :].split(b"/")
        if parts[0] == b"people":
            if len(parts) == 1:
                keys = {p.split(b"=")[0] for p in query.split(b"&")}
                if not keys & {b"delta", b"deltaToken"}:
                    return "people.list"
                # A new round (no token), or a later page of a round (RequestCounters.count
                # also answers the old label "people.delta" for all three delta labels).
                if keys & {b"continuationToken", b"deltaToken"}:
                    return "people.delta_page"
                return "people.delta_start"
            return "people.get"
        if parts[0] == b"delta" and len(parts) == _DELTA_PARTS and parts[1] == b"people":
            return "delta.changes"
        if parts[0] == b"external-references":
            if len(parts) == _REF_LIST_PARTS:
                return "references.list"
            return f"references.{method.lower()}"
        return "api.other"
    if raw_path.startswith(_TOKEN_START):
        return "token"
    return "other"


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
