"""Many syncs in one state database: each store sees only its sync's rows, each sync has its own
run lock, and the overview answers for all of them at once (SQLite, PostgreSQL and MariaDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import event
from sync_support import KEY, T0, fill, view

from sync.errors import LockHeldError, UsageError
from sync.names import DEFAULT_SYNC
from sync.state import (
    Database,
    StateStore,
    open_database,
    run_lock,
    sync_overview,
    syncs_in_database,
    upgrade,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def shared(any_state_url: str) -> Iterator[Database]:
    """One migrated state database for several syncs."""
    db = open_database(any_state_url)
    try:
        upgrade(db)
        yield db
    finally:
        db.dispose()


def test_two_syncs_hold_the_same_ids_and_never_see_each_other(shared: Database) -> None:
    """Two syncs with the same HR ids and person ids each read back only their own map, runs,
    events, plans, snapshot, feed link, settled run and learned rate."""
    a, b = StateStore(shared, sync="north"), StateStore(shared, sync="south")
    ids_a, ids_b = fill(a, 10), fill(b, 20)
    for store, own, other, pid in ((a, ids_a, ids_b, 10), (b, ids_b, ids_a, 20)):
        e1, e2 = store.map.mapping("E1"), store.map.mapping("E2")
        assert e1 is not None
        assert e1.protime_id == pid
        assert e2 is not None
        assert (e2.situation, e2.protime_id) == ("linked", pid + 1)
        assert store.map.linked_pairs() == {"E1": pid, "E2": pid + 1}
        assert store.map.counts_by_situation() == {"linked": 2}
        assert [r.id for r in store.runs.runs()] == [own["run"]]
        assert store.runs.run(other["run"]) is None
        assert store.runs.learned_rate() == float(pid)
        assert {e.run_id for e in store.events.events_for()} == {own["run"]}
        assert store.events.count_events(run_id=other["run"]) == 0
        assert list(store.events.iter_run_events(other["run"])) == []
        assert [p.id for p in store.plans.plans()] == [own["plan"]]
        assert store.plans.plan(other["plan"]) is None
        with pytest.raises(UsageError, match="no plan"):
            store.plans.find_plan(other["plan"][:8])
        assert list(store.plans.iter_plan_actions(other["plan"])) == []
        assert store.plans.plan_action_counts(other["plan"]) == {}
        assert len(list(store.plans.iter_plan_actions(own["plan"]))) == 1
        feed = store.snapshot.people_feed()
        assert feed is not None
        assert feed.delta_link == f"/people?delta&deltaToken={pid}"
        assert [p.employee_number for p in store.snapshot.load_people()] == [f"N{pid}", f"M{pid}"]
        assert store.snapshot.people_versions(ids=[1, 2]) == {1: f"v{pid}", 2: None}
        settled = store.settled.settled_run(key=KEY, run_id="next")
        assert settled is not None
        assert settled.id == own["run"]


def test_a_new_sync_beside_another_starts_empty(shared: Database) -> None:
    """A sync with no rows yet reads an empty map, no runs, events, plans, snapshot, feed,
    settlement or learned rate, whatever another sync of the database holds."""
    fill(StateStore(shared, sync="north"), 10)
    new = StateStore(shared, sync="south")
    assert new.map.mapping("E1") is None
    assert list(new.map.iter_mappings()) == []
    assert new.map.counts_by_situation() == {}
    assert new.runs.runs() == []
    assert new.runs.running() == []
    assert new.runs.learned_rate() is None
    assert new.events.events_for() == []
    assert new.events.rekeys("E1") == []
    assert new.plans.plans() == []
    assert new.snapshot.people_feed() is None
    assert new.snapshot.load_people() == []
    assert new.settled.settled_run(key=KEY, run_id="next") is None
    prior = new.map.load_prior()
    assert prior.last_good_hr_count is None
    assert not prior.manual_links


def test_one_syncs_changes_leave_the_other_untouched(shared: Database) -> None:
    """Admin changes, a pruning save, a forgotten feed link, marking interrupted runs and new
    audit events of one sync change nothing the other sync reads (its settlement holds)."""
    a, b = StateStore(shared, sync="north"), StateStore(shared, sync="south")
    fill(a, 10)
    fill(b, 20)
    running_b = b.runs.start_run(trigger="cli", dry_run=False, forced=False)
    before = view(b)
    a.admin.link(hr_id="E3", protime_id=20, force=True)
    a.admin.ignore(hr_id="E1")
    a.admin.clear_failed()
    a.snapshot.forget_people_feed()
    assert a.runs.mark_interrupted_runs() == 0  # south's run is south's business
    run = a.runs.start_run(trigger="cli", dry_run=False, forced=False)
    a.map.save_classifications(run_id=run, classifications=[], now=T0, prune=True)
    assert view(b) == before
    assert [r.id for r in b.runs.running()] == [running_b]
    assert b.settled.settled_run(key=KEY, run_id=running_b) is not None


def test_default_store_is_the_default_sync(shared: Database) -> None:
    """StateStore(db) is the default sync's store: it sees the rows StateStore(db, sync=
    'default') writes, and none of another sync's."""
    fill(StateStore(shared, sync=DEFAULT_SYNC), 10)
    fill(StateStore(shared, sync="other"), 20)
    mapping = StateStore(shared).map.mapping("E1")
    assert mapping is not None
    assert mapping.protime_id == 10
    assert StateStore(shared).runs.learned_rate() == 10.0


