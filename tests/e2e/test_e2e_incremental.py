"""Incremental runs: between full reads a run reads only the people delta (issue 12).

The simulator's delta feed is the one these tests read; its admin helpers change people (which the
delta shows) and references (which it does not, as in Protime).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from e2e.harness import HRRow, row_for, sim_config, store_engine
from sync.reconcile import RunStatus
from sync.reconcile import _run as run_module
from sync.reconcile._decide import decide
from sync.state import StateStore
from sync.state._snapshot import SnapshotStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from e2e.harness import Harness
    from sync.domain import Person
    from sync.reconcile._job import Inputs
    from sync.simulator import Simulator

INCREMENTAL = {"full_read_every": "24h"}
COUNT = 60


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:04d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _harness(make_harness: Callable[..., Harness], **fields: Any) -> Harness:
    fields.setdefault("config", sim_config(people=COUNT + 10))
    fields.setdefault("rows", _everyone)
    return make_harness(schedule=dict(INCREMENTAL), **fields)


def _linked(h: Harness) -> None:
    """The first run (a full read) writes every reference; the state then holds the snapshot."""
    first = h.run()
    assert first.status is RunStatus.SUCCEEDED, first.message
    assert (first.protime_read, first.protime_read_reason) == ("full", "no snapshot of Protime yet")
    assert h.references() == {
        f"E{i:04d}": p.id for i, p in enumerate(h.sim.world.people_list()[:COUNT])
    }


def _requests(h: Harness) -> int:
    """Every request the simulator answered (token and API) since its counters were reset."""
    return sum(n for by in h.sim.counters.as_dict().values() for n in by.values())


def _feed_link(h: Harness) -> str | None:
    with h.store() as store:
        feed = store.snapshot.people_feed()
        return feed.delta_link if feed is not None else None


def _age_full_read(h: Harness, hours: float) -> None:
    with h.store() as store, store_engine(store).begin() as conn:
        conn.execute(
            text("UPDATE protime_feed SET full_read_at = :at"),
            {"at": datetime.now(UTC) - timedelta(hours=hours)},
        )


def test_a_run_with_no_change_reads_only_the_delta(make_harness: Callable[..., Harness]) -> None:
    """After a full read, a run with nothing changed makes at most 5 requests and writes nothing."""
    h = _harness(make_harness)
    _linked(h)
    h.sim.counters.reset()
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert (again.protime_read, again.protime_read_reason) == ("incremental", None)
    assert _requests(h) <= 5
    assert h.sim.counters.count("people.delta") == 1
    assert again.protime_count == COUNT + 10
    assert again.actions_by_outcome == {}
    assert again.counts_by_situation["linked"] == COUNT
    with h.store() as store:
        assert store.runs.runs(limit=1)[0].protime_read == "incremental"


def test_both_reads_of_a_run_share_their_strings(
    make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full read and an incremental read (snapshot + delta) give a matched person the very
    string objects of its HR employee: its employee number, and once linked its reference."""
    h = _harness(make_harness)
    seen: list[Inputs] = []

    def recording(job: Any, inputs: Inputs, classified: Any, written: Any) -> Any:
        seen.append(inputs)
        return decide(job, inputs, classified, written)

    monkeypatch.setattr(run_module, "decide", recording)
    _linked(h)  # a full read (it writes the references, which the planner saw unset)
    h.sim.world.update_person(h.sim.world.people_list()[0].id, badge_number="NEW-BADGE")
    again = h.run()
    assert (again.status, again.protime_read) == (RunStatus.SUCCEEDED, "incremental")
    for inputs, linked in zip(seen, (False, True), strict=True):
        by_number = {p.employee_number: p for p in inputs.people}
        for e in inputs.hr.employees:
            person = by_number[e.employee_number]
            assert person.employee_number is e.employee_number
            assert (person.reference is e.hr_id) is linked


