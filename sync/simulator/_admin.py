"""The test-only admin surface under ``/_sim``: seed people, read the full state, counters, faults.

It needs no token on purpose (tests, benchmarks and the demo drive it) and must never be exposed
beyond a developer machine or CI; the real Protime has nothing like it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from sync.simulator._people import PeopleDocumentError, SimPerson, generate_people
from sync.simulator._world import parse_people_document

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from sync.simulator._types import AdminHost

    Handler = Callable[[Request], Awaitable[Response]]

_MAX_GENERATED = 2_000_000
T = TypeVar("T")


def last_of(items: list[T], request: Request) -> list[T]:
    """The last ``?last=N`` of ``items`` (all without the parameter), oldest first."""
    last = request.query_params.get("last")
    if last is None:
        return items
    if not last.isdigit():
        raise PeopleDocumentError("'last' must be a whole number")
    return items[len(items) - min(int(last), len(items)) :]


def guard(handler: Handler) -> Handler:
    """Bad admin input answers 400 (or 404 for an unknown person), never a 500."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except KeyError as exc:
            body = {"error": {"code": "NotFound", "message": f"not found: {exc}"}}
            return JSONResponse(body, 404)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(exc)}}, 400)

    return wrapped


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PeopleDocumentError(f"malformed JSON: {exc}") from None


async def _object(request: Request) -> dict[str, Any]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise PeopleDocumentError("expected a JSON object")
    return body


