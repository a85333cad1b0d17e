"""Many tenants in one simulator process: one :class:`Simulator` per tenant behind one ASGI app.

A request reaches its tenant by a path prefix, ``/t/<tenant>/...`` (the default: it needs no name
resolution, and ``127.0.0.1`` does not resolve ``acme.localhost`` everywhere), or by its ``Host``,
``<tenant>.<host_suffix>`` or ``<tenant>.localhost`` (as Protime's ``<tenant>.myprotime.eu``; the
in-process addresses ``http://<tenant>.sim.local`` use it). The tenant's simulator then answers as
a simulator of its own would, with the prefix on every path and link it gives, so a client that
follows ``nextLink`` as a path on its origin stays with the tenant. Nothing is shared between
tenants: people, references, delta, clients and tokens, rate buckets, faults and request logs are
each tenant's own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING, NamedTuple

from sync.simulator._admin import guard, last_of
from sync.simulator._config import SimulatorConfig
from sync.simulator._http import dumps, error, send_resp
from sync.simulator._simulator import Simulator, in_process_transport

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import httpx
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Router

    from sync.simulator._admin import Handler
    from sync.simulator._http import Receive, Scope, Send
    from sync.simulator._types import RequestRecord

# The rule of sync names (sync/names.py), restated: one tenant per sync is the common case, and a
# name that is a DNS label, a path segment and a TOML key as it is needs no escaping anywhere.
TENANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)
TENANT_PREFIX = "/t/"
_RAW_PREFIX = TENANT_PREFIX.encode()
_ADMIN_PREFIX = "/_sim"
_LOCALHOST = "localhost"
_HINTED = 5  # tenants an unknown tenant's 404 names (a benchmark has 200)


def tenant_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a tenant of a multi-tenant simulator, or None when it can."""
    if isinstance(name, str) and _TENANT_NAME.fullmatch(name):
        return None
    return f"tenant name {name!r} must match {TENANT_NAME_PATTERN}"


class TenantUrls(NamedTuple):
    """Where one tenant answers behind a served base URL: idsync's settings and the API root."""

    base_url: str  # IDSYNC_PROTIME__BASE_URL
    token_url: str  # IDSYNC_PROTIME__TOKEN_URL
    api_url: str  # for curl and scripts; idsync adds the API path itself