def test_only_a_full_read_verifies_the_map(make_harness: Callable[..., Harness]) -> None:
    """An incremental run leaves unchanged rows as the last full read verified them; --full
    stamps them all again."""
    h = _harness(make_harness)
    _linked(h)
    # The first incremental run restates the rows the first run wrote ("written: ..." becomes
    # the reason a reference gives); from then on nothing changes.
    assert h.run().protime_read == "incremental"
    with h.store() as store:
        classified_by = store.runs.runs(limit=1)[0].id
        before = store.map.mapping("E0001")
    assert before is not None
    assert before.last_run_id == classified_by
    assert h.run().protime_read == "incremental"
    with h.store() as store:
        after = store.map.mapping("E0001")
    assert after == before
    full = h.run(full=True)
    assert full.protime_read == "full"
    with h.store() as store:
        verified = store.map.mapping("E0001")
        last_run = store.runs.runs(limit=1)[0].id
    assert verified is not None
    assert before.last_verified_at is not None
    assert verified.last_verified_at is not None
    assert verified.last_verified_at > before.last_verified_at
    assert verified.last_run_id == last_run


@pytest.mark.parametrize("state_url", ["sqlite", "postgresql"], indirect=True)
def test_one_percent_changed_reads_a_few_pages_and_writes_exactly_what_is_needed(
    make_harness: Callable[..., Harness], state_url: str
) -> None:
    """1 % of people changed: the delta pages read stay within ceil(changed/100)+5 (here at 10 per
    page: ceil(changed/10)+5), and the writes are exactly the new hires'."""
    people = 1000
    config = sim_config(people=people, page_size=10)
    h = make_harness(
        config=config,
        rows=lambda sim: [row_for(p, f"E{i:04d}") for i, p in enumerate(sim.world.people_list())],
        state_url=state_url,
        schedule=dict(INCREMENTAL),
    )
    _linked_all = h.run()
    assert _linked_all.actions_by_outcome == {"write:succeeded": people}
    world = h.sim.world
    existing = world.people_list()
    hires = [
        world.add_person(first_name="New", last_name="Hire", employee_number=f"9{i:05d}")
        for i in range(4)
    ]
    for p in existing[:3]:
        world.remove_person(p.id)  # their employees become unmatched: no call
    for i, p in enumerate(existing[10:13]):
        world.update_person(p.id, badge_number=f"B{i:06d}")  # changes nothing we write
    changed = len(hires) + 3 + 3
    rows = [row_for(p, f"E{i:04d}") for i, p in enumerate(existing)]
    rows += [row_for(p, f"N{i}") for i, p in enumerate(hires)]
    h.set_hr(rows)
    h.sim.counters.reset()
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert result.protime_read == "incremental"
    assert h.sim.counters.count("people.delta") <= math.ceil(changed / 10) + 5
    assert result.actions_by_outcome == {"write:succeeded": len(hires)}
    assert result.counts_by_situation["unmatched"] == 3
    refs = h.references()
    assert all(refs[f"N{i}"] == p.id for i, p in enumerate(hires))
    # The snapshot took the changes and our writes: the next run has nothing to do.
    h.sim.counters.reset()
    after = h.run()
    assert after.actions_by_outcome == {}
    assert after.protime_read == "incremental"
    assert _requests(h) <= 5


def test_an_expired_delta_token_reads_in_full_in_the_same_run(
    make_harness: Callable[..., Harness],
) -> None:
    """A 410 on the stored delta link is one log line, then a full read in the same run."""
    h = _harness(make_harness)
    _linked(h)
    h.sim.advance_clock(73 * 3600)
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert result.protime_read == "full"
    assert "(410: expired" in (result.protime_read_reason or "")
    assert h.sim.counters.count("people.delta", 410) == 1
    assert result.actions_by_outcome == {}
    assert h.run().protime_read == "incremental"


def test_a_missing_token_reads_in_full(make_harness: Callable[..., Harness]) -> None:
    """With no delta link stored the run reads in full, and stores one for the next run."""
    h = _harness(make_harness)
    _linked(h)
    with h.store() as store:
        store.snapshot.forget_people_feed()
    result = h.run()
    assert (result.protime_read, result.protime_read_reason) == ("full", "no delta token")
    assert _feed_link(h) is not None
    assert h.run().protime_read == "incremental"


