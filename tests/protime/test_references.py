"""Custom reference calls: PUT/GET/DELETE answers, value checks before any call, encoding."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from protime_fakes import REFERENCE_PREFIX, error_body
from sync.errors import ProtimeError, ReferenceValueError
from sync.values import FORBIDDEN_CHARACTERS


def _run(make_client, call, **overrides):
    async def scenario():
        async with make_client(**overrides) as client:
            return await call(client)

    return asyncio.run(scenario())


def test_put_says_whether_it_created_or_updated(fake, make_client):
    """PUT returns True on 201 (new value) and False on 200 (existing value re-pointed)."""

    async def calls(client):
        first = await client.put_reference(value="H1", protime_id=10)
        second = await client.put_reference(value="H1", protime_id=11)
        return first, second

    assert _run(make_client, calls) == (True, False)
    assert fake.references == {"H1": 11}
    request = fake.api_requests[0]
    assert request.method == "PUT"
    assert request.url.raw_path == f"{REFERENCE_PREFIX}H1".encode()
    assert json.loads(request.content) == {"internalReference": "10"}


def test_get_reads_string_or_number_internal_reference(fake, make_client):
    """GET returns the internal id whether Protime sends it as a string or a number; 404 is None."""
    path = f"{REFERENCE_PREFIX}H2"
    fake.script("GET", path, httpx.Response(200, json={"value": "H2", "internalReference": 42}))
    fake.references["H1"] = 7

    async def calls(client):
        return (
            await client.get_reference(value="H1"),
            await client.get_reference(value="H2"),
            await client.get_reference(value="H3"),
        )

    assert _run(make_client, calls) == (7, 42, None)


def test_delete_says_whether_anything_was_deleted(fake, make_client):
    """DELETE returns True on 204 or 200 and False when the value was already gone (404)."""
    fake.references["H1"] = 7
    fake.script("DELETE", f"{REFERENCE_PREFIX}H2", httpx.Response(200))

    async def calls(client):
        return (
            await client.delete_reference(value="H1"),
            await client.delete_reference(value="H1"),
            await client.delete_reference(value="H2"),
        )

    assert _run(make_client, calls) == (True, False, True)
    assert fake.references == {}


def test_409_on_a_second_value_for_a_person_is_final(fake, make_client):
    """A 409 (the person already holds another value) fails that record without retrying."""
    fake.script(
        "PUT",
        f"{REFERENCE_PREFIX}H2",
        httpx.Response(409, json=error_body("Conflict", "person 10 already has HRMID 'H1'")),
    )

    async def call(client):
        await client.put_reference(value="H2", protime_id=10)

    with pytest.raises(ProtimeError) as info:
        _run(make_client, call)
    assert (info.value.status, info.value.code, info.value.retriable) == (409, "Conflict", False)
    assert "already has HRMID" in str(info.value)
    assert len(fake.api_requests) == 1


def test_404_unknown_internal_id_is_final(fake, make_client):
    """A PUT naming a person Protime does not know fails that record without retrying."""
    fake.script(
        "PUT",
        f"{REFERENCE_PREFIX}H1",
        httpx.Response(404, json=error_body("NotFound", "no person 999")),
    )

    async def call(client):
        await client.put_reference(value="H1", protime_id=999)

    with pytest.raises(ProtimeError, match="no person 999") as info:
        _run(make_client, call)
    assert (info.value.status, info.value.retriable) == (404, False)
    assert len(fake.api_requests) == 1


BAD_VALUES = [
    "",
    " H1",
    "H1 ",
    "H\t1",
    "H\x001",
    "H\n1",
    ".",
    "..",
    "x" * 21,
    12345,
    None,
    *[f"H{ch}1" for ch in sorted(FORBIDDEN_CHARACTERS)],
]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
@pytest.mark.parametrize("method", ["put_reference", "delete_reference", "get_reference"])
def test_bad_values_are_refused_before_any_request(fake, make_client, value, method):
    """A value breaking §7 raises ReferenceValueError and nothing is sent, not even a token ask."""

    async def call(client):
        kwargs = {"value": value}
        if method == "put_reference":
            kwargs["protime_id"] = 1
        await getattr(client, method)(**kwargs)

    with pytest.raises(ReferenceValueError, match="cannot be sent"):
        _run(make_client, call, max_value_length=20)
    assert fake.requests == []


@pytest.mark.parametrize("protime_id", [0, -3, True, "12", 1.5, None], ids=repr)
def test_bad_internal_ids_are_refused_before_any_request(fake, make_client, protime_id):
    """Only a positive integer can be written as the internal id."""

    async def call(client):
        await client.put_reference(value="H1", protime_id=protime_id)

    with pytest.raises(ReferenceValueError, match="not a positive integer"):
        _run(make_client, call)
    assert fake.requests == []


def test_value_at_the_configured_maximum_length_is_sent(fake, make_client):
    """The length limit comes from settings: a value of exactly that length goes out."""

    async def call(client):
        return await client.put_reference(value="x" * 20, protime_id=1)

    assert _run(make_client, call, max_value_length=20) is True


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("Émile 01", "%C3%89mile%2001"),
        ("李-42", "%E6%9D%8E-42"),
        ("a+b=c;d@e", "a%2Bb%3Dc%3Bd%40e"),
        ("x..y", "x..y"),
        ("H1~_.-", "H1~_.-"),
        ("quote'\"", "quote%27%22"),
        ("emoji😀", "emoji%F0%9F%98%80"),
    ],
)
def test_values_are_percent_encoded_in_the_path(fake, make_client, value, encoded):
    """Unicode, spaces and reserved characters are percent-encoded; Protime sees the same value."""

    async def call(client):
        await client.put_reference(value=value, protime_id=3)
        await client.get_reference(value=value)
        await client.delete_reference(value=value)

    _run(make_client, call)
    for request in fake.api_requests:
        assert request.url.raw_path == f"{REFERENCE_PREFIX}{encoded}".encode()
    assert fake.references == {}  # the fake decoded each path back to the same value


def test_reference_name_from_settings_is_in_the_path(fake, make_client):
    """The configured reference name is the path segment before the value."""
    fake.script(
        "PUT",
        "/connector/protimeapi/api/v1/external-references/people/PAY_ID/H1",
        httpx.Response(
            201,
            json={
                "collection": "people",
                "name": "PAY_ID",
                "value": "H1",
                "internalReference": "3",
            },
        ),
    )

    async def call(client):
        return await client.put_reference(value="H1", protime_id=3)

    assert _run(make_client, call, reference_name="PAY_ID") is True
