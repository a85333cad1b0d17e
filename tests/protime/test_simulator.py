"""The client end to end against the Protime simulator: in-process, and over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stamina

from sync.config import ProtimeSettings
from sync.domain import Person
from sync.errors import ProtimeAuthError, ProtimeError
from sync.protime import Backoff, ProtimeClient, is_retriable
from sync.simulator import ClientSpec, Simulator, SimulatorConfig, serve_in_thread

SECRET = "sim-client-secret-42"
FAST = Backoff(initial=0.005, maximum=0.05)


def _sim(**config: Any) -> Simulator:
    values: dict[str, Any] = {
        "tenant": "acme",
        "people": 0,
        "seed": 7,
        "clients": (ClientSpec("idsync", SECRET),),
    }
    values.update(config)
    return Simulator(SimulatorConfig(**values))


def _settings(base_url: str, token_url: str, **overrides: Any) -> ProtimeSettings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "tenant": "acme",
        "token_url": token_url,
        "client_id": "idsync",
        "client_secret": SECRET,
        "user_agent_company": "Acme NV",
        "rate_limit_per_second": 0,
        "retry_attempts": 10,
    }
    values.update(overrides)
    return ProtimeSettings(**values)


def _client(sim: Simulator, **overrides: Any) -> ProtimeClient:
    return ProtimeClient(
        _settings(sim.base_url, sim.token_url, **overrides),
        transport=sim.transport(),
        backoff=FAST,
    )


def _expected_people(sim: Simulator) -> list[Person]:
    refs = sim.world.references("HRMID")
    by_person = {pid: value for value, pid in refs.items()}
    return [
        Person(
            id=p.id,
            employee_number=p.employee_number or None,
            badge_number=p.badge_number or None,
            email=p.email or None,
            reference=by_person.get(p.id),
            out_of_service=bool(p.out_of_service_date),
        )
        for p in sim.world.people_list()
    ]


async def _link_everyone(client: ProtimeClient) -> dict[str, int]:
    people = await client.read_people()
    wanted = {f"HR-{p.id}": p.id for p in people}
    await asyncio.gather(
        *(client.put_reference(value=v, protime_id=pid) for v, pid in wanted.items())
    )
    return wanted


def test_reads_every_person_as_the_simulator_holds_them():
    """All people of several pages come back with fields, references and service state."""
    sim = _sim(people=250, page_size=100)
    first = sim.world.people_list()[0].id
    sim.world.set_reference("H-first", first)

    async def scenario():
        async with _client(sim) as client:
            return await client.read_people(), client.stats

    people, stats = asyncio.run(scenario())
    assert people == _expected_people(sim)
    assert len(people) == 250
    assert any(p.out_of_service for p in people)
    assert next(p for p in people if p.id == first).reference == "H-first"
    assert stats.count("people", 200) == 3


def test_empty_pages_do_not_end_the_read():
    """With half the pages served empty, every person is still read."""
    sim = _sim(people=300, page_size=50, empty_page_rate=0.5)

    async def scenario():
        async with _client(sim) as client:
            return await client.read_people(), client.stats

    people, stats = asyncio.run(scenario())
    assert sorted(p.id for p in people) == sorted(sim.world.people)
    assert stats.count("people", 200) > 6  # more requests than the six full pages


def test_writes_reads_and_deletes_round_trip_with_encoded_values():
    """Values with spaces and unicode arrive intact; PUT, GET and DELETE agree with the world."""
    sim = _sim(people=5)
    pid = sim.world.people_list()[0].id
    value = "Émile Ünal 李 01"

    async def scenario():
        async with _client(sim) as client:
            created = await client.put_reference(value=value, protime_id=pid)
            again = await client.put_reference(value=value, protime_id=pid)
            held = sim.world.references("HRMID")
            found = await client.get_reference(value=value)
            deleted = await client.delete_reference(value=value)
            gone = await client.delete_reference(value=value)
            missing = await client.get_reference(value=value)
            return created, again, held, found, deleted, gone, missing

    created, again, held, found, deleted, gone, missing = asyncio.run(scenario())
    assert (created, again) == (True, False)
    assert held == {value: pid}
    assert found == pid
    assert (deleted, gone, missing) == (True, False, None)
    assert sim.world.references("HRMID") == {}


def test_one_token_for_a_whole_run():
    """Reading 500 people and writing 500 references uses one token fetch."""
    sim = _sim(people=500)

    async def scenario():
        async with _client(sim, concurrency=16) as client:
            wanted = await _link_everyone(client)
            return wanted, client.stats

    wanted, stats = asyncio.run(scenario())
    assert sim.world.references("HRMID") == wanted
    assert stats.token_fetches == 1
    assert sim.counters.count("token") == 1


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_token_lost_mid_run_is_replaced(how):
    """A token revoked or expired on Protime's side mid-run is replaced and the run completes."""
    sim = _sim(people=120, page_size=20)

    async def scenario():
        async with _client(sim) as client:
            pages = 0
            people = []
            async for page in client.iter_people():
                pages += 1
                people.extend(page)
                if pages == 3:
                    if how == "revoked":
                        sim.expire_tokens()
                    else:
                        sim.advance_clock(sim.config.token_ttl_seconds + 1)
            return people, client.stats

    people, stats = asyncio.run(scenario())
    assert len(people) == 120
    assert stats.token_fetches == 2
    assert sim.counters.count("people.list", 401) == 1


