"""Malformed answers become a ProtimeError that says what was wrong, never a KeyError/TypeError."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from protime_fakes import API_PATH, REFERENCE_PREFIX, person
from sync.errors import ProtimeError
from sync.protime import MalformedAnswerError, is_retriable

PEOPLE_PATH = f"{API_PATH}/people"
TOKEN_PATH = "/tenants/acme/connect/token"


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
        (httpx.Response(200, content=b"\xff\xfe"), "not JSON"),
        (httpx.Response(200, json=[]), "people page is list, expected an object"),
        (httpx.Response(200, json={"items": []}), "no 'value' list"),
        (httpx.Response(200, json={"value": None}), "no 'value' list (null instead)"),
        (httpx.Response(200, json={"value": {"id": 1}}), "no 'value' list (dict instead)"),
        (httpx.Response(200, json={"value": [], "nextLink": 5}), "'nextLink' is int"),
        (httpx.Response(200, json={"value": ["x"]}), "item 0 is str, expected an object"),
        (httpx.Response(200, json={"value": [{"firstName": "A"}]}), "'id' is null"),
        (httpx.Response(200, json={"value": [person(1), {"id": "2"}]}), "item 1: 'id' is str"),
        (httpx.Response(200, json={"value": [{"id": True}]}), "'id' is bool"),
        (httpx.Response(200, json={"value": [{"id": 2.0}]}), "'id' is float"),
        (httpx.Response(200, json={"value": [person(3, email=7)]}), "person 3: 'email' is int"),
        (
            httpx.Response(200, json={"value": [person(3, employeeNumber=["E"])]}),
            "'employeeNumber' is list",
        ),
        (
            httpx.Response(200, json={"value": [person(3, externalReferences=["HRMID"])]}),
            "'externalReferences' is list",
        ),
        (
            httpx.Response(200, json={"value": [person(3, externalReferences={"HRMID": 5})]}),
            "person 3 externalReferences: 'HRMID' is int",
        ),
        (
            httpx.Response(
                200, json={"value": [person(3, externalReferences={"@badge-number": {}})]}
            ),
            "'@badge-number' is dict",
        ),
        (
            httpx.Response(200, json={"value": [person(3, outOfServiceDate=True)]}),
            "'outOfServiceDate' is bool",
        ),
    ],
)
def test_malformed_people_page_is_refused_with_a_reason(fake, make_client, answer, fragment):
    """Each kind of malformed people page names its problem, the page and the path."""
    fake.script("GET", PEOPLE_PATH, answer)

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError) as info:
        asyncio.run(scenario())
    message = str(info.value)
    assert fragment in message
    assert f"GET {PEOPLE_PATH} page 1" in message
    assert not is_retriable(info.value)
    assert len(fake.api_requests) == 1


DELTA_PATH = f"{API_PATH}/delta/people"
DELTA_LINK = f"{DELTA_PATH}?deltaToken=abc"


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (httpx.Response(200, json=[]), "delta page is list, expected an object"),
        (httpx.Response(200, json={"value": []}), "the last delta page has no deltaLink"),
        (
            httpx.Response(200, json={"value": [{"changeType": "Moved"}], "deltaLink": "/d"}),
            "item 0: 'changeType' is 'Moved', expected 'InsertOrUpdate' or 'Delete'",
        ),
        (
            httpx.Response(
                200, json={"value": [{"id": 4, "changeVersion": "1"}], "deltaLink": "/d"}
            ),
            "item 0: 'changeType' is null",
        ),
        (
            httpx.Response(200, json={"value": [{"changeType": "Delete"}], "deltaLink": "/d"}),
            "item 0 (Delete): 'data' is null, expected an object",
        ),
        (
            httpx.Response(
                200, json={"value": [{"changeType": "Delete", "data": {}}], "deltaLink": "/d"}
            ),
            "a Delete without a positive integer 'id'",
        ),
        (
            httpx.Response(
                200,
                json={"value": [{"changeType": "Delete", "data": {"id": 4}}], "deltaLink": "/d"},
            ),
            "item 0 (Delete of 4): 'changeVersion' is null, expected a non-empty string",
        ),
        (
            httpx.Response(
                200,
                json={
                    "value": [
                        {"changeType": "InsertOrUpdate", "data": {"id": 4, "changeVersion": 9}}
                    ],
                    "deltaLink": "/d",
                },
            ),
            "item 0 (person 4): 'changeVersion' is int, expected a non-empty string",
        ),
        (
            httpx.Response(
                200,
                json={"value": [{"changeType": "InsertOrUpdate", "data": {"id": "1"}}]},
            ),
            "'id' is str",
        ),
        (
            httpx.Response(200, json={"value": [], "deltaLink": 3}),
            "'deltaLink' is int",
        ),
    ],
)
def test_malformed_changes_page_is_refused_with_a_reason(fake, make_client, answer, fragment):
    """A page of changes we cannot read in full stops the read: a change is never skipped silently."""
    fake.script("GET", DELTA_PATH, answer)

    async def scenario():
        async with make_client() as client:
            return [page async for page in client.iter_changes(DELTA_LINK)]

    with pytest.raises(MalformedAnswerError) as info:
        asyncio.run(scenario())
    assert fragment in str(info.value)
    assert not is_retriable(info.value)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (
            httpx.Response(200, json={"value": []}),
            "the last page of a delta's first round has no deltaLink",
        ),
        (
            httpx.Response(
                200,
                json={
                    "value": [{"changeType": "InsertOrUpdate", "data": {"id": 1}}],
                    "deltaLink": "/d",
                },
            ),
            "item 0 is a change item ({changeType, data}), expected a plain person object",
        ),
        (
            httpx.Response(200, json={"value": [{"id": 1, "changeVersion": 5}], "deltaLink": "/d"}),
            "person 1: 'changeVersion' is int, expected a non-empty string",
        ),
    ],
)
def test_malformed_first_round_is_refused_with_a_reason(fake, make_client, answer, fragment):
    """A delta's first round pages plain person objects and ends with a deltaLink; else it stops."""
    fake.script("GET", PEOPLE_PATH, answer)

    async def scenario():
        async with make_client() as client:
            return [page async for page in client.iter_full(start_delta=True)]

    with pytest.raises(MalformedAnswerError) as info:
        asyncio.run(scenario())
    assert fragment in str(info.value)
    assert not is_retriable(info.value)


