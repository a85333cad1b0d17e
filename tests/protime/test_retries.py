"""Retries: 429 and Retry-After, 5xx, dropped connections, exhaustion, and what is final."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
import stamina
from structlog.testing import capture_logs

from protime_fakes import API_PATH, REFERENCE_PREFIX, error_body, person
from sync.errors import ProtimeConnectError, ProtimeError
from sync.protime import Backoff, ProtimeClient, is_retriable, parse_retry_after

PATH = f"{REFERENCE_PREFIX}H1"


def _retry_logs(logs):
    return [entry for entry in logs if entry["event"] == "protime.retry"]


def _put(make_client, **overrides):
    async def scenario():
        async with make_client(**overrides) as client:
            created = await client.put_reference(value="H1", protime_id=7)
            return created, client.stats

    return asyncio.run(scenario())


@pytest.mark.parametrize(("header", "wait"), [("2", 2.0), ("0.25", 0.25), ("1.5", 1.5)])
def test_429_waits_as_long_as_retry_after_says(fake, make_client, header, wait):
    """A 429 with Retry-After (whole or fractional seconds) waits that long, then retries."""
    fake.script("PUT", PATH, httpx.Response(429, headers={"Retry-After": header}))
    with capture_logs() as logs:
        created, stats = _put(make_client, backoff=Backoff(initial=0.01, maximum=0.01))
    assert created is True
    (retry,) = _retry_logs(logs)
    assert retry["retry_after"] == wait
    assert wait <= retry["wait_seconds"] <= wait * 1.1 + 0.001
    assert retry["reason"] == "429"
    assert stats.rate_limited == 1
    assert stats.retries == 1
    assert len(fake.api_requests) == 2


def test_429_without_retry_after_uses_exponential_backoff(fake, make_client):
    """Without Retry-After the waits come from the backoff and grow per retry."""
    limited = httpx.Response(429, json=error_body("TooManyRequests", "slow down"))
    fake.script("PUT", PATH, limited, limited, limited)
    backoff = Backoff(initial=1.0, maximum=100.0, jitter=0.0)
    with capture_logs() as logs:
        created, stats = _put(make_client, backoff=backoff)
    assert created is True
    assert [r["wait_seconds"] for r in _retry_logs(logs)] == [1.0, 2.0, 4.0]
    assert all(r["retry_after"] is None for r in _retry_logs(logs))
    assert stats.rate_limited == 3


def test_retry_after_is_a_floor_under_the_backoff(fake, make_client):
    """A Retry-After shorter than the backoff waits the backoff: never sooner than Protime asks."""
    limited = httpx.Response(429, headers={"Retry-After": "0.01"})
    fake.script("PUT", PATH, limited, limited, limited)
    with capture_logs() as logs:
        _put(make_client, backoff=Backoff(initial=1.0, maximum=100.0, jitter=0.0))
    assert [r["wait_seconds"] for r in _retry_logs(logs)] == [1.0, 2.0, 4.0]
    assert [r["retry_after"] for r in _retry_logs(logs)] == [0.01] * 3


def test_backoff_is_capped_and_jittered():
    """Backoff never exceeds its maximum, and jitter only ever shortens a wait."""
    backoff = Backoff(initial=0.5, maximum=8.0, jitter=0.5)
    for retry_number in range(1, 40):
        nominal = min(8.0, 0.5 * 2 ** (retry_number - 1))
        for _ in range(20):
            assert nominal / 2 <= backoff.wait(retry_number) <= nominal
    assert Backoff().wait(10_000) <= 30.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_until_success(fake, make_client, status):
    """Server errors are retried; the call succeeds once Protime recovers."""
    fake.script(
        "PUT", PATH, httpx.Response(status), httpx.Response(status, json=error_body("X", "y"))
    )
    created, stats = _put(make_client)
    assert created is True
    assert stats.retries == 2
    assert stats.count("put_reference", status) == 2
    assert stats.count("put_reference", 201) == 1


def test_503_retry_after_is_honoured(fake, make_client):
    """Retry-After on a 503 is honoured like on a 429."""
    fake.script("PUT", PATH, httpx.Response(503, headers={"Retry-After": "3"}))
    with capture_logs() as logs:
        _put(make_client)
    assert _retry_logs(logs)[0]["retry_after"] == 3.0


def test_exhausted_retries_give_a_retriable_error(fake, make_client):
    """When every attempt fails the call raises a retriable ProtimeError saying it gave up."""
    fake.script("PUT", PATH, *[httpx.Response(503, json=error_body("Unavailable", "busy"))] * 5)

    with pytest.raises(ProtimeError) as info:
        _put(make_client, retry_attempts=5)
    error = info.value
    assert error.status == 503
    assert error.code == "Unavailable"
    assert is_retriable(error)
    assert "gave up after 5 attempts" in str(error)
    assert "busy" in str(error)
    assert len(fake.api_requests) == 5


def test_retry_after_beyond_the_budget_gives_up_at_once(fake, make_client):
    """A Retry-After longer than the remaining retry budget ends the call now, retriable."""
    fake.script("PUT", PATH, httpx.Response(429, headers={"Retry-After": "600"}))
    with capture_logs() as logs, pytest.raises(ProtimeError) as info:
        _put(make_client, retry_timeout_seconds=60, max_retry_after_seconds=3600)
    assert info.value.retriable
    assert info.value.retry_after == 600.0
    assert len(fake.api_requests) == 1
    assert [e["event"] for e in logs if e["event"].startswith("protime.retry")] == [
        "protime.retry_abandoned"
    ]


def test_retry_budget_counts_time_already_spent(fake, clock, make_client):
    """Once the retry budget is spent, a failing call stops even with attempts left."""

    def slow_failure(request):
        clock.now += 20  # each try takes 20 s of the 30 s budget
        return httpx.Response(503)

    fake.script("PUT", PATH, *[slow_failure] * 5)
    with pytest.raises(ProtimeError, match="gave up after 2 attempts"):
        _put(make_client, retry_attempts=10, retry_timeout_seconds=30)
    assert len(fake.api_requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("connect timeout"),
        httpx.ReadTimeout("read timeout"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
        httpx.WriteError("broken pipe"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_dropped_connections_are_retried(fake, make_client, failure):
    """Network failures are retried and the call succeeds when the network comes back."""
    fake.script("PUT", PATH, failure, failure)
    with capture_logs() as logs:
        created, stats = _put(make_client)
    assert created is True
    assert stats.count("put_reference", 0) == 2
    assert {r["reason"] for r in _retry_logs(logs)} == {type(failure).__name__}


def test_dropped_connections_exhausted_are_a_retriable_connect_error(fake, make_client):
    """A network that stays down ends in ProtimeConnectError, which the engine may retry later."""
    fake.script("PUT", PATH, *[httpx.RemoteProtocolError("dropped")] * 3)
    with pytest.raises(ProtimeConnectError, match="RemoteProtocolError") as info:
        _put(make_client, retry_attempts=3)
    assert is_retriable(info.value)
    assert info.value.status is None


def test_a_non_network_transport_error_is_not_retried(fake, make_client):
    """A transport error that would fail the same way again (bad protocol) is final."""
    fake.script("PUT", PATH, httpx.UnsupportedProtocol("no such scheme"))
    with pytest.raises(ProtimeConnectError) as info:
        _put(make_client)
    assert not is_retriable(info.value)
    assert len(fake.api_requests) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "BadRequest"), (404, "NotFound"), (409, "Conflict"), (410, "Gone"), (414, "UriTooLong")],
)
def test_other_4xx_are_final_for_the_record(fake, make_client, status, code):
    """4xx other than 401/429 end the call at once with status, code and message."""
    fake.script("PUT", PATH, httpx.Response(status, json=error_body(code, f"says {code}")))
    with pytest.raises(ProtimeError) as info:
        _put(make_client)
    error = info.value
    assert (error.status, error.code, error.retriable) == (status, code, False)
    assert f"says {code}" in str(error)
    assert f"PUT {PATH} answered {status} {code}" in str(error)
    assert len(fake.api_requests) == 1


def test_validation_errors_are_reported(fake, make_client):
    """A 400 with validationErrors instead of the envelope still says what was wrong."""
    body = {"validationErrors": ["internalReference is required", {"field": "x"}]}
    fake.script("PUT", PATH, httpx.Response(400, json=body))
    with pytest.raises(ProtimeError, match="internalReference is required") as info:
        _put(make_client)
    assert info.value.code == "ValidationFailed"


def test_error_answer_that_is_not_json_still_gives_its_status(fake, make_client):
    """An HTML error page becomes a ProtimeError with its status, never a decoding crash."""
    fake.script("PUT", PATH, httpx.Response(400, text="<html>bad</html>"))
    with pytest.raises(ProtimeError, match=r"answered 400$") as info:
        _put(make_client)
    assert info.value.code is None


def test_people_page_is_retried_alone(fake, make_client):
    """A failing page is retried by itself; earlier pages are not read again."""
    fake.people = [person(i) for i in range(1, 6)]
    fake.page_size = 2
    original = fake._people_page
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 2:
            return httpx.Response(503)
        return original(request)

    fake._people_page = flaky

    async def scenario():
        async with make_client() as client:
            return await client.read_people()

    assert [p.id for p in asyncio.run(scenario())] == [1, 2, 3, 4, 5]
    queries = [r.url.query.decode() for r in fake.api_requests]
    assert queries[1] == queries[2] == "continuationToken=2"
    assert len(queries) == 4


def test_real_waits_outside_stamina_test_mode(fake):
    """With stamina active for real, a fractional Retry-After and a backoff are slept through."""
    from protime_fakes import make_settings

    fake.script(
        "PUT", PATH, httpx.Response(429, headers={"Retry-After": "0.01"}), httpx.Response(500)
    )

    async def scenario():
        client = ProtimeClient(
            make_settings(),
            transport=fake.transport(),
            backoff=Backoff(initial=0.01, maximum=0.02),
        )
        async with client:
            return await client.put_reference(value="H1", protime_id=1), client.stats

    with stamina.set_testing(False):
        created, stats = asyncio.run(scenario())
    assert created is True
    assert stats.retries == 2
    assert 0.01 <= stats.retry_wait_seconds <= 0.04


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header, expected):
    """Retry-After is read as seconds or an HTTP date; nonsense means 'not given'."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (httpx.ConnectError("x"), True),
        (httpx.ReadTimeout("x"), True),
        (httpx.PoolTimeout("x"), True),
        (httpx.ReadError("x"), True),
        (httpx.RemoteProtocolError("x"), True),
        (ConnectionResetError(), True),
        (httpx.UnsupportedProtocol("x"), False),
        (httpx.LocalProtocolError("x"), False),
        (ProtimeError("x", status=503, retriable=True), True),
        (ProtimeError("x", status=409), False),
        (ValueError("x"), False),
        (KeyError("x"), False),
    ],
    ids=repr,
)
def test_is_retriable(exc, retriable):
    """is_retriable says yes to transient network failures and retriable ProtimeErrors only."""
    assert is_retriable(exc) is retriable


def test_final_error_is_not_retried_by_the_people_read(fake, make_client):
    """A 400 on a people page stops the read after one request."""
    fake.script(
        "GET", f"{API_PATH}/people", httpx.Response(400, json=error_body("BadRequest", "filter"))
    )

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(ProtimeError, match="filter"):
        asyncio.run(scenario())
    assert len(fake.api_requests) == 1
