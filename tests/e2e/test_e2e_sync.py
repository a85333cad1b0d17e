"""End to end: HR table + simulator + state database through ``sync.reconcile.run``."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from e2e.harness import HRRow, hook, is_put, row_for, sim_config
from sync.reconcile import RunStatus
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from e2e.harness import Harness
    from sync.simulator import SimPerson, Simulator

LINKED_COUNT = 30


def _everyone(sim: Simulator) -> list[HRRow]:
    people = sim.world.people_list()[:LINKED_COUNT]
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(people)]


def _expected(h: Harness) -> dict[str, int]:
    people = h.sim.world.people_list()[:LINKED_COUNT]
    return {f"E{i:03d}": p.id for i, p in enumerate(people)}


def _assert_initial_sync_and_rerun(h: Harness) -> None:
    expected = _expected(h)
    first = h.run()
    assert first.status is RunStatus.SUCCEEDED, first.message
    assert first.actions_by_outcome == {"write:succeeded": LINKED_COUNT}
    assert h.references() == expected

    writes = h.writes()
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED
    assert again.plan is not None
    assert again.plan.actions == ()
    assert again.actions_by_outcome == {}
    assert h.writes() == writes
    assert again.counts_by_situation["linked"] == LINKED_COUNT

    with h.store() as store:
        for hr_id, person in expected.items():
            row = store.map.mapping(hr_id)
            assert row is not None
            assert (row.protime_id, row.situation) == (person, "linked")
            assert row.last_written_value == hr_id
            assert [r.hr_id for r in store.map.mapping_by_protime_id(person)] == [hr_id]
    assert h.pending_events() == 0


def test_initial_sync_links_everyone_and_rerun_plans_nothing(
    make_harness: Callable[..., Harness], state_url: str
) -> None:
    """A first run writes every matched HR id, a second plans nothing, and lookups work both ways."""
    h = make_harness(rows=_everyone, state_url=state_url)
    _assert_initial_sync_and_rerun(h)


@pytest.mark.slow
def test_initial_sync_over_real_http(make_harness: Callable[..., Harness]) -> None:
    """The same sync through a socket: the simulator served by uvicorn on a free port."""
    h = make_harness(rows=_everyone)
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        _assert_initial_sync_and_rerun(h)


def _mixed_world(sim: Simulator) -> list[HRRow]:
    """HR rows and a Protime world holding every situation (see the test for the expectations)."""
    p = sim.world.people_list()
    world = sim.world
    rows = [row_for(p[i], f"E{i:02d}") for i in range(10)]
    world.set_reference("L1", p[10].id)
    rows.append(row_for(p[10], "L1"))  # linked already
    world.set_reference("OLD-1", p[11].id)
    rows.append(row_for(p[11], "D1"))  # drifted: its person holds a value HR no longer has
    world.set_reference("D2", p[13].id)
    rows.append(row_for(p[12], "D2"))  # drifted: manual link to p[12], the value sits on p[13]
    rows.append(HRRow("U1", employee_number="NO-SUCH-NUMBER"))  # unmatched
    world.update_person(p[14].id, employee_number="DUP-9")
    world.update_person(p[15].id, employee_number="DUP-9")
    rows.append(HRRow("X1", employee_number="DUP-9"))  # disputed
    world.set_reference("GONE-1", p[16].id)  # orphaned: no HR row
    world.set_reference("Q1", p[17].id)
    rows.append(row_for(p[17], "Q1", active=0))  # orphaned: out of scope in HR
    rows.append(HRRow("BAD/1", employee_number=p[20].employee_number))  # invalid
    rows.append(HRRow("", employee_number=p[21].employee_number))  # invalid
    rows.append(row_for(p[18], "I1"))  # ignored by an admin
    rows.append(row_for(p[19], "F1"))  # failed: its person vanishes before the write
    return rows


def test_every_situation_in_one_mixed_world(
    make_harness: Callable[..., Harness], state_url: str
) -> None:
    """One run over a world with every situation writes exactly what design.md says, no more."""
    vanished: list[int] = []

    def remove_f1_person(request: httpx.Request) -> None:
        if is_put(request, "F1") and not vanished:
            person = h.sim.world.people_list()[19]
            vanished.append(person.id)
            h.sim.world.remove_person(person.id)

    h = make_harness(rows=_mixed_world, state_url=state_url, wrap_transport=hook(remove_f1_person))
    p = h.sim.world.people_list()
    with h.store() as store:
        store.admin.link(hr_id="D2", protime_id=p[12].id)
        store.admin.ignore(hr_id="I1")

    result = h.run()

    assert result.status is RunStatus.PARTIAL, result.message
    assert result.exit_code == 4
    assert result.counts_by_situation == {
        "linked": 1,
        "unlinked": 11,
        "drifted": 2,
        "unmatched": 1,
        "disputed": 1,
        "orphaned": 2,
        "invalid": 2,
        "ignored": 1,
        "failed": 0,
    }
    assert result.actions_by_outcome == {
        "write:succeeded": 12,
        "delete:succeeded": 1,
        "write:failed": 1,
    }
    expected = {f"E{i:02d}": p[i].id for i in range(10)}
    expected |= {"L1": p[10].id, "D1": p[11].id, "D2": p[12].id}
    expected |= {"GONE-1": p[16].id, "Q1": p[17].id}  # orphans are reported, not deleted
    assert h.references() == expected

    with h.store() as store:
        situations = {r.hr_id: r.situation for r in store.map.iter_mappings()}
        failed = store.map.mapping("F1")
        assert failed is not None
        assert failed.last_error is not None
        assert "404" in failed.last_error
    assert situations["F1"] == "failed"
    assert situations["U1"] == "unmatched"
    assert situations["X1"] == "disputed"
    assert situations["I1"] == "ignored"
    assert situations["BAD/1"] == "invalid"
    assert situations["GONE-1"] == situations["Q1"] == "orphaned"
    assert {situations[k] for k in expected if k not in {"GONE-1", "Q1"}} == {"linked"}
    assert h.pending_events() == 0
    _assert_failed_waits_for_retry_failed(h, p[19])


def _assert_failed_waits_for_retry_failed(h: Harness, person: SimPerson) -> None:
    # The person comes back as it was: same person, same value, so the same (failed) write.
    h.sim.world.put_person(person)
    writes = h.writes()
    second = h.run()
    assert second.status is RunStatus.SUCCEEDED
    assert second.counts_by_situation["failed"] == 1
    assert second.plan is not None
    assert second.plan.actions == ()
    assert h.writes() == writes

    third = h.run(retry_failed=True)
    assert third.status is RunStatus.SUCCEEDED
    assert third.actions_by_outcome == {"write:succeeded": 1}
    assert h.references()["F1"] == person.id

    fourth = h.run()
    assert fourth.plan is not None
    assert fourth.plan.actions == ()
    assert fourth.counts_by_situation["linked"] == 14


def test_a_permanent_failure_is_retried_when_its_inputs_change(
    make_harness: Callable[..., Harness],
) -> None:
    """A 400 from Protime ends `failed`; reruns leave it until the HR row points elsewhere."""
    # Protime refuses values longer than 8 characters; idsync's own limit (255) lets it through.
    long_id = "LONG-ID-0001"

    def rows(sim: Simulator) -> list[HRRow]:
        return [
            row_for(sim.world.people_list()[0], long_id),
            row_for(sim.world.people_list()[1], "S1"),
        ]

    h = make_harness(config=sim_config(max_value_length=8), rows=rows)
    first = h.run()
    assert first.status is RunStatus.PARTIAL
    assert first.actions_by_outcome == {"write:succeeded": 1, "write:failed": 1}
    with h.store() as store:
        row = store.map.mapping(long_id)
        assert row is not None
        assert row.situation == "failed"
        assert row.failed_fingerprint is not None

    puts = h.sim.counters.count("references.put")
    second = h.run()
    assert second.status is RunStatus.SUCCEEDED
    assert second.counts_by_situation["failed"] == 1
    assert h.sim.counters.count("references.put") == puts

    people = h.sim.world.people_list()
    h.set_hr([row_for(people[2], long_id), row_for(people[1], "S1")])  # HR moved the employee
    third = h.run()
    assert third.actions_by_outcome == {"write:failed": 1}
    assert h.sim.counters.count("references.put") == puts + 1
    with h.store() as store:
        row = store.map.mapping(long_id)
        assert row is not None
        assert row.failed_fingerprint is not None
        assert str(people[2].id) in row.failed_fingerprint


def _hr_protime_ids(h: Harness) -> dict[str, int | None]:
    with sqlite3.connect(h.hr_path) as conn:
        found = dict(conn.execute("SELECT employee_id, protime_id FROM employees"))
    conn.close()
    return found


def test_write_back_stores_protime_ids_in_the_hr_table(
    make_harness: Callable[..., Harness],
) -> None:
    """With write-back configured, a real run (not a dry run) puts each linked employee's Protime
    id into the HR column; employees without a person keep NULL."""

    def rows(sim: Simulator) -> list[HRRow]:
        return [*_everyone(sim), HRRow("U1", employee_number="NO-SUCH-NUMBER")]

    h = make_harness(
        rows=rows, hr={"writeback_table": "employees", "writeback_column": "protime_id"}
    )
    assert h.run(dry_run=True).status is RunStatus.SUCCEEDED
    assert set(_hr_protime_ids(h).values()) == {None}

    assert h.run().status is RunStatus.SUCCEEDED
    assert _hr_protime_ids(h) == {**_expected(h), "U1": None}
    again = h.run()
    assert again.plan is not None
    assert again.plan.actions == ()