def test_full_asks_for_a_full_read(make_harness: Callable[..., Harness]) -> None:
    """`full=True` (`--full`) reads every person even when the delta would do."""
    h = _harness(make_harness)
    _linked(h)
    result = h.run(full=True)
    assert (result.protime_read, result.protime_read_reason) == ("full", "asked for (--full)")
    assert h.sim.counters.count("people.delta") >= 2


def test_the_periodic_full_read_catches_a_reference_changed_directly_in_protime(
    make_harness: Callable[..., Harness],
) -> None:
    """A reference changed in Protime by someone else is not in the delta; the full read every
    IDSYNC_SCHEDULE__FULL_READ_EVERY sees it and puts it right."""
    h = _harness(make_harness)
    _linked(h)
    people = h.sim.world.people_list()
    h.sim.world.delete_reference("E0003")
    h.sim.world.delete_reference("E0005")
    missed = h.run()
    assert missed.protime_read == "incremental"
    assert missed.actions_by_outcome == {}  # the delta does not show reference changes
    _age_full_read(h, hours=25)
    caught = h.run()
    assert caught.protime_read == "full"
    assert "h old (IDSYNC_SCHEDULE__FULL_READ_EVERY)" in (caught.protime_read_reason or "")
    assert caught.actions_by_outcome == {"write:succeeded": 2}
    assert h.references()["E0003"] == people[3].id
    assert h.references()["E0005"] == people[5].id
    assert h.run().protime_read == "incremental"


def test_a_changed_reference_name_reads_in_full(make_harness: Callable[..., Harness]) -> None:
    """A snapshot read under another reference name is not reused: the run reads in full."""
    h = _harness(make_harness)
    _linked(h)
    h.protime["reference_name"] = "HRMID2"
    result = h.run()
    assert result.protime_read == "full"
    assert "settings that shape the snapshot changed" in (result.protime_read_reason or "")


class _CrashOnSave(SnapshotStore):
    """A snapshot part whose save fails once, as a process killed between apply and save."""

    crashed = False

    def save_people(self, **kwargs: Any) -> None:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("killed before the snapshot was saved")
        super().save_people(**kwargs)


@pytest.mark.parametrize("state_url", ["sqlite", "postgresql"], indirect=True)
def test_a_crash_between_apply_and_the_snapshot_save_converges(
    make_harness: Callable[..., Harness], state_url: str
) -> None:
    """Writes done but the snapshot not saved: the next run reads the old delta again, repeats
    the idempotent calls, and the run after has nothing to do."""
    h = _harness(make_harness, state_url=state_url, reactions={"orphaned": "delete"})
    _linked(h)
    people = h.sim.world.people_list()
    # Three more employees on people Protime already has (unchanged: not in the delta), and
    # E0007 left (its reference is deleted).
    hires = people[COUNT : COUNT + 3]
    rows = [row_for(p, f"E{i:04d}") for i, p in enumerate(people[:COUNT]) if i != 7]
    rows += [row_for(p, f"N{i}") for i, p in enumerate(hires)]
    h.set_hr(rows)
    link = _feed_link(h)
    with h.store() as plain:
        crashing = StateStore(plain.db)
        crashing.snapshot = _CrashOnSave(plain.db)
        crashed = h.run(state=crashing)
    assert crashed.status is RunStatus.FAILED
    assert "killed before the snapshot was saved" in crashed.message
    assert crashed.actions_by_outcome == {"write:succeeded": 3, "delete:succeeded": 1}
    assert _feed_link(h) == link  # nothing advanced
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert again.protime_read == "incremental"
    # The same calls once more: the PUTs answer 200, the DELETE 404, both count as done.
    assert again.actions_by_outcome == {"write:succeeded": 3, "delete:succeeded": 1}
    expected = {f"E{i:04d}": p.id for i, p in enumerate(people[:COUNT]) if i != 7}
    expected |= {f"N{i}": p.id for i, p in enumerate(hires)}
    assert h.references() == expected
    assert h.run().actions_by_outcome == {}


