"""The people delta as Protime publishes it (plus the simulator's written-down assumptions).

Each API test runs in-process and over a real loopback socket through the `make_harness` fixture.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

import sync.simulator._world as world_module
from sim_helpers import API, DELTA, FakeClock, read_delta, read_pages
from sync.simulator import PEOPLE_READ, SimPerson, SimulatorConfig, World

pytestmark = pytest.mark.anyio

START = f"{API}/people?delta"


def _params(link: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(link).query, keep_blank_values=True)


def _raw_token(link: str) -> str:
    """The deltaToken of a link as it stands in the link (still percent-encoded)."""
    return urlsplit(link).query.split("deltaToken=", 1)[1].split("&", 1)[0]


def _token(link: str) -> dict[str, str]:
    return json.loads(base64.b64decode(dict(_params(link))["deltaToken"]))


def _summary(items: list[dict]) -> list[tuple[str, int]]:
    return [(item["changeType"], item["data"]["id"]) for item in items]


def _seq(version: str) -> int:
    return int(version, 16)


# ---- the initial round ---------------------------------------------------------------------------


async def test_initial_round_items_are_plain_people_as_get_people_returns_them(make_harness):
    """Every item of the initial round is exactly the person object that GET /people returns."""
    harness = make_harness(people=7, page_size=3)
    harness.sim.world.set_reference("HR-1", harness.sim.world.people_list()[2].id)
    refs = "(people,HRMID)(people,@badge-number)"
    async with harness.client() as client:
        items, _ = await read_delta(client, f"{START}&externalReferences={refs}")
        pages = await read_pages(client, f"{API}/people?externalReferences={refs}")
    assert items == [person for body in pages for person in body["value"]]
    assert "changeType" not in items[0]


async def test_initial_round_links_carry_both_tokens_and_only_its_last_page_a_delta_link(
    make_harness,
):
    """Each nextLink of the initial round is /people?delta with the request's externalReferences,
    a continuationToken and a deltaToken, and only the last page has a deltaLink on /delta/people."""
    harness = make_harness(people=7, page_size=3)
    async with harness.client() as client:
        pages = await read_pages(client, f"{START}&externalReferences=(people,HRMID)")
    assert [len(body["value"]) for body in pages] == [3, 3, 1]
    for body in pages[:-1]:
        assert set(body) == {"value", "nextLink"}
        assert urlsplit(body["nextLink"]).path == f"{API}/people"
        params = _params(body["nextLink"])
        assert [k for k, _ in params] == [
            "delta",
            "externalReferences",
            "continuationToken",
            "deltaToken",
        ]
        assert dict(params)["externalReferences"] == "(people,HRMID)"
    assert set(pages[-1]) == {"value", "deltaLink"}
    assert urlsplit(pages[-1]["deltaLink"]).path == DELTA
    assert [k for k, _ in _params(pages[-1]["deltaLink"])] == ["deltaToken"]


async def test_initial_round_ends_on_an_empty_page_when_the_people_fill_the_pages(make_harness):
    """When the people fill the pages exactly, the round's last page has an empty value and the
    deltaLink."""
    harness = make_harness(people=6, page_size=3)
    async with harness.client() as client:
        pages = await read_pages(client, START)
    assert [len(body["value"]) for body in pages] == [3, 3, 0]
    assert pages[-1] == {"value": [], "deltaLink": pages[-1]["deltaLink"]}


async def test_delta_token_is_base64_json_of_delta_id_cursor_and_timestamp(make_harness):
    """A deltaToken is Base64 of a JSON object with exactly DeltaId, StartingCursor and TimeStamp,
    the cursor being the change sequence when the round began."""
    clock = FakeClock(1_747_211_400.0)  # 2025-05-14T08:30:00Z
    harness = make_harness(people=4, page_size=3, clock=clock, token_ttl_seconds=10**9)
    async with harness.client() as client:
        first = (await client.get(START)).json()
        _, delta_link = await read_delta(client, first["nextLink"])
    round_token, link_token = _token(first["nextLink"]), _token(delta_link)
    assert list(round_token) == ["DeltaId", "StartingCursor", "TimeStamp"]
    assert round_token["StartingCursor"] == f"{harness.sim.world.change_sequence:020X}"
    assert round_token["TimeStamp"] == "2025-05-14T08:30:00Z"
    assert link_token["DeltaId"] == round_token["DeltaId"]
    assert link_token["StartingCursor"] == round_token["StartingCursor"]


async def test_changes_made_while_the_round_pages_are_in_its_first_set_of_changes(make_harness):
    """The round's deltaLink continues from the sequence when the round began, so a change made
    while the round's pages are read is never lost."""
    harness = make_harness(people=6, page_size=2)
    world = harness.sim.world
    async with harness.client() as client:
        first = await client.get(START)
        early = world.people_list()[0]  # already read on the first page
        world.update_person(early.id, last_name="Changed")
        _, delta_link = await read_delta(client, first.json()["nextLink"])
        changes, _ = await read_delta(client, delta_link)
    assert _summary(changes) == [("InsertOrUpdate", early.id)]
    assert changes[0]["data"]["lastName"] == "Changed"