def test_short_token_life_is_refreshed_before_protime_refuses_it():
    """With the client clock past the refresh point, a new token is fetched without any 401."""
    sim = _sim(people=10, token_ttl_seconds=600)
    now = [0.0]

    async def scenario():
        client = ProtimeClient(
            _settings(sim.base_url, sim.token_url, token_refresh_margin_seconds=120),
            transport=sim.transport(),
            clock=lambda: now[0],
        )
        async with client:
            await client.read_people()
            now[0] += 490  # past 600 - 120
            await client.read_people()
            return client.stats

    stats = asyncio.run(scenario())
    assert stats.token_fetches == 2
    assert sim.counters.count(status=401) == 0


def test_second_value_for_a_person_conflicts_by_default():
    """Under the default policy a second value for a person is a final 409 for that record."""
    sim = _sim(people=3)
    pid = sim.world.people_list()[0].id

    async def scenario():
        async with _client(sim) as client:
            await client.put_reference(value="H1", protime_id=pid)
            await client.put_reference(value="H2", protime_id=pid)

    with pytest.raises(ProtimeError) as info:
        asyncio.run(scenario())
    assert (info.value.status, info.value.code) == (409, "Conflict")
    assert not is_retriable(info.value)
    assert sim.world.references("HRMID") == {"H1": pid}
    assert sim.counters.count("references.put", 409) == 1


def test_second_value_for_a_person_replaces_under_replace_policy():
    """Under the replace policy a second value takes the first one's place."""
    sim = _sim(people=3, one_value_per_person="replace")
    pid = sim.world.people_list()[0].id

    async def scenario():
        async with _client(sim) as client:
            await client.put_reference(value="H1", protime_id=pid)
            created = await client.put_reference(value="H2", protime_id=pid)
            return created, await client.get_reference(value="H1")

    created, old = asyncio.run(scenario())
    assert created is True
    assert old is None
    assert sim.world.references("HRMID") == {"H2": pid}


def test_unknown_internal_id_is_final():
    """A PUT for a person Protime does not have is a final 404 for that record."""
    sim = _sim(people=1)

    async def scenario():
        async with _client(sim) as client:
            await client.put_reference(value="H1", protime_id=999_999)

    with pytest.raises(ProtimeError) as info:
        asyncio.run(scenario())
    assert (info.value.status, info.value.retriable) == (404, False)
    assert sim.counters.count("references.put") == 1


@pytest.mark.parametrize("status", [403, 401])
def test_missing_write_scope_is_an_auth_error(status):
    """Without the write scope a PUT fails with ProtimeAuthError naming it, as 403 or as 401."""
    sim = _sim(people=2, scope_error_status=status)
    pid = sim.world.people_list()[0].id

    async def scenario():
        async with _client(sim, scopes="connector-protimeapi-people.read") as client:
            people = await client.read_people()
            await client.put_reference(value="H1", protime_id=pid)
            return people

    with pytest.raises(ProtimeAuthError) as info:
        asyncio.run(scenario())
    assert info.value.status == status
    assert "connector-protimeapi-external-references.write" in str(info.value)
    assert not is_retriable(info.value)
    # A 401 earns one new token and one more try; a 403 is final at once.
    assert sim.counters.count("token") == (2 if status == 401 else 1)
    assert sim.counters.count("references.put") == (2 if status == 401 else 1)


def test_wrong_secret_is_an_auth_error_without_the_secret():
    """A refused client secret fails check_token with ProtimeAuthError that never shows it."""
    sim = _sim()
    wrong = "wrong-secret-value-123"

    async def scenario():
        settings = _settings(sim.base_url, sim.token_url, client_secret=wrong)
        async with ProtimeClient(settings, transport=sim.transport()) as client:
            await client.check_token()

    with pytest.raises(ProtimeAuthError) as info:
        asyncio.run(scenario())
    assert wrong not in str(info.value)
    assert SECRET not in str(info.value)
    assert sim.counters.count("token") == 1


