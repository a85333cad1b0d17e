"""Protime's ``changeVersion``: which of several changes to one person is the one that holds.

Protime publishes that a set of changes can list one person more than once, in no promised order,
and that an item whose ``changeVersion`` (a string that compares lexically) is older than one
already received for the same id is ignored. :func:`fold_changes` applies that rule to the
changes of one read, and against the version the snapshot already holds for each person. Pure:
no I/O, no shared state.

A full read keeps every person's version for the snapshot in a :class:`Versions` table: one
bytes buffer and two arrays instead of a string object per person.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sync.domain import Person
    from sync.protime import Change


class Versions(Mapping[int, "str | None"]):
    """Person id -> ``changeVersion`` (None: the person came without one), compactly.

    Filled page by page with :meth:`add` in read order, then looked up by id. Versions are
    ASCII in practice; any other text is stored as UTF-8 and read back unchanged.
    """

    __slots__ = ("_blob", "_checked", "_ends", "_ids", "_order")

    def __init__(self) -> None:
        self._ids = array("q")
        self._ends = array("Q")
        self._blob = bytearray()
        self._order: array[int] | None = None  # positions in id order, made on the first look-up
        self._checked = False  # whether _order is up to date

    def add(self, people: Iterable[Person], versions: Iterable[str | None]) -> None:
        """Append one page: ``versions[i]`` is that of ``people[i]``."""
        ids, ends, blob = self._ids, self._ends, self._blob
        for p, version in zip(people, versions, strict=True):
            ids.append(p.id)
            if version:
                blob += version.encode()
            ends.append(len(blob))
        self._checked = False  # sorted again on the next look-up

    def _positions(self) -> array[int] | None:
        """Positions in id order; None when the read came in id order (the usual case)."""
        if not self._checked:
            ids = self._ids
            in_order = all(ids[k] < ids[k + 1] for k in range(len(ids) - 1))
            self._order = (
                None if in_order else array("Q", sorted(range(len(ids)), key=ids.__getitem__))
            )
            self._checked = True
        return self._order

    def _at(self, position: int) -> str | None:
        start = self._ends[position - 1] if position else 0
        end = self._ends[position]
        return self._blob[start:end].decode() if end > start else None

    def _find(self, pid: int) -> int:
        """The position of ``pid``, or -1."""
        ids = self._ids
        order = self._positions()
        if order is None:
            at = bisect_left(ids, pid)
            return at if at < len(ids) and ids[at] == pid else -1
        lo, hi = 0, len(order)
        while lo < hi:  # bisect over the positions in id order
            mid = (lo + hi) // 2
            if ids[order[mid]] < pid:
                lo = mid + 1
            else:
                hi = mid
        return order[lo] if lo < len(order) and ids[order[lo]] == pid else -1

    def __getitem__(self, pid: int) -> str | None:
        at = self._find(pid)
        if at < 0:
            raise KeyError(pid)
        return self._at(at)

    def get(self, pid: int, default: str | None = None) -> str | None:  # type: ignore[override]
        # Saving a full read looks up every person: no KeyError raised and caught per miss.
        at = self._find(pid)
        return self._at(at) if at >= 0 else default

    def __iter__(self) -> Iterator[int]:
        ids = self._ids
        order = self._positions()
        return iter(ids) if order is None else (ids[k] for k in order)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(slots=True)
class Folded:
    """What a set of changes leaves, once each person's newest change is taken.

    ``changed``: the persons inserted or updated, as their newest item gives them; ``removed``:
    the ids whose newest change is a Delete; ``versions``: the version of each, kept in the
    snapshot; ``unknown_references``: changed persons whose item carried no
    ``externalReferences`` map (they keep the references the snapshot knew); ``ignored``: items
    dropped as older than another item or than the snapshot's version.
    """

    changed: dict[int, Person] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    versions: dict[int, str] = field(default_factory=dict)
    unknown_references: set[int] = field(default_factory=set)
    ignored: int = 0


def newest(changes: Iterable[Change], best: dict[int, Change] | None = None) -> dict[int, Change]:
    """Each person's newest change: the greatest ``changeVersion`` (compared as strings); of two
    equal versions the one received later. ``best`` (the newest of the pages before) is updated
    in place and returned."""
    best = {} if best is None else best
    for change in changes:
        held = best.get(change.id)
        if held is None or change.version >= held.version:
            best[change.id] = change
    return best


def fold_changes(best: Mapping[int, Change], *, held: Mapping[int, str | None]) -> Folded:
    """The changes that hold, given each person's newest change (:func:`newest`) and the
    versions the snapshot already holds (``held``: id -> version, for the ids it knows).

    A change older than the snapshot's version is ignored; an equal one applies (the same
    state, read again).
    """
    folded = Folded()
    for pid, change in best.items():
        known = held.get(pid)
        if known is not None and change.version < known:
            folded.ignored += 1
            continue
        folded.versions[pid] = change.version
        if change.person is None:
            folded.removed.add(pid)
            continue
        folded.changed[pid] = change.person
        if not change.references_known:
            folded.unknown_references.add(pid)
    return folded
