"""Issue 22 over a real socket: hostile answers from the trial end a run in a defined way."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from structlog.testing import capture_logs

from e2e.harness import HRRow, row_for, sim_config
from sync.reconcile import RunStatus, run
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 30


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def test_people_whose_ids_cannot_be_stored_are_skipped_and_reported(
    make_harness: Callable[..., Harness],
) -> None:
    """Persons with id 2**63 or 10**30 are skipped with a warning and a count, never fatal."""
    h = make_harness(config=sim_config(people=COUNT, page_size=10), rows=_everyone)
    for n, bad in enumerate((2**63, 10**30)):
        h.sim.world.add_person(id=bad, first_name="Big", last_name=f"Id{n}")
    with contextlib.ExitStack() as stack:
        h.base_url = stack.enter_context(serve_in_thread(h.sim))
        for _ in range(2):  # the second run reads the snapshot the first one stored
            client = h.client()
            with capture_logs() as logs:
                result = run(settings=h.settings, protime=client)
            assert result.status is RunStatus.SUCCEEDED, result.message
            assert result.protime_count == COUNT
            assert client.stats.people_skipped == 2
            warnings = [e for e in logs if e["event"] == "protime.people_skipped"]
            assert sum(e["count"] for e in warnings) == 2
            assert all(e["page"] == 4 for e in warnings)  # both on the last page
    assert len(h.references()) == COUNT
