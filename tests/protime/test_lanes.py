"""Over real HTTP the client sends API calls on `concurrency` single-connection lanes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from sync.config import ProtimeSettings
from sync.protime import ProtimeClient
from sync.protime._transports import ClientTransport
from sync.simulator import ClientSpec, Simulator, SimulatorConfig, serve_in_thread

if TYPE_CHECKING:
    import pytest

SECRET = "lane-secret-1234"


def test_calls_share_at_most_concurrency_lanes_which_close_with_the_client() -> None:
    """40 concurrent writes with concurrency 3 all land, on at most 3 lane clients, closed at the end."""
    sim = Simulator(
        SimulatorConfig(tenant="acme", people=40, seed=7, clients=(ClientSpec("idsync", SECRET),))
    )
    people = sim.world.people_list()
    in_flight = 0
    most = 0

    async def scenario(base_url: str) -> ProtimeClient:
        settings = ProtimeSettings(
            base_url=base_url,
            tenant="acme",
            token_url=base_url + sim.token_path,
            client_id="idsync",
            client_secret=SECRET,
            concurrency=3,
            rate_limit_per_second=0,
        )

        async def write(pid: int) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await client.put_reference(value=f"H{pid}", protime_id=pid)
            finally:
                in_flight -= 1

        async with ProtimeClient(settings) as client:
            await asyncio.gather(*(write(p.id) for p in people))
            assert 1 <= len(client._session.lane_owned) <= 3
            assert all(
                isinstance(lane, httpx.AsyncHTTPTransport) for lane in client._session.lane_owned
            )
        return client

    with serve_in_thread(sim) as base_url:
        client = asyncio.run(scenario(base_url))
    assert sim.world.references("HRMID") == {f"H{p.id}": p.id for p in people}
    assert most == len(people)  # every write was waiting at once; the lanes did the bounding
    # Closed with the client: no connection left open in any lane's pool.
    assert all(not lane._pool.connections for lane in client._session.lane_owned)
    assert sim.world.counters.count("references.put") == len(people)


def test_with_a_proxy_in_the_environment_lanes_are_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY set: a lane's network is an httpx client, which mounts the proxy a bare transport would miss."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    settings = ProtimeSettings(
        base_url="https://acme.example",
        tenant="acme",
        client_id="idsync",
        client_secret=SECRET,
        concurrency=2,
        rate_limit_per_second=0,
    )

    async def scenario() -> None:
        async with ProtimeClient(settings) as client:
            lane = client._session.new_lane()
            assert isinstance(lane, ClientTransport)
            assert isinstance(lane.client, httpx.AsyncClient)

    asyncio.run(scenario())
