"""Many tenants in one simulator: routing, isolation of each tenant's world, credentials, rate limit
and faults, and the request records that attribute every request to a tenant and a caller."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from sim_helpers import API, UA
from sync.simulator import (
    ClientSpec,
    MultiSimulator,
    Simulator,
    SimulatorConfig,
    serve_in_thread,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


def _multi() -> MultiSimulator:
    return MultiSimulator(
        {
            "acme": SimulatorConfig(people=7, page_size=5, clients=(ClientSpec("a", "sa"),)),
            "globex": SimulatorConfig(people=3, seed=2, clients=(ClientSpec("g", "sg"),)),
        }
    )


@pytest.fixture(params=["in-process", "http"])
async def reach(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[MultiSimulator, httpx.AsyncClient, str]]:
    """A two-tenant simulator, a client and the base URL it is served at (both ways)."""
    multi = _multi()
    if request.param == "in-process":
        async with httpx.AsyncClient(
            transport=multi.transport(), base_url=multi.base_url, headers={"User-Agent": UA}
        ) as client:
            yield multi, client, multi.base_url
        return
    switch, base_url = request.getfixturevalue("shared_server")
    switch.current = multi
    try:
        async with httpx.AsyncClient(base_url=base_url, headers={"User-Agent": UA}) as client:
            yield multi, client, base_url
    finally:
        switch.current = None


async def _token(client: httpx.AsyncClient, token_url: str, client_id: str, secret: str) -> str:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    answer = await client.post(token_url, data=form)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def _people(client: httpx.AsyncClient, url: str, token: str) -> list[int]:
    """Every person id of a tenant, following nextLink as a path on the origin (as idsync does)."""
    ids: list[int] = []
    while True:
        answer = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        ids += [p["id"] for p in answer.json()["value"]]
        link = answer.json().get("nextLink")
        if link is None:
            return ids
        url = link


async def test_each_tenant_answers_its_own_people_and_its_links_stay_with_it(reach):
    """Each tenant lists its own people, and its nextLink is a path under /t/<tenant> that
    continues that tenant's list."""
    multi, client, base = reach
    acme, globex = multi.urls("acme", base), multi.urls("globex", base)
    first = await client.get(
        f"{acme.api_url}/people",
        headers={"Authorization": f"Bearer {await _token(client, acme.token_url, 'a', 'sa')}"},
    )
    assert first.json()["nextLink"].startswith(f"/t/acme{API}/people?")
    acme_token = await _token(client, acme.token_url, "a", "sa")
    globex_token = await _token(client, globex.token_url, "g", "sg")
    assert await _people(client, f"{acme.api_url}/people", acme_token) == sorted(
        multi.tenant("acme").world.people
    )
    assert await _people(client, f"{globex.api_url}/people", globex_token) == sorted(
        multi.tenant("globex").world.people
    )
    assert (len(multi.tenant("acme").world.people), len(multi.tenant("globex").world.people)) == (
        7,
        3,
    )