class _Admin:
    def __init__(self, sim: AdminHost) -> None:
        self.sim = sim
        self.world = sim.world

    async def health(self, _: Request) -> Response:
        return JSONResponse({"ok": True})

    async def state(self, _: Request) -> Response:
        sim, world = self.sim, self.world
        refs = world.all_references()
        return JSONResponse(
            {
                "tenant": sim.config.tenant,
                "people": len(world.people),
                "generation": world.generation,
                "changeSequence": world.change_sequence,
                "history": {"floor": world.history_floor, "changes": world.history_size},
                "delta": sim.delta_state(),
                "requestsLogged": len(sim.request_log),
                "tokens": sim.tokens_issued,
                "now": sim.now(),
                "faults": dataclasses.asdict(sim.faults),
                "references": {f"{c}/{n}": len(v) for (c, n), v in refs.items()},
            }
        )

    async def people_get(self, _: Request) -> Response:
        return JSONResponse(self.world.dump())

    async def people_post(self, request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, dict) and "generate" in body:
            self._generate(body["generate"])
        else:
            people, refs = parse_people_document(body)
            self.world.replace_all(people, refs)
        result = {"people": len(self.world.people), "generation": self.world.generation}
        return JSONResponse(result, 201)

    def _generate(self, spec: object) -> None:
        config = self.sim.config
        if not isinstance(spec, dict):
            raise PeopleDocumentError("'generate' must be an object")
        count = spec.get("count", 0)
        seed = spec.get("seed", config.seed)
        share = spec.get("outOfServiceShare", config.out_of_service_share)
        if not isinstance(count, int) or not 0 <= count <= _MAX_GENERATED:
            raise PeopleDocumentError(f"'count' must be an integer 0..{_MAX_GENERATED}")
        if not isinstance(seed, int):
            raise PeopleDocumentError("'seed' must be an integer")
        if not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise PeopleDocumentError("'outOfServiceShare' must be between 0 and 1")
        people = generate_people(
            count, seed=seed, tenant=config.tenant, out_of_service_share=float(share)
        )
        self.world.replace_all(people)

    async def person_put(self, request: Request) -> Response:
        pid = int(request.path_params["pid"])
        body = await _object(request)
        refs = body.get("externalReferences") or {}
        if not isinstance(refs, dict):
            raise PeopleDocumentError("'externalReferences' must be an object")
        stored = self.world.put_person(SimPerson.from_api({**body, "id": pid}))
        for name, value in refs.items():
            if not name.startswith("@"):
                self.world.set_reference(str(value), pid, name=name)
        return JSONResponse(stored.to_api())

    async def person_delete(self, request: Request) -> Response:
        self.world.remove_person(int(request.path_params["pid"]))
        return Response(status_code=204)

    async def references_get(self, _: Request) -> Response:
        items = [
            {"collection": c, "name": n, "value": v, "internalReference": str(pid)}
            for (c, n), table in sorted(self.world.all_references().items())
            for v, pid in table.items()
        ]
        return JSONResponse({"references": items})

    async def references_post(self, request: Request) -> Response:
        items = (await _object(request)).get("references")
        if not isinstance(items, list):
            raise PeopleDocumentError("expected {'references': [...]}")
        _, refs = parse_people_document({"people": [], "references": items})
        for collection, name, value, pid in refs:
            self.world.set_reference(value, pid, name=name, collection=collection)
        return JSONResponse({"set": len(refs)})

    async def references_delete(self, _: Request) -> Response:
        self.world.clear_references()
        return Response(status_code=204)

    async def counters_get(self, _: Request) -> Response:
        counters = self.world.counters
        return JSONResponse({"requests": counters.as_dict(), "total": counters.count()})

    async def counters_delete(self, _: Request) -> Response:
        self.world.counters.reset()
        return Response(status_code=204)

    async def requests_get(self, request: Request) -> Response:
        log = last_of(list(self.sim.request_log), request)
        items = [r._asdict() for r in log]
        return JSONResponse({"requests": items, "total": len(self.sim.request_log)})

    async def requests_delete(self, _: Request) -> Response:
        self.sim.request_log.clear()
        return Response(status_code=204)

    async def records_get(self, request: Request) -> Response:
        records = last_of(list(self.sim.request_records), request)
        items = [r._asdict() for r in records]
        return JSONResponse({"records": items, "total": len(self.sim.request_records)})

    async def records_delete(self, _: Request) -> Response:
        self.sim.request_records.clear()
        return Response(status_code=204)

    async def faults_get(self, _: Request) -> Response:
        return JSONResponse(dataclasses.asdict(self.sim.faults))

    async def faults_put(self, request: Request) -> Response:
        changes = await _object(request)
        return JSONResponse(dataclasses.asdict(self.sim.set_faults(**changes)))

    async def reset(self, _: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"people": len(self.world.people)})

    async def expire_tokens(self, _: Request) -> Response:
        self.sim.expire_tokens()
        return Response(status_code=204)

    async def clock(self, request: Request) -> Response:
        advance = (await _object(request)).get("advance", 0)
        if not isinstance(advance, (int, float)) or isinstance(advance, bool):
            raise PeopleDocumentError("expected {'advance': seconds}")
        self.sim.advance_clock(float(advance))
        return JSONResponse({"now": self.sim.now()})

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler]] = [
            ("/_sim/health", "GET", self.health),
            ("/_sim/state", "GET", self.state),
            ("/_sim/people", "GET", self.people_get),
            ("/_sim/people", "POST", self.people_post),
            ("/_sim/people/{pid:int}", "PUT", self.person_put),
            ("/_sim/people/{pid:int}", "DELETE", self.person_delete),
            ("/_sim/references", "GET", self.references_get),
            ("/_sim/references", "POST", self.references_post),
            ("/_sim/references", "DELETE", self.references_delete),
            ("/_sim/counters", "GET", self.counters_get),
            ("/_sim/counters", "DELETE", self.counters_delete),
            ("/_sim/requests", "GET", self.requests_get),
            ("/_sim/requests", "DELETE", self.requests_delete),
            ("/_sim/request-records", "GET", self.records_get),
            ("/_sim/request-records", "DELETE", self.records_delete),
            ("/_sim/faults", "GET", self.faults_get),
            ("/_sim/faults", "PUT", self.faults_put),
            ("/_sim/reset", "POST", self.reset),
            ("/_sim/expire-tokens", "POST", self.expire_tokens),
            ("/_sim/clock", "POST", self.clock),
        ]
        return [Route(path, guard(handler), methods=[method]) for path, method, handler in table]


def build_admin(sim: AdminHost) -> Router:
    """The admin router bound to one simulator."""
    return Router(routes=_Admin(sim).routes())
