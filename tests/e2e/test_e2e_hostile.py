"""Runs against a hostile or broken Protime end with a defined status, keep the figures they
reached, record what they did and release the lock (issue 9)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx

from e2e.harness import HookTransport, HRRow, row_for, sim_config
from sync.protime import ProtimeClient
from sync.reconcile import RunStatus, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 30


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


class _HangingWrites(HookTransport):
    """Every PUT waits for ever (as behind a proxy that never answers): only a deadline ends it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            await asyncio.Event().wait()
        return await self.inner.handle_async_request(request)


def _run(h: Harness, transport: httpx.AsyncBaseTransport | None = None, **settings: Any) -> Any:
    changed = h.settings.model_copy(update=settings)
    client = ProtimeClient(
        changed.protime, transport=transport or h.sim.transport(), backoff=h.backoff
    )
    return run(settings=changed, protime=client)


def test_the_run_deadline_stops_a_hung_run_records_it_and_frees_the_lock(
    make_harness: Callable[..., Harness],
) -> None:
    """Writes that never answer end at IDSYNC_RUN_DEADLINE_SECONDS as `interrupted`, with figures."""
    h = make_harness(config=sim_config(people=COUNT + 5), rows=_everyone)
    hanging = _HangingWrites(h.sim.transport(), lambda _request: None)
    result = _run(h, hanging, run_deadline_seconds=1.0)
    assert result.status is RunStatus.INTERRUPTED, result.message
    assert "IDSYNC_RUN_DEADLINE_SECONDS" in result.message
    assert f"{COUNT} of {COUNT} action(s) not attempted or cut off" in result.message
    assert result.hr_count == COUNT
    assert result.protime_count == COUNT + 5
    assert result.api_requests.get("people:200", 0) >= 1
    assert result.counts_by_situation.get("unlinked") == COUNT
    with h.store() as store:
        row = store.runs.runs(limit=1)[0]
    assert row.status == "interrupted"
    assert row.hr_count == COUNT
    assert row.protime_count == COUNT + 5
    assert row.api_calls.get("people:200", 0) >= 1
    assert h.pending_events() == 0  # closed as skipped, for the next run to redo
    # The lock is free: the next run starts, writes everything and converges.
    again = _run(h)
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert len(h.references()) == COUNT


def test_a_run_failing_at_the_protime_read_keeps_what_it_read(
    make_harness: Callable[..., Harness],
) -> None:
    """A hostile second page fails the run; HR and the first page's people stay in its figures."""
    h = make_harness(config=sim_config(people=COUNT + 5, page_size=10), rows=_everyone)
    first_page: list[bytes] = []

    class _SecondPageRepeats(HookTransport):
        # The second page serves the first page's people again, under the first page's nextLink.
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if request.method != "GET" or not request.url.path.endswith("/people"):
                return response
            await response.aread()
            if not first_page:
                first_page.append(response.content)
                return httpx.Response(200, content=response.content)
            body = first_page[0].replace(b"continuationToken=", b"continuationToken=again")
            return httpx.Response(200, content=body)

    transport = _SecondPageRepeats(h.sim.transport(), lambda _request: None)
    result = _run(h, transport)
    assert result.status is RunStatus.FAILED
    assert "repeats 10 person(s) already read" in result.message
    assert result.hr_count == COUNT
    assert result.protime_count == 10
    assert result.api_requests.get("people:200") == 2
    with h.store() as store:
        row = store.runs.runs(limit=1)[0]
    assert (row.hr_count, row.protime_count) == (COUNT, 10)
    assert row.api_calls.get("people:200") == 2


def test_a_run_failing_at_the_write_back_keeps_every_figure(
    make_harness: Callable[..., Harness],
) -> None:
    """A write-back that fails after the writes leaves the run's counts, calls and outcomes."""
    h = make_harness(
        config=sim_config(people=COUNT),
        rows=_everyone,
        hr={"writeback_table": "protime_ids", "writeback_column": "protime_id"},
    )
    # The check before the run finds the table (a missing one stops the run before any write);
    # it is dropped at the first PUT, so the write-back fails after the writes.
    with sqlite3.connect(h.hr_path) as conn:
        conn.execute("CREATE TABLE protime_ids (employee_id TEXT, protime_id INTEGER)")
    conn.close()

    def drop_table(request: httpx.Request) -> None:
        if request.method == "PUT":
            with sqlite3.connect(h.hr_path) as dropping:
                dropping.execute("DROP TABLE IF EXISTS protime_ids")
            dropping.close()

    result = _run(h, HookTransport(h.sim.transport(), drop_table))
    assert result.status is RunStatus.FAILED
    assert "IDSYNC_HR__WRITEBACK_TABLE" in result.message
    assert result.hr_count == COUNT
    assert result.protime_count == COUNT
    assert result.actions_by_outcome.get("write:succeeded") == COUNT
    assert result.api_requests.get("put_reference:201") == COUNT
    with h.store() as store:
        row = store.runs.runs(limit=1)[0]
    assert row.api_calls.get("put_reference:201") == COUNT
    assert row.actions_by_outcome.get("write", {}).get("succeeded") == COUNT


def test_a_write_answered_with_html_is_failed_and_verified_by_the_next_read(
    make_harness: Callable[..., Harness],
) -> None:
    """A PUT answered 200 with an HTML page is `failed` with the reason; the next read settles it."""
    h = make_harness(config=sim_config(people=COUNT), rows=_everyone)

    class _HtmlAnswers(HookTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if request.method == "PUT":
                return httpx.Response(200, text="<html>OK</html>")
            return response

    result = _run(h, _HtmlAnswers(h.sim.transport(), lambda _request: None))
    assert result.status is RunStatus.PARTIAL
    assert result.actions_by_outcome.get("write:failed") == COUNT
    with h.store() as store:
        mapping = store.map.mapping("E000")
    assert mapping is not None
    assert "write answer" in (mapping.last_error or "")
    # Protime did take the writes (only the answers were wrong): the next read sees them linked.
    again = _run(h)
    assert again.counts_by_situation.get("linked") == COUNT, again.counts_by_situation


def test_a_run_blocked_by_a_threshold_keeps_its_situations_and_calls(
    make_harness: Callable[..., Harness],
) -> None:
    """Blocked after classifying: the run row has the counts by situation, HR, Protime, calls."""
    h = make_harness(config=sim_config(people=COUNT), rows=_everyone, safety={"max_writes": 3})
    result = _run(h)
    assert result.status is RunStatus.BLOCKED, result.message
    assert result.counts_by_situation.get("unlinked") == COUNT
    with h.store() as store:
        row = store.runs.runs(limit=1)[0]
    assert row.status == "blocked"
    assert (row.hr_count, row.protime_count) == (COUNT, COUNT)
    assert row.counts_by_situation.get("unlinked") == COUNT
    assert row.api_calls.get("people:200", 0) >= 1
