"""The types the simulator's request handlers share: the bottom floor of the package.

The API, the token endpoint, the delta feed and the admin surface each need the simulator, and the
simulator builds them; they see it through the Protocols here, so no handler module imports
``_simulator`` (nor one another) for a type. This module imports none of the handler modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import random
    from collections import deque

    from sync.simulator._config import Faults, SimulatorConfig
    from sync.simulator._http import Receive
    from sync.simulator._world import World


class LoggedRequest(NamedTuple):
    """One answered API or token request, as ``Simulator.request_log`` keeps it.

    ``path`` is the raw path and ``query`` the raw query string (both still percent-encoded, as
    sent); ``status`` 0 is a dropped connection.
    """

    method: str
    path: str
    query: str
    status: int


class RequestRecord(NamedTuple):
    """One answered API or token request with who sent it and when (``Simulator.request_records``).

    ``tenant`` is the simulator's tenant; ``path`` and ``query`` are as in :class:`LoggedRequest`
    (without the ``/t/<tenant>`` prefix of a multi-tenant simulator); ``started`` is when the
    request arrived and ``ended`` when its answer was ready to send, both ``time.time()`` seconds
    (the real clock, not the movable simulator clock, so records of several tenants and the
    callers' own logs compare); ``caller`` is the ``X-Idsync-Replica`` header when the request has
    one, else its ``User-Agent`` ("" without either).
    """

    tenant: str
    method: str
    path: str
    query: str
    status: int
    started: float
    ended: float
    caller: str


@dataclass(frozen=True, slots=True)
class Token:
    """An issued access token: who holds it, what it may do, until when (simulator clock)."""

    client_id: str
    scopes: frozenset[str]
    expires_at: float
    tenant: str


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated API request, as the route handlers need it."""

    method: str
    parts: list[bytes]
    query: bytes
    headers: dict[bytes, bytes]
    receive: Receive
    token: Token


class SimHost(Protocol):
    """What the API, the token endpoint and the delta feed use of the simulator."""

    @property
    def config(self) -> SimulatorConfig: ...

    @property
    def world(self) -> World: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def api_path(self) -> str: ...

    def now(self) -> float: ...

    def take_rate_token(self, client_id: str) -> float | None: ...

    def register_token(
        self, access_token: str, client_id: str, scopes: frozenset[str]
    ) -> Token: ...

    def valid_token(self, access_token: str) -> Token | None: ...

    def log_request(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        status: int,
        *,
        started: float | None = None,
        caller: bytes = b"",
    ) -> None: ...


class AdminHost(SimHost, Protocol):
    """What the ``/_sim`` admin surface uses of the simulator besides :class:`SimHost`."""

    @property
    def request_log(self) -> deque[LoggedRequest]: ...

    @property
    def request_records(self) -> deque[RequestRecord]: ...

    @property
    def tokens_issued(self) -> int: ...

    def delta_state(self) -> dict[str, Any] | None: ...

    def set_faults(self, **changes: Any) -> Faults: ...

    def reset(self) -> None: ...

    def expire_tokens(self) -> None: ...

    def advance_clock(self, seconds: float) -> None: ...