def test_malformed_later_page_names_its_page_number(fake, make_client):
    """The error says which page was bad, so a log reader can find it."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, json={"value": [person(1)], "nextLink": f"{PEOPLE_PATH}?ct=2"}),
        httpx.Response(200, json={"value": [{"id": "x"}]}),
    )

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError, match="page 2: people page item 0"):
        asyncio.run(scenario())


def test_people_values_are_not_echoed_in_the_error(fake, make_client):
    """A wrong-typed field is described by its type, not its (personal) content."""
    fake.script(
        "GET", PEOPLE_PATH, httpx.Response(200, json={"value": [person(1, email=["jane@x.eu"])]})
    )

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError) as info:
        asyncio.run(scenario())
    assert "jane" not in str(info.value)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (httpx.Response(200, text="ok"), "not JSON"),
        (httpx.Response(200, json=["7"]), "reference answer is list"),
        (httpx.Response(200, json={"value": "H1"}), "'internalReference' is null"),
        (
            httpx.Response(200, json={"internalReference": "abc"}),
            "str not holding a positive integer",
        ),
        (
            httpx.Response(200, json={"internalReference": "٣"}),
            "str not holding a positive integer",
        ),
        (
            httpx.Response(200, json={"internalReference": "0"}),
            "str not holding a positive integer",
        ),
        (httpx.Response(200, json={"internalReference": 1.5}), "'internalReference' is float"),
        (httpx.Response(200, json={"internalReference": False}), "'internalReference' is bool"),
    ],
)
def test_malformed_reference_answer_is_refused(fake, make_client, answer, fragment):
    """A GET of one reference with an unusable answer raises MalformedAnswerError with the reason."""
    fake.script("GET", f"{REFERENCE_PREFIX}H1", answer)

    async def scenario():
        async with make_client() as client:
            await client.get_reference(value="H1")

    with pytest.raises(MalformedAnswerError, match=fragment):
        asyncio.run(scenario())


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (httpx.Response(200, text="access_token=abc"), "token answer: the answer is not JSON"),
        (httpx.Response(200, json={"token": "abc"}), "no 'access_token' string"),
        (httpx.Response(200, json={"access_token": ""}), "no 'access_token' string"),
        (httpx.Response(200, json={"access_token": 5}), "no 'access_token' string"),
        (
            httpx.Response(200, json={"access_token": "abc", "expires_in": "1800"}),
            "'expires_in' is str",
        ),
        (
            httpx.Response(200, json={"access_token": "abc", "expires_in": -1}),
            "'expires_in' is int",
        ),
    ],
)
def test_malformed_token_answer_is_refused(fake, make_client, answer, fragment):
    """A token answer we cannot use is a ProtimeError saying why, without the body."""
    fake.script("POST", TOKEN_PATH, answer)

    async def scenario():
        async with make_client() as client:
            await client.check_token()

    with pytest.raises(ProtimeError, match=fragment) as info:
        asyncio.run(scenario())
    assert "abc" not in str(info.value)
    assert len(fake.token_requests) == 1
