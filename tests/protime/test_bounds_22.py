"""Issue 22: answers from a 240,000-employee trial that must never end a run."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from structlog.testing import capture_logs

from protime_fakes import API_PATH, person
from sync.protime._parse import MAX_PERSON_ID, parse_changes_page, parse_list_page

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
