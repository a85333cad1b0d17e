"""Reading people: paging by nextLink, field mapping, headers."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import pytest

from protime_fakes import API_PATH, person
from sync.domain import NamedPerson, Person
from sync.protime import MalformedAnswerError
from sync.protime._parse import parse_changes_page, parse_people_page
from sync.strings import StringPool

PEOPLE_PATH = f"{API_PATH}/people"


def test_pages_are_followed_to_the_end_through_empty_pages(fake, make_client):
    """Empty pages that carry a nextLink are not the end: every later page is read too."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, json={"value": [person(1)], "nextLink": f"{PEOPLE_PATH}?ct=a"}),
        httpx.Response(200, json={"value": [], "nextLink": f"{PEOPLE_PATH}?ct=b"}),
        httpx.Response(200, json={"value": [], "nextLink": f"{PEOPLE_PATH}?ct=c"}),
        httpx.Response(200, json={"value": [person(2), person(3)], "nextLink": None}),
    )

    async def scenario():
        async with make_client() as client:
            return [[p.id for p in page] async for page in client.iter_people()]

    assert asyncio.run(scenario()) == [[1], [], [], [2, 3]]
    queries = [r.url.query.decode() for r in fake.api_requests]
    assert queries[1:] == ["ct=a", "ct=b", "ct=c"]
    assert all(r.url.host == "acme.myprotime.eu" for r in fake.api_requests)


def test_read_people_collects_every_page(fake, make_client):
    """read_people returns all persons of all pages, in order."""
    fake.people = [person(i) for i in range(1, 8)]
    fake.page_size = 3

    async def scenario():
        async with make_client() as client:
            return await client.read_people()

    people = asyncio.run(scenario())
    assert [p.id for p in people] == list(range(1, 8))
    assert len(fake.api_requests) == 3


def test_people_are_asked_with_both_predefined_references_and_ours(fake, make_client):
    """The first page asks for @employee-number, @badge-number and the configured reference."""

    async def scenario():
        async with make_client(reference_name="PAYROLL_ID") as client:
            await client.read_people()

    asyncio.run(scenario())
    query = parse_qs(fake.api_requests[0].url.query.decode())
    assert query["externalReferences"] == [
        "(people,@employee-number)(people,@badge-number)(people,PAYROLL_ID)"
    ]


def test_person_fields_and_references_map_onto_person(fake, make_client):
    """Fields win, predefined references fill gaps, our reference and out-of-service are read."""
    fake.people = [
        person(
            1,
            employeeNumber="E1",
            badgeNumber="B1",
            email="a@x.eu",
            externalReferences={"@employee-number": "ignored", "HRMID": "H1", "OTHER": "x"},
        ),
        person(
            2,
            employeeNumber=None,
            externalReferences={"@employee-number": "E2", "@badge-number": "B2"},
            outOfServiceDate="2024-05-31",
        ),
        person(3, employeeNumber="", email="", outOfServiceDate=""),
    ]
    fake.page_size = 10

    async def scenario():
        async with make_client() as client:
            return await client.read_people()

    assert asyncio.run(scenario()) == [
        Person(1, employee_number="E1", badge_number="B1", email="a@x.eu", reference="H1"),
        Person(2, employee_number="E2", badge_number="B2", out_of_service=True),
        Person(3),
    ]


def test_headers_identify_idsync_and_ask_for_json(fake, make_client):
    """Every request carries the User-Agent of protime-api.md §1, Accept and the bearer token."""

    async def scenario():
        async with make_client() as client:
            await client.read_people()
            await client.put_reference(value="H1", protime_id=5)

    asyncio.run(scenario())
    for request in fake.requests:
        assert request.headers["User-Agent"] == "idsync/9.8.7 (Acme NV)"
        assert request.headers["Accept"] == "application/json"
    people_get, put = fake.api_requests
    assert people_get.headers["Authorization"] == f"Bearer {fake.tokens[0]}"
    assert "Content-Type" not in people_get.headers
    assert put.headers["Content-Type"] == "application/json"


def test_default_user_agent_carries_the_package_version(fake):
    """Without an explicit version the User-Agent names the installed idsync version."""
    import sync
    from protime_fakes import make_settings
    from sync.protime import ProtimeClient

    async def scenario():
        async with ProtimeClient(make_settings(), transport=fake.transport()) as client:
            await client.check_token()

    asyncio.run(scenario())
    assert fake.requests[0].headers["User-Agent"] == f"idsync/{sync.__version__} (Acme NV)"


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/connector/protimeapi/api/v1/people?ct=1",
        "//evil.example/people",
        "people?ct=1",
        "http://acme.myprotime.eu/connector/protimeapi/api/v1/people?ct=1",
    ],
)
def test_next_link_off_the_tenant_host_is_refused(fake, make_client, link):
    """A nextLink that is not a path on the tenant host is never followed (it would get our token)."""
    fake.script("GET", PEOPLE_PATH, httpx.Response(200, json={"value": [], "nextLink": link}))

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError, match="nextLink is not a path on"):
        asyncio.run(scenario())
    assert len(fake.api_requests) == 1


