"""OAuth2 client credentials: one token reused, refreshed early and once, 401 and 403."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import pytest

from protime_fakes import API_PATH, REFERENCE_PREFIX, SECRET, TOKEN_URL, error_body
from sync.errors import ProtimeAuthError, ProtimeConnectError, ProtimeError
from sync.protime import is_retriable

TOKEN_PATH = "/tenants/acme/connect/token"


def test_token_request_is_client_credentials_form(fake, make_client):
    """The token is asked with a form: grant_type, client_id, client_secret and the scopes."""

    async def scenario():
        async with make_client(scopes="a.read b.write") as client:
            await client.check_token()

    asyncio.run(scenario())
    (request,) = fake.token_requests
    assert str(request.url) == TOKEN_URL
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["idsync-test"],
        "client_secret": [SECRET],
        "scope": ["a.read b.write"],
    }


def test_one_token_serves_many_calls(fake, make_client):
    """Twenty calls in a row, sequential and concurrent, use a single token fetch."""

    async def scenario():
        async with make_client() as client:
            for i in range(10):
                await client.put_reference(value=f"H{i}", protime_id=i + 1)
            await asyncio.gather(*(client.get_reference(value=f"H{i}") for i in range(10)))
            return client.stats.token_fetches

    assert asyncio.run(scenario()) == 1
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 20


def test_token_is_refreshed_before_it_expires(fake, clock, make_client):
    """A token is reused until the refresh margin before expiry, then replaced before use."""
    fake.token_ttl = 1800

    async def scenario():
        async with make_client(token_refresh_margin_seconds=120) as client:
            await client.put_reference(value="H1", protime_id=1)
            clock.now += 1800 - 121  # still fresh: 1 s before the margin
            await client.put_reference(value="H1", protime_id=1)
            assert len(fake.tokens) == 1
            clock.now += 2  # inside the margin: the token is still valid but gets replaced
            await client.put_reference(value="H1", protime_id=1)

    asyncio.run(scenario())
    assert len(fake.tokens) == 2
    used = [r.headers["Authorization"] for r in fake.api_requests]
    assert used == [f"Bearer {fake.tokens[0]}"] * 2 + [f"Bearer {fake.tokens[1]}"]


def test_short_lived_token_is_still_reused(fake, clock, make_client):
    """A token living less than the margin is reused for half its life, not fetched per call."""
    fake.token_ttl = 60

    async def scenario():
        async with make_client(token_refresh_margin_seconds=120) as client:
            for _ in range(5):
                await client.get_reference(value="H1")
            clock.now += 31
            await client.get_reference(value="H1")

    asyncio.run(scenario())
    assert len(fake.tokens) == 2


@pytest.mark.parametrize("expired_first", [False, True])
def test_concurrent_calls_share_one_token_fetch(fake, clock, make_client, expired_first):
    """Fifty concurrent calls that all find no fresh token cause exactly one token fetch."""
    fake.token_latency_yields = 200  # the token answer comes late: every call queues for it

    async def scenario():
        async with make_client() as client:
            if expired_first:
                await client.check_token()
                clock.now += 3600
            results = await asyncio.gather(
                *(client.get_reference(value=f"H{i}") for i in range(50))
            )
            return results, client.stats.token_fetches

    results, fetches = asyncio.run(scenario())
    assert results == [None] * 50
    assert fetches == (2 if expired_first else 1)
    assert len(fake.api_requests) == 50
    assert {r.headers["Authorization"] for r in fake.api_requests} == {f"Bearer {fake.tokens[-1]}"}


def test_401_fetches_a_new_token_and_retries_once(fake, make_client):
    """A token Protime stopped accepting is replaced once and the call goes through."""

    async def scenario():
        async with make_client() as client:
            await client.put_reference(value="H1", protime_id=1)
            fake.revoke_tokens()
            return await client.put_reference(value="H1", protime_id=2)

    assert asyncio.run(scenario()) is False
    assert [r.headers["Authorization"] for r in fake.api_requests] == [
        f"Bearer {fake.tokens[0]}",
        f"Bearer {fake.tokens[0]}",
        f"Bearer {fake.tokens[1]}",
    ]
    assert fake.references == {"H1": 2}


def test_concurrent_401s_share_one_new_token(fake, make_client):
    """Fifty calls rejected with the same revoked token cause one refresh, not fifty."""
    fake.token_latency_yields = 200

    async def scenario():
        async with make_client() as client:
            await client.check_token()
            fake.revoke_tokens()
            await asyncio.gather(*(client.get_reference(value=f"H{i}") for i in range(50)))
            return client.stats.token_fetches

    assert asyncio.run(scenario()) == 2
    # A call takes its token when it is sent: those still waiting for a lane at the refresh
    # carry the new token and are not refused at all.
    assert 50 < len(fake.api_requests) < 100


def test_second_401_is_final_auth_error(fake, make_client):
    """If the fresh token is refused too, the call fails with ProtimeAuthError, not a loop."""
    path = f"{REFERENCE_PREFIX}H1"
    refused = httpx.Response(401, json=error_body("Unauthorized", "nope"))
    fake.script("PUT", path, refused, refused, refused)

    async def scenario():
        async with make_client() as client:
            await client.put_reference(value="H1", protime_id=1)

    with pytest.raises(ProtimeAuthError, match="even with a fresh token") as info:
        asyncio.run(scenario())
    assert info.value.status == 401
    assert not is_retriable(info.value)
    assert "connector-protimeapi-external-references.write" in str(info.value)
    assert len(fake.api_requests) == 2
    assert len(fake.token_requests) == 2


@pytest.mark.parametrize(
    ("call", "scope"),
    [
        ("people", "connector-protimeapi-people.read"),
        ("put", "connector-protimeapi-external-references.write"),
        ("delete", "connector-protimeapi-external-references.write"),
    ],
)
def test_403_names_the_missing_scope_and_is_final(fake, make_client, call, scope):
    """A 403 is not retried: ProtimeAuthError naming the scope the call needs."""
    forbidden = httpx.Response(403, json=error_body("Forbidden", "missing scope"))
    for method, path in [
        ("GET", f"{API_PATH}/people"),
        ("PUT", f"{REFERENCE_PREFIX}H1"),
        ("DELETE", f"{REFERENCE_PREFIX}H1"),
    ]:
        fake.script(method, path, forbidden)

    async def scenario():
        async with make_client() as client:
            if call == "people":
                await client.read_people()
            elif call == "put":
                await client.put_reference(value="H1", protime_id=1)
            else:
                await client.delete_reference(value="H1")

    with pytest.raises(ProtimeAuthError) as info:
        asyncio.run(scenario())
    assert info.value.status == 403
    assert info.value.retriable is False
    assert scope in str(info.value)
    assert "IDSYNC_PROTIME__SCOPES" in str(info.value)
    assert len(fake.api_requests) == 1
    assert len(fake.token_requests) == 1


def test_bad_credentials_are_a_final_auth_error(fake, make_client):
    """The token endpoint refusing the client is ProtimeAuthError after one request."""
    fake.script(
        "POST",
        TOKEN_PATH,
        httpx.Response(400, json={"error": "invalid_client", "error_description": "bad client"}),
    )

    async def scenario():
        async with make_client() as client:
            await client.check_token()

    with pytest.raises(ProtimeAuthError, match="invalid_client: bad client") as info:
        asyncio.run(scenario())
    assert "IDSYNC_PROTIME__CLIENT_ID ('idsync-test')" in str(info.value)
    assert not is_retriable(info.value)
    assert len(fake.token_requests) == 1


def test_unreachable_token_endpoint_is_a_connect_error_after_retries(fake, make_client):
    """No answer from the token endpoint: retried, then ProtimeConnectError (retriable)."""
    down = httpx.ConnectError("connection refused")
    fake.script("POST", TOKEN_PATH, down, down, down, down)

    async def scenario():
        async with make_client(retry_attempts=4) as client:
            await client.check_token()

    with pytest.raises(ProtimeConnectError, match="gave up after 4 attempts") as info:
        asyncio.run(scenario())
    assert is_retriable(info.value)
    assert len(fake.token_requests) == 4


def test_token_endpoint_503_then_success(fake, make_client):
    """A passing outage of the token endpoint is retried like any other call."""
    fake.script("POST", TOKEN_PATH, httpx.Response(503), httpx.Response(503))

    async def scenario():
        async with make_client() as client:
            return await client.get_reference(value="H1")

    assert asyncio.run(scenario()) is None
    assert len(fake.token_requests) == 3


def test_token_failure_is_shared_and_not_retried_again_by_each_call(fake, make_client):
    """Concurrent calls during a token outage share one failed fetch sequence."""
    fake.token_latency_yields = 200
    fake.script("POST", TOKEN_PATH, *[httpx.Response(503)] * 3)

    async def scenario():
        async with make_client(retry_attempts=3) as client:
            return await asyncio.gather(
                *(client.get_reference(value=f"H{i}") for i in range(20)), return_exceptions=True
            )

    results = asyncio.run(scenario())
    assert all(isinstance(r, ProtimeError) and r.status == 503 for r in results)
    assert all(is_retriable(r) for r in results)
    assert len(fake.token_requests) == 3
    assert fake.api_requests == []


def test_token_answer_without_expiry_is_used(fake, clock, make_client):
    """A token answer without expires_in is accepted and refreshed after a short default life."""
    fake.script("POST", TOKEN_PATH, httpx.Response(200, json={"access_token": "tok-x"}))
    fake.valid_tokens.add("tok-x")

    async def scenario():
        async with make_client() as client:
            await client.get_reference(value="H1")
            clock.now += 150  # assumed life 300 s, refreshed 120 s early
            await client.get_reference(value="H1")
            clock.now += 50
            await client.get_reference(value="H1")

    asyncio.run(scenario())
    assert [r.headers["Authorization"] for r in fake.api_requests] == [
        "Bearer tok-x",
        "Bearer tok-x",
        f"Bearer {fake.tokens[0]}",
    ]
    assert len(fake.token_requests) == 2
