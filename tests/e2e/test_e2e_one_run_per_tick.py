"""One run per tick, whoever runs it (issue 21): a scheduled run that finds, once it holds its
sync's run lock, a run of the sync started since its tick (another replica's) ends `skipped`
without reading or writing; dry runs, plans and runs skipped at the lock do not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from e2e.harness import row_for, sim_config
from sync.reconcile import RunStatus
from sync.state import RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator


def _everyone(sim: Simulator) -> list[object]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list())]


def test_a_run_started_since_the_tick_makes_the_scheduled_run_a_skip(
    make_harness: Callable[..., Harness],
) -> None:
    """The replica that gets the lock second finds the first's run, started after the tick, and
    does nothing: no request to Protime, recorded `skipped` with the reason."""
    h = make_harness(config=sim_config(people=20), rows=_everyone)
    tick = datetime.now(UTC) - timedelta(seconds=1)
    first = h.run(trigger="schedule", due_at=tick)
    assert first.status is RunStatus.SUCCEEDED, first.message
    calls = len(h.sim.request_log)
    second = h.run(trigger="schedule", due_at=tick)
    assert second.status is RunStatus.SKIPPED
    assert "after its tick" in second.message
    assert len(h.sim.request_log) == calls
    third = h.run(trigger="schedule", due_at=datetime.now(UTC))  # the next tick: due again
    assert third.status is RunStatus.SUCCEEDED, third.message


def test_dry_runs_plans_and_skips_do_not_stand_for_a_tick(
    make_harness: Callable[..., Harness],
) -> None:
    """A dry run and a skipped run after the tick leave the scheduled run due: it runs."""
    h = make_harness(config=sim_config(people=20), rows=_everyone)
    tick = datetime.now(UTC) - timedelta(seconds=1)
    assert h.run(dry_run=True).status is RunStatus.SUCCEEDED
    with h.store() as store:
        skipped = store.runs.start_run(trigger="schedule", dry_run=False, forced=False)
        store.runs.finish_run(run_id=skipped, status=RunStatus.SKIPPED, summary=RunSummary())
        assert store.runs.last_work_started() is None
    scheduled = h.run(trigger="schedule", due_at=tick)
    assert scheduled.status is RunStatus.SUCCEEDED, scheduled.message
    assert len(h.references()) == 20
