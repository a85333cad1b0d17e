"""The Protime snapshot and the delta feed's position: stored together, written only where they
differ, read back as the compact persons a read makes (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from sync.domain import Person
from sync.state._base import _WRITE_BATCH

if TYPE_CHECKING:
    from sync.state import StateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _people(count: int, *, offset: int = 0) -> list[Person]:
    return [
        Person(
            id=1000 + i,
            employee_number=str(100000 + i),
            badge_number=f"B{i}",
            reference=f"E{i + offset}" if i % 3 else None,
            out_of_service=i % 7 == 0,
        )
        for i in range(count)
    ]


def _save(store: StateStore, **kwargs: Any) -> None:
    defaults: dict[str, Any] = {
        "delta_link": "/people?delta&deltaToken=t1",
        "fingerprint": "f" * 64,
        "full_read_at": T0,
        "now": T0,
        "run_id": None,
    }
    store.snapshot.save_people(**{**defaults, **kwargs})


def _statements(store: StateStore) -> list[str]:
    seen: list[str] = []
    event.listen(
        store.db.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_a: seen.append(statement.split()[0].upper()),
    )
    return seen


def test_a_full_snapshot_round_trips_with_its_feed_row(store: StateStore) -> None:
    """What a full read saves loads back equal and in id order, with the link stored beside it."""
    assert store.snapshot.people_feed() is None
    people = _people(2 * _WRITE_BATCH + 3)
    _save(store, full=list(reversed(people)))
    assert store.snapshot.load_people() == people
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert (feed.delta_link, feed.full_read_at) == ("/people?delta&deltaToken=t1", T0)


def test_a_second_full_save_writes_only_what_differs(store: StateStore) -> None:
    """An unchanged full read writes no person row; a changed, a new and a gone one are written."""
    people = _people(50)
    _save(store, full=people)
    statements = _statements(store)
    _save(store, full=people, delta_link="/t2")
    assert [s for s in statements if s in {"INSERT", "DELETE"}] == []
    assert statements.count("UPDATE") == 1  # the feed row only
    changed = [*people[1:49], Person(id=1049, reference="moved"), Person(id=5000)]
    _save(store, full=changed, delta_link="/t3")
    assert store.snapshot.load_people() == sorted(changed, key=lambda p: p.id)
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert feed.delta_link == "/t3"


def test_an_incremental_save_upserts_and_removes_only_those(store: StateStore) -> None:
    """Upserts and removals apply on top of the stored snapshot; the link moves with them."""
    people = _people(10)
    _save(store, full=people)
    later = T0 + timedelta(hours=1)
    _save(
        store,
        upserts=[Person(id=1002, reference="E-new"), Person(id=9999, badge_number="X")],
        removed={1003, 1004},
        delta_link="/t2",
        now=later,
    )
    loaded = {p.id: p for p in store.snapshot.load_people()}
    assert set(loaded) == {p.id for p in people} - {1003, 1004} | {9999}
    assert loaded[1002] == Person(id=1002, reference="E-new")
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert (feed.delta_link, feed.full_read_at, feed.updated_at) == ("/t2", T0, later)


def test_forgetting_the_feed_keeps_the_snapshot(store: StateStore) -> None:
    """Without a link the next run reads in full; the snapshot stays until it is replaced."""
    _save(store, full=_people(3))
    store.snapshot.forget_people_feed()
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert feed.delta_link is None
    assert len(store.snapshot.load_people()) == 3


def test_a_full_save_takes_the_references_in_the_same_rows(store: StateStore) -> None:
    """A full save with references stores each person once, with the reference given (None
    clears one); an id the read does not hold is not added."""
    people = _people(12)
    statements = _statements(store)
    references = {1001: "W1", 1002: None, 1011: "W11", 4242: "nobody"}
    _save(store, full=people, references=references)
    # The stored rows streamed, the people inserted once, the feed row (no update, then insert).
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", "INSERT", "UPDATE", "INSERT"]
    expected = [replace(p, reference=references.get(p.id, p.reference)) for p in people]
    assert store.snapshot.load_people() == expected
    statements.clear()
    _save(store, full=people, references=references, delta_link="/t2")
    assert [s for s in statements if s in {"INSERT", "DELETE"}] == []
    assert statements.count("UPDATE") == 1  # nothing differs: the feed row only


def test_an_incremental_save_sets_references_over_the_delta_and_the_snapshot(
    store: StateStore,
) -> None:
    """References apply to a person of the delta and to one the snapshot holds unchanged; an id
    removed or unknown stays absent."""
    people = _people(6)
    _save(store, full=people)
    _save(
        store,
        upserts=[Person(id=1001, badge_number="new")],
        removed={1003},
        references={1001: "W1", 1002: "W2", 1003: "W3", 1004: None, 7777: "W7"},
        delta_link="/t2",
    )
    loaded = {p.id: p for p in store.snapshot.load_people()}
    assert set(loaded) == {p.id for p in people} - {1003}
    assert loaded[1001] == Person(id=1001, badge_number="new", reference="W1")
    assert loaded[1002] == replace(people[2], reference="W2")
    assert loaded[1004] == replace(people[4], reference=None)
    assert loaded[1005] == people[5]


def test_change_versions_are_kept_and_a_version_change_alone_rewrites_the_row(
    store: StateStore,
) -> None:
    """Each person's changeVersion is stored with it; a full read whose only difference is a
    newer version updates that row, and an incremental save stores the versions it brings."""
    people = _people(5)
    versions = {p.id: f"{p.id:020X}" for p in people}
    _save(store, full=people, versions=versions)
    assert store.snapshot.people_versions(ids=[1000, 1004, 99]) == {
        1000: versions[1000],
        1004: versions[1004],
    }
    seen = _statements(store)
    _save(store, full=people, versions={**versions, 1002: "FFFF"})
    assert seen.count("UPDATE") == 2  # the one person's row, and the feed row
    _save(store, upserts=[replace(people[0], badge_number="NEW")], versions={1000: "FFFFF"})
    assert store.snapshot.people_versions(ids=[1000, 1002]) == {1000: "FFFFF", 1002: "FFFF"}


def test_the_feed_row_keeps_unconfirmed_writes_and_refusals(store: StateStore) -> None:
    """The feed row stores the writes to confirm and the refusals in a row; a plain save resets them."""
    _save(store, full=_people(2), unconfirmed_writes=3, delta_refusals=2)
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert (feed.unconfirmed_writes, feed.delta_refusals) == (3, 2)
    _save(store, full=_people(2))
    feed = store.snapshot.people_feed()
    assert feed is not None
    assert (feed.unconfirmed_writes, feed.delta_refusals) == (0, 0)
