"""What a test can see and switch around the delta: the 409 fault, the request log, the counter
labels, and filters on the string changeVersion."""

from __future__ import annotations

import pytest

from sim_helpers import API, DELTA, read_delta
from sync.simulator import Faults, LoggedRequest, Simulator, SimulatorConfig

pytestmark = pytest.mark.anyio

START = f"{API}/people?delta"


# ---- 409 on GETs ---------------------------------------------------------------------------------


async def test_fault_409_answers_gets_on_people_and_the_delta_with_conflict(make_harness):
    """With fault_rate_409_get at 1 every GET on /people, /people/{id} and /delta/people answers
    409 Conflict in the error envelope, while a reference PUT and the token endpoint are served."""
    harness = make_harness(people=3)
    sim = harness.sim
    pid = sim.world.people_list()[0].id
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        sim.set_faults(fault_rate_409_get=1.0)
        gets = [
            await client.get(url)
            for url in (f"{API}/people", f"{API}/people/{pid}", START, delta_link)
        ]
        put = await client.put(
            f"{API}/external-references/people/HRMID/E1", json={"internalReference": str(pid)}
        )
        token = await client.post(
            sim.token_path,
            data={
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
            },
        )
        sim.set_faults(fault_rate_409_get=0.0)
        after = await client.get(delta_link)
    for answer in gets:
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "Conflict"
    assert (put.status_code, token.status_code, after.status_code) == (201, 200, 200)
    assert sim.counters.count("delta.changes", 409) == 1


async def test_a_409_on_a_new_round_does_not_replace_the_active_delta(make_harness):
    """A ?delta answered 409 starts no round, so the active delta's links stay valid."""
    harness = make_harness(people=3)
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        harness.sim.set_faults(fault_rate_409_get=1.0)
        refused = await client.get(START)
        harness.sim.set_faults(fault_rate_409_get=0.0)
        still = await client.get(delta_link)
    assert (refused.status_code, still.status_code) == (409, 200)


async def test_fault_409_is_set_through_the_admin_surface_and_counted_in_the_total(make_harness):
    """PUT /_sim/faults changes fault_rate_409_get, and shares adding up to more than 1 are
    refused."""
    harness = make_harness(people=1)
    async with harness.client(token=None) as client:
        changed = await client.put("/_sim/faults", json={"fault_rate_409_get": 0.25})
        too_much = await client.put("/_sim/faults", json={"fault_rate_500": 0.8})
    assert changed.json()["fault_rate_409_get"] == 0.25
    assert too_much.status_code == 400
    assert harness.sim.faults.fault_rate_409_get == 0.25
    with pytest.raises(ValueError, match="fault_rate_409_get"):
        Faults(fault_rate_409_get=0.6, fault_drop_rate=0.5)
    with pytest.raises(ValueError, match="fault_rate_409_get"):
        SimulatorConfig(fault_rate_409_get=1.5)
    assert SimulatorConfig(fault_rate_409_get=0.1).faults().fault_rate_409_get == 0.1


# ---- request log ---------------------------------------------------------------------------------


async def test_request_log_keeps_api_and_token_requests_but_not_the_admin_surface(make_harness):
    """sim.request_log records method, raw path, raw query and status of API and token requests,
    not of /_sim, and GET /_sim/requests serves it."""
    harness = make_harness(people=2)
    sim = harness.sim
    async with harness.client() as client:
        await client.get(f"{API}/people?externalReferences=(people,HRMID)")
        await client.get(f"{API}/people/1")
        await client.post(sim.token_path, data={"grant_type": "client_credentials"})
        await client.get("/_sim/state")
        served = (await client.get("/_sim/requests?last=2")).json()
    assert list(sim.request_log) == [
        LoggedRequest("GET", f"{API}/people", "externalReferences=(people,HRMID)", 200),
        LoggedRequest("GET", f"{API}/people/1", "", 404),
        LoggedRequest("POST", sim.token_path, "", 400),
    ]
    assert served["total"] == 3
    assert served["requests"] == [
        {"method": "GET", "path": f"{API}/people/1", "query": "", "status": 404},
        {"method": "POST", "path": sim.token_path, "query": "", "status": 400},
    ]


async def test_request_log_is_cleared_by_reset_and_by_the_admin_surface(make_harness):
    """reset() and DELETE /_sim/requests empty the request log."""
    harness = make_harness(people=1)
    async with harness.client() as client:
        await client.get(f"{API}/people")
        harness.sim.reset()
        assert list(harness.sim.request_log) == []
    async with harness.client() as client:
        await client.get(f"{API}/people")
        cleared = await client.delete("/_sim/requests")
    assert cleared.status_code == 204
    assert list(harness.sim.request_log) == []


def test_request_log_is_bounded():
    """The request log keeps only the last 100,000 requests."""
    assert Simulator(SimulatorConfig()).request_log.maxlen == 100_000


# ---- counter labels ------------------------------------------------------------------------------


async def test_counter_labels_tell_a_new_round_its_pages_and_the_changes(make_harness):
    """A new round counts as people.delta_start, its later pages as people.delta_page, deltaLink
    calls as delta.changes, a plain list as people.list, and people.delta sums the three."""
    harness = make_harness(people=5, page_size=2)
    counters = harness.sim.counters
    async with harness.client() as client:
        _, delta_link = await read_delta(client, START)
        await read_delta(client, delta_link)
        await client.get(f"{API}/people")
        await client.get(f"{DELTA}?deltaToken=bogus")
    assert counters.as_dict() == {
        "people.delta_start": {"200": 1},
        "people.delta_page": {"200": 2},
        "delta.changes": {"200": 1, "400": 1},
        "people.list": {"200": 1},
    }
    assert counters.count("people.delta") == 5
    assert counters.count("people.delta", 400) == 1


# ---- filter on changeVersion ---------------------------------------------------------------------


async def test_a_filter_on_change_version_compares_strings(make_harness):
    """filter=changeVersion ge '…' compares the string changeVersions, and an integer literal
    answers 400."""
    harness = make_harness(people=20)
    async with harness.client() as client:
        found = await client.get(
            f"{API}/people", params={"filter": "changeVersion ge '00000000000000000010'"}
        )
        exact = await client.get(
            f"{API}/people", params={"filter": "changeVersion eq '0000000000000000000A'"}
        )
        number = await client.get(f"{API}/people", params={"filter": "changeVersion ge 16"})
    versions = [p["changeVersion"] for p in found.json()["value"]]
    assert [int(v, 16) for v in versions] == [16, 17, 18, 19, 20]
    assert [p["changeVersion"] for p in exact.json()["value"]] == ["0000000000000000000A"]
    assert number.status_code == 400
    assert "quoted string" in number.json()["error"]["reasons"][0]