# ---- sets of changes -----------------------------------------------------------------------------


async def test_a_set_of_changes_lists_each_change_of_a_person(make_harness):
    """A set of changes lists a person once per change, each item with the person as it was at
    that change and that change's changeVersion."""
    harness = make_harness(people=12, page_size=5)
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        first, second, third = (p.id for p in world.people_list()[:3])
        world.update_person(first, last_name="Once")
        world.update_person(first, last_name="Twice")
        world.update_person(second, out_of_service_date="2025-01-31")
        world.remove_person(third)
        added = world.add_person(first_name="New", last_name="Hire", badge_number="9999999")
        world.set_reference("HR1", first)  # reference changes are not in the people delta
        changes, next_link = await read_delta(client, delta_link)
        quiet, _ = await read_delta(client, next_link)
    assert _summary(changes) == [
        ("InsertOrUpdate", first),
        ("InsertOrUpdate", first),
        ("InsertOrUpdate", second),
        ("Delete", third),
        ("InsertOrUpdate", added.id),
    ]
    assert [c["data"].get("lastName") for c in changes[:2]] == ["Once", "Twice"]
    assert changes[2]["data"]["outOfServiceDate"] == "2025-01-31"
    versions = [c["data"]["changeVersion"] for c in changes]
    assert versions == sorted(versions)
    assert len(set(versions)) == 5
    assert quiet == []


async def test_a_person_removed_and_added_again_is_a_delete_then_an_insert(make_harness):
    """A person removed and put back appears as a Delete and then an InsertOrUpdate, in that
    order of changeVersion."""
    harness = make_harness(people=4, page_size=10)
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        person = world.people_list()[1]
        world.remove_person(person.id)
        world.put_person(person)
        changes, _ = await read_delta(client, delta_link)
    assert _summary(changes) == [("Delete", person.id), ("InsertOrUpdate", person.id)]
    assert changes[0]["data"]["changeVersion"] < changes[1]["data"]["changeVersion"]


async def test_a_delete_carries_only_id_and_change_version(make_harness):
    """A Delete item's data is exactly the id and the string changeVersion of the removal."""
    harness = make_harness(people=3)
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, f"{START}&externalReferences=(people,HRMID)")
        gone = world.people_list()[0].id
        world.remove_person(gone)
        changes, _ = await read_delta(client, delta_link)
    assert changes == [
        {
            "changeType": "Delete",
            "data": {"id": gone, "changeVersion": f"{world.change_sequence:020X}"},
        }
    ]


async def test_changes_carry_the_references_of_the_round_as_they_are_now(make_harness):
    """InsertOrUpdate items carry the externalReferences the round's first request asked for
    (its links carry only the deltaToken), with the values the references hold at the call."""
    harness = make_harness(people=3)
    world = harness.sim.world
    pid = world.people_list()[0].id
    async with harness.client() as client:
        _, with_refs = await read_delta(client, f"{START}&externalReferences=(people,HRMID)")
        world.update_person(pid, last_name="Changed")
        world.set_reference("HR-now", pid)
        changes, _ = await read_delta(client, with_refs)
        _, without_refs = await read_delta(client, START)
        world.update_person(pid, last_name="Again")
        plain, _ = await read_delta(client, without_refs)
    assert [k for k, _ in _params(with_refs)] == ["deltaToken"]
    assert changes[0]["data"]["externalReferences"] == {"HRMID": "HR-now"}
    assert "externalReferences" not in plain[0]["data"]


