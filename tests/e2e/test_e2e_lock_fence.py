"""The run lock is a fence: a run that loses it stops writing and ends interrupted (issue 8).

The PostgreSQL test cuts the session that holds the advisory lock in the middle of the writes
(``pg_terminate_backend``: what a dropped connection or a restarted server does to it). The run
must notice, stop writing, end ``interrupted`` with the reason and never take the lock again
through a new session; a second run then takes the lock, and the Protime request log shows no
write of the first run after the second took it. Then the map converges.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from e2e.harness import Harness, HRRow, row_for, sim_config
from sync.reconcile import run
from sync.reconcile._result import RunStatus
from sync.state import StateStore, open_database
from sync.state._postgresql import advisory_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sync.simulator import Simulator

COUNT = 120
DEADLINE = 60.0


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE} s"
        time.sleep(0.01)
    return value


class _Log(httpx.AsyncBaseTransport):
    """Records (time, tag, method) of every request before passing it on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, tag: str, log: list[Any]) -> None:
        self.inner, self.tag, self.log = inner, tag, log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.log.append((time.monotonic(), self.tag, request.method))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _LockTimes(StateStore):
    """A store that notes when its run took the lock, and keeps the run's fence."""

    taken_at: float | None = None
    fence: Any = None

    @contextmanager
    def lock(self, *, timeout: float = 0.0) -> Iterator[Any]:  # type: ignore[override]
        with super().lock(timeout=timeout) as fence:
            self.taken_at = time.monotonic()
            self.fence = fence
            yield fence


class _HoldWrites(httpx.AsyncBaseTransport):
    """Lets ``free`` PUTs through, then holds each later one until ``release()`` is true.

    The run checks its lock every PG_CONFIRM_SECONDS; without the hold, a run whose writes
    take less than that finishes them all before it can see the session cut.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, free: int, release: Callable[[], bool]
    ) -> None:
        self.inner, self.free, self.release = inner, free, release

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            if self.free > 0:
                self.free -= 1
            else:
                # The fence is set on the lock's watcher thread: wait for it off the loop.
                await asyncio.to_thread(_wait_for, self.release, "the run seeing its lock lost")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _lock_backends(url: str, key: int) -> list[int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND classid::bigint = :c AND objid::bigint = :o AND objsubid = 1"
                    ),
                    {"c": unsigned >> 32, "o": unsigned & 0xFFFF_FFFF},
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_run_whose_lock_session_is_cut_stops_writing_and_a_second_run_converges(
    make_harness: Callable[..., Harness], pg_schema_url: str, postgres_url: str
) -> None:
    """Lock session cut mid-apply: run 1 ends interrupted with the reason, no write after run 2 locks."""
    h = make_harness(
        config=sim_config(people=COUNT, latency_ms=15),
        rows=_everyone,
        state_url=pg_schema_url,
        protime={"concurrency": 2},
    )
    requests: list[Any] = []
    db = open_database(pg_schema_url)
    with db.engine.connect() as conn:
        key = advisory_key(conn, "reconcile")
    first_store = _LockTimes(db)
    results: dict[str, Any] = {}

    def first() -> None:
        # Writes past the 20th wait until the run's fence has seen the lock lost: whatever the
        # machine's speed, the cut lands in the middle of the writes.
        h.wrap_transport = lambda inner: _Log(
            _HoldWrites(
                inner,
                free=20,
                release=lambda: (
                    first_store.fence is not None and first_store.fence.lost is not None
                ),
            ),
            "first",
            requests,
        )
        results["first"] = run(settings=h.settings, protime=h.client(), state=first_store)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        _wait_for(lambda: len(h.references()) >= 20, "the first run writing")
        (holder,) = _wait_for(lambda: _lock_backends(postgres_url, key), "the lock's session")
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        admin.dispose()
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        thread.join(DEADLINE)
    cut = results["first"]
    assert cut.status is RunStatus.INTERRUPTED, cut.message
    assert "run lock lost" in cut.message
    assert "PostgreSQL session" in cut.message
    assert len(h.references()) < COUNT  # really cut short
    assert _lock_backends(postgres_url, key) == []  # never re-taken through a new session

    second_store = _LockTimes(db)
    h.wrap_transport = lambda inner: _Log(inner, "second", requests)
    second = run(settings=h.settings, protime=h.client(), state=second_store)
    db.dispose()
    assert second.status is RunStatus.SUCCEEDED, second.message
    assert second_store.taken_at is not None
    late = [t for t, tag, method in requests if tag == "first" and method == "PUT"]
    assert late
    assert max(late) < second_store.taken_at
    expected = {f"E{i:03d}": p.id for i, p in enumerate(h.sim.world.people_list()[:COUNT])}
    assert h.references() == expected
    assert h.pending_events() == 0
