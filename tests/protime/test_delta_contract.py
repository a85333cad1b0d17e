"""One test per statement of Protime's published delta contract (the delta reference and "Track
changes with delta", restated in docs/protime-client.md), each run with the client over real HTTP
against the simulator in every order it can give a set of changes; and the client's parser against
the documented examples (tests/fixtures/protime/).

The simulator and the client were once built from one wrong reading of the delta; these tests
name the sentence each behaviour comes from, so a drift on either side shows as a broken sentence.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from sync.config import ProtimeSettings
from sync.errors import ProtimeError
from sync.protime import ProtimeClient
from sync.protime._parse import parse_changes_page, parse_list_page
from sync.reconcile._versions import fold_changes, newest
from sync.simulator import (
    DELTA_ORDERS,
    ClientSpec,
    Simulator,
    SimulatorConfig,
    change_version_text,
    serve_in_thread,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sync.protime import Change, ChangesPage, PeoplePage

SECRET = "contract-secret-9Qx"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "protime"
PAGE = 10
PEOPLE = 3 * PAGE  # a multiple of the page size: the last page of the first round is empty


class Served:
    """The simulator served over HTTP in one delta order, and clients of it."""

    def __init__(self, sim: Simulator, base_url: str) -> None:
        self.sim = sim
        self.base_url = base_url

    def client(self) -> ProtimeClient:
        settings = ProtimeSettings(
            base_url=self.base_url,
            tenant="acme",
            token_url=self.base_url + self.sim.token_path,
            client_id="idsync",
            client_secret=SECRET,  # type: ignore[arg-type]
            user_agent_company="contract",
            rate_limit_per_second=0,
            retry_attempts=4,
        )
        return ProtimeClient(settings)

    def run(self, scenario: Callable[[ProtimeClient], Any]) -> Any:
        async def go() -> Any:
            async with self.client() as client:
                return await scenario(client)

        return asyncio.run(go())

    def full(self, *, start_delta: bool) -> list[PeoplePage]:
        async def read(client: ProtimeClient) -> list[PeoplePage]:
            return [page async for page in client.iter_full(start_delta=start_delta)]

        pages: list[PeoplePage] = self.run(read)
        return pages

    def changes(self, link: str) -> list[ChangesPage]:
        async def read(client: ProtimeClient) -> list[ChangesPage]:
            return [page async for page in client.iter_changes(link)]

        pages: list[ChangesPage] = self.run(read)
        return pages

    def people_requests(self) -> list[tuple[str, dict[str, list[str]], int]]:
        return [
            (r.path, parse_qs(r.query, keep_blank_values=True), r.status)
            for r in self.sim.request_log
            if "/people" in r.path
        ]


@pytest.fixture(params=DELTA_ORDERS, scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    sim = Simulator(
        SimulatorConfig(
            tenant="acme",
            people=PEOPLE,
            seed=5,
            page_size=PAGE,
            delta_order=request.param,
            clients=(ClientSpec("idsync", SECRET),),
        )
    )
    with serve_in_thread(sim) as base_url:
        yield Served(sim, base_url)


@pytest.fixture
def api(served: Served) -> Served:
    served.sim.reset()
    return served


def _link(pages: list[Any]) -> str:
    link = pages[-1].delta_link
    assert isinstance(link, str)
    return link


def _update_twice(api: Served, index: int) -> tuple[int, str]:
    person = api.sim.world.people_list()[index]
    api.sim.world.update_person(person.id, badge_number=f"OLD-{index}")
    newer = api.sim.world.update_person(person.id, badge_number=f"NEW-{index}")
    return person.id, change_version_text(newer.change_version)


# ---- Start ----------------------------------------------------------------------------------


def test_start_adds_delta_to_a_list_request_with_the_references(api: Served) -> None:
    """ "Start: add &delta to a list request: GET /people?delta&externalReferences=(people,HRMID)"."""
    api.full(start_delta=True)
    path, query, status = api.people_requests()[0]
    assert path.endswith("/connector/protimeapi/api/v1/people")
    assert "delta" in query
    assert query["delta"] == [""]
    assert "(people,HRMID)" in query["externalReferences"][0]
    assert status == 200


def test_the_first_round_pages_plain_objects_exactly_as_get_people(api: Served) -> None:
    """ "This initial round pages like any list and its items are plain objects, exactly as GET
    /people returns them (not wrapped)"."""
    plain = api.full(start_delta=False)
    round_ = api.full(start_delta=True)
    assert [p for page in round_ for p in page.people] == [p for page in plain for p in page.people]
    assert [v for page in round_ for v in page.versions] == [
        v for page in plain for v in page.versions
    ]


def test_the_first_rounds_next_links_carry_both_tokens(api: Served) -> None:
    """ "Its nextLinks carry continuationToken=…&deltaToken=…"."""
    api.full(start_delta=True)
    follow = [q for _, q, _ in api.people_requests()[1:]]
    assert follow
    for query in follow:
        assert "continuationToken" in query
        assert "deltaToken" in query


