"""Issue 22, point 10, over a real socket: a Retry-After of hours ends the run at once."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from e2e.harness import HRRow, row_for, sim_config
from sync.reconcile import RunStatus, run
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 40
DAY = 86_400.0


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


@pytest.mark.parametrize("phase", ["writing", "reading"])
def test_a_retry_after_of_a_day_ends_the_run_interrupted_saying_when(
    make_harness: Callable[..., Harness], phase: str
) -> None:
    """A 429 with Retry-After: 86400 (past IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS) while
    reading or writing ends the run `interrupted` (exit 1) without waiting, says when Protime
    asked to be called again, leaves the rest unattempted, and the next run converges."""
    # One page holds everyone: the read is request 1, the writes follow; every 5th request is
    # refused for a day (the 5th: the 4th write; or, with 2-person pages, the 5th page).
    page_size = 100 if phase == "writing" else 2
    h = make_harness(config=sim_config(people=COUNT, page_size=page_size), rows=_everyone)
    h.sim.set_faults(fault_every_429=5, retry_after_seconds=DAY, retry_after_style="whole")
    before = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        h.base_url = stack.enter_context(serve_in_thread(h.sim))
        result = run(settings=h.settings, protime=h.client())
        assert result.status is RunStatus.INTERRUPTED, result.message
        assert result.exit_code == 1
        assert "IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS" in result.message
        assert result.retry_at is not None
        assert before + timedelta(seconds=DAY - 60) <= result.retry_at
        assert result.retry_at <= datetime.now(UTC) + timedelta(seconds=DAY + 60)
        assert result.retry_at.strftime("%Y-%m-%d %H:%M") in result.message
        assert len(h.references()) < COUNT  # the rest was left for the next run
        h.sim.set_faults(fault_every_429=0)
        again = run(settings=h.settings, protime=h.client())
        assert again.status is RunStatus.SUCCEEDED, again.message
    assert len(h.references()) == COUNT