async def test_a_set_of_changes_pages_on_the_delta_path(make_harness):
    """A set larger than a page pages with nextLinks /delta/people?deltaToken=…&continuationToken=…
    that keep the called token, and its last page carries a new deltaLink from the set's end."""
    harness = make_harness(people=5, page_size=2)
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        for person in world.people_list():
            world.update_person(person.id, last_name="Paged")
        pages = await read_pages(client, delta_link)
    assert [len(body["value"]) for body in pages] == [2, 2, 1]
    for body in pages[:-1]:
        assert set(body) == {"value", "nextLink"}
        assert urlsplit(body["nextLink"]).path == DELTA
        params = _params(body["nextLink"])
        assert [k for k, _ in params] == ["deltaToken", "continuationToken"]
        assert dict(params)["deltaToken"] == dict(_params(delta_link))["deltaToken"]
    assert set(pages[-1]) == {"value", "deltaLink"}
    cursor = _token(pages[-1]["deltaLink"])["StartingCursor"]
    assert cursor == f"{world.change_sequence:020X}"


async def test_a_change_made_while_a_set_is_paged_comes_in_the_next_set(make_harness):
    """A set of changes ends at the sequence of its first page, so a change made while its pages
    are read comes in the next set."""
    harness = make_harness(people=4, page_size=2)
    world = harness.sim.world
    people = world.people_list()
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        for person in people[:3]:
            world.update_person(person.id, last_name="First")
        first = (await client.get(delta_link)).json()
        world.update_person(people[3].id, last_name="Later")
        rest, next_link = await read_delta(client, first["nextLink"])
        later, _ = await read_delta(client, next_link)
    assert _summary(first["value"] + rest) == [("InsertOrUpdate", p.id) for p in people[:3]]
    assert _summary(later) == [("InsertOrUpdate", people[3].id)]


async def test_a_call_without_changes_answers_an_empty_value_and_a_fresh_delta_link(make_harness):
    """A deltaLink called with no change since answers an empty value and a new deltaLink with a
    later TimeStamp."""
    clock = FakeClock()
    harness = make_harness(people=3, clock=clock, token_ttl_seconds=10**9)
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        clock.now += 60
        body = (await client.get(delta_link)).json()
    assert body["value"] == []
    assert set(body) == {"value", "deltaLink"}
    assert _token(body["deltaLink"])["TimeStamp"] > _token(delta_link)["TimeStamp"]


# ---- order ---------------------------------------------------------------------------------------


async def _changed_set(harness, changes: int) -> list[str]:
    """Start a round, make ``changes`` updates, and read the set: its changeVersions in order."""
    world = harness.sim.world
    people = world.people_list()
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        for i in range(changes):
            world.update_person(people[i % len(people)].id, last_name=f"V{i}")
        items, _ = await read_delta(client, delta_link)
        again, _ = await read_delta(client, delta_link)
    assert again == items  # the same link, the same set: the same order
    return [item["data"]["changeVersion"] for item in items]


@pytest.mark.parametrize(
    ("order", "newest_first"), [("chronological", False), ("newest-first", True)]
)
async def test_delta_order_chronological_and_newest_first(make_harness, order, newest_first):
    """chronological answers a set in sequence order, newest-first in reverse sequence order."""
    versions = await _changed_set(make_harness(people=4, page_size=3, delta_order=order), 10)
    assert versions == sorted(versions, reverse=newest_first)
    assert len(set(versions)) == 10


async def test_shuffled_order_is_a_stable_seeded_permutation(make_harness):
    """shuffled answers a permutation of the set that stays the same across its pages and calls
    and for the same seed and cursors, and differs from sequence order."""
    runs = [
        await _changed_set(make_harness(people=4, page_size=3, delta_order="shuffled"), 20)
        for _ in range(2)
    ]
    other_seed = await _changed_set(
        make_harness(people=4, page_size=3, delta_order="shuffled", fault_seed=99), 20
    )
    assert runs[0] == runs[1]
    assert sorted(runs[0]) == sorted(other_seed)
    assert len(set(runs[0])) == 20
    assert runs[0] != sorted(runs[0])
    assert other_seed != runs[0]


def test_delta_order_must_be_a_known_one():
    """An unknown delta_order is refused when the configuration is built."""
    with pytest.raises(ValueError, match="delta_order"):
        SimulatorConfig(delta_order="random")  # type: ignore[arg-type]


