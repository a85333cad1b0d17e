"""Settled runs: with nothing changed since a run that had nothing to do, nothing is planned again.

A run settles when its plan was empty; the next run whose HR, Protime delta, prior state and
settings are the same takes its figures and the map's records, without loading the snapshot or
classifying. Any change, any run or admin action in between, makes an ordinary run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from contracts_support import validate
from e2e.harness import HRRow, row_for, sim_config
from sync.cli._contracts import record_object
from sync.cli.reconcile import _as_dict
from sync.domain import Situation
from sync.reconcile import RunStatus
from sync.state._settled import SettledStore
from sync.state._snapshot import SnapshotStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.reconcile import RunResult
    from sync.simulator import Simulator

COUNT = 40


def _rows(sim: Simulator) -> list[HRRow]:
    """40 employees matched by employee number, two that match nobody, one out of scope."""
    people = sim.world.people_list()
    rows = [row_for(p, f"E{i:04d}") for i, p in enumerate(people[:COUNT])]
    rows += [HRRow("U1", employee_number="nobody-1"), HRRow("U2", employee_number="nobody-2")]
    rows.append(row_for(people[COUNT], "GONE", active=0))
    return rows


def _harness(make_harness: Callable[..., Harness], **fields: Any) -> Harness:
    fields.setdefault("config", sim_config(people=COUNT + 10))
    h = make_harness(rows=_rows, schedule={"full_read_every": "24h"}, **fields)
    # The employee out of scope still has its reference in Protime: an orphan, kept.
    h.sim.world.set_reference("GONE", h.sim.world.people_list()[COUNT].id)
    return h


def _settled_pair(h: Harness) -> tuple[RunResult, RunResult]:
    """The first run writes every reference; the second has nothing to do and settles; the
    third finds nothing changed."""
    first = h.run()
    assert first.actions_by_outcome == {"write:succeeded": COUNT}
    assert first.settled_since is None
    quiet = h.run()
    assert quiet.status is RunStatus.SUCCEEDED, quiet.message
    assert (quiet.protime_read, quiet.actions_by_outcome) == ("incremental", {})
    assert quiet.settled_since is None  # it planned: the run before it wrote
    assert quiet.plan is not None
    settled = h.run()
    assert settled.status is RunStatus.SUCCEEDED, settled.message
    assert settled.settled_since == quiet.run_id
    return quiet, settled


def _records(result: RunResult) -> list[dict[str, Any]]:
    if result.plan is not None:
        found = [c for c in result.plan.classifications if c.situation is not Situation.LINKED]
    else:
        assert result.records is not None
        found = list(result.records)
    return sorted((record_object(c) for c in found), key=lambda r: r["hr_id"])


def test_a_run_with_nothing_changed_reports_the_settled_run_without_planning(
    make_harness: Callable[..., Harness], state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run with an empty plan, a run that finds nothing changed makes 2 requests, does
    not load the snapshot, and reports the same counts and records as the run that planned."""
    h = _harness(make_harness, state_url=state_url)
    h.run()
    quiet = h.run()
    assert quiet.settled_since is None

    def no_snapshot(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a settled run loads no snapshot")

    monkeypatch.setattr(SnapshotStore, "load_people", no_snapshot)
    h.sim.counters.reset()
    settled = h.run()
    assert settled.status is RunStatus.SUCCEEDED, settled.message
    assert settled.settled_since == quiet.run_id
    # A token and one delta page.
    assert sum(n for by in h.sim.counters.as_dict().values() for n in by.values()) <= 2
    assert settled.counts_by_situation == quiet.counts_by_situation
    assert (settled.hr_count, settled.protime_count) == (quiet.hr_count, quiet.protime_count)
    assert settled.actions_by_outcome == {}
    assert settled.plan is None
    records = _records(settled)
    assert records == _records(quiet)
    assert {r["hr_id"]: r["situation"] for r in records} == {
        "GONE": "orphaned",
        "U1": "unmatched",
        "U2": "unmatched",
    }
    document = {
        key: list(value) if isinstance(value, Iterator) else value
        for key, value in _as_dict(settled).items()
    }
    validate(document)
    assert (document["plan"], document["settled_since"]) == ([], quiet.run_id)
    assert sorted(document["records"], key=lambda r: r["hr_id"]) == records
    # It settles in turn: the next one takes its figures.
    after = h.run()
    assert after.settled_since == settled.run_id
    with h.store() as store:
        assert store.runs.runs(limit=1)[0].counts_by_situation == quiet.counts_by_situation


def test_a_new_hire_in_hr_plans_again(make_harness: Callable[..., Harness]) -> None:
    """An HR row added after a settled run: the run plans, writes the new reference, and the
    run after it settles again."""
    h = _harness(make_harness)
    _settled_pair(h)
    people = h.sim.world.people_list()
    h.set_hr([*_rows(h.sim), row_for(people[COUNT + 1], "NEW")])
    hired = h.run()
    assert hired.settled_since is None
    assert hired.actions_by_outcome == {"write:succeeded": 1}
    assert h.references()["NEW"] == people[COUNT + 1].id
    assert h.run().settled_since is None  # the run after a write plans once more ...
    assert h.run().settled_since is not None  # ... and then settles


def test_a_person_changed_in_protime_plans_again(make_harness: Callable[..., Harness]) -> None:
    """A change the delta shows (a new employee number matching U1): the run loads the
    snapshot, plans and writes U1's reference."""
    h = _harness(make_harness)
    _settled_pair(h)
    person = h.sim.world.people_list()[COUNT + 2]
    h.sim.world.update_person(person.id, employee_number="nobody-1")
    result = h.run()
    assert result.settled_since is None
    assert result.actions_by_outcome == {"write:succeeded": 1}
    assert h.references()["U1"] == person.id


@pytest.mark.parametrize(
    "between",
    ["admin ignore", "clear failed", "a --only run", "an interrupted run", "a settings change"],
)
def test_anything_in_between_plans_again(
    make_harness: Callable[..., Harness], between: str
) -> None:
    """An admin's change, another real run, or a changed setting since the settled run: the
    next run classifies and plans as usual."""
    h = _harness(make_harness)
    quiet, _ = _settled_pair(h)
    if between == "admin ignore":
        with h.store() as store:
            store.admin.ignore(hr_id="U2")
    elif between == "clear failed":
        with h.store() as store:
            store.admin.clear_failed()  # nothing to clear: no event, nothing happened
    elif between == "a --only run":
        assert h.run(only=("E0001",)).status is RunStatus.SUCCEEDED
    elif between == "an interrupted run":
        with h.store() as store:
            store.runs.start_run(trigger="cli", dry_run=False, forced=False)  # a process that died
    else:
        h.safety = {"max_deletes": 3}
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    if between == "clear failed":
        assert result.settled_since is not None
        return
    assert result.settled_since is None
    assert result.plan is not None
    if between == "admin ignore":
        assert result.counts_by_situation["ignored"] == 1
    else:
        assert result.counts_by_situation == quiet.counts_by_situation
    assert h.run().settled_since == result.run_id


def test_a_dry_run_neither_settles_nor_unsettles(make_harness: Callable[..., Harness]) -> None:
    """A dry run always plans (it is asked to show the plan) and leaves the settled run be."""
    h = _harness(make_harness)
    _, settled = _settled_pair(h)
    dry = h.run(dry_run=True)
    assert dry.settled_since is None
    assert dry.plan is not None
    assert h.run().settled_since == settled.run_id


def test_a_full_read_plans_and_may_settle(make_harness: Callable[..., Harness]) -> None:
    """--full reads every person and plans; with nothing to do it settles, and the next
    incremental run takes its figures."""
    h = _harness(make_harness)
    _settled_pair(h)
    full = h.run(full=True)
    assert (full.protime_read, full.settled_since) == ("full", None)
    assert h.run().settled_since == full.run_id


def test_a_crash_before_settling_leaves_an_ordinary_run_next(
    make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after saving its snapshot but before settling: the snapshot save cleared the
    old settled run, so the next run plans, and converges."""
    h = _harness(make_harness)
    _settled_pair(h)

    def killed(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("killed before settling")

    with monkeypatch.context() as patch:
        patch.setattr(SettledStore, "settle", killed)
        crashed = h.run()
    assert crashed.status is RunStatus.FAILED
    after = h.run()
    assert after.status is RunStatus.SUCCEEDED, after.message
    assert after.settled_since is None
    assert after.actions_by_outcome == {}
    assert h.run().settled_since == after.run_id
