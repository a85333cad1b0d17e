"""Stats, request events, log lines, concurrency bound and rate limit of the client."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from structlog.testing import capture_logs

from protime_fakes import API_PATH, REFERENCE_PREFIX, make_settings, person
from sync.errors import ConfigError
from sync.protime import Backoff, ProtimeClient, RequestKind


def test_stats_and_events_count_every_request(fake, make_client):
    """Stats count requests by (kind, status), retries, token fetches and 429s; events match."""
    fake.people = [person(1), person(2), person(3)]
    fake.script("PUT", f"{REFERENCE_PREFIX}H1", httpx.Response(429), httpx.ReadError("reset"))
    events = []

    async def scenario():
        async with make_client(on_request=events.append) as client:
            await client.read_people()
            await client.put_reference(value="H1", protime_id=1)
            await client.delete_reference(value="H9")
            return client.stats

    stats = asyncio.run(scenario())
    assert dict(stats.requests) == {
        ("token", 200): 1,
        ("people", 200): 2,
        ("put_reference", 429): 1,
        ("put_reference", 0): 1,
        ("put_reference", 201): 1,
        ("delete_reference", 404): 1,
    }
    assert stats.total_requests == 7
    assert (stats.retries, stats.token_fetches, stats.rate_limited) == (2, 1, 1)
    assert [(e.kind, e.status, e.attempt) for e in events] == [
        (RequestKind.TOKEN, 200, 1),
        (RequestKind.PEOPLE, 200, 1),
        (RequestKind.PEOPLE, 200, 1),
        (RequestKind.PUT_REFERENCE, 429, 1),
        (RequestKind.PUT_REFERENCE, None, 2),
        (RequestKind.PUT_REFERENCE, 201, 3),
        (RequestKind.DELETE_REFERENCE, 404, 1),
    ]
    dropped = events[4]
    assert dropped.error == "ReadError"
    assert all(e.duration_seconds >= 0 for e in events)
    assert all("?" not in e.path for e in events)


def test_a_failing_on_request_hook_does_not_fail_the_call(fake, make_client):
    """A broken metrics callback is logged and the call still succeeds."""

    def broken(event):
        raise RuntimeError("metrics down")

    async def scenario():
        async with make_client(on_request=broken) as client:
            return await client.put_reference(value="H1", protime_id=1)

    with capture_logs() as logs:
        assert asyncio.run(scenario()) is True
    assert any(e["event"] == "protime.on_request_failed" for e in logs)


def test_each_request_is_logged_at_debug_without_query(fake, make_client, caplog):
    """At DEBUG, one line per request with method, path (no query), status and duration."""
    fake.people = [person(1), person(2), person(3)]
    caplog.set_level(logging.DEBUG, logger="sync.protime._client")

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with capture_logs() as logs:
        asyncio.run(scenario())
    lines = [e for e in logs if e["event"] == "protime.request"]
    assert [(e["log_level"], e["method"], e["path"], e["status"]) for e in lines] == [
        ("debug", "POST", "/tenants/acme/connect/token", 200),
        ("debug", "GET", f"{API_PATH}/people", 200),
        ("debug", "GET", f"{API_PATH}/people", 200),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in lines)


def test_retries_are_logged_at_info_with_reason_and_wait(fake, make_client):
    """Each retry gives one info line with the reason and the wait."""
    fake.script("PUT", f"{REFERENCE_PREFIX}H1", httpx.Response(503, headers={"Retry-After": "1"}))

    async def scenario():
        async with make_client() as client:
            await client.put_reference(value="H1", protime_id=1)

    with capture_logs() as logs:
        asyncio.run(scenario())
    (line,) = [e for e in logs if e["event"] == "protime.retry"]
    assert line["log_level"] == "info"
    assert line["reason"] == "503"
    assert line["attempt"] == 1
    assert line["path"] == f"{REFERENCE_PREFIX}H1"
    assert line["wait_seconds"] >= 1.0


def test_concurrency_is_bounded_by_settings(fake, make_client):
    """No more requests are in flight at once than settings.concurrency allows."""
    fake.api_latency_yields = 20

    async def scenario():
        async with make_client(concurrency=3) as client:
            await asyncio.gather(*(client.get_reference(value=f"H{i}") for i in range(30)))

    asyncio.run(scenario())
    assert len(fake.api_requests) == 30
    assert fake.max_in_flight == 3


def test_no_request_line_is_built_above_debug(fake, make_client, caplog):
    """Above DEBUG the per-request line is not even built (its cost was 0.05 ms a request)."""
    fake.people = [person(1)]
    caplog.set_level(logging.INFO, logger="sync.protime._client")

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert not [e for e in logs if e["event"] == "protime.request"]


@pytest.mark.parametrize("rate", [50.0, 0.5, 2.5, 1000.0])
def test_a_number_fixes_the_rate(rate):
    """A number in rate_limit_per_second paces at that rate, never adapted, bursts of `concurrency`."""
    client = ProtimeClient(make_settings(rate_limit_per_second=rate, concurrency=8))
    limiter = client._session.limiter
    assert limiter is not None
    assert not limiter.control.adaptive
    assert client.rate_per_second == rate
    client.resume_rate(3.0)  # a learned rate does not move a fixed one
    assert client.rate_per_second == rate
    asyncio.run(client.aclose())


def test_auto_starts_at_ten_or_at_the_learned_rate():
    """`auto` adapts, starts at 10/s, or at the last run's rate once resumed (within the maximum)."""
    client = ProtimeClient(make_settings(rate_limit_per_second="auto", max_rate_per_second=80))
    assert client._session.limiter is not None
    assert client._session.limiter.control.adaptive
    assert client.rate_per_second == 10.0
    client.resume_rate(57.5)
    assert client.rate_per_second == 57.5
    client.resume_rate(500.0)
    assert client.rate_per_second == 80.0
    client.resume_rate(None)  # nothing learned yet: unchanged
    assert client.rate_per_second == 80.0
    asyncio.run(client.aclose())