def test_server_errors_and_drops_are_ridden_out():
    """With 500s, 503s and dropped connections injected, a full read and write still converge."""
    sim = _sim(
        people=200,
        page_size=50,
        fault_rate_500=0.1,
        fault_rate_503=0.1,
        fault_drop_rate=0.1,
        retry_after_seconds=0.01,
        retry_after_style="fractional",
    )

    async def scenario():
        async with _client(sim, concurrency=8) as client:
            wanted = await _link_everyone(client)
            return wanted, client.stats

    wanted, stats = asyncio.run(scenario())
    assert sim.world.references("HRMID") == wanted
    assert stats.retries > 0
    assert sim.counters.count(status=0) > 0  # drops really happened
    assert sim.counters.count(status=500) > 0
    assert sim.counters.count(status=503) > 0


def test_a_lasting_outage_gives_a_retriable_error():
    """Every answer 503: the call gives up after the configured attempts with a retriable error."""
    sim = _sim(people=3)
    pid = sim.world.people_list()[0].id

    async def scenario():
        async with _client(sim, retry_attempts=4) as client:
            await client.check_token()
            sim.set_faults(fault_rate_503=1.0)
            await client.put_reference(value="H1", protime_id=pid)

    with pytest.raises(ProtimeError, match="gave up after 4 attempts") as info:
        asyncio.run(scenario())
    assert info.value.status == 503
    assert is_retriable(info.value)
    assert sim.counters.count("references.put", 503) == 4


@pytest.mark.parametrize("style", ["whole", "fractional", "none"])
def test_429_storm_is_ridden_out(style):
    """Injected 429s, with Retry-After whole, fractional or absent, are waited out.

    stamina's test mode is off here, so the waits are real: the Retry-After is kept tiny.
    """
    sim = _sim(
        people=40,
        fault_rate_429=0.3,
        retry_after_style=style,
        retry_after_seconds=0.0 if style == "whole" else 0.01,
    )
    # A whole-seconds Retry-After is at least 1 s: keep those to a handful of waits.
    if style == "whole":
        sim.set_faults(fault_rate_429=0.05)

    async def scenario():
        async with _client(sim, concurrency=8) as client:
            wanted = await _link_everyone(client)
            return wanted, client.stats

    with stamina.set_testing(False):
        wanted, stats = asyncio.run(scenario())
    assert sim.world.references("HRMID") == wanted
    assert stats.rate_limited == sim.counters.count(status=429) > 0


def test_rate_limited_simulator_and_client_limit_together():
    """A simulator token bucket plus the client's own limit: every write lands."""
    sim = _sim(
        people=60, rate_limit_per_second=400, rate_limit_burst=5, retry_after_style="fractional"
    )

    async def scenario():
        async with _client(sim, concurrency=16, rate_limit_per_second=300) as client:
            return await _link_everyone(client)

    with stamina.set_testing(False):
        wanted = asyncio.run(scenario())
    assert sim.world.references("HRMID") == wanted


def test_over_real_http_with_drops_and_429s():
    """Over a socket (uvicorn), a read and write run survives drops and fractional 429s."""
    sim = _sim(
        people=150,
        page_size=40,
        fault_rate_429=0.05,
        fault_rate_503=0.05,
        fault_drop_rate=0.05,
        retry_after_style="fractional",
        retry_after_seconds=0.01,
    )

    async def scenario(base_url):
        settings = _settings(base_url, base_url + sim.token_path, concurrency=6)
        async with ProtimeClient(settings, backoff=FAST) as client:
            wanted = await _link_everyone(client)
            found = await client.get_reference(value=next(iter(wanted)))
            return wanted, found, client.stats

    with serve_in_thread(sim) as base_url, stamina.set_testing(False):
        wanted, found, stats = asyncio.run(scenario(base_url))
    assert sim.world.references("HRMID") == wanted
    assert found == next(iter(wanted.values()))
    assert stats.token_fetches == 1
    assert sim.counters.count(status=0) > 0


def test_over_real_http_auth_errors_and_encoding():
    """Over a socket: unicode values round-trip, and a 403 names the missing scope."""
    sim = _sim(people=2)
    pid = sim.world.people_list()[0].id

    async def scenario(base_url):
        token_url = base_url + sim.token_path
        async with ProtimeClient(_settings(base_url, token_url)) as client:
            await client.put_reference(value="Zoë 7", protime_id=pid)
        read_only = _settings(base_url, token_url, scopes="connector-protimeapi-people.read")
        async with ProtimeClient(read_only) as client:
            await client.delete_reference(value="Zoë 7")

    with serve_in_thread(sim) as base_url, pytest.raises(ProtimeAuthError, match="write"):
        asyncio.run(scenario(base_url))
    assert sim.world.references("HRMID") == {"Zoë 7": pid}
