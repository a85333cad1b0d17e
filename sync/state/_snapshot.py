"""The Protime people as last seen, and the people delta feed's position (incremental reads).

A full read saves every person (only the rows that differ are written); an incremental run loads
them, applies the delta and its own successful writes, and saves only what moved. The run's own
writes come as references to set (person id -> value) and go into the same rows: each row is
written once. The snapshot and
the feed row (the delta link to call next) change in one transaction, so a link is never stored
without the people it was read with.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, update

from sync.domain import Person
from sync.state._base import (
    _STREAM_ROWS,
    _WRITE_BATCH,
    StoreBase,
    _chunks,
)
from sync.state._models import PROTIME_FEED, PROTIME_PEOPLE

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Connection

    from sync.strings import StringPool

FEED = "people"
_P = PROTIME_PEOPLE.c
_F = PROTIME_FEED.c
_FIELDS = ("employee_number", "badge_number", "email", "reference", "out_of_service")
_STORED = (*_FIELDS, "change_version")  # what a save writes: the person and its version
# Saving the snapshot or forgetting the link unsettles: only a run that settles sets these.
UNSETTLED = {"settled_key": None, "settled_run_id": None, "settled_event_id": None}


@dataclass(frozen=True, slots=True)
class PeopleFeed:
    """Where the people delta feed stands (``protime_feed``)."""

    delta_link: str | None
    fingerprint: str
    full_read_at: datetime
    updated_at: datetime
    run_id: str | None = None
    settled_key: str | None = None  # the inputs of the last run that settled (migration 0007)
    # Writes accepted without confirmation (the next run reads in full), and runs in a row
    # whose stored link was refused (migration 0008).
    unconfirmed_writes: int = 0
    delta_refusals: int = 0


NO_REFERENCES: Mapping[int, str | None] = MappingProxyType({})


def _row(
    sync: str,
    p: Person,
    references: Mapping[int, str | None],
    versions: Mapping[int, str | None],
) -> dict[str, Any]:
    # Bound names differ from the columns': an UPDATE reserves the column names for its SET.
    fields = _fields(p, references, versions)
    return {
        "b_sync": sync,
        "b_id": p.id,
        **{f"v_{n}": v for n, v in zip(_STORED, fields, strict=True)},
    }


def _fields(
    p: Person, references: Mapping[int, str | None], versions: Mapping[int, str | None]
) -> tuple[Any, ...]:
    """The stored columns of ``p``, with the reference ``references`` gives it, if any, and its
    version from ``versions``."""
    reference = references.get(p.id, p.reference) if references else p.reference
    version = versions.get(p.id) if versions else None
    return (p.employee_number, p.badge_number, p.email, reference, p.out_of_service, version)


def _same(value: str | None) -> str | None:
    return value


class SnapshotStore(StoreBase):
    """The ``protime_people`` snapshot and the ``protime_feed`` row."""

    def people_feed(self) -> PeopleFeed | None:
        """The feed row, or None before the first full read was saved."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(
                    _F.delta_link,
                    _F.fingerprint,
                    _F.full_read_at,
                    _F.updated_at,
                    _F.run_id,
                    _F.settled_key,
                    _F.unconfirmed_writes,
                    _F.delta_refusals,
                ).where(_F.sync == self._sync, _F.name == FEED)
            ).first()
        if row is None:
            return None
        link, fingerprint, full_read_at, updated_at, run_id, settled, unconfirmed, refusals = row
        return PeopleFeed(
            delta_link=link,
            fingerprint=fingerprint,
            full_read_at=full_read_at,
            updated_at=updated_at,
            run_id=run_id,
            settled_key=settled,
            unconfirmed_writes=unconfirmed or 0,
            delta_refusals=refusals or 0,
        )

    def people_versions(self, *, ids: Sequence[int]) -> dict[int, str | None]:
        """The ``changeVersion`` the snapshot holds for each of ``ids`` it knows."""
        versions: dict[int, str | None] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                rows = conn.execute(
                    select(_P.id, _P.change_version).where(_P.sync == self._sync, _P.id.in_(chunk))
                )
                versions.update((pid, version) for pid, version in rows.tuples())
        return versions

    def load_people(self, *, strings: StringPool | None = None) -> list[Person]:
        """Every person of the snapshot, ordered by id, as the compact objects a read makes;
        with ``strings``, their keys and references are the pool's objects (:mod:`sync.strings`)."""
        share = strings.share if strings is not None else _same
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_P.id, *(_P[name] for name in _FIELDS))
                .where(_P.sync == self._sync)
                .order_by(_P.id)
                .execution_options(yield_per=_STREAM_ROWS)
            ).tuples()
            return [
                Person(
                    id=pid,
                    employee_number=share(number),
                    badge_number=share(badge),
                    email=share(email),
                    reference=share(reference),
                    out_of_service=bool(gone),
                )
                for pid, number, badge, email, reference, gone in rows
            ]

    def save_people(
        self,
        *,
        full: Sequence[Person] | None = None,
        upserts: Iterable[Person] = (),
        removed: Collection[int] = (),
        references: Mapping[int, str | None] = NO_REFERENCES,
        versions: Mapping[int, str | None] = NO_REFERENCES,
        delta_link: str | None,
        fingerprint: str,
        full_read_at: datetime,
        now: datetime,
        run_id: str | None,
        unconfirmed_writes: int = 0,
        delta_refusals: int = 0,
    ) -> None:
        """Store the snapshot and the feed position together, in one transaction.

        ``full`` (a full read) replaces the whole snapshot: the stored rows are streamed and
        compared, and only those that differ are written. ``upserts`` and ``removed`` then apply
        on top (an incremental run gives only these: the delta). ``references`` (person id ->
        value, None for none: the run's own successful calls) override the reference of the
        persons the snapshot then holds, in the same rows; ids it does not hold are ignored.
        ``versions``: the ``changeVersion`` of the persons in ``full`` or ``upserts``.
        """
        sync = self._sync
        with self._db.write() as conn:
            if full is not None:
                _replace_all(conn, sync, full, references, versions)
            upserting = {p.id: p for p in upserts}
            _upsert(conn, sync, upserting, references, versions)
            if full is None:
                _set_references(conn, sync, references, skip=upserting)
            gone = sorted(pid for pid in removed if pid not in upserting)
            for chunk in _chunks(gone):
                conn.execute(delete(PROTIME_PEOPLE).where(_P.sync == sync, _P.id.in_(chunk)))
            values = {
                "delta_link": delta_link,
                "fingerprint": fingerprint,
                "full_read_at": full_read_at,
                "updated_at": now,
                "run_id": run_id,
                "unconfirmed_writes": unconfirmed_writes,
                "delta_refusals": delta_refusals,
                **UNSETTLED,
            }
            done = conn.execute(
                update(PROTIME_FEED).where(_F.sync == sync, _F.name == FEED).values(values)
            )
            if not done.rowcount:
                conn.execute(insert(PROTIME_FEED).values(sync=sync, name=FEED, **values))

    def forget_people_feed(self) -> None:
        """Drop the delta link: the next run reads in full (the snapshot stays as its baseline)."""
        with self._db.write() as conn:
            conn.execute(
                update(PROTIME_FEED)
                .where(_F.sync == self._sync, _F.name == FEED)
                .values(delta_link=None, **UNSETTLED)
            )


