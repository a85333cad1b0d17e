"""Issue 22: answers from a 240,000-employee trial that must never end a run."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from structlog.testing import capture_logs

from protime_fakes import API_PATH, person
from sync.protime._parse import MAX_PERSON_ID, parse_changes_page, parse_list_page
from sync.protime._rate import AdaptiveRate

PEOPLE_PATH = f"{API_PATH}/people"
BAD_IDS = [2**63, 10**30, 0, -4]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_person_whose_id_cannot_be_stored_is_skipped_on_a_list_page(bad: int) -> None:
    """A list item whose id is an integer outside 1..2**63-1 is left out and its index reported."""
    skipped: list[int] = []
    page = parse_list_page(
        {"value": [person(1), {**person(2), "id": bad}, person(MAX_PERSON_ID)]},
        reference_name="HRMID",
        skipped=skipped,
    )
    assert [p.id for p in page.people] == [1, MAX_PERSON_ID]
    assert len(page.versions) == 2
    assert skipped == [1]


def test_a_change_whose_id_cannot_be_stored_is_skipped() -> None:
    """Delta items (an update or a delete) with an id outside 1..2**63-1 are left out, reported."""
    skipped: list[int] = []
    changes, _, link = parse_changes_page(
        {
            "value": [
                {"changeType": "InsertOrUpdate", "data": {**person(2**63), "changeVersion": "1"}},
                {"changeType": "Delete", "data": {"id": 10**30, "changeVersion": "2"}},
                {"changeType": "InsertOrUpdate", "data": {**person(7), "changeVersion": "3"}},
            ],
            "deltaLink": "/d",
        },
        reference_name="HRMID",
        skipped=skipped,
    )
    assert [c.id for c in changes] == [7]
    assert skipped == [0, 1]
    assert link == "/d"


def test_the_client_reports_skipped_people_per_page_and_counts_them(fake, make_client) -> None:
    """The read goes on past ids it cannot hold, logs the page and the count, and counts them."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, json={"value": [person(1), person(2**63)], "nextLink": "/p2"}),
    )
    fake.script("GET", "/p2", httpx.Response(200, json={"value": [person(10**30), person(3)]}))

    async def scenario():
        async with make_client() as client:
            return await client.read_people(), client.stats.people_skipped

    with capture_logs() as logs:
        people, skipped = asyncio.run(scenario())
    assert [p.id for p in people] == [1, 3]
    assert skipped == 2
    warnings = [e for e in logs if e["event"] == "protime.people_skipped"]
    assert [(e["page"], e["count"]) for e in warnings] == [(1, 1), (2, 1)]


def test_a_request_takes_its_token_after_waiting_for_its_rate_slot(fake, clock, make_client):
    """A token that expires while a request waits for its rate slot is never sent: a fresh one is."""

    async def scenario():
        async with make_client(rate_limit_per_second=5) as client:
            await client.check_token()
            limiter = client._session.limiter
            assert limiter is not None

            async def slow_slot() -> None:
                # The slot comes after the token's life: Protime no longer accepts it.
                clock.now += 2 * fake.token_ttl
                fake.revoke_tokens()

            limiter.acquire = slow_slot  # type: ignore[method-assign]
            return await client.get_reference(value="H1")

    asyncio.run(scenario())
    assert len(fake.token_requests) == 2  # the first, and the one taken after the slot
    assert len(fake.api_requests) == 1  # no 401, no second try


def _storm_rate(clock: list[float]) -> AdaptiveRate:
    return AdaptiveRate(
        start=10.0, maximum=200.0, adaptive=True, learned=True, clock=lambda: clock[0]
    )


def _storm(rate: AdaptiveRate, now: list[float], *, requests: int) -> None:
    """Requests at the pacer's rate, every 5th answered 429 with Retry-After 0.5 s."""
    for n in range(1, requests):
        now[0] += 1 / rate.rate
        rate.reserve()
        status = 429 if n % 5 == 0 else 200
        rate.observe(status=status, latency=0.02, retry_after=0.5 if status == 429 else None)


def test_429s_that_do_not_follow_the_rate_stop_at_a_floor_without_pausing() -> None:
    """Every 5th answer a 429 at any rate: cuts stop at a floor, where 429s neither cut nor pause."""
    now = [0.0]
    rate = _storm_rate(now)
    _storm(rate, now, requests=400)
    assert rate.rate >= rate.floor >= 5.0  # never below half the start
    assert rate.unrelated_429s > 0
    assert rate.background == pytest.approx(0.2, abs=0.05)
    cuts = rate.cuts
    rate.observe(status=429, latency=0.02, retry_after=0.5)
    assert rate.cuts == cuts
    assert rate.pause_left() == 0.0


def test_after_such_a_storm_the_rate_recovers_and_a_real_limit_still_cuts() -> None:
    """Past the floor the rate grows while the share of 429s stays the background; more cuts."""
    now = [0.0]
    rate = _storm_rate(now)
    _storm(rate, now, requests=400)
    _storm(rate, now, requests=1500)  # the same storm, for longer: the rate climbs above the floor
    recovered = rate.rate
    assert recovered > 2 * rate.floor
    cuts = rate.cuts
    for _ in range(50):  # now Protime refuses every other request: that follows the rate
        now[0] += 1 / rate.rate
        rate.reserve()
        rate.observe(status=200, latency=0.02, retry_after=None)
        rate.observe(status=429, latency=0.02, retry_after=0.5)
        now[0] += 0.1
    assert rate.cuts > cuts
    assert rate.rate < recovered
