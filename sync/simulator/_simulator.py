"""The Simulator: one world, one ASGI app, two ways to reach it (in-process transport or a socket)."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httpx

from sync.simulator._admin import build_admin
from sync.simulator._api import ApiApp, DroppedConnectionError
from sync.simulator._config import API_PREFIX, Faults, SimulatorConfig
from sync.simulator._people import generate_people
from sync.simulator._types import LoggedRequest, RequestRecord, Token
from sync.simulator._world import RequestCounters, World, parse_people_document

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.simulator._http import Receive, Scope, Send

_ADMIN_PREFIX = "/_sim"
_MAX_TOKENS = 10_000
REQUEST_LOG_SIZE = 100_000
_MAX_CALLERS = 1_000


class Simulator:
    """A Protime Connector API simulator for one tenant.

    ``clock`` returns seconds (default ``time.time``); token and delta-token expiry use it plus the
    offset moved by :meth:`advance_clock`, so a test can expire a 72-hour delta token instantly.
    Rate limiting uses the monotonic clock: it is about real request pacing.

    ``path_prefix`` (e.g. ``/t/acme``) is where a :class:`MultiSimulator` mounts this tenant: every
    path it answers and every link it gives then starts with it. Empty for a simulator of its own.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        path_prefix: str = "",
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        if path_prefix and (not path_prefix.startswith("/") or path_prefix.endswith("/")):
            raise ValueError("path_prefix must start with '/' and not end with one")
        self.path_prefix = path_prefix
        self._raw_prefix = path_prefix.encode()
        self._clock = clock if clock is not None else time.time
        self._clock_offset = 0.0
        self._lock = threading.Lock()
        self.world = World()
        self.faults: Faults = self.config.faults()
        self.rng = random.Random(self.faults.fault_seed)  # noqa: S311 - reproducible faults
        self._tokens: dict[str, Token] = {}
        self._buckets: dict[str, list[float]] = {}
        # The last REQUEST_LOG_SIZE API and token requests (not /_sim), oldest first.
        self.request_log: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        # The same requests with their tenant, caller and timing (docs/simulator.md, "Request
        # records"); a separate deque so request_log keeps its four fields.
        self.request_records: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._callers: dict[bytes, str] = {}
        self._api = ApiApp(self)
        self._admin = build_admin(self)
        self.load_initial_world()

    # ---- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the in-process transport answers, e.g. ``http://acme.sim.local``."""
        return f"http://{self.config.tenant}.{self.config.host_suffix}"

    @property
    def token_path(self) -> str:
        return f"{self.path_prefix}/tenants/{self.config.tenant}/connect/token"

    @property
    def token_url(self) -> str:
        return self.base_url + self.token_path

    @property
    def api_path(self) -> str:
        return self.path_prefix + API_PREFIX

    @property
    def api_url(self) -> str:
        return self.base_url + self.api_path

    def log_request(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        status: int,
        *,
        started: float | None = None,
        caller: bytes = b"",
    ) -> None:
        """Append one answered request to :attr:`request_log` and :attr:`request_records`.

        ``started`` is when it arrived (``time.time()``; now when None); it ended now, when its
        answer is ready to send (before the send, so a test that has the answer finds the record).
        """
        path, text = raw_path.decode("latin-1"), query.decode("latin-1")
        self.request_log.append(LoggedRequest(method, path, text, status))
        ended = time.time()
        name = self._callers.get(caller)
        if name is None:
            # One string per caller, not one per request: a benchmark logs hundreds of thousands.
            name = caller.decode("latin-1")
            if len(self._callers) < _MAX_CALLERS:
                self._callers[caller] = name
        self.request_records.append(
            RequestRecord(
                self.config.tenant,
                method,
                path,
                text,
                status,
                ended if started is None else started,
                ended,
                name,
            )
        )

    def delta_state(self) -> dict[str, Any] | None:
        """The active people delta (``deltaId``, ``startingCursor``, ``lastRequest``, ``expired``),
        or None when no delta is active."""
        return self._api.delta.describe()

    @property
    def counters(self) -> RequestCounters:
        """Request counters per endpoint label and status (same object as ``world.counters``)."""
        return self.world.counters

    # ---- the ASGI app --------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application: the API, the token endpoint and the ``/_sim`` admin surface."""
        kind = scope["type"]
        if kind == "http":
            if self._raw_prefix:
                scope = self._unmounted(scope)
            if scope["path"].startswith(_ADMIN_PREFIX):
                await self._admin(scope, receive, send)
            else:
                await self._api(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _unmounted(self, scope: Scope) -> Scope:
        """``scope`` without this tenant's path prefix, when it has it (a request routed by its
        ``Host`` reaches the tenant without one)."""
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        prefix = self._raw_prefix
        if raw.startswith(prefix) and raw[len(prefix) : len(prefix) + 1] in (b"/", b""):
            rest = raw[len(prefix) :] or b"/"
            path: str = scope["path"]
            return {**scope, "raw_path": rest, "path": path[len(self.path_prefix) :] or "/"}
        return scope

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that runs the app in-process (no socket)."""
        return in_process_transport(self.app)

    # ---- world ---------------------------------------------------------------------------------

    def load_initial_world(self) -> None:
        """(Re)build the world the configuration describes: a people file, or N generated people."""
        config = self.config
        if config.people_file is not None:
            data = json.loads(config.people_file.read_text(encoding="utf-8"))
            people, refs = parse_people_document(data)
            self.world.replace_all(people, refs)
        else:
            people = generate_people(
                config.people,
                seed=config.seed,
                tenant=config.tenant,
                out_of_service_share=config.out_of_service_share,
            )
            self.world.replace_all(people)

    def reset(self) -> None:
        """Back to the configured start: world, faults, tokens, rate buckets, counters, request
        log, clock, and no delta."""
        with self._lock:
            self._tokens.clear()
            self._buckets.clear()
            self.faults = self.config.faults()
            self.rng = random.Random(self.faults.fault_seed)  # noqa: S311 - reproducible faults
            self._clock_offset = 0.0
        self.load_initial_world()
        self._api.delta.forget()
        self.world.counters.reset()
        self.request_log.clear()
        self.request_records.clear()

    # ---- time and tokens -----------------------------------------------------------------------

    def now(self) -> float:
        """The simulator's clock (injected clock plus :meth:`advance_clock` offset)."""
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator clock forward (tokens and delta tokens age; rate limits do not)."""
        self._clock_offset += seconds

    def register_token(self, access_token: str, client_id: str, scopes: frozenset[str]) -> Token:
        """Store an issued token; used by the token endpoint and by :meth:`issue_token`."""
        now = self.now()
        token = Token(client_id, scopes, now + self.config.token_ttl_seconds, self.config.tenant)
        with self._lock:
            if len(self._tokens) >= _MAX_TOKENS:
                # A client asking a token per call would otherwise grow this without bound.
                self._tokens = {k: t for k, t in self._tokens.items() if t.expires_at > now}
            self._tokens[access_token] = token
        return token

    def issue_token(
        self, client_id: str | None = None, scopes: frozenset[str] | None = None
    ) -> str:
        """Mint a valid access token without HTTP (test helper)."""
        import secrets

        spec = self.config.client(client_id) if client_id else self.config.clients[0]
        if spec is None:
            raise KeyError(client_id)
        access = secrets.token_urlsafe(32)
        self.register_token(access, spec.client_id, spec.scopes if scopes is None else scopes)
        return access

    def valid_token(self, access_token: str) -> Token | None:
        token = self._tokens.get(access_token)
        if token is None or token.expires_at <= self.now() or token.tenant != self.config.tenant:
            return None
        return token

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid (the next API call answers 401)."""
        with self._lock:
            self._tokens.clear()

    @property
    def tokens_issued(self) -> int:
        """Tokens currently valid or not yet purged (what a test checks for token reuse)."""
        return len(self._tokens)

    # ---- faults and rate limit -----------------------------------------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        """Change fault settings at runtime (any ``Faults`` field); returns the new settings.

        Changing ``fault_seed`` restarts the fault RNG; changing the rate limit refills the buckets.
        """
        with self._lock:
            new = dataclasses.replace(self.faults, **changes)
            if "fault_seed" in changes:
                self.rng = random.Random(new.fault_seed)  # noqa: S311 - reproducible faults
            if "rate_limit_per_second" in changes or "rate_limit_burst" in changes:
                self._buckets.clear()
            self.faults = new
            return new

    def take_rate_token(self, client_id: str) -> float | None:
        """Take one request from the client's bucket: None if allowed, else seconds to wait."""
        faults = self.faults
        rate = faults.rate_limit_per_second
        if rate is None:
            return None
        now = time.monotonic()
        burst = float(faults.rate_limit_burst)
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        bucket[0] = tokens
        return (1.0 - tokens) / rate


def in_process_transport(app: Any) -> httpx.AsyncBaseTransport:
    """An httpx transport that runs the ASGI ``app`` in-process, drops as a socket shows them."""
    return _InProcessTransport(app)


class _InProcessTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` that turns an injected drop into the error a real socket gives."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except DroppedConnectionError:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