def test_a_dry_run_and_a_plan_do_not_advance_the_delta(
    make_harness: Callable[..., Harness],
) -> None:
    """Neither a dry run nor `plan` stores the snapshot or moves the link: the next real run
    still reads the change."""
    from sync.reconcile import make_plan

    h = _harness(make_harness)
    _linked(h)
    link = _feed_link(h)
    hire = h.sim.world.add_person(first_name="New", last_name="Hire", employee_number="700000")
    h.set_hr([*_everyone(h.sim), row_for(hire, "NEW")])
    dry = h.run(dry_run=True)
    assert dry.protime_read == "incremental"
    assert dry.actions_by_outcome == {"write:planned": 1}
    planned = make_plan(settings=h.settings, protime=h.client())
    assert planned.actions_by_outcome == {"write:planned": 1}
    assert _feed_link(h) == link
    real = h.run()
    assert real.actions_by_outcome == {"write:succeeded": 1}
    assert _feed_link(h) != link


def test_apply_of_a_plan_reads_in_full(make_harness: Callable[..., Harness]) -> None:
    """`apply` judges preconditions on a full read: a reference moved in Protime since the plan
    makes its action stale even though no delta shows it."""
    from sync.reconcile import apply_plan, make_plan

    h = _harness(make_harness)
    _linked(h)
    hire = h.sim.world.add_person(first_name="New", last_name="Hire", employee_number="700001")
    h.set_hr([*_everyone(h.sim), row_for(hire, "NEW")])
    planned = make_plan(settings=h.settings, protime=h.client())
    assert planned.plan_id is not None
    h.sim.world.set_reference("NEW", h.sim.world.people_list()[COUNT].id)
    applied = apply_plan(settings=h.settings, plan_id=planned.plan_id, protime=h.client())
    assert (applied.protime_read, applied.protime_read_reason) == (
        "full",
        "apply judges every precondition on a full read",
    )
    assert applied.actions_by_outcome == {"write:stale": 1}


def test_the_input_gate_judges_the_merged_snapshot(make_harness: Callable[..., Harness]) -> None:
    """People removed in Protime reach the snapshot through the delta, and a snapshot shrunk
    under IDSYNC_SAFETY__MIN_SNAPSHOT_RATIO blocks the run as a full read would."""
    h = _harness(make_harness)
    _linked(h)
    for p in h.sim.world.people_list()[: COUNT // 2]:
        h.sim.world.remove_person(p.id)
    blocked = h.run()
    assert blocked.status is RunStatus.BLOCKED
    assert blocked.protime_read == "incremental"
    assert blocked.protime_count == COUNT + 10 - COUNT // 2
    assert "Protime" in blocked.message


def _ids(people: Sequence[Person]) -> list[int]:
    return [p.id for p in people]


def test_the_snapshot_holds_what_protime_holds_after_a_run(
    make_harness: Callable[..., Harness],
) -> None:
    """After runs with deltas and writes, the stored snapshot equals a fresh full read."""
    h = _harness(make_harness, reactions={"orphaned": "delete"})
    _linked(h)
    world = h.sim.world
    people = world.people_list()
    world.update_person(people[1].id, out_of_service_date="2026-01-01")
    world.remove_person(people[2].id)
    hire = world.add_person(first_name="New", last_name="Hire", employee_number="600000")
    rows = [row_for(p, f"E{i:04d}") for i, p in enumerate(people[:COUNT]) if i not in (2, 4)]
    h.set_hr([*rows, row_for(hire, "H1")])
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    with h.store() as store:
        stored = store.snapshot.load_people()
    fresh = h.run(full=True, dry_run=True)
    assert fresh.actions_by_outcome == {}
    refs = world.references()
    assert _ids(stored) == sorted(p.id for p in world.people_list())
    assert {p.reference: p.id for p in stored if p.reference} == refs
    assert next(p for p in stored if p.id == people[1].id).out_of_service
