"""The in-memory world: people, custom external references, the change history and request counters.

Every mutation goes through one re-entrant lock, because with ``serve_in_thread`` the server's
event loop and a test thread touch the world at the same time. The lock is uncontended in the
common case and costs well under a microsecond.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from sync.simulator._people import PeopleDocumentError, SimPerson

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

PEOPLE = "people"
# Collections the API knows (the Connector API docs and the collections people references are used in).
# Only `people` holds objects in the simulator; the others exist so their names are not "unknown".
KNOWN_COLLECTIONS = frozenset(
    {
        "people",
        "absence-definitions",
        "activity-definitions",
        "counter-definitions",
        "shift-definitions",
        "terminals",
        "clockings",
        "access-clockings",
        "absences",
        "activity-durations",
        "counter-instances",
        "assignments",
        "breaks",
        "calculated-totals",
        "paid-presences",
        "work-interruptions",
        "contracts",
        "departments",
        "employers",
    }
)
PREDEFINED: Mapping[str, frozenset[str]] = {
    "people": frozenset({"@badge-number", "@employee-number"}),
    "absence-definitions": frozenset({"@absence-code"}),
    "activity-definitions": frozenset({"@data-entry-code", "@external-reference"}),
    "counter-definitions": frozenset({"@counter-code"}),
    "shift-definitions": frozenset({"@shift-code"}),
    "terminals": frozenset({"@external-code"}),
}


# The change history keeps at most this many changes; past it the oldest tenth is forgotten (and a
# delta link whose cursor falls before what is kept answers 410, as if it had expired).
MAX_HISTORY = 1_000_000


class Change(NamedTuple):
    """One change of a person: its change sequence, the person's id, and the person as it was
    right after the change (None for a removal)."""

    seq: int
    person_id: int
    person: SimPerson | None


_SEQ = attrgetter("seq")


class PutOutcome(Enum):
    """What a custom-reference PUT did (or why it did nothing)."""

    CREATED = "created"
    UPDATED = "updated"
    NO_OBJECT = "no-object"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class PutResult:
    outcome: PutOutcome
    # For CONFLICT: the value the person already holds under this name.
    held_value: str | None = None


class _RefTable:
    """Values of one custom reference name in one collection; a value and a person map 1:1."""

    __slots__ = ("by_person", "by_value")

    def __init__(self) -> None:
        self.by_value: dict[str, int] = {}
        self.by_person: dict[int, str] = {}

    def unset_value(self, value: str) -> None:
        pid = self.by_value.pop(value, None)
        if pid is not None and self.by_person.get(pid) == value:
            del self.by_person[pid]

    def unset_person(self, pid: int) -> None:
        value = self.by_person.pop(pid, None)
        if value is not None and self.by_value.get(value) == pid:
            del self.by_value[value]

    def set(self, value: str, pid: int) -> None:
        self.unset_value(value)
        self.unset_person(pid)
        self.by_value[value] = pid
        self.by_person[pid] = value


# Labels that name a group of labels in RequestCounters.count: "people.delta" was the one label
# of every delta request before the delta had its own path; it now sums the three delta labels.
LABEL_GROUPS: Mapping[str, frozenset[str]] = {
    "people.delta": frozenset({"people.delta_start", "people.delta_page", "delta.changes"}),
}


class RequestCounters:
    """Requests answered, per endpoint label and status (status 0 = connection dropped)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    def record(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        self._counts[key] = self._counts.get(key, 0) + 1

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        """How many requests matched the endpoint label and/or status (None = any).

        A group label of ``LABEL_GROUPS`` (``people.delta``) counts every label of its group.
        """
        labels = LABEL_GROUPS.get(endpoint, frozenset({endpoint})) if endpoint else None
        return sum(
            n
            for (ep, st), n in list(self._counts.items())
            if (labels is None or ep in labels) and (status is None or st == status)
        )

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {status: count}}`` with statuses as strings (JSON-ready)."""
        out: dict[str, dict[str, int]] = {}
        for (ep, st), n in sorted(self._counts.items()):
            out.setdefault(ep, {})[str(st)] = n
        return out

    def reset(self) -> None:
        self._counts.clear()


class World:
    """People, references and the change history of one simulated tenant.

    The history lists every change since ``history_floor`` (each change of a person, not only its
    latest), as the delta feed needs it. Loading a world (``replace_all``) sets the change
    versions 1..N without history: no delta can reach back before a load, so a world of 250,000
    people starts with an empty history. The delta feed forgets what no live link can ask for
    (``forget_changes_upto``) and the history never holds more than ``MAX_HISTORY`` changes.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._people: dict[int, SimPerson] = {}
        self._ids: list[int] = []
        self._by_badge: dict[str, int] = {}
        self._by_employee_number: dict[str, set[int]] = {}
        self._refs: dict[tuple[str, str], _RefTable] = {}
        self._json: dict[int, tuple[SimPerson, bytes]] = {}
        self._seq = 0
        # Every change with a sequence above _floor, in sequence order.
        self._history: list[Change] = []
        self._floor = 0
        self.generation = 0
        self.counters = RequestCounters()

    # ---- reading -------------------------------------------------------------------------------

    @property
    def people(self) -> Mapping[int, SimPerson]:
        """A read-only live view of the people by internal id."""
        return MappingProxyType(self._people)

    def people_list(self) -> list[SimPerson]:
        """All people, ordered by internal id."""
        with self._lock:
            return [self._people[pid] for pid in self._ids]

    def person(self, pid: int) -> SimPerson | None:
        return self._people.get(pid)

    @property
    def change_sequence(self) -> int:
        """The sequence number of the latest change (delta tokens remember it)."""
        return self._seq

    def person_json(self, person: SimPerson) -> bytes:
        """The compact API JSON of one person (no references), cached until it changes.

        The cache is keyed on the person object itself, so a reader racing a change never pairs
        a new person with the old JSON.
        """
        cached = self._json.get(person.id)
        if cached is None or cached[0] is not person:
            cached = (person, person.api_json())
            self._json[person.id] = cached
        return cached[1]

    def page_after(self, after: int, limit: int) -> tuple[list[SimPerson], bool]:
        """Up to ``limit`` people with ids above ``after`` (ascending), and whether more follow."""
        with self._lock:
            start = bisect.bisect_right(self._ids, after)
            ids = self._ids[start : start + limit]
            return [self._people[pid] for pid in ids], start + limit < len(self._ids)

    def iter_ids_after(self, after: int) -> Iterator[int]:
        """Person ids greater than ``after``, ascending (a snapshot of the id list)."""
        with self._lock:
            ids = self._ids[bisect.bisect_right(self._ids, after) :]
        return iter(ids)

    def by_badge(self, badge: str) -> int | None:
        return self._by_badge.get(badge)

    def by_employee_number(self, number: str) -> frozenset[int]:
        return frozenset(self._by_employee_number.get(number, ()))

    def has_object(self, collection: str, internal_id: int) -> bool:
        """Whether ``collection`` holds an object with this internal id (only people exist here)."""
        return collection == PEOPLE and internal_id in self._people

    def references(self, name: str = "HRMID", collection: str = PEOPLE) -> dict[str, int]:
        """A copy of ``value -> internal id`` for one custom reference name."""
        table = self._refs.get((collection, name))
        with self._lock:
            return dict(table.by_value) if table else {}

    def all_references(self) -> dict[tuple[str, str], dict[str, int]]:
        """Copies of every custom reference table, keyed by ``(collection, name)``."""
        with self._lock:
            return {key: dict(t.by_value) for key, t in self._refs.items() if t.by_value}

    def reference_of(
        self, internal_id: int, name: str = "HRMID", collection: str = PEOPLE
    ) -> str | None:
        """The value ``internal_id`` holds for ``name``, if any."""
        table = self._refs.get((collection, name))
        return table.by_person.get(internal_id) if table else None

    def reference_target(
        self, value: str, name: str = "HRMID", collection: str = PEOPLE
    ) -> int | None:
        """The internal id ``value`` points at, if any."""
        table = self._refs.get((collection, name))
        return table.by_value.get(value) if table else None

    def reference_holders(self, name: str, collection: str = PEOPLE) -> Mapping[int, str]:
        """Live ``internal id -> value`` view for one name (used to page reference lists)."""
        table = self._refs.get((collection, name))
        return MappingProxyType(table.by_person) if table else MappingProxyType({})

    @property
    def history_floor(self) -> int:
        """The history holds every change with a sequence above this one (and none at or below)."""
        return self._floor

    @property
    def history_size(self) -> int:
        """How many changes the history holds."""
        return len(self._history)

    def changes_between(self, after: int, upto: int) -> list[Change] | None:
        """Every change with ``after < sequence <= upto``, in sequence order (a person may appear
        several times); None when the history no longer reaches back to ``after``."""
        with self._lock:
            if after < self._floor:
                return None
            history = self._history
            start = bisect.bisect_right(history, after, key=_SEQ)
            end = bisect.bisect_right(history, upto, lo=start, key=_SEQ)
            return history[start:end]

    def forget_changes_upto(self, seq: int) -> None:
        """Drop the changes up to ``seq`` (no live delta link can ask for them any more)."""
        with self._lock:
            if seq <= self._floor:
                return
            seq = min(seq, self._seq)
            del self._history[: bisect.bisect_right(self._history, seq, key=_SEQ)]
            self._floor = seq

    # ---- changing people -----------------------------------------------------------------------

    def _log_change(self, seq: int, pid: int, person: SimPerson | None) -> None:
        history = self._history
        history.append(Change(seq, pid, person))
        if len(history) > MAX_HISTORY:
            drop = MAX_HISTORY // 10
            self._floor = history[drop - 1].seq
            del history[:drop]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _index(self, person: SimPerson) -> None:
        if person.badge_number is not None:
            self._by_badge[person.badge_number] = person.id
        if person.employee_number is not None:
            self._by_employee_number.setdefault(person.employee_number, set()).add(person.id)

    def _unindex(self, person: SimPerson) -> None:
        if person.badge_number is not None and self._by_badge.get(person.badge_number) == person.id:
            del self._by_badge[person.badge_number]
        if person.employee_number is not None:
            holders = self._by_employee_number.get(person.employee_number)
            if holders is not None:
                holders.discard(person.id)
                if not holders:
                    del self._by_employee_number[person.employee_number]

    def _check_badge(self, person: SimPerson) -> None:
        if person.badge_number is None:
            return
        holder = self._by_badge.get(person.badge_number)
        if holder is not None and holder != person.id:
            raise ValueError(
                f"badge number {person.badge_number!r} already belongs to person {holder}"
            )

    def _store(self, person: SimPerson) -> SimPerson:
        old = self._people.get(person.id)
        if old is not None:
            self._unindex(old)
        else:
            bisect.insort(self._ids, person.id)
        seq = self._next_seq()
        person = person.with_version(seq)
        self._people[person.id] = person
        self._index(person)
        self._json.pop(person.id, None)
        self._log_change(seq, person.id, person)
        return person

    def add_person(self, **fields: Any) -> SimPerson:
        """Insert a new person (``id`` defaults to the highest id + 1); it appears in the delta feed."""
        with self._lock:
            if fields.get("id") is None:
                fields["id"] = (self._ids[-1] if self._ids else 1000) + 1
            fields.pop("change_version", None)
            person = SimPerson(**fields)
            if person.id in self._people:
                raise ValueError(f"person {person.id} already exists")
            self._check_badge(person)
            return self._store(person)

    def put_person(self, person: SimPerson) -> SimPerson:
        """Insert or replace a person as given (its change version is assigned here)."""
        with self._lock:
            self._check_badge(person)
            return self._store(person)

    def update_person(self, pid: int, **changes: Any) -> SimPerson:
        """Change some fields of an existing person; ``KeyError`` when unknown."""
        with self._lock:
            old = self._people[pid]
            changes.pop("change_version", None)
            if "id" in changes and changes["id"] != pid:
                raise ValueError("a person's id cannot change")
            person = dataclasses.replace(old, **changes)
            self._check_badge(person)
            return self._store(person)

    def remove_person(self, pid: int) -> None:
        """Delete a person and every custom reference pointing at it; ``KeyError`` when unknown."""
        with self._lock:
            old = self._people.pop(pid)
            self._unindex(old)
            del self._ids[bisect.bisect_left(self._ids, pid)]
            self._json.pop(pid, None)
            self._log_change(self._next_seq(), pid, None)
            for (collection, _name), table in self._refs.items():
                if collection == PEOPLE:
                    table.unset_person(pid)

    def replace_all(
        self,
        people: Iterable[SimPerson],
        references: Iterable[tuple[str, str, str, int]] = (),
    ) -> None:
        """Start a new world: these people and ``(collection, name, value, id)`` references.

        Every delta token issued before becomes stale (410), as after a restore on the real side.
        The people get change versions 1..N without history (no delta reaches back before a load).
        """
        with self._lock:
            self._people = {}
            self._by_badge = {}
            self._by_employee_number = {}
            self._refs = {}
            self._json = {}
            self._history = []
            self._seq = 0
            self.generation += 1
            ordered = sorted(people, key=lambda p: p.id)
            for person in ordered:
                if person.id in self._people:
                    raise ValueError(f"person {person.id} appears twice")
                self._check_badge(person)
                seq = self._next_seq()
                if person.change_version != seq:
                    person = person.with_version(seq)  # noqa: PLW2901
                self._people[person.id] = person
                self._index(person)
            self._floor = self._seq
            self._ids = [p.id for p in ordered]
            for collection, name, value, pid in references:
                if not self.has_object(collection, pid):
                    raise ValueError(
                        f"reference {name}={value!r} points at unknown {collection} {pid}"
                    )
                self.set_reference(value, pid, name=name, collection=collection)

    # ---- changing references -------------------------------------------------------------------

    def set_reference(
        self, value: str, internal_id: int, *, name: str = "HRMID", collection: str = PEOPLE
    ) -> None:
        """Point ``value`` at ``internal_id`` directly (test seam: no §7 checks, replace semantics).

        The object must exist (``ValueError`` otherwise): Protime cannot hold a dangling reference.
        """
        with self._lock:
            if not self.has_object(collection, internal_id):
                raise ValueError(f"no {collection} object with internal id {internal_id}")
            self._refs.setdefault((collection, name), _RefTable()).set(value, internal_id)

    def delete_reference(
        self, value: str, *, name: str = "HRMID", collection: str = PEOPLE
    ) -> bool:
        """Remove ``value``; whether it existed."""
        with self._lock:
            table = self._refs.get((collection, name))
            if table is None or value not in table.by_value:
                return False
            table.unset_value(value)
            return True

    def clear_references(self) -> None:
        with self._lock:
            self._refs = {}

    def put_reference(
        self, collection: str, name: str, value: str, internal_id: int, *, replace: bool
    ) -> PutResult:
        """The PUT upsert of §7: create or re-point ``value``; one value per person per name."""
        with self._lock:
            if not self.has_object(collection, internal_id):
                return PutResult(PutOutcome.NO_OBJECT)
            table = self._refs.get((collection, name))
            if table is None:
                table = self._refs[(collection, name)] = _RefTable()
            existing = table.by_value.get(value)
            held = table.by_person.get(internal_id)
            if held is not None and held != value and not replace:
                return PutResult(PutOutcome.CONFLICT, held_value=held)
            table.set(value, internal_id)
            return PutResult(PutOutcome.CREATED if existing is None else PutOutcome.UPDATED)

    # ---- whole state ---------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The full state in the people-file format (people carry their custom references)."""
        with self._lock:
            by_person: dict[int, dict[str, str]] = {}
            others: list[dict[str, Any]] = []
            for (collection, name), table in sorted(self._refs.items()):
                for value, pid in table.by_value.items():
                    if collection == PEOPLE:
                        by_person.setdefault(pid, {})[name] = value
                    else:  # pragma: no cover - only people hold objects
                        others.append(_ref_json(collection, name, value, pid))
            people = []
            for pid in self._ids:
                item = self._people[pid].to_api()
                item["externalReferences"] = by_person.get(pid, {})
                people.append(item)
            return {"people": people, "references": others} if others else {"people": people}


