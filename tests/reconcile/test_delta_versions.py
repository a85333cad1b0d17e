"""Protime's changeVersion rule, pure: each person's newest change holds, whatever the order."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_incremental_read import NOW, _feed, _settings

from sync.domain import Person
from sync.protime import Change
from sync.reconcile._people import _merge, full_read_reason
from sync.reconcile._versions import Versions, fold_changes, newest
from sync.state import PeopleFeed

if TYPE_CHECKING:
    import random


def _update(pid: int, version: str, number: str, *, refs: bool = True) -> Change:
    return Change(pid, version, Person(id=pid, employee_number=number), references_known=refs)


def _delete(pid: int, version: str) -> Change:
    return Change(pid, version, None)


def test_the_newest_version_wins_whatever_the_order() -> None:
    """Two versions of one person, newest first: the newest holds and the older is dropped."""
    items = [_update(1, "0000000000000000000B", "new"), _update(1, "0000000000000000000A", "old")]
    folded = fold_changes(newest(items), held={})
    assert folded.changed[1].employee_number == "new"
    assert folded.versions == {1: "0000000000000000000B"}


def test_versions_compare_as_strings_not_numbers() -> None:
    """changeVersion is a string compared lexically: "9" is newer than "10"."""
    folded = fold_changes(newest([_update(1, "9", "nine"), _update(1, "10", "ten")]), held={})
    assert folded.changed[1].employee_number == "nine"


def test_a_newer_delete_removes_and_an_older_delete_is_ignored() -> None:
    """A Delete applies only when it is the person's newest change."""
    removed = fold_changes(newest([_update(1, "A1", "x"), _delete(1, "A2")]), held={})
    assert removed.removed == {1}
    assert not removed.changed
    kept = fold_changes(newest([_delete(1, "A1"), _update(1, "A2", "x")]), held={})
    assert not kept.removed
    assert kept.changed[1].employee_number == "x"


def test_a_change_older_than_the_snapshot_is_ignored() -> None:
    """An item older than the version the snapshot already holds is dropped; equal applies."""
    best = newest([_update(1, "A1", "old"), _update(2, "B5", "same"), _delete(3, "C1")])
    folded = fold_changes(best, held={1: "A2", 2: "B5", 3: "C2"})
    assert set(folded.changed) == {2}
    assert folded.removed == set()
    assert folded.ignored == 2


def test_equal_versions_take_the_item_received_last() -> None:
    """Of two items with the same version, the one received later holds."""
    folded = fold_changes(newest([_update(1, "A", "first"), _update(1, "A", "second")]), held={})
    assert folded.changed[1].employee_number == "second"


def test_newest_carries_over_pages() -> None:
    """The newest change is kept across pages: an older item on a later page does not win."""
    best = newest([_update(1, "A2", "new")])
    newest([_update(1, "A1", "old")], best)
    assert best[1].person is not None
    assert best[1].person.employee_number == "new"


_change = st.builds(
    lambda pid, version, gone: _delete(pid, version) if gone else _update(pid, version, version),
    st.integers(1, 5),
    st.text("0123456789ABCDEF", min_size=1, max_size=4),
    st.booleans(),
)


@given(st.lists(_change, max_size=30), st.randoms(use_true_random=False))
def test_any_order_of_a_set_of_changes_folds_alike(
    changes: list[Change], rnd: random.Random
) -> None:
    """Shuffling a set of changes (distinct versions per person) never changes what it leaves."""
    distinct: dict[tuple[int, str], Change] = {}
    for c in changes:
        distinct.setdefault((c.id, c.version), c)
    ordered = list(distinct.values())
    shuffled = ordered[:]
    rnd.shuffle(shuffled)
    a, b = fold_changes(newest(ordered), held={}), fold_changes(newest(shuffled), held={})
    assert (a.changed, a.removed, a.versions) == (b.changed, b.removed, b.versions)
    for pid, version in a.versions.items():
        assert version == max(c.version for c in ordered if c.id == pid)


def test_an_item_without_references_keeps_the_snapshots() -> None:
    """A changed person whose item carried no externalReferences map keeps the snapshot's value."""
    people = [Person(id=1, employee_number="1", reference="E1"), Person(id=2, reference="E2")]
    folded = fold_changes(
        newest(
            [
                _update(1, "A", "1b", refs=False),
                _update(2, "A", "2b"),
                _update(3, "A", "3", refs=False),
            ]
        ),
        held={},
    )
    _merge(people, folded.changed, folded.removed, folded.unknown_references)
    assert [(p.id, p.employee_number, p.reference) for p in people] == [
        (1, "1b", "E1"),  # map absent: the reference is unknown, the snapshot's stays
        (2, "2b", None),  # map present without our name: no reference
        (3, "3", None),  # a new person without a map: nothing known yet
    ]
    assert folded.changed[1].reference == "E1"  # what the snapshot stores


def test_versions_table_looks_up_by_id_in_any_read_order() -> None:
    """The compact table gives each person's version (None when absent), read in order or not."""
    for ids in ([1, 2, 5, 9], [9, 1, 5, 2]):
        table = Versions()
        people = [Person(id=i) for i in ids]
        table.add(people[:2], [f"v{ids[0]}", None])
        table.add(people[2:], [f"v{ids[2]}", f"v{ids[3]}"])
        assert table[ids[0]] == f"v{ids[0]}"
        assert table[ids[1]] is None
        assert table.get(3) is None
        assert 3 not in table
        assert list(table) == sorted(ids)
        assert len(table) == 4


@pytest.mark.parametrize(
    ("feed_changes", "delta", "reason"),
    [
        ({}, "off", "IDSYNC_PROTIME__DELTA=off"),
        ({"unconfirmed_writes": 3}, "on", "3 write(s) of the last run were accepted"),
    ],
)
def test_delta_off_and_unconfirmed_writes_read_in_full(
    feed_changes: dict[str, int], delta: str, reason: str
) -> None:
    """DELTA=off reads in full every run; writes accepted without confirmation do once."""
    s = _settings()
    s = s.model_copy(update={"protime": s.protime.model_copy(update={"delta": delta})})
    base = _feed(s, age=timedelta(hours=1))
    feed = PeopleFeed(
        **{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **feed_changes}
    )
    got = full_read_reason(s, feed, full=False, now=NOW)
    assert got is not None
    assert got.startswith(reason)
