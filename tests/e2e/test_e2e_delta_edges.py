"""The edges of Protime's published delta a real tenant meets (issue 19): another consumer
replacing the one active delta, a new round refused with 409, and writes Protime accepts
without confirming them (202 Accepted, or an empty answer)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
from structlog.testing import capture_logs

from e2e.harness import row_for, sim_config
from sync.reconcile import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 20
INCREMENTAL = {"full_read_every": "24h"}


def _rows(sim: Simulator) -> list[Any]:
    return [row_for(p, f"E{i:04d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _other_consumer_starts_a_round(h: Harness) -> None:
    """Another integration reads the people delta: its new round replaces ours."""

    async def start() -> None:
        async with h.client() as client:
            async for _ in client.iter_full(start_delta=True):
                pass

    asyncio.run(start())


def test_a_replaced_delta_on_two_runs_in_a_row_warns_and_names_the_setting(
    make_harness: Callable[..., Harness],
) -> None:
    """When another consumer replaces the delta before two runs in a row, each reads in full
    (410) and the second warns that another consumer may be replacing it, naming DELTA=off."""
    h = make_harness(config=sim_config(people=COUNT), rows=_rows, schedule=dict(INCREMENTAL))
    assert h.run().status is RunStatus.SUCCEEDED
    reasons = []
    warnings = []
    for _ in range(2):
        _other_consumer_starts_a_round(h)
        with capture_logs() as logs:
            result = h.run()
        assert result.status is RunStatus.SUCCEEDED, result.message
        reasons.append((result.protime_read, result.protime_read_reason))
        warnings.append([e for e in logs if e["event"] == "protime.delta_replaced"])
    assert (
        reasons
        == [("full", "the delta link is gone (410: expired, or replaced by a newer round)")] * 2
    )
    assert warnings[0] == []
    (warning,) = warnings[1]
    assert warning["runs_in_a_row"] == 2
    assert "IDSYNC_PROTIME__DELTA=off" in warning["advice"]
    # A run whose link works again resets the count.
    assert h.run().protime_read == "incremental"
    with h.store() as store:
        feed = store.snapshot.people_feed()
        assert feed is not None
        assert feed.delta_refusals == 0


class _Answering(httpx.AsyncBaseTransport):
    """Answers the requests ``answer`` picks itself (a response), the rest through ``inner``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        answer: Callable[[httpx.Request], httpx.Response | None],
    ) -> None:
        self.inner = inner
        self.answer = answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = self.answer(request)
        if response is not None:
            return response
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_round_refused_with_409_reads_in_full_without_a_delta(
    make_harness: Callable[..., Harness],
) -> None:
    """A `?delta` answered 409 after every retry: the run reads with plain GET /people, warns
    that another consumer may hold the delta, keeps no link, and still writes what is needed."""
    h = make_harness(
        config=sim_config(people=COUNT),
        rows=_rows,
        schedule=dict(INCREMENTAL),
        protime={"retry_attempts": 2},
    )

    def refuse_rounds(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/people") and "delta" in request.url.params:
            body = {"error": {"code": "Conflict", "message": "a delta is active"}}
            return httpx.Response(409, json=body)
        return None

    h.wrap_transport = lambda inner: _Answering(inner, refuse_rounds)
    with capture_logs() as logs:
        result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert len(h.references()) == COUNT
    assert [e["event"] for e in logs if e["event"] == "protime.delta_conflict"] == [
        "protime.delta_conflict"
    ]
    with h.store() as store:
        feed = store.snapshot.people_feed()
        assert feed is not None
        assert feed.delta_link is None
    assert h.sim.counters.count("people.list") >= 1


def test_accepted_writes_are_confirmed_by_a_full_read_next_run(
    make_harness: Callable[..., Harness],
) -> None:
    """Writes answered 202 (or 204 without a body) count as done, recorded with status 202, and
    the next run reads in full to confirm them; Protime's answer then stands."""
    h = make_harness(config=sim_config(people=COUNT), rows=_rows, schedule=dict(INCREMENTAL))
    seen: list[str] = []

    def accept(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PUT":
            return None
        seen.append(request.url.path)
        # Every other write is applied and answered 204 without a body; the rest is "accepted"
        # and never applied, as if Protime lost it.
        if len(seen) % 2:
            h.sim.world.set_reference(
                request.url.path.rsplit("/", 1)[1], int(request.content.split(b'"')[3])
            )
            return httpx.Response(204)
        return httpx.Response(202, headers={"Operation-Location": "/operations/1"})

    h.wrap_transport = lambda inner: _Answering(inner, accept)
    first = h.run()
    assert first.status is RunStatus.SUCCEEDED, first.message
    assert first.actions_by_outcome == {"write:succeeded": COUNT}
    with h.store() as store:
        feed = store.snapshot.people_feed()
        assert feed is not None
        assert feed.unconfirmed_writes == COUNT
        statuses = {e.http_status for e in store.events.events_for(run_id=first.run_id, limit=100)}
    assert statuses == {202}
    h.wrap_transport = None
    confirm = h.run()
    assert (confirm.protime_read, confirm.protime_read_reason) == (
        "full",
        (
            f"{COUNT} write(s) of the last run were accepted by Protime without confirmation (202): "
            "a full read confirms them"
        ),
    )
    assert confirm.actions_by_outcome == {"write:succeeded": COUNT // 2}  # the lost half
    assert len(h.references()) == COUNT
    assert h.run().protime_read == "incremental"
