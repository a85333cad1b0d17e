"""The snapshot of Protime after a run: the read plus our succeeded calls, stored with the new
delta link once every outcome is recorded (``save_snapshot``); ``after_writes`` works out, purely,
which references our calls changed."""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from typing import TYPE_CHECKING

from sync.domain import ActionKind
from sync.logging import get_logger
from sync.reconcile._people import FULL

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sync.domain import Action, Person
    from sync.reconcile._people import ProtimeRead
    from sync.reconcile._ports import RunState

log = get_logger(__name__)


def after_writes(people: Iterable[Person], succeeded: Sequence[Action]) -> Mapping[int, str | None]:
    """The references our succeeded calls changed: person id -> value now held (None: cleared).

    A value lives on at most one person: a write of V onto P takes V from whoever held it and
    replaces what P held; a delete of V clears it wherever it is. Calls are taken in the order
    they completed (phases keep a delete before the write that needs its person free). Pure.

    Only the changes are returned, as ids and values in id order (no person objects, no dict):
    saving applies them to the persons the snapshot has and ignores the others (the next full
    read adds those).
    """
    if not succeeded:
        return References([], [])
    # Who holds a value matters only while a later call may move it again: values held as read,
    # and values more than one call moves (tracked). A first sync writes each value once onto a
    # person who holds none, so it tracks nothing: sorted lists instead of a set or a dict per
    # call keep the end of a run that wrote many values lower in memory.
    ordered = sorted(a.value for a in succeeded)
    again = {v for v, w in pairwise(ordered) if v == w}
    holder = {
        p.reference: p.id
        for p in people
        if p.reference is not None and _contains(ordered, p.reference)
    }
    del ordered
    first = sorted((pid, value) for value, pid in holder.items())  # holders as read, by id
    tracked = again | holder.keys()
    held = _replay(succeeded, holder, tracked)
    writes = sorted((a for a in succeeded if a.kind is ActionKind.WRITE), key=_target)
    return _final(writes, first, held, tracked)


def _replay(
    succeeded: Sequence[Action], holder: dict[str, int], tracked: set[str]
) -> dict[int, str]:
    """Where each tracked value is after the calls: person id -> the tracked value it holds."""
    held = {pid: value for value, pid in holder.items()}
    for a in succeeded:
        if a.kind is ActionKind.WRITE:
            mine = held.pop(a.protime_id, None)  # a write replaces what the person held
            if mine is not None:
                del holder[mine]
            if a.value in tracked:
                old = holder.get(a.value)  # ... and takes the value from whoever held it
                if old is not None:
                    del held[old]
                holder[a.value] = a.protime_id
                held[a.protime_id] = a.value
        else:
            old = holder.pop(a.value, None)
            if old is not None:
                del held[old]
    return held


def _final(
    writes: list[Action],
    first: list[tuple[int, str]],
    held: dict[int, str],
    tracked: set[str],
) -> References:
    """A written person holds what its last write gave it, unless a later call took that tracked
    value away; a holder as read that was not written lost its value or kept it."""
    ids = array("q")
    values: list[str | None] = []
    k = 0
    for n, a in enumerate(writes):
        pid = a.protime_id
        if n + 1 < len(writes) and writes[n + 1].protime_id == pid:
            continue  # an earlier write onto the same person (the sort is stable)
        while k < len(first) and first[k][0] <= pid:
            other, value = first[k]
            k += 1
            if other < pid and held.get(other) != value:
                ids.append(other)
                values.append(None)
        ids.append(pid)
        values.append(held.get(pid) if a.value in tracked else a.value)
    for other, value in first[k:]:
        if held.get(other) != value:
            ids.append(other)
            values.append(None)
    return References(ids, values)


def _target(a: Action) -> int:
    return a.protime_id


def _contains(ordered: list[str], value: str) -> bool:
    at = bisect_left(ordered, value)
    return at < len(ordered) and ordered[at] == value


class References(Mapping[int, "str | None"]):
    """Person id -> reference, held as two lists in id order (a fraction of a dict's memory)."""

    __slots__ = ("_ids", "_values")

    def __init__(self, ids: Iterable[int], values: list[str | None]) -> None:
        self._ids = ids if isinstance(ids, array) else array("q", ids)
        self._values = values

    def __getitem__(self, pid: int) -> str | None:
        at = bisect_left(self._ids, pid)
        if at == len(self._ids) or self._ids[at] != pid:
            raise KeyError(pid)
        return self._values[at]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


async def save_snapshot(
    *,
    store: RunState,
    read: ProtimeRead,
    people: list[Person],
    succeeded: Sequence[Action],
    run_id: str,
    unconfirmed: int = 0,
) -> None:
    """Store the snapshot as Protime now is (the read plus our succeeded calls) with the new link.

    Called only after every outcome of the run is recorded: then the link may advance.
    ``unconfirmed``: writes Protime accepted without confirming them; the next run reads in full.
    """
    written = after_writes(people, succeeded)
    full = read.kind == FULL
    # A full read replaces the whole snapshot; an incremental one stores the delta on top. Our
    # references go into the same rows (each row is written once).
    await asyncio.to_thread(
        partial(
            store.snapshot.save_people,
            full=people if full else None,
            upserts=() if full else read.changed.values(),
            references=written,
            removed=() if full else read.removed,
            versions=read.versions,
            delta_link=read.delta_link,
            fingerprint=read.fingerprint,
            full_read_at=read.full_read_at,
            now=datetime.now(UTC),
            run_id=run_id,
            unconfirmed_writes=unconfirmed,
            delta_refusals=read.refusals,
        )
    )
    log.info(
        "protime.snapshot_saved",
        read=read.kind,
        changed=len(read.changed) + len(written),
        removed=len(read.removed),
        unconfirmed_writes=unconfirmed,
    )