def _ref_json(collection: str, name: str, value: str, pid: int) -> dict[str, Any]:
    return {"collection": collection, "name": name, "value": value, "internalReference": str(pid)}


def parse_people_document(data: object) -> tuple[list[SimPerson], list[tuple[str, str, str, int]]]:
    """People and references from a people file / admin body; ``ValueError`` says what is wrong.

    Accepted: a list of people, or ``{"people": [...], "references": [...]}``. A person's
    ``externalReferences`` map sets custom references of ``people`` (``@`` names are derived from
    the fields and ignored).
    """
    raw_refs: object = []
    if isinstance(data, dict):
        unknown = set(data) - {"people", "references"}
        if unknown:
            raise PeopleDocumentError(f"unknown key(s): {', '.join(sorted(unknown))}")
        raw_people = data.get("people", [])
        raw_refs = data.get("references", [])
    else:
        raw_people = data
    if not isinstance(raw_people, list) or not isinstance(raw_refs, list):
        raise PeopleDocumentError("'people' and 'references' must be lists")
    people: list[SimPerson] = []
    refs: list[tuple[str, str, str, int]] = []
    for item in raw_people:
        person = SimPerson.from_api(item)
        people.append(person)
        ext = item.get("externalReferences")
        ext = {} if ext is None else ext
        if not isinstance(ext, dict):
            raise PeopleDocumentError(f"person {person.id}: 'externalReferences' must be an object")
        for name, value in ext.items():
            if name.startswith("@"):
                continue
            if not isinstance(value, str):
                raise PeopleDocumentError(f"person {person.id}: reference {name} must be a string")
            refs.append((PEOPLE, name, value, person.id))
    refs.extend(_parse_ref(ref) for ref in raw_refs)
    return people, refs


def _parse_ref(ref: object) -> tuple[str, str, str, int]:
    if not isinstance(ref, dict):
        raise PeopleDocumentError("a reference must be an object")
    collection = ref.get("collection", PEOPLE)
    name = ref.get("name", "HRMID")
    value = ref.get("value")
    internal = ref.get("internalReference")
    if not all(isinstance(x, str) for x in (collection, name, value)):
        raise PeopleDocumentError("reference 'collection', 'name' and 'value' must be strings")
    if isinstance(internal, str) and internal.isdigit():
        internal = int(internal)
    if not isinstance(internal, int) or isinstance(internal, bool):
        raise PeopleDocumentError("reference 'internalReference' must be an internal id")
    return str(collection), str(name), str(value), internal
