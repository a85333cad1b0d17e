"""The simulator's delta answers have exactly the shape of the published examples.

The examples are restated by hand in tests/fixtures/protime/ (see its README): same keys, same
JSON types, the same link paths and parameters, and tokens of the same form. Values differ.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sim_helpers import API, CHANGE_VERSION, read_delta, read_pages

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "protime"
START = f"{API}/people?delta&externalReferences=(people,HRMID)"
# Person fields the people layout leaves null when empty.
NULLABLE = frozenset(
    {"email", "employeeNumber", "badgeNumber", "inServiceDate", "outOfServiceDate"}
)
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def assert_same_shape(actual: Any, expected: Any, where: str = "$") -> None:
    """Same keys and JSON types, recursively; a reference map is any string-to-string object and
    an optional person field may be null on either side."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        if where.endswith(".externalReferences"):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in actual.items()), where
            return
        assert set(actual) == set(expected), (where, sorted(actual), sorted(expected))
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), where
    elif actual is None or expected is None:
        assert where.rsplit(".", 1)[-1] in NULLABLE, where
        assert actual is None or isinstance(actual, str), where
        assert expected is None or isinstance(expected, str), where
    else:
        assert type(actual) is type(expected), (where, actual, expected)


def _link_parts(link: str) -> tuple[str, list[str], dict[str, str]]:
    parts = urlsplit(link)
    params = parse_qsl(parts.query, keep_blank_values=True)
    return parts.path, [k for k, _ in params], dict(params)


def _token(encoded: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(encoded, validate=True))


def assert_same_link(actual: str, expected: str) -> None:
    """The same path and parameters in the same order, and delta tokens of the same form."""
    path, names, params = _link_parts(actual)
    expected_path, expected_names, expected_params = _link_parts(expected)
    assert (path, names) == (expected_path, expected_names)
    assert path.startswith(API)
    if "deltaToken" in names:
        assert_same_token(params["deltaToken"], expected_params["deltaToken"])
    if "continuationToken" in names:
        assert params["continuationToken"]


def assert_same_token(actual: str, expected: str) -> None:
    """Base64 JSON with the same keys in the same order, a GUID, a cursor and a UTC time."""
    mine, published = _token(actual), _token(expected)
    assert list(mine) == list(published) == ["DeltaId", "StartingCursor", "TimeStamp"]
    for token in (mine, published):
        assert re.fullmatch(GUID, token["DeltaId"])
        assert re.fullmatch(CHANGE_VERSION, token["StartingCursor"])
        assert re.fullmatch(TIMESTAMP, token["TimeStamp"])


def assert_same_page(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same top-level keys (value and exactly one of nextLink / deltaLink), same link shapes."""
    assert set(actual) == set(expected)
    for key in ("nextLink", "deltaLink"):
        if key in expected:
            assert_same_link(actual[key], expected[key])


async def test_an_initial_round_page_has_the_published_shape(make_harness):
    """A page of the initial round is plain people and a nextLink on /people?delta with
    externalReferences, continuationToken and deltaToken, as in the published example."""
    published = _fixture("delta_initial_page.json")
    harness = make_harness(people=7, page_size=3)
    harness.sim.world.set_reference("HR-1", harness.sim.world.people_list()[1].id)
    async with harness.client() as client:
        page = (await client.get(START)).json()
    assert_same_page(page, published)
    for person in page["value"]:
        assert_same_shape(person, published["value"][0])
    assert page["value"][1]["externalReferences"] == {"HRMID": "HR-1"}


async def test_an_initial_round_last_page_has_the_published_shape(make_harness):
    """The last page of the initial round has an empty value and a deltaLink on /delta/people
    with a Base64 JSON token, as in the published example."""
    published = _fixture("delta_initial_last_page.json")
    harness = make_harness(people=6, page_size=3)
    async with harness.client() as client:
        pages = await read_pages(client, START)
    assert pages[-1]["value"] == published["value"] == []
    assert_same_page(pages[-1], published)


async def test_a_changes_page_has_the_published_shape(make_harness, guide_file):
    """A page of changes has InsertOrUpdate items with the people layout, Deletes with only id and
    changeVersion, one person twice out of order, and a deltaLink, as in the published example."""
    published = _fixture("delta_changes_page.json")
    by_type = {item["changeType"]: item for item in published["value"]}
    harness = make_harness(people_file=guide_file, delta_order="newest-first")
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        world.update_person(123152, out_of_service_date="2025-06-30")
        world.remove_person(123153)
        world.update_person(123152, last_name="Janssens-Peeters", out_of_service_date=None)
        world.update_person(4781, first_name="Els")
        page = (await client.get(delta_link)).json()
    assert_same_page(page, published)
    for item in page["value"]:
        assert_same_shape(item, by_type[item["changeType"]])
    assert [(i["changeType"], i["data"]["id"]) for i in page["value"]] == [
        ("InsertOrUpdate", 4781),
        ("InsertOrUpdate", 123152),
        ("Delete", 123153),
        ("InsertOrUpdate", 123152),
    ]
    twice = [i["data"]["changeVersion"] for i in page["value"] if i["data"]["id"] == 123152]
    assert twice[0] > twice[1]  # the newer change first: items are not promised in order
    assert page["value"][1]["data"]["externalReferences"] == {"HRMID": "6767676"}


def test_the_published_examples_are_what_the_shape_tests_assume():
    """The fixtures hold the published facts the shape tests lean on: string changeVersions, one
    person twice out of order, a Delete with only id and changeVersion, links on the right paths."""
    initial = _fixture("delta_initial_page.json")
    last = _fixture("delta_initial_last_page.json")
    changes = _fixture("delta_changes_page.json")
    assert "changeType" not in initial["value"][0]
    assert _link_parts(initial["nextLink"])[0] == f"{API}/people"
    assert _link_parts(last["deltaLink"])[0] == f"{API}/delta/people"
    assert _link_parts(changes["deltaLink"])[1] == ["deltaToken"]
    deletes = [i["data"] for i in changes["value"] if i["changeType"] == "Delete"]
    assert deletes
    assert all(set(d) == {"id", "changeVersion"} for d in deletes)
    versions = [i["data"]["changeVersion"] for i in changes["value"] if i["data"]["id"] == 123152]
    assert len(versions) == 2
    assert versions[0] > versions[1]
    for page in (initial, changes):
        for item in page["value"]:
            data = item.get("data", item)
            assert re.fullmatch(CHANGE_VERSION, data["changeVersion"])


async def test_change_version_has_the_published_form_everywhere(make_harness):
    """Lists, one person, its ETag and delta items carry changeVersion as 20 upper-case hex digits
    that compare lexically in change order."""
    harness = make_harness(people=3)
    world = harness.sim.world
    pid = world.people_list()[0].id
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        for i in range(14):  # through sequence 0x10, where a decimal string would sort wrong
            world.update_person(pid, last_name=f"N{i}")
        listed = (await client.get(f"{API}/people")).json()["value"]
        one = await client.get(f"{API}/people/{pid}")
        changes, _ = await read_delta(client, delta_link)
    versions = [item["data"]["changeVersion"] for item in changes]
    assert all(re.fullmatch(CHANGE_VERSION, v) for v in versions)
    assert versions == sorted(versions)
    assert [int(v, 16) for v in versions] == list(range(4, 18))
    assert one.json()["changeVersion"] == versions[-1] == "00000000000000000011"
    assert one.headers["etag"] == f'W/"{versions[-1]}"'
    assert all(re.fullmatch(CHANGE_VERSION, p["changeVersion"]) for p in listed)
