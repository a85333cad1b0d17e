"""The client's side of Protime's published delta, against scripted answers (no simulator)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from protime_fakes import API_PATH, REFERENCE_PREFIX, error_body, person
from sync.errors import ProtimeError

PEOPLE_PATH = f"{API_PATH}/people"
DELTA_PATH = f"{API_PATH}/delta/people"
LINK = f"{DELTA_PATH}?deltaToken=eyJEZWx0YUlkIjoxfQ"


def _collect(make_client, read):
    async def scenario():
        async with make_client() as client:
            return [page async for page in read(client)]

    return asyncio.run(scenario())


def test_a_round_is_started_with_a_bare_delta_and_pages_plain_objects(fake, make_client) -> None:
    """The first round asks `?delta&externalReferences=...` and reads plain objects to a deltaLink."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(
            200,
            json={
                "value": [{**person(1, employeeNumber="1"), "changeVersion": "00A"}],
                "nextLink": f"{PEOPLE_PATH}?delta&continuationToken=c1&deltaToken=d0",
            },
        ),
        httpx.Response(200, json={"value": [], "deltaLink": LINK}),
    )
    pages = _collect(make_client, lambda c: c.iter_full(start_delta=True))
    first = fake.api_requests[0].url
    assert first.raw_path.decode().startswith(f"{PEOPLE_PATH}?delta&externalReferences=")
    assert [p.id for page in pages for p in page.people] == [1]
    assert pages[0].versions == ["00A"]
    assert pages[-1].delta_link == LINK


def test_a_plain_full_read_starts_no_round(fake, make_client) -> None:
    """A read that keeps no link asks plain GET /people: no `delta` parameter at all."""
    fake.people = [person(1), person(2), person(3)]
    pages = _collect(make_client, lambda c: c.iter_full(start_delta=False))
    assert sum(len(p.people) for p in pages) == 3
    assert all(p.delta_link is None for p in pages)
    for request in fake.api_requests:
        assert "delta" not in request.url.params


def test_a_set_of_changes_may_repeat_a_person(fake, make_client) -> None:
    """A set of changes lists one person several times across pages; the read does not refuse it."""
    update = {"changeType": "InsertOrUpdate", "data": {**person(5), "changeVersion": "02"}}
    older = {"changeType": "InsertOrUpdate", "data": {**person(5), "changeVersion": "01"}}
    gone = {"changeType": "Delete", "data": {"id": 5, "changeVersion": "03"}}
    fake.script(
        "GET",
        DELTA_PATH,
        httpx.Response(200, json={"value": [update, older], "nextLink": f"{LINK}&c=2"}),
        httpx.Response(200, json={"value": [gone, update], "deltaLink": f"{LINK}x"}),
    )
    pages = _collect(make_client, lambda c: c.iter_changes(LINK))
    changes = [c for page in pages for c in page.changes]
    assert [(c.id, c.version, c.person is None) for c in changes] == [
        (5, "02", False),
        (5, "01", False),
        (5, "03", True),
        (5, "02", False),
    ]
    assert pages[-1].delta_link == f"{LINK}x"
    assert fake.api_requests[0].url.raw_path.decode() == LINK


def test_an_expired_link_is_a_410_error(fake, make_client) -> None:
    """A stored link answered 410 Gone is a ProtimeError with status 410 (the run reads in full)."""
    fake.script("GET", DELTA_PATH, httpx.Response(410, json=error_body("Gone", "expired")))
    with pytest.raises(ProtimeError) as info:
        _collect(make_client, lambda c: c.iter_changes(LINK))
    assert info.value.status == 410


def test_a_read_answered_409_is_retried(fake, make_client) -> None:
    """GET answered 409 (a concurrency conflict on a collection with delta) is retried like 503."""
    fake.people = [person(1)]
    fake.script("GET", PEOPLE_PATH, httpx.Response(409, json=error_body("Conflict", "busy")))
    pages = _collect(make_client, lambda c: c.iter_full(start_delta=False))
    assert [p.id for page in pages for p in page.people] == [1]
    assert len(fake.api_requests) == 2


def test_a_read_answered_409_every_time_gives_up_within_its_attempts(fake, make_client) -> None:
    """A 409 that outlasts the attempts ends the read as a retriable error naming the status."""
    answers = [httpx.Response(409, json=error_body("Conflict", "busy"))] * 3
    fake.script("GET", PEOPLE_PATH, *answers)

    async def scenario():
        async with make_client(retry_attempts=3) as client:
            return [page async for page in client.iter_full(start_delta=True)]

    with pytest.raises(ProtimeError) as info:
        asyncio.run(scenario())
    assert info.value.status == 409
    assert info.value.retriable
    assert len(fake.api_requests) == 3


def test_a_write_answered_409_is_not_retried(fake, make_client) -> None:
    """A PUT answered 409 is a conflict of data: one request, a final error for this run."""
    fake.script(
        "PUT", f"{REFERENCE_PREFIX}H1", httpx.Response(409, json=error_body("Conflict", "x"))
    )

    async def scenario():
        async with make_client() as client:
            return await client.put_reference(value="H1", protime_id=3)

    with pytest.raises(ProtimeError) as info:
        asyncio.run(scenario())
    assert info.value.status == 409
    assert len(fake.api_requests) == 1