def _replace_all(
    conn: Connection,
    sync: str,
    people: Sequence[Person],
    references: Mapping[int, str | None],
    versions: Mapping[int, str | None],
) -> None:
    """Make the stored snapshot equal ``people`` (with ``references`` over their own, and their
    ``versions``), writing only the rows that differ, each once.

    The stored rows are streamed in id order and walked beside the read in id order (a merge):
    no index of either side is built, so saving adds nothing to the run's memory peak but the
    rows that changed (a full read comes in id order; otherwise one sorted list of references).
    """
    ordered = people if _sorted(people) else sorted(people, key=_id)
    changed: list[Person] = []
    new: list[Person] = []
    stale: list[int] = []
    rows = conn.execute(
        select(_P.id, *(_P[name] for name in _STORED))
        .where(_P.sync == sync)
        .order_by(_P.id)
        .execution_options(yield_per=_STREAM_ROWS)
    ).tuples()
    i, count = 0, len(ordered)
    for pid, number, badge, email, reference, gone, version in rows:
        while i < count and ordered[i].id < pid:
            new.append(ordered[i])
            i += 1
        if i < count and ordered[i].id == pid:
            stored = (number, badge, email, reference, bool(gone), version)
            if stored != _fields(ordered[i], references, versions):
                changed.append(ordered[i])
            i += 1
        else:
            stale.append(pid)
    new.extend(ordered[i:])
    for chunk in _chunks(stale):
        conn.execute(delete(PROTIME_PEOPLE).where(_P.sync == sync, _P.id.in_(chunk)))
    _update(conn, sync, changed, references, versions)
    _insert(conn, sync, new, references, versions)


def _id(p: Person) -> int:
    return p.id


def _sorted(people: Sequence[Person]) -> bool:
    return all(people[k].id < people[k + 1].id for k in range(len(people) - 1))


def _upsert(
    conn: Connection,
    sync: str,
    people: dict[int, Person],
    references: Mapping[int, str | None],
    versions: Mapping[int, str | None],
) -> None:
    if not people:
        return
    ids = sorted(people)
    existing: set[int] = set()
    for chunk in _chunks(ids):
        existing.update(
            conn.execute(select(_P.id).where(_P.sync == sync, _P.id.in_(chunk))).scalars()
        )
    _update(conn, sync, [people[i] for i in ids if i in existing], references, versions)
    _insert(conn, sync, [people[i] for i in ids if i not in existing], references, versions)


def _set_references(
    conn: Connection, sync: str, references: Mapping[int, str | None], *, skip: Collection[int]
) -> None:
    """Set the reference of the stored persons ``references`` names (a missing row stays so)."""
    ids = sorted(pid for pid in references if pid not in skip)
    statement = (
        update(PROTIME_PEOPLE)
        .where(_P.sync == bindparam("b_sync"), _P.id == bindparam("b_id"))
        .values(reference=bindparam("v_reference"))
    )
    for chunk in _chunks(ids, _WRITE_BATCH):
        conn.execute(
            statement,
            [{"b_sync": sync, "b_id": pid, "v_reference": references[pid]} for pid in chunk],
        )


def _update(
    conn: Connection,
    sync: str,
    people: Sequence[Person],
    references: Mapping[int, str | None],
    versions: Mapping[int, str | None],
) -> None:
    statement = (
        update(PROTIME_PEOPLE)
        .where(_P.sync == bindparam("b_sync"), _P.id == bindparam("b_id"))
        .values({name: bindparam(f"v_{name}") for name in _STORED})
    )
    for chunk in _chunks(people, _WRITE_BATCH):
        conn.execute(statement, [_row(sync, p, references, versions) for p in chunk])


def _insert(
    conn: Connection,
    sync: str,
    people: Sequence[Person],
    references: Mapping[int, str | None],
    versions: Mapping[int, str | None],
) -> None:
    for chunk in _chunks(people, _WRITE_BATCH):
        conn.execute(
            insert(PROTIME_PEOPLE),
            [
                {
                    "sync": sync,
                    "id": p.id,
                    **dict(zip(_STORED, _fields(p, references, versions), strict=True)),
                }
                for p in chunk
            ],
        )
