"""The input gate and the safety thresholds in real runs: blocked means nothing written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2e.harness import HRRow, row_for
from sync.reconcile import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 30


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _snapshot(h: Harness) -> tuple[dict[str, int], list[tuple[str, str, int | None]]]:
    with h.store() as store:
        rows = [(r.hr_id, r.situation, r.protime_id) for r in store.map.iter_mappings()]
    return h.references(), rows


def test_an_emptied_hr_table_blocks_and_force_goes_through(
    make_harness: Callable[..., Harness],
) -> None:
    """After a good run an empty HR table blocks (exit 3) with nothing written; --force runs."""
    h = make_harness(rows=_everyone)
    assert h.run().status is RunStatus.SUCCEEDED
    before = _snapshot(h)
    writes = h.writes()

    h.set_hr([])
    blocked = h.run()
    assert blocked.status is RunStatus.BLOCKED
    assert blocked.exit_code == 3
    assert "HR snapshot is empty" in blocked.message or "HR snapshot has 0" in blocked.message
    assert "--force" in blocked.message
    assert h.writes() == writes
    assert _snapshot(h) == before
    with h.store() as store:
        run_row = store.runs.run(blocked.run_id or "")
    assert run_row is not None
    assert run_row.status == "blocked"
    # What the gate saw is kept with the run.
    assert (blocked.hr_count, blocked.protime_count) == (0, len(h.sim.world.people_list()))
    assert (run_row.hr_count, run_row.protime_count) == (0, len(h.sim.world.people_list()))

    forced = h.run(force=True)
    assert forced.status is RunStatus.SUCCEEDED, forced.message
    # Orphans are reported by default: forcing an empty HR through deletes nothing.
    assert forced.counts_by_situation["orphaned"] == COUNT
    assert h.writes() == writes
    assert len(h.references()) == COUNT


def test_a_sharply_shrunken_hr_table_blocks_until_forced(
    make_harness: Callable[..., Harness],
) -> None:
    """Keeping 3 of 30 employees blocks even the one new write; forced, that write is made."""
    h = make_harness(rows=_everyone)
    assert h.run().status is RunStatus.SUCCEEDED
    people = h.sim.world.people_list()
    newcomer = row_for(people[COUNT], "NEW-1")
    h.set_hr([*_everyone(h.sim)[:2], newcomer])
    writes = h.writes()

    blocked = h.run()
    assert blocked.status is RunStatus.BLOCKED
    assert "IDSYNC_SAFETY__MIN_SNAPSHOT_RATIO" in blocked.message
    assert h.writes() == writes
    assert "NEW-1" not in h.references()

    forced = h.run(force=True)
    assert forced.status is RunStatus.SUCCEEDED
    assert forced.actions_by_outcome == {"write:succeeded": 1}
    assert h.references()["NEW-1"] == people[COUNT].id


def test_too_many_planned_deletes_block_before_any_write(
    make_harness: Callable[..., Harness],
) -> None:
    """With orphans set to be deleted, more deletes than IDSYNC_SAFETY__MAX_DELETES block the
    whole run (not even the unrelated writes go); forced, every delete and write is made."""

    def rows(sim: Simulator) -> list[HRRow]:
        for i, person in enumerate(sim.world.people_list()[COUNT : COUNT + 5]):
            sim.world.set_reference(f"GONE-{i}", person.id)
        return _everyone(sim)

    h = make_harness(rows=rows, reactions={"orphaned": "delete"}, safety={"max_deletes": 3})
    before = _snapshot(h)

    blocked = h.run()
    assert blocked.status is RunStatus.BLOCKED
    assert "5 deletes planned, limit 3 (IDSYNC_SAFETY__MAX_DELETES)" in blocked.message
    assert h.writes() == 0
    assert _snapshot(h) == before

    dry = h.run(dry_run=True, force=True)
    assert dry.status is RunStatus.SUCCEEDED
    assert dry.actions_by_outcome == {"delete:planned": 5, "write:planned": COUNT}
    assert h.writes() == 0

    forced = h.run(force=True)
    assert forced.status is RunStatus.SUCCEEDED
    assert forced.actions_by_outcome == {"delete:succeeded": 5, "write:succeeded": COUNT}
    assert not [v for v in h.references() if v.startswith("GONE-")]
    with h.store() as store:
        assert not [r for r in store.map.iter_mappings() if r.situation == "orphaned"]


def test_an_hr_id_that_leaves_drops_out_of_the_map(make_harness: Callable[..., Harness]) -> None:
    """An unmatched employee removed from HR no longer shows in the map after the next run."""

    def rows(sim: Simulator) -> list[HRRow]:
        return [*_everyone(sim), HRRow("U1", employee_number="NO-SUCH-NUMBER")]

    h = make_harness(rows=rows)
    h.run()
    with h.store() as store:
        assert store.map.mapping("U1") is not None
    h.set_hr(_everyone(h.sim))
    assert h.run().status is RunStatus.SUCCEEDED
    with h.store() as store:
        assert store.map.mapping("U1") is None
        assert len(list(store.map.iter_mappings())) == COUNT