def test_only_the_last_page_carries_the_delta_link_and_it_may_be_empty(api: Served) -> None:
    """ "Walk every page: only the last page carries a deltaLink (and no nextLink); its value may be
    empty"."""
    pages = api.full(start_delta=True)
    assert [p.delta_link is not None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert sum(len(p.people) for p in pages) == PEOPLE
    assert pages[-1].people == []  # PEOPLE is a multiple of the page size


# ---- The deltaLink ------------------------------------------------------------------------------


def test_the_delta_link_is_a_dedicated_path_with_an_opaque_token(api: Served) -> None:
    """ "The deltaLink points at a dedicated path: /connector/protimeapi/api/v1/delta/people?deltaToken=…
    (the token is opaque: Base64 JSON of DeltaId, StartingCursor, TimeStamp; pass it back
    unchanged)"."""
    link = _link(api.full(start_delta=True))
    parts = urlsplit(link)
    assert parts.path == "/connector/protimeapi/api/v1/delta/people"
    (token,) = parse_qs(parts.query)["deltaToken"]
    assert set(json.loads(base64.b64decode(token))) == {"DeltaId", "StartingCursor", "TimeStamp"}
    api.sim.request_log.clear()
    api.changes(link)
    (sent,) = [r for r in api.sim.request_log if r.path.endswith("/delta/people")]
    assert unquote(sent.query) == unquote(parts.query)


# ---- Changes ------------------------------------------------------------------------------------


def test_a_call_with_no_change_answers_an_empty_page_with_a_fresh_link(api: Served) -> None:
    """ "Calling the deltaLink returns the changes since the previous call, paged (… the last page has
    a new deltaLink, also when value is empty)"; "Each call, even with no change, returns a fresh
    deltaLink: keep the newest"."""
    link = _link(api.full(start_delta=True))
    (page,) = api.changes(link)
    assert page.changes == []
    assert page.delta_link is not None
    person = api.sim.world.people_list()[0]
    api.sim.world.update_person(person.id, badge_number="AFTER")
    (again,) = api.changes(page.delta_link)  # the newest link gives what changed since
    assert [c.id for c in again.changes] == [person.id]


def test_changes_are_paged_with_next_links_while_more(api: Served) -> None:
    """Changes are "paged (nextLink while more; the last page has a new deltaLink)"."""
    link = _link(api.full(start_delta=True))
    for person in api.sim.world.people_list()[: PAGE + 3]:
        api.sim.world.update_person(person.id, badge_number=f"P-{person.id}")
    pages = api.changes(link)
    assert len(pages) >= 2
    assert [p.delta_link is not None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert sum(len(p.changes) for p in pages) == PAGE + 3


def test_items_are_wrapped_with_data_in_the_collections_layout(api: Served) -> None:
    """ "Each item {"changeType": "InsertOrUpdate" | "Delete", "data": {...}}. data has the
    collection's layout (with the requested external references) and a changeVersion"."""
    link = _link(api.full(start_delta=True))
    person = api.sim.world.people_list()[0]
    api.sim.world.set_reference("H-1", person.id)
    updated = api.sim.world.update_person(person.id, badge_number="B-NEW")
    (page,) = api.changes(link)
    (change,) = page.changes
    assert change.person is not None
    assert (change.id, change.person.badge_number) == (person.id, "B-NEW")
    assert change.person.reference == "H-1"  # the reference requested by the first round
    assert change.version == change_version_text(updated.change_version)


def test_a_delete_carries_id_and_change_version(api: Served) -> None:
    """ "A Delete may carry only id and changeVersion"."""
    link = _link(api.full(start_delta=True))
    person = api.sim.world.people_list()[1]
    api.sim.world.remove_person(person.id)
    (page,) = api.changes(link)
    (change,) = page.changes
    assert (change.id, change.person) == (person.id, None)
    assert isinstance(change.version, str)


# ---- Order ---------------------------------------------------------------------------------------


def test_change_versions_are_strings_that_compare_lexically(api: Served) -> None:
    """ "changeVersion is a string (e.g. "0000090200004BD0000A") that compares lexically"."""
    link = _link(api.full(start_delta=True))
    first = api.sim.world.people_list()[0]
    api.sim.world.update_person(first.id, badge_number="V1")
    api.sim.world.update_person(first.id, badge_number="V2")
    changes = [c for page in api.changes(link) for c in page.changes]
    assert all(type(c.version) is str for c in changes)
    by_badge = {c.person.badge_number: c.version for c in changes if c.person is not None}
    assert by_badge["V1"] < by_badge["V2"]


def test_a_person_may_appear_several_times_and_the_newest_holds(api: Served) -> None:
    """ "The same person can appear more than once in one set of changes, and items are not
    promised in order: an item whose changeVersion is older than one already received for the
    same id is ignored"."""
    link = _link(api.full(start_delta=True))
    wanted = dict(_update_twice(api, i) for i in range(4))
    changes: list[Change] = [c for page in api.changes(link) for c in page.changes]
    assert len(changes) == 8  # every change of every person
    folded = fold_changes(newest(changes), held={})
    assert folded.versions == wanted
    assert {pid: p.badge_number for pid, p in folded.changed.items()} == {
        pid: f"NEW-{i}" for i, pid in enumerate(wanted)
    }


def test_person_objects_on_ordinary_lists_carry_a_change_version(api: Served) -> None:
    """ "Person objects on ordinary lists carry changeVersion too"."""
    pages = api.full(start_delta=False)
    versions = [v for page in pages for v in page.versions]
    assert len(versions) == PEOPLE
    assert all(type(v) is str and v for v in versions)


# ---- One active delta, expiry ------------------------------------------------------------------


def test_a_new_round_makes_the_previous_links_invalid(api: Served) -> None:
    """ "One active delta per collection: starting a new round (?delta) makes the previous delta's
    links invalid"."""
    old = _link(api.full(start_delta=True))
    new = _link(api.full(start_delta=True))
    with pytest.raises(ProtimeError) as info:
        api.changes(old)
    assert info.value.status == 410
    assert api.changes(new)[-1].delta_link is not None


def test_a_read_that_keeps_no_link_starts_no_round(api: Served) -> None:
    """ "A read that will not keep its deltaLink (a dry run, a plan) should not start one": a plain
    read leaves the active delta's link valid."""
    link = _link(api.full(start_delta=True))
    api.sim.request_log.clear()
    api.full(start_delta=False)
    assert len(api.people_requests()) >= PEOPLE // PAGE
    assert all("delta" not in q and "deltaToken" not in q for _, q, _ in api.people_requests())
    assert api.changes(link)[-1].delta_link is not None


def test_a_delta_expires_72_hours_after_its_last_request(api: Served) -> None:
    """ "A delta expires 72 h after its last request; an expired or replaced link answers 410 Gone"."""
    link = _link(api.full(start_delta=True))
    api.sim.advance_clock(71 * 3600)
    link = _link(api.changes(link))  # a request: the 72 hours start again
    api.sim.advance_clock(71 * 3600)
    link = _link(api.changes(link))
    api.sim.advance_clock(73 * 3600)
    with pytest.raises(ProtimeError) as info:
        api.changes(link)
    assert info.value.status == 410


# ---- The documented examples, through the client's parser ---------------------------------------


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_the_documented_first_round_pages_parse_as_plain_objects() -> None:
    """The documented first-round pages parse as plain persons with versions and links."""
    page = parse_list_page(_fixture("delta_initial_page.json"), reference_name="HRMID")
    assert [(p.id, p.reference) for p in page.people] == [(4781, None), (123152, "6767676")]
    assert page.versions == ["0000090200004BD00001", "0000090200004BD00002"]
    assert page.next_link is not None
    assert page.delta_link is None
    last = parse_list_page(_fixture("delta_initial_last_page.json"), reference_name="HRMID")
    assert (last.people, last.next_link) == ([], None)
    assert last.delta_link is not None
    assert urlsplit(last.delta_link).path.endswith("/delta/people")


def test_the_documented_changes_page_folds_to_the_newest_of_each_person() -> None:
    """The documented set of changes (a person twice, newer first; a bare Delete) folds right."""
    changes, next_link, delta_link = parse_changes_page(
        _fixture("delta_changes_page.json"), reference_name="HRMID"
    )
    assert next_link is None
    assert delta_link is not None
    folded = fold_changes(newest(changes), held={})
    assert folded.removed == {123153}
    assert folded.versions[123152] == "0000090200004BD0000C"
    assert not folded.changed[123152].out_of_service  # the newer item: still in service
    assert folded.changed[4781].reference is None  # an empty map: no reference


def test_the_documented_answers_and_the_simulators_have_the_same_shape(api: Served) -> None:
    """What the simulator answers has the keys and value types of the documented examples."""
    import httpx

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k != "externalReferences"}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return type(value).__name__

    person = api.sim.world.people_list()[0]
    token = api.sim.issue_token(client_id="idsync")
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "contract/1 (test)"}
    first = httpx.get(
        f"{api.base_url}/connector/protimeapi/api/v1/people?delta&externalReferences=(people,HRMID)",
        headers=headers,
    ).json()
    documented = _fixture("delta_initial_page.json")
    assert shape(first["value"][0]).keys() >= {"id", "changeVersion"}
    assert (
        shape(first["value"][0])["changeVersion"] == shape(documented["value"][0])["changeVersion"]
    )
    assert set(first) == set(documented)
    while "nextLink" in first:
        first = httpx.get(api.base_url + first["nextLink"], headers=headers).json()
    api.sim.world.update_person(person.id, badge_number="S-1")
    api.sim.world.remove_person(api.sim.world.people_list()[1].id)
    changes = httpx.get(api.base_url + first["deltaLink"], headers=headers).json()
    example = _fixture("delta_changes_page.json")
    kinds = {item["changeType"]: item for item in changes["value"]}
    expected = {item["changeType"]: item for item in example["value"]}
    assert set(kinds["Delete"]["data"]) == set(expected["Delete"]["data"])
    assert type(kinds["InsertOrUpdate"]["data"]["changeVersion"]) is str
    assert set(changes) == set(example)