def test_a_name_the_rule_refuses_is_no_sync(shared: Database) -> None:
    """A store, or an overview, for a name sync.names refuses is a usage error."""
    for name in ("", "Upper", "-dash", "x" * 64, "a b"):
        with pytest.raises(UsageError, match="not a sync name"):
            StateStore(shared, sync=name)
        with pytest.raises(UsageError, match="not a sync name"):
            sync_overview(shared, [name])


# -------------------------------------------------------------------------------- locks


def test_two_syncs_lock_at_once_while_one_sync_locks_once(shared: Database) -> None:
    """Two syncs hold their run locks at the same time; a second holder of either is refused,
    and the default sync's lock is the one run_lock(db) takes."""
    a, b = StateStore(shared, sync="north"), StateStore(shared, sync="south")
    with a.lock(), b.lock():
        for store in (a, b, StateStore(shared, sync="north")):
            with pytest.raises(LockHeldError), store.lock():
                pass
        # The default sync's is a third lock, free; run_lock(db) is that same lock.
        with StateStore(shared).lock(), pytest.raises(LockHeldError), run_lock(shared):
            pass
    with a.lock(), b.lock():  # both released, both free again
        pass


def test_a_sync_locked_from_another_process_connection_is_refused(shared: Database) -> None:
    """A sync's lock held through one Database handle refuses a store on a second handle of the
    same database, and leaves another sync's lock free there."""
    other = open_database(shared.url.render_as_string(hide_password=False))
    try:
        with StateStore(shared, sync="north").lock():
            with pytest.raises(LockHeldError), StateStore(other, sync="north").lock():
                pass
            with StateStore(other, sync="south").lock():
                pass
    finally:
        other.dispose()


# ----------------------------------------------------------------------------- overview


def test_overview_gives_each_sync_its_latest_run_running_state_and_counts(
    shared: Database,
) -> None:
    """The overview names, per sync asked for, its latest finished run, whether a run is in
    progress and its map's counts; an unknown sync has none; every sync with rows is listed,
    one an admin touched before any run too."""
    north = StateStore(shared, sync="north")
    ids = fill(north, 10)
    fill(StateStore(shared, sync="south"), 20, finish=False)
    north.admin.ignore(hr_id="E9")
    views = sync_overview(shared, ["south", "north", "nobody"])
    assert [v.name for v in views] == ["south", "north", "nobody"]
    south, north_view, nobody = views
    assert north_view.latest is not None
    assert north_view.latest.id == ids["run"]
    assert north_view.latest.status == "succeeded"
    assert north_view.latest.hr_count == 2
    assert not north_view.running
    assert north_view.counts_by_situation == {"linked": 2, "ignored": 1}
    assert south.latest is None
    assert south.running
    assert south.counts_by_situation == {"linked": 2}
    assert (nobody.latest, nobody.running, nobody.counts_by_situation) == (None, False, {})
    StateStore(shared, sync="admin-only").admin.ignore(hr_id="X")  # no run, only the map
    assert syncs_in_database(shared) == ["admin-only", "north", "south"]


def test_overview_costs_the_same_statements_for_many_syncs(shared: Database) -> None:
    """The overview of 40 syncs runs as many statements as that of 2: none per sync."""
    for name in ("s-0", "s-1"):
        fill(StateStore(shared, sync=name), 10)
    statements: list[str] = []

    def _count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(shared.engine, "before_cursor_execute", _count)
    try:
        sync_overview(shared, ["s-0", "s-1"])
        few = len(statements)
        statements.clear()
        views = sync_overview(shared, [f"s-{i}" for i in range(40)])
        many = len(statements)
    finally:
        event.remove(shared.engine, "before_cursor_execute", _count)
    assert many == few
    assert sum(v.latest is not None for v in views) == 2