def test_reads_and_writes_share_one_budget(fake, make_client):
    """People pages and reference writes take their slots from the same limiter (tokens do not)."""
    fake.people = [person(1), person(2), person(3)]
    booked = []

    async def scenario():
        async with make_client(rate_limit_per_second="auto") as client:
            control = client._session.limiter.control
            reserve = control.reserve

            def counting() -> float:
                booked.append(1)
                return reserve()

            control.reserve = counting
            await client.read_people()
            await client.put_reference(value="H1", protime_id=1)
            await client.delete_reference(value="H2")

    asyncio.run(scenario())
    assert len(booked) == len(fake.api_requests) == 4


def test_a_429_cuts_the_auto_rate(fake, make_client):
    """With `auto`, a 429 answer lowers the rate the client paces at."""
    fake.script("PUT", f"{REFERENCE_PREFIX}H1", httpx.Response(429, headers={"Retry-After": "0"}))

    async def scenario():
        fast = Backoff(initial=0.001, maximum=0.001)
        async with make_client(rate_limit_per_second="auto", backoff=fast) as client:
            client.resume_rate(40.0)
            await client.put_reference(value="H1", protime_id=1)
            return client.rate_per_second

    assert asyncio.run(scenario()) == pytest.approx(36.0)


def test_rate_limit_zero_means_no_limiter():
    """rate_limit_per_second=0 switches the client-side limit off."""
    client = ProtimeClient(make_settings(rate_limit_per_second=0))
    assert client._session.limiter is None
    assert client.rate_per_second is None
    asyncio.run(client.aclose())


def test_rate_limited_requests_all_go_through(fake, make_client):
    """With a limit set, calls are paced, not dropped: every call completes."""

    async def scenario():
        async with make_client(rate_limit_per_second=1000) as client:
            return await asyncio.gather(*(client.get_reference(value=f"H{i}") for i in range(20)))

    assert asyncio.run(scenario()) == [None] * 20


@pytest.mark.parametrize("missing", ["base_url", "tenant", "client_id", "client_secret"])
def test_missing_connection_settings_stop_construction(missing):
    """A client cannot be built without the four connection settings; the error names the variable."""
    with pytest.raises(ConfigError, match=f"IDSYNC_PROTIME__{missing.upper()}"):
        ProtimeClient(make_settings(**{missing: None}))