async def test_a_tenants_token_and_credentials_are_refused_by_another(reach):
    """A token of tenant acme answers 401 on globex, and acme's client is unknown to globex's
    token endpoint."""
    multi, client, base = reach
    acme, globex = multi.urls("acme", base), multi.urls("globex", base)
    token = await _token(client, acme.token_url, "a", "sa")
    refused = await client.get(
        f"{globex.api_url}/people", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    form = {"grant_type": "client_credentials", "client_id": "a", "client_secret": "sa"}
    wrong = await client.post(globex.token_url, data=form)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_client")
    # Another tenant's name in the token path is another tenant's endpoint, not this one's.
    crossed = await client.post(f"{base}/t/globex/tenants/acme/connect/token", data=form)
    assert crossed.json()["error"] == "invalid_request"


async def test_a_reference_written_on_one_tenant_is_absent_from_the_other(reach):
    """A PUT of a reference on acme changes acme's world only."""
    multi, client, base = reach
    acme = multi.urls("acme", base)
    token = await _token(client, acme.token_url, "a", "sa")
    pid = min(multi.tenant("acme").world.people)
    answer = await client.put(
        f"{acme.api_url}/external-references/people/HRMID/E1",
        json={"collection": "people", "name": "HRMID", "value": "E1", "internalReference": pid},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201
    assert answer.headers["location"] == f"/t/acme{API}/external-references/people/HRMID/E1"
    assert multi.tenant("acme").world.references("HRMID") == {"E1": pid}
    assert multi.tenant("globex").world.references("HRMID") == {}


async def test_rate_limits_are_per_tenant(reach):
    """A tenant whose bucket is empty answers 429 while another tenant keeps answering 200."""
    multi, client, base = reach
    multi.tenant("acme").set_faults(rate_limit_per_second=0.001, rate_limit_burst=2)
    acme, globex = multi.urls("acme", base), multi.urls("globex", base)
    acme_auth = {"Authorization": f"Bearer {await _token(client, acme.token_url, 'a', 'sa')}"}
    globex_auth = {"Authorization": f"Bearer {await _token(client, globex.token_url, 'g', 'sg')}"}
    acme_statuses = [
        (await client.get(f"{acme.api_url}/people", headers=acme_auth)).status_code
        for _ in range(3)
    ]
    globex_statuses = [
        (await client.get(f"{globex.api_url}/people", headers=globex_auth)).status_code
        for _ in range(3)
    ]
    assert acme_statuses == [200, 200, 429]
    assert globex_statuses == [200, 200, 200]


async def test_faults_are_per_tenant_and_change_while_serving(reach):
    """Faults set on one tenant (in code or through its /_sim/faults) touch that tenant only."""
    multi, client, base = reach
    acme, globex = multi.urls("acme", base), multi.urls("globex", base)
    acme_auth = {"Authorization": f"Bearer {await _token(client, acme.token_url, 'a', 'sa')}"}
    globex_auth = {"Authorization": f"Bearer {await _token(client, globex.token_url, 'g', 'sg')}"}
    multi.tenant("acme").set_faults(fault_rate_500=1.0)
    assert (await client.get(f"{acme.api_url}/people", headers=acme_auth)).status_code == 500
    assert (await client.get(f"{globex.api_url}/people", headers=globex_auth)).status_code == 200
    changed = await client.put(f"{globex.base_url}/_sim/faults", json={"fault_rate_503": 1.0})
    assert changed.status_code == 200
    assert (await client.get(f"{globex.api_url}/people", headers=globex_auth)).status_code == 503
    assert multi.tenant("acme").faults.fault_rate_503 == 0.0


async def test_request_records_name_the_tenant_the_caller_and_the_timing(reach):
    """Every API and token request is recorded on its tenant with its caller (X-Idsync-Replica
    when sent, else the User-Agent), its path without the mount, status and start/end times;
    the admin surface serves them per tenant and merged."""
    multi, client, base = reach
    acme, globex = multi.urls("acme", base), multi.urls("globex", base)
    token = await _token(client, acme.token_url, "a", "sa")
    auth = {"Authorization": f"Bearer {token}"}
    await client.get(f"{acme.api_url}/people", headers={**auth, "X-Idsync-Replica": "replica-1"})
    await client.get(f"{globex.api_url}/people", headers=auth)
    records = multi.request_records("acme")
    assert [(r.tenant, r.method, r.path, r.status, r.caller) for r in records] == [
        ("acme", "POST", "/tenants/acme/connect/token", 200, UA),
        ("acme", "GET", f"{API}/people", 200, "replica-1"),
    ]
    assert all(r.started <= r.ended for r in records)
    merged = multi.request_records()
    assert [r.tenant for r in merged] == ["acme", "acme", "globex"]
    assert [r.started for r in merged] == sorted(r.started for r in merged)
    served = (await client.get(f"{base}/_sim/request-records?tenant=globex")).json()
    assert [(r["tenant"], r["status"], r["caller"]) for r in served["records"]] == [
        ("globex", 401, UA)
    ]
    own = (await client.get(f"{acme.base_url}/_sim/request-records?last=1")).json()
    assert (own["total"], own["records"][0]["caller"]) == (2, "replica-1")
    assert (await client.delete(f"{base}/_sim/request-records")).status_code == 204
    assert multi.request_records() == []
    assert len(multi.tenant("acme").request_log) == 2  # the request log is not the records


async def test_an_unknown_tenant_or_a_path_without_one_answers_404(reach):
    """A path under an unknown tenant, or outside /t/ and /_sim, answers 404 saying why."""
    _, client, base = reach
    unknown = await client.get(f"{base}/t/initech{API}/people")
    assert unknown.status_code == 404
    assert "unknown tenant 'initech'" in unknown.json()["error"]["message"]
    bare = await client.get(f"{base}{API}/people")
    assert bare.status_code == 404
    tenants = (await client.get(f"{base}/_sim/tenants")).json()["tenants"]
    assert [(t["tenant"], t["people"]) for t in tenants] == [("acme", 7), ("globex", 3)]


async def test_the_host_header_reaches_a_tenant_in_process():
    """In-process, a tenant answers at its own address (http://<tenant>.sim.local) through the
    multi-tenant transport, as Protime answers at <tenant>.myprotime.eu."""
    multi = _multi()
    globex = multi.tenant("globex")
    async with httpx.AsyncClient(transport=multi.transport(), headers={"User-Agent": UA}) as c:
        token = await _token(c, f"{globex.base_url}/tenants/globex/connect/token", "g", "sg")
        answer = await c.get(
            f"{globex.base_url}{API}/people", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200
    assert len(answer.json()["value"]) == 3
    assert [r.tenant for r in multi.request_records()] == ["globex", "globex"]


def test_tenant_names_follow_the_sync_name_rule():
    """A tenant name must match ^[a-z0-9][a-z0-9-]{0,62}$ and there must be one tenant at least."""
    for bad in ("Acme", "-acme", "acme_corp", "", "a" * 64):
        with pytest.raises(ValueError, match="must match"):
            MultiSimulator({bad: None})
    with pytest.raises(ValueError, match="at least one tenant"):
        MultiSimulator({})
    assert MultiSimulator({"a" * 63: None, "0-x": None}).tenants == ("a" * 63, "0-x")


def test_a_tenant_takes_its_name_from_its_key_and_serves_under_its_mount():
    """The mapping's key names the tenant (its config's tenant is replaced), and the tenant's
    paths start with /t/<name>; a simulator of its own keeps its paths as they were."""
    multi = MultiSimulator({"globex": SimulatorConfig(tenant="acme")})
    sim = multi.tenant("globex")
    assert sim.config.tenant == "globex"
    assert (sim.api_path, sim.token_path) == (
        f"/t/globex{API}",
        "/t/globex/tenants/globex/connect/token",
    )
    assert multi.urls("globex", "http://127.0.0.1:9") == (
        "http://127.0.0.1:9/t/globex",
        "http://127.0.0.1:9/t/globex/tenants/globex/connect/token",
        f"http://127.0.0.1:9/t/globex{API}",
    )
    alone = Simulator(SimulatorConfig())
    assert (alone.api_path, alone.token_path) == (API, "/tenants/acme/connect/token")
    with pytest.raises(KeyError, match="no tenant 'acme'"):
        multi.tenant("acme")


def test_serve_in_thread_serves_a_multi_tenant_simulator():
    """serve_in_thread takes a MultiSimulator as it takes a Simulator, and a reset of one tenant
    leaves the others as they are."""
    multi = _multi()
    multi.tenant("globex").world.remove_person(min(multi.tenant("globex").world.people))
    with serve_in_thread(multi) as base:
        health = httpx.get(f"{base}/_sim/health").json()
        reset = httpx.post(f"{base}/t/acme/_sim/reset")
    assert health == {"ok": True, "tenants": 2}
    assert reset.status_code == 200
    assert len(multi.tenant("globex").world.people) == 2