# ---- one active delta, expiry --------------------------------------------------------------------


async def test_a_new_round_makes_every_link_of_the_previous_delta_gone(make_harness):
    """A new round makes the previous delta's deltaLinks and its unfinished round's pages answer
    410 Gone with the error envelope."""
    harness = make_harness(people=5, page_size=2)
    async with harness.client() as client:
        _, old_link = await read_delta(client, START)
        unfinished = (await client.get(START)).json()["nextLink"]
        _, new_link = await read_delta(client, START)
        answers = [await client.get(link) for link in (old_link, unfinished)]
        fresh = await client.get(new_link)
    for answer in answers:
        assert answer.status_code == 410
        assert answer.json()["error"]["code"] == "Gone"
        assert answer.json()["error"]["message"]
    assert fresh.status_code == 200


async def test_an_older_delta_link_of_the_active_delta_stays_valid(make_harness):
    """Calling an older deltaLink of the active delta again answers every change since that
    link's cursor."""
    harness = make_harness(people=4)
    world = harness.sim.world
    first, second = (p.id for p in world.people_list()[:2])
    async with harness.client() as client:
        _, link0 = await read_delta(client, START)
        world.update_person(first, last_name="X")
        changes1, link1 = await read_delta(client, link0)
        world.update_person(second, last_name="Y")
        changes2, _ = await read_delta(client, link1)
        again0, _ = await read_delta(client, link0)
        again1, _ = await read_delta(client, link1)
    assert _summary(changes1) == [("InsertOrUpdate", first)]
    assert _summary(changes2) == [("InsertOrUpdate", second)]
    assert _summary(again0) == [("InsertOrUpdate", first), ("InsertOrUpdate", second)]
    assert again1 == changes2


async def test_a_delta_expires_72_hours_after_its_last_request(make_harness):
    """A delta answers 410 once 72 h passed since its last request, and a request on any of its
    links restarts that time."""
    clock = FakeClock()
    harness = make_harness(people=3, clock=clock, token_ttl_seconds=10**9)
    async with harness.client() as client:
        _, link0 = await read_delta(client, START)
        clock.now += 72 * 3600 - 1
        kept_alive = await client.get(link0)
        link1 = kept_alive.json()["deltaLink"]
        clock.now += 72 * 3600 - 1
        older_link = await client.get(link0)  # 144 h after link0 was issued: still alive
        clock.now += 72 * 3600 + 1
        expired = await client.get(link1)
        restarted = await client.get(START)
    assert kept_alive.status_code == 200
    assert older_link.status_code == 200
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "Gone"
    assert restarted.status_code == 200


async def test_a_restore_makes_every_delta_link_gone(make_harness):
    """Replacing the world (a restore) makes the active delta's links answer 410."""
    harness = make_harness(people=3)
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        harness.sim.world.replace_all(harness.sim.world.people_list())
        response = await client.get(delta_link)
    assert response.status_code == 410
    assert harness.sim.delta_state() is None


# ---- filter --------------------------------------------------------------------------------------


async def test_filter_with_delta_filters_the_round_and_each_change(make_harness):
    """A round started with a filter pages only the matching people, and its sets list
    InsertOrUpdate only for people matching at that change, and every Delete."""
    harness = make_harness(people=8, page_size=2, out_of_service_share=0.0)
    world = harness.sim.world
    people = world.people_list()
    world.update_person(people[0].id, out_of_service_date="2024-01-31")
    query = "filter=outOfServiceDate eq null&externalReferences=(people,HRMID)"
    async with harness.client() as client:
        pages = await read_pages(client, f"{START}&{query}")
        world.update_person(people[1].id, last_name="Still in")
        world.update_person(people[2].id, out_of_service_date="2025-03-31")  # stops matching
        world.update_person(people[2].id, out_of_service_date=None)  # matches again
        world.update_person(people[0].id, last_name="Still out")
        world.remove_person(people[0].id)  # did not match: its Delete is listed
        changes, _ = await read_delta(client, pages[-1]["deltaLink"])
    round_ids = [p["id"] for body in pages for p in body["value"]]
    assert round_ids == [p.id for p in people[1:]]
    assert "filter" in dict(_params(pages[0]["nextLink"]))
    assert _summary(changes) == [
        ("InsertOrUpdate", people[1].id),
        ("InsertOrUpdate", people[2].id),
        ("Delete", people[0].id),
    ]
    assert changes[1]["data"]["outOfServiceDate"] is None


