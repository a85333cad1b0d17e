"""Custom external references: ``/external-references/<collection>/<name>[/<value>]``.

The router has checked the method and the scope; this module checks the path (§7 names and
values), the query and the body, and answers from the world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sync.simulator._http import (
    BodyTooLargeError,
    Receive,
    Resp,
    b64,
    decode_segment,
    dumps,
    error,
    internal_id,
    link,
    list_cursor,
    page,
    parse_query,
    read_body,
    validation,
)
from sync.simulator._people_api import SCAN_BUDGET
from sync.simulator._world import KNOWN_COLLECTIONS, PutOutcome
from sync.values import name_problem, value_problem

if TYPE_CHECKING:
    from sync.simulator._inject import FaultInjector
    from sync.simulator._types import Call, SimHost

# Path shapes: external-references/collection/name[/value].
REF_LIST_PARTS = 3
REF_ONE_PARTS = 4
_BAD_REQUEST = 400
_REF_LIST_PARAMS = frozenset({"continuationToken"})
_NO_PARAMS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _RefTarget:
    collection: str
    name: str
    value: str | None
    location: str


class ReferenceEndpoints:
    """Read, list, write and delete custom references."""

    def __init__(self, sim: SimHost, inject: FaultInjector) -> None:
        self.sim = sim
        self._inject = inject

    async def handle(self, call: Call) -> Resp:
        """Answer one reference request whose method and scope the router accepted."""
        one = len(call.parts) == REF_ONE_PARTS
        params = parse_query(call.query, _NO_PARAMS if one else _REF_LIST_PARAMS)
        target = self._target(call)
        if isinstance(target, Resp):
            return target
        if target.value is None:
            return self._list(target, params)
        world = self.sim.world
        value = target.value
        missing = f"no {target.name} value {value!r} in {target.collection}"
        if call.method in ("GET", "HEAD"):
            pid = world.reference_target(value, target.name, target.collection)
            if pid is None:
                return error(404, "NotFound", missing)
            return Resp(200, _ref_body(target, pid))
        if call.method == "DELETE":
            if not world.delete_reference(value, name=target.name, collection=target.collection):
                return error(404, "NotFound", missing)
            return Resp(204, json=False)
        return await self._put(call, target)

    def _target(self, call: Call) -> _RefTarget | Resp:
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
        if len(call.parts) == REF_LIST_PARTS:
            return _RefTarget(collection, name, None, f"{self.sim.api_path}/{path}")
        value = decode_segment(call.parts[3])
        problem = value_problem(value, max_length=config.max_value_length)
        if problem is not None:
            return error(400, "BadRequest", "invalid external reference format", [problem])
        return _RefTarget(collection, name, value, f"{self.sim.api_path}/{path}")

    async def _put(self, call: Call, target: _RefTarget) -> Resp:
        body = await _json_body(call.headers, call.receive, self.sim.config.max_body_bytes)
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

    def _list(self, target: _RefTarget, params: dict[str, str]) -> Resp:
        world = self.sim.world
        cursor = list_cursor(params, "r")
        if isinstance(cursor, Resp):
            return cursor

        def next_link(after: int) -> str:
            return link(target.location, [("continuationToken", b64(f"r:{after}"))])

        if self._inject.empty_page():
            return page([], next_link(cursor))
        holders = world.reference_holders(target.name, target.collection)
        size = self.sim.config.page_size
        items: list[bytes] = []
        last = cursor
        for examined, pid in enumerate(world.iter_ids_after(cursor)):
            if len(items) == size or examined >= SCAN_BUDGET:
                return page(items, next_link(last))
            last = pid
            value = holders.get(pid)
            if value is not None:
                items.append(dumps({"value": value, "internalReference": str(pid)}))
        return page(items, None)


async def _json_body(
    headers: dict[bytes, bytes], receive: Receive, limit: int
) -> dict[str, Any] | Resp:
    """The request's JSON object, or the 400 (``validationErrors``) that says what is wrong."""
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


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _ref_body(target: _RefTarget, pid: int) -> bytes:
    return dumps(
        {
            "collection": target.collection,
            "name": target.name,
            "value": target.value,
            "internalReference": str(pid),
        }
    )