def test_absolute_next_link_on_the_tenant_host_is_followed(fake, make_client):
    """A nextLink given as a full URL on the same host is followed like a path."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(
            200, json={"value": [], "nextLink": f"https://acme.myprotime.eu{PEOPLE_PATH}?ct=z"}
        ),
        httpx.Response(200, json={"value": [person(9)]}),
    )

    async def scenario():
        async with make_client() as client:
            return await client.read_people()

    assert [p.id for p in asyncio.run(scenario())] == [9]
    assert fake.api_requests[1].url.query == b"ct=z"


def test_a_next_link_loop_is_reported_instead_of_read_forever(fake, make_client):
    """A nextLink back to a page that gave people ends the read instead of reading them twice."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, json={"value": [person(1)], "nextLink": f"{PEOPLE_PATH}?ct=a"}),
        httpx.Response(200, json={"value": [person(2)], "nextLink": f"{PEOPLE_PATH}?ct=a"}),
    )

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError, match="repeats an earlier page"):
        asyncio.run(scenario())
    assert len(fake.api_requests) == 2


def test_an_empty_page_may_point_at_itself(fake, make_client):
    """An empty page whose nextLink is its own URL ("ask again") is asked again until data comes."""
    again = httpx.Response(200, json={"value": [], "nextLink": f"{PEOPLE_PATH}?ct=a"})
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, json={"value": [person(1)], "nextLink": f"{PEOPLE_PATH}?ct=a"}),
        again,
        again,
        httpx.Response(200, json={"value": [person(2)]}),
    )

    async def scenario():
        async with make_client() as client:
            return await client.read_people()

    assert [p.id for p in asyncio.run(scenario())] == [1, 2]
    assert len(fake.api_requests) == 4


def test_endless_empty_pages_are_cut_off(fake, make_client, monkeypatch):
    """A server that only ever answers empty pages does not keep the read going forever."""
    monkeypatch.setattr("sync.protime._paging._MAX_EMPTY_PAGES_IN_A_ROW", 5)

    def empty(request):
        return httpx.Response(200, json={"value": [], "nextLink": f"{PEOPLE_PATH}?ct=same"})

    fake.script("GET", PEOPLE_PATH, *[empty] * 10)

    async def scenario():
        async with make_client() as client:
            await client.read_people()

    with pytest.raises(MalformedAnswerError, match="5 empty pages in a row"):
        asyncio.run(scenario())
    assert len(fake.api_requests) == 5


def test_names_are_read_only_when_asked():
    """with_names gives NamedPerson objects with names and e-mail; a run's read keeps neither,
    and does not even look at a malformed name field it does not use."""
    page = {"value": [person(1, firstName="Jan", lastName="Peeters", email="j@x.eu")]}
    (named,), _ = parse_people_page(page, reference_name="HRMID", with_email=False, with_names=True)
    assert isinstance(named, NamedPerson)
    assert (named.first_name, named.last_name, named.email) == ("Jan", "Peeters", "j@x.eu")
    odd = {"value": [person(2, firstName=7)]}
    (plain,), _ = parse_people_page(odd, reference_name="HRMID", with_email=False)
    assert type(plain) is Person
    assert plain.email is None
    with pytest.raises(MalformedAnswerError, match="'firstName' is int"):
        parse_people_page(odd, reference_name="HRMID", with_names=True)


def _fresh(text: str) -> str:
    """An equal ``str`` that is not the same object (literals are shared by the compiler)."""
    return "".join(list(text))


def test_a_pool_gives_the_persons_of_a_page_the_strings_it_holds() -> None:
    """With a pool, a person's keys and reference are the pool's objects (people and delta pages)."""
    pool = StringPool()
    held = {t: pool.share(_fresh(t)) for t in ("100", "B9", "E1", "x@example.org")}
    item = {
        "id": 7,
        "employeeNumber": _fresh("100"),
        "badgeNumber": _fresh("B9"),
        "email": _fresh("x@example.org"),
        "externalReferences": {"HRMID": _fresh("E1")},
    }
    (plain,), _ = parse_people_page({"value": [item]}, reference_name="HRMID", strings=pool)
    (change,), _, _ = parse_changes_page(
        {
            "value": [{"changeType": "InsertOrUpdate", "data": {**item, "changeVersion": "01"}}],
            "deltaLink": "/d",
        },
        reference_name="HRMID",
        strings=pool,
    )
    changed = change.person
    assert changed is not None
    for p in (plain, changed):
        assert p.employee_number is held["100"]
        assert p.badge_number is held["B9"]
        assert p.email is held["x@example.org"]
        assert p.reference is held["E1"]