# ---- bad requests, routes, scope -----------------------------------------------------------------


async def test_bad_delta_requests_are_400(make_harness):
    """A valued delta flag, a page of a round without both tokens, forged tokens, and
    /delta/people without or with a forged token or an unknown parameter answer 400."""
    harness = make_harness(people=3)
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        token = _raw_token(delta_link)
        junk = base64.b64encode(b'{"DeltaId": "x"}').decode()
        urls = [
            f"{API}/people?delta=yes",
            f"{API}/people?deltaToken={token}",
            f"{API}/people?delta&deltaToken={token}",
            f"{API}/people?delta&continuationToken=ZHA6MQ",
            f"{API}/people?delta&continuationToken=ZHA6MQ&deltaToken=bogus",
            f"{API}/people?delta&continuationToken=bogus&deltaToken={token}",
            f"{API}/people?delta&filter=nonsense eq 1",
            DELTA,
            f"{DELTA}?deltaToken=bogus",
            f"{DELTA}?deltaToken={junk}",
            f"{DELTA}?deltaToken={token}&continuationToken=bogus",
            f"{DELTA}?deltaToken={token}&externalReferences=(people,HRMID)",
        ]
        answers = {url: await client.get(url) for url in urls}
    for url, answer in answers.items():
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"]["code"] == "BadRequest"


async def test_the_delta_path_serves_only_get_on_people(guide):
    """POST on /delta/people answers 405 with Allow: GET, and other paths under /delta answer 404."""
    async with guide.client() as client:
        posted = await client.post(DELTA, json={})
        other = await client.get(f"{API}/delta/absences?deltaToken=x")
        deeper = await client.get(f"{DELTA}/1?deltaToken=x")
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET"
    assert (other.status_code, deeper.status_code) == (404, 404)


async def test_the_delta_path_needs_the_people_read_scope(guide):
    """A token without connector-protimeapi-people.read gets 403 on /delta/people."""
    token = guide.sim.issue_token(
        scopes=frozenset({"connector-protimeapi-external-references.write"})
    )
    async with guide.client(token=token) as client:
        response = await client.get(f"{DELTA}?deltaToken=x")
    assert response.status_code == 403
    assert PEOPLE_READ in response.json()["error"]["reasons"][0]


# ---- history -------------------------------------------------------------------------------------


def test_loading_a_world_keeps_no_change_history():
    """Loading 250,000 people gives them change versions 1..N without keeping any change history."""
    world = World()
    world.replace_all(SimPerson(pid, "A", "B") for pid in range(1, 250_001))
    assert world.change_sequence == 250_000
    assert world.person(250_000).change_version == 250_000
    assert (world.history_size, world.history_floor) == (0, 250_000)
    assert world.changes_between(249_999, 250_000) is None
    assert world.changes_between(250_000, 250_000) == []


async def test_a_new_round_forgets_the_history_before_it(make_harness):
    """Starting a new round drops the changes from before its start, which no live link can ask
    for."""
    harness = make_harness(people=4)
    world = harness.sim.world
    for person in world.people_list():
        world.update_person(person.id, last_name="Before")
    assert world.history_size == 4
    async with harness.client() as client:
        await read_delta(client, START)
    assert world.history_size == 0
    assert world.history_floor == world.change_sequence


async def test_a_link_older_than_the_kept_history_is_gone(make_harness, monkeypatch):
    """When the bounded history forgets changes a deltaLink still needs, that link answers 410."""
    monkeypatch.setattr(world_module, "MAX_HISTORY", 10)
    harness = make_harness(people=2)
    world = harness.sim.world
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        for i in range(11):
            world.update_person(world.people_list()[0].id, last_name=f"N{i}")
        response = await client.get(delta_link)
    assert world.history_size == 10
    assert response.status_code == 410


async def test_reset_forgets_the_active_delta(make_harness):
    """Simulator.reset leaves no active delta, so its links answer 410."""
    harness = make_harness(people=2)
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
    assert harness.sim.delta_state() is not None
    harness.sim.reset()  # tokens go too: a new client
    async with harness.client() as client:
        response = await client.get(delta_link)
    assert harness.sim.delta_state() is None
    assert response.status_code == 410
