"""A tenant's life through Protime's delta as published, in every order the simulator can give a
set of changes (issue 19): a first sync, a run with no change, a run after an add, a correction
(two versions of one person) and a removal, and a run after the link expired, each exact.

Exact means, after each run: the references Protime holds are the ones the HR rows call for, and
the snapshot the state database keeps (persons, keys, references, change versions) equals the
simulator's people.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from e2e.harness import HRRow, hook, row_for, sim_config
from sync.reconcile import RunStatus
from sync.simulator import DELTA_ORDERS, change_version_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.reconcile import RunResult
    from sync.simulator import Simulator

COUNT = 30
INCREMENTAL = {"full_read_every": "24h"}


def _rows(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:04d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _expected(h: Harness, rows: list[HRRow]) -> dict[str, int]:
    """The references the HR rows call for: each active row onto the one person holding its
    employee number (rows with none, or with two holders, call for nothing)."""
    holders: dict[str | None, list[int]] = {}
    for p in h.sim.world.people_list():
        holders.setdefault(p.employee_number, []).append(p.id)
    return {
        str(r.employee_id): holders[r.employee_number][0]
        for r in rows
        if r.active and len(holders.get(r.employee_number, [])) == 1
    }


def _exact(h: Harness, result: RunResult, rows: list[HRRow]) -> None:
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert h.references() == _expected(h, rows)
    world = {
        p.id: (
            p.employee_number,
            p.badge_number,
            h.sim.world.reference_of(p.id),
            change_version_text(p.change_version),
        )
        for p in h.sim.world.people_list()
    }
    with h.store() as store:
        people = store.snapshot.load_people()
        versions = store.snapshot.people_versions(ids=[p.id for p in people])
        snapshot = {
            p.id: (p.employee_number, p.badge_number, p.reference, versions[p.id]) for p in people
        }
    assert snapshot == world


def _version_text(h: Harness, pid: int) -> str:
    person = h.sim.world.person(pid)
    assert person is not None
    return change_version_text(person.change_version)


@pytest.mark.parametrize("order", DELTA_ORDERS)
def test_a_tenant_stays_exact_through_every_kind_of_change(
    make_harness: Callable[..., Harness], order: str
) -> None:
    """First sync, no change, add + correction + removal, expired link: each run is exact."""
    h = make_harness(
        config=sim_config(people=COUNT + 5, delta_order=order, fault_seed=3),
        rows=_rows,
        schedule=dict(INCREMENTAL),
    )
    world = h.sim.world
    rows = _rows(h.sim)

    first = h.run()
    assert (first.protime_read, first.protime_read_reason) == ("full", "no snapshot of Protime yet")
    assert h.sim.counters.count("people.delta_start") == 1
    _exact(h, first, rows)

    h.sim.counters.reset()
    quiet = h.run()
    assert (quiet.protime_read, quiet.actions_by_outcome) == ("incremental", {})
    assert h.sim.counters.count("people.delta_start") == 0
    assert h.sim.counters.count("delta.changes") == 1
    _exact(h, quiet, rows)

    # An add (a new person a new HR row matches), a correction (a person holding no row's
    # number is changed twice: first to a wrong number, then to the new row's), and a removal
    # (a linked person leaves Protime: its row is unmatched and its reference gone).
    spare = world.people_list()[COUNT + 1]
    added = world.add_person(
        first_name="Ada", last_name="Added", employee_number="ADD-1", badge_number="BADD-1"
    )
    world.update_person(spare.id, employee_number="WRONG-7")
    corrected = world.update_person(spare.id, employee_number="FIX-7")
    removed = world.people_list()[3]
    world.remove_person(removed.id)
    rows = [
        *rows,
        HRRow("E-ADD", employee_number="ADD-1"),
        HRRow("E-FIX", employee_number="FIX-7"),
    ]
    h.set_hr(rows)
    h.sim.counters.reset()
    changed = h.run()
    assert changed.protime_read == "incremental"
    assert h.sim.counters.count("people.delta_start") == 0
    assert h.references()["E-ADD"] == added.id
    assert h.references()["E-FIX"] == corrected.id
    assert removed.id not in h.references().values()
    assert _version_text(h, corrected.id) > _version_text(h, added.id)
    _exact(h, changed, rows)

    # The link expires (72 h after its last request): the run reads in full in the same run.
    h.sim.advance_clock(73 * 3600)
    world.update_person(world.people_list()[0].id, badge_number="LATE-1")
    h.sim.counters.reset()
    late = h.run()
    assert (late.protime_read, late.protime_read_reason) == (
        "full",
        "the delta link is gone (410: expired, or replaced by a newer round)",
    )
    assert h.sim.counters.count("delta.changes", 410) == 1
    assert h.sim.counters.count("people.delta_start") == 1
    _exact(h, late, rows)

    # ... and the link that full read kept serves the next run.
    h.sim.counters.reset()
    after = h.run()
    assert after.protime_read == "incremental"
    _exact(h, after, rows)


@pytest.mark.parametrize("order", DELTA_ORDERS)
def test_changes_made_while_the_first_round_is_paged_leave_the_newest_state(
    make_harness: Callable[..., Harness], order: str
) -> None:
    """A person changed twice while the first round is paged is read at its newest version, and
    the next set of changes, which lists both changes in the given order, leaves it there."""
    h = make_harness(
        config=sim_config(people=COUNT, delta_order=order, page_size=5, fault_seed=5),
        rows=_rows,
        schedule=dict(INCREMENTAL),
    )
    world = h.sim.world
    last = world.people_list()[-1]
    state: dict[str, Any] = {"pages": 0}

    def during_round(request: Any) -> None:
        # On the first round's second page: change the last person twice; the round reads
        # them later, at their newest version, and the next set of changes lists both.
        if request.url.path.endswith("/people") and "continuationToken" in str(request.url):
            state["pages"] += 1
            if state["pages"] == 1:
                world.update_person(last.id, badge_number="MID-1")
                world.update_person(last.id, badge_number="MID-2")

    h.wrap_transport = hook(during_round)
    first = h.run()
    assert state["pages"] >= 1
    _exact(h, first, _rows(h.sim))
    h.wrap_transport = None
    h.sim.counters.reset()
    again = h.run()
    assert again.protime_read == "incremental"
    _exact(h, again, _rows(h.sim))
    with h.store() as store:
        (person,) = [p for p in store.snapshot.load_people() if p.id == last.id]
    assert person.badge_number == "MID-2"
