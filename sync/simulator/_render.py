"""People as the API renders them: the ``externalReferences=`` parameter and a person's JSON.

Shared by the people endpoints and the delta feed, so a delta item has exactly the layout of
``GET /people``.
"""

from __future__ import annotations

import re
from functools import partial
from json.encoder import encode_basestring as _json_string
from operator import attrgetter
from typing import TYPE_CHECKING

from sync.simulator._http import Resp, error
from sync.simulator._world import KNOWN_COLLECTIONS, PEOPLE, PREDEFINED
from sync.values import name_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.simulator._people import SimPerson
    from sync.simulator._world import World

_PAIR = re.compile(r"\(([^(),]*),([^(),]*)\)")
_MAX_PAIRS = 20
_PREDEFINED_FIELDS = {"@badge-number": "badge_number", "@employee-number": "employee_number"}


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


def ref_names(params: dict[str, str]) -> list[str] | Resp | None:
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


def renderer(
    world: World, names: list[str] | None, *, cached: bool = True
) -> Callable[[SimPerson], bytes]:
    """A function giving one person's JSON, with the ``externalReferences`` map when asked.

    The hot path of a people page: the person's own JSON is cached by the world, and the map
    is spliced in as text with C string escaping, several times cheaper than ``json.dumps``.
    ``cached=False`` for earlier versions of people (the delta's history), which must not
    push the current versions out of the cache.
    """
    person_json = world.person_json if cached else partial(_any_version_json, world)
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


def _any_version_json(world: World, person: SimPerson) -> bytes:
    """A person's JSON, from the cache only when it is the current version."""
    if world.person(person.id) is person:
        return world.person_json(person)
    return person.api_json()
