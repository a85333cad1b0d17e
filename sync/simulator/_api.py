"""The Connector API and token endpoint as one ASGI callable (the Connector API as documented plus the assumptions in docs/simulator.md).

Order of the checks every API request gets (the first that fails answers): URI length (414),
User-Agent (400), bearer token (401), the client's rate bucket (429), injected faults (latency,
429/500/503, 409 on people GETs, drop), route (404/405), scope (403 or 401), then the endpoint's
own validation. Each concern has its module: fault injection in ``_inject``, the people list and
person in ``_people_api``, custom references in ``_references_api``, the delta feed (``?delta``
and ``/delta/people``) in ``_delta``, person rendering in ``_render`` and the token endpoint's form
and credentials in ``_token``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sync.simulator._config import API_PREFIX, PEOPLE_READ, REFERENCES_READ, REFERENCES_WRITE
from sync.simulator._delta import DeltaFeed
from sync.simulator._http import (
    QueryError,
    Receive,
    Resp,
    Scope,
    Send,
    decode_segment,
    error,
    oauth_error,
    parse_query,
    send_resp,
)
from sync.simulator._inject import FaultInjector
from sync.simulator._people_api import PeopleEndpoints
from sync.simulator._references_api import REF_LIST_PARTS, REF_ONE_PARTS, ReferenceEndpoints
from sync.simulator._render import ref_names
from sync.simulator._token import issue_token
from sync.simulator._types import Call

if TYPE_CHECKING:
    from sync.simulator._types import SimHost, Token

_PREFIX = API_PREFIX.encode() + b"/"
# Who sent a request, for the request records: this header when present, else the User-Agent.
_REPLICA_HEADER = b"x-idsync-replica"
_TOKEN_START = b"/tenants/"
# Path shapes: people[/id], delta/people, tenants/t/connect/token.
_PEOPLE_ONE_PARTS = 2
_DELTA_PARTS = 2
_TOKEN_PARTS = 3
_FORBIDDEN = 403
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


class DroppedConnectionError(Exception):
    """Raised by the app after a deliberately truncated response: the connection must break.

    Over a socket uvicorn then closes the transport (the client sees an incomplete body); the
    in-process transport turns it into ``httpx.RemoteProtocolError``.
    """


class ApiApp:
    """Routes API and token requests, applies the per-request checks and faults, counts answers."""

    def __init__(self, sim: SimHost) -> None:
        self.sim = sim
        self.inject = FaultInjector(sim)
        self.people = PeopleEndpoints(sim, self.inject)
        self.references = ReferenceEndpoints(sim, self.inject)
        self.delta = DeltaFeed(sim, self.inject, self.people)

    # ---- entry ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
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
        caller = headers.get(_REPLICA_HEADER) or headers.get(b"user-agent", b"")
        self.sim.log_request(method, raw_path, query, status, started=started, caller=caller)
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
            return self.inject.too_many(wait), False
        conflict_possible = method == "GET" and endpoint in _CONFLICT_LABELS
        injected, drop = await self.inject.decide(conflict_possible=conflict_possible)
        if injected is not None:
            return injected, False
        call = Call(method, raw_path[len(_PREFIX) :].split(b"/"), query, headers, receive, token)
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

    # ---- routing -------------------------------------------------------------------------------

    async def _route(self, call: Call) -> Resp:
        head = call.parts[0]
        if head == b"people" and len(call.parts) <= _PEOPLE_ONE_PARTS:
            if call.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if (denied := self._need(call.token, PEOPLE_READ)) is not None:
                return denied
            if len(call.parts) == 1:
                return self._people_list(call.query)
            return self.people.one(decode_segment(call.parts[1]), call.query, call.headers)
        if head == b"delta" and len(call.parts) == _DELTA_PARTS and call.parts[1] == b"people":
            if call.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if (denied := self._need(call.token, PEOPLE_READ)) is not None:
                return denied
            return self.delta.changes(call.query)
        if head == b"external-references" and len(call.parts) in (REF_LIST_PARTS, REF_ONE_PARTS):
            return await self._references(call)
        return error(404, "NotFound", "no such resource", [f"unknown path under {API_PREFIX}"])

    async def _references(self, call: Call) -> Resp:
        """Method and scope of a reference request (a read takes either reference scope)."""
        allowed = ("GET", "PUT", "DELETE") if len(call.parts) == REF_ONE_PARTS else ("GET",)
        reading = call.method in ("GET", "HEAD")
        if call.method not in allowed and not reading:
            return _not_allowed(*allowed)
        scopes = (REFERENCES_READ, REFERENCES_WRITE) if reading else (REFERENCES_WRITE,)
        if (denied := self._need(call.token, *scopes)) is not None:
            return denied
        return await self.references.handle(call)

    def _people_list(self, query: bytes) -> Resp:
        """``GET /people``: a plain list, or a page of the delta (``?delta``, ``deltaToken``)."""
        params = parse_query(query, _PEOPLE_LIST_PARAMS)
        names = ref_names(params)
        if isinstance(names, Resp):
            return names
        if "delta" in params or "deltaToken" in params:
            return self.delta.people_delta(params, names)
        return self.people.listing(params, names)

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
            injected, drop = await self.inject.decide()
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
            if len(parts) == REF_LIST_PARTS:
                return "references.list"
            return f"references.{method.lower()}"
        return "api.other"
    if raw_path.startswith(_TOKEN_START):
        return "token"
    return "other"


def _not_allowed(*methods: str) -> Resp:
    allow = ", ".join(methods)
    return error(405, "MethodNotAllowed", f"allowed: {allow}", headers=[(b"allow", allow.encode())])