class MultiSimulator:
    """Tenants by name, each a :class:`Simulator` of its ``SimulatorConfig`` (``tenant`` is set to
    the name), mounted at ``/t/<name>``.

    ``MultiSimulator({"acme": SimulatorConfig(people=10), "globex": None})``: None is the default
    configuration. ``clock`` is every tenant's clock (see :class:`Simulator`).
    """

    def __init__(
        self,
        tenants: Mapping[str, SimulatorConfig | None],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not tenants:
            raise ValueError("a multi-tenant simulator needs at least one tenant")
        for name in tenants:
            if (problem := tenant_name_problem(name)) is not None:
                raise ValueError(problem)
        self._sims: dict[str, Simulator] = {}
        for name, given in tenants.items():
            config = given if given is not None else SimulatorConfig()
            if config.tenant != name:
                config = dataclasses.replace(config, tenant=name)
            self._sims[name] = Simulator(config, clock=clock, path_prefix=TENANT_PREFIX + name)
        # Host names that route to a tenant, as the Host header sends them (lower case, no port).
        self._hosts: dict[str, Simulator] = {}
        for name, sim in self._sims.items():
            self._hosts[f"{name}.{sim.config.host_suffix}"] = sim
            self._hosts[f"{name}.{_LOCALHOST}"] = sim
        self._admin: Router | None = None

    # ---- tenants -------------------------------------------------------------------------------

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenant names, in the order given."""
        return tuple(self._sims)

    def tenant(self, name: str) -> Simulator:
        """The simulator of tenant ``name`` (its world, faults, tokens and logs); ``KeyError`` when
        there is none."""
        try:
            return self._sims[name]
        except KeyError:
            raise KeyError(f"no tenant {name!r}") from None

    def __iter__(self) -> Iterator[Simulator]:
        return iter(self._sims.values())

    def __len__(self) -> int:
        return len(self._sims)

    @property
    def people(self) -> int:
        """People in all tenants together."""
        return sum(len(sim.world.people) for sim in self._sims.values())

    # ---- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the in-process transport answers the multi-tenant admin surface; each tenant also
        answers there under ``/t/<tenant>`` and at its own ``tenant(name).base_url``."""
        return "http://sim.local"

    def urls(self, tenant: str, base_url: str | None = None) -> TenantUrls:
        """Tenant ``tenant``'s addresses behind ``base_url`` (what ``serve_in_thread`` yields, or
        ``idsync simulator`` prints); in-process (:attr:`base_url`) when None."""
        sim = self.tenant(tenant)
        root = (self.base_url if base_url is None else base_url).rstrip("/")
        return TenantUrls(root + sim.path_prefix, root + sim.token_path, root + sim.api_path)

    # ---- request records -----------------------------------------------------------------------

    def request_records(self, tenant: str | None = None) -> list[RequestRecord]:
        """The request records of one tenant, or of every tenant merged in order of arrival."""
        if tenant is not None:
            return list(self.tenant(tenant).request_records)
        merged = [r for sim in self._sims.values() for r in list(sim.request_records)]
        merged.sort(key=lambda r: r.started)
        return merged

    def clear_request_records(self) -> None:
        """Empty every tenant's request records (their request logs stay)."""
        for sim in self._sims.values():
            sim.request_records.clear()

    def reset(self) -> None:
        """Every tenant back to its configured start (``Simulator.reset``)."""
        for sim in self._sims.values():
            sim.reset()

    # ---- the ASGI app --------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request to its tenant (path prefix first, then ``Host``), or to the
        multi-tenant admin surface under ``/_sim``."""
        kind = scope["type"]
        if kind == "http":
            sim = self._route(scope)
            if sim is not None:
                await sim.app(scope, receive, send)
            elif scope["path"].startswith(_ADMIN_PREFIX):
                await self._admin_app()(scope, receive, send)
            else:
                await self._unknown(scope, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that runs the app in-process (no socket)."""
        return in_process_transport(self.app)

    def _route(self, scope: Scope) -> Simulator | None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(_RAW_PREFIX):
            name, _, _ = raw[len(_RAW_PREFIX) :].partition(b"/")
            return self._sims.get(name.decode("latin-1"))
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1").lower()
                return self._hosts.get(_without_port(host))
        return None

    async def _unknown(self, scope: Scope, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(_RAW_PREFIX):
            name = raw[len(_RAW_PREFIX) :].partition(b"/")[0].decode("latin-1")
            resp = error(404, "NotFound", f"unknown tenant {name!r}", [self._tenants_hint()])
        else:
            reason = f"a tenant's paths start with {TENANT_PREFIX}<tenant>/"
            resp = error(404, "NotFound", "no tenant in the path or the Host", [reason])
        await send_resp(send, resp)

    def _tenants_hint(self) -> str:
        names = list(self._sims)
        shown = ", ".join(names[:_HINTED])
        if len(names) > _HINTED:
            shown += f" and {len(names) - _HINTED} more"
        return f"tenants: {shown} (GET /_sim/tenants lists them)"

    def _admin_app(self) -> Router:
        # Built on first use: starlette is imported by each tenant's admin anyway, but the router
        # of the whole process is needed only when a test asks it something.
        if self._admin is None:
            self._admin = _build_admin(self)
        return self._admin


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host  # an IPv6 literal never names a tenant
    name = host.rpartition(":")[0] if ":" in host else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return ""


def _build_admin(multi: MultiSimulator) -> Router:
    """The admin surface of the whole process (each tenant has its own under ``/t/<tenant>``)."""
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route, Router

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True, "tenants": len(multi)})

    async def tenants(_: Request) -> Response:
        items = [
            {
                "tenant": sim.config.tenant,
                "people": len(sim.world.people),
                "apiPath": sim.api_path,
                "tokenPath": sim.token_path,
                "requestsLogged": len(sim.request_records),
            }
            for sim in multi
        ]
        return JSONResponse({"tenants": items})

    async def records_get(request: Request) -> Response:
        every = multi.request_records(request.query_params.get("tenant"))
        items = [r._asdict() for r in last_of(every, request)]
        body = dumps({"records": items, "total": len(every)})
        return Response(body, media_type="application/json")

    async def records_delete(_: Request) -> Response:
        multi.clear_request_records()
        return Response(status_code=204)

    async def reset(_: Request) -> Response:
        multi.reset()
        return JSONResponse({"tenants": len(multi), "people": multi.people})

    table: list[tuple[str, str, Handler]] = [
        ("/_sim/health", "GET", health),
        ("/_sim/tenants", "GET", tenants),
        ("/_sim/request-records", "GET", records_get),
        ("/_sim/request-records", "DELETE", records_delete),
        ("/_sim/reset", "POST", reset),
    ]
    return Router(
        routes=[Route(path, guard(handler), methods=[method]) for path, method, handler in table]
    )
