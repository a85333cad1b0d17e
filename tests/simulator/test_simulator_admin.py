"""The /_sim admin surface (test-only, no token), the threaded server and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from sim_helpers import API, GUIDE_PEOPLE, UA
from sync.simulator import Simulator, SimulatorConfig, serve_in_thread

pytestmark = pytest.mark.anyio


async def test_admin_seeds_and_reads_people(make_harness):
    """POST /_sim/people replaces the world; GET returns it with custom references."""
    harness = make_harness(people=3)
    async with harness.client(token=None) as client:
        seeded = await client.post("/_sim/people", json={"people": GUIDE_PEOPLE})
        state = await client.get("/_sim/people")
        generated = await client.post("/_sim/people", json={"generate": {"count": 40, "seed": 2}})
    assert seeded.status_code == 201
    people = state.json()["people"]
    assert [p["id"] for p in people] == [4781, 123152, 123153]
    assert people[1]["externalReferences"] == {"HRMID": "6767676"}
    assert generated.json()["people"] == 40
    assert len(harness.sim.world.people) == 40


async def test_admin_person_and_reference_endpoints(make_harness, guide_file):
    """PUT/DELETE one person and POST/GET/DELETE references change the world directly."""
    harness = make_harness(people_file=guide_file)
    async with harness.client(token=None) as client:
        put = await client.put(
            "/_sim/people/5000",
            json={"firstName": "N", "lastName": "P", "externalReferences": {"HRMID": "E5"}},
        )
        refs = await client.post(
            "/_sim/references",
            json={"references": [{"name": "HRMID", "value": "E47", "internalReference": "4781"}]},
        )
        listed = await client.get("/_sim/references")
        removed = await client.delete("/_sim/people/123153")
        missing = await client.delete("/_sim/people/1")
        cleared = await client.delete("/_sim/references")
    assert put.status_code == 200
    assert put.json()["id"] == 5000
    assert refs.json() == {"set": 1}
    assert {r["value"] for r in listed.json()["references"]} == {"6767676", "E5", "E47"}
    assert removed.status_code == 204
    assert missing.status_code == 404
    assert cleared.status_code == 204
    assert harness.sim.world.all_references() == {}
    assert 123153 not in harness.sim.world.people


async def test_admin_faults_counters_clock_tokens_reset(make_harness, guide_file):
    """Faults can be switched at runtime; counters, clock, token expiry and reset work over HTTP."""
    harness = make_harness(people_file=guide_file)
    async with harness.client() as client:
        faults = await client.put("/_sim/faults", json={"fault_rate_503": 1.0})
        failing = await client.get(f"{API}/people")
        await client.put("/_sim/faults", json={"fault_rate_503": 0})
        counters = await client.get("/_sim/counters")
        clock = await client.post("/_sim/clock", json={"advance": 3600})
        expired = await client.post("/_sim/expire-tokens")
        after_expiry = await client.get(f"{API}/people")
        state = await client.get("/_sim/state")
        reset = await client.post("/_sim/reset")
        cleared = await client.delete("/_sim/counters")
    assert faults.json()["fault_rate_503"] == 1.0
    assert failing.status_code == 503
    assert counters.json() == {"requests": {"people.list": {"503": 1}}, "total": 1}
    assert clock.json()["now"] >= 3600
    assert expired.status_code == 204
    assert after_expiry.status_code == 401
    assert state.json()["people"] == 3
    assert state.json()["references"] == {"people/HRMID": 1}
    assert reset.status_code == 200
    assert cleared.status_code == 204
    assert harness.sim.counters.count() == 0


async def test_admin_state_shows_the_active_delta_and_the_history(make_harness):
    """GET /_sim/state shows the active delta, the change history's extent and the logged
    requests."""
    harness = make_harness(people=3)
    world = harness.sim.world
    async with harness.client() as client:
        before = (await client.get("/_sim/state")).json()
        await client.get(f"{API}/people?delta")
        world.update_person(world.people_list()[0].id, last_name="Changed")
        after = (await client.get("/_sim/state")).json()
    assert before["delta"] is None
    assert before["history"] == {"floor": 3, "changes": 0}
    assert after["delta"]["startingCursor"] == "00000000000000000003"
    assert after["delta"]["expired"] is False
    assert after["history"] == {"floor": 3, "changes": 1}
    assert after["requestsLogged"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/_sim/people", b"{", 400),
        ("POST", "/_sim/people", b'{"people": [{"id": "x"}]}', 400),
        ("POST", "/_sim/people", b'{"generate": {"count": -1}}', 400),
        ("POST", "/_sim/people", b'{"generate": 5}', 400),
        ("PUT", "/_sim/faults", b'{"fault_rate_500": 7}', 400),
        ("PUT", "/_sim/faults", b'{"nonsense": 1}', 400),
        ("PUT", "/_sim/faults", b"[1]", 400),
        ("POST", "/_sim/clock", b'{"advance": "soon"}', 400),
        (
            "POST",
            "/_sim/references",
            b'{"references": [{"value": "x", "internalReference": "9"}]}',
            400,
        ),
        ("PUT", "/_sim/people/7", b'{"firstName": 1}', 400),
        ("DELETE", "/_sim/people/7", b"", 404),
        ("GET", "/_sim/nothing", b"", 404),
        ("PATCH", "/_sim/faults", b"{}", 405),
        ("GET", "/_sim/requests?last=many", b"", 400),
        ("POST", "/_sim/requests", b"{}", 405),
    ],
)
async def test_admin_bad_input_is_4xx(make_harness, method, path, body, status):
    """Bad admin requests answer 400/404/405, never 500."""
    harness = make_harness(people=2)
    async with harness.client(token=None) as client:
        response = await client.request(method, path, content=body)
    assert response.status_code == status


def test_serve_in_thread_stops_and_frees_the_port():
    """After the block the server is gone: a new connection to its port is refused."""
    sim = Simulator(SimulatorConfig(people=2))
    with serve_in_thread(sim) as base_url:
        response = httpx.get(f"{base_url}/_sim/health")
        port = urlsplit(base_url).port
    assert response.json() == {"ok": True}
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


def _wait_for_line(process: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith(prefix):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no line starting with {prefix!r}")


@pytest.mark.slow
def test_cli_serves_until_sigterm(tmp_path):
    """`idsync simulator` prints the URLs and credentials, serves the API and stops on SIGTERM."""
    command = [
        sys.executable, "-m", "sync", "simulator", "--port", "0", "--people", "25",
        "--page-size", "10", "--client-id", "cli-client", "--client-secret", "cli-secret",
        "--one-value-per-person", "replace",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        api = _wait_for_line(process, "API base URL", deadline)
        token_url = _wait_for_line(process, "token URL", deadline)
        client_id = _wait_for_line(process, "client id", deadline)
        secret = _wait_for_line(process, "client secret", deadline)
        token = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
            headers={"User-Agent": UA},
        ).json()["access_token"]
        page = httpx.get(
            f"{api}/people", headers={"User-Agent": UA, "Authorization": f"Bearer {token}"}
        ).json()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert api.endswith("/connector/protimeapi/api/v1")
    assert token_url.endswith("/tenants/acme/connect/token")
    assert (client_id, secret) == ("cli-client", "cli-secret")
    assert len(page["value"]) == 10
    assert "nextLink" in page
    assert code == 0


def test_cli_help_lists_every_behaviour_option():
    """`idsync simulator --help` lists one option per configurable behaviour."""
    result = subprocess.run(
        [sys.executable, "-m", "sync", "simulator", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
    )
    assert result.returncode == 0
    for option in (
        "--host", "--port", "--tenant", "--people", "--seed", "--people-file", "--page-size",
        "--client-id", "--client-secret", "--scopes", "--token-ttl", "--user-agent",
        "--scope-error-status", "--invalid-client-status", "--predefined-write-status",
        "--one-value-per-person", "--max-value-length", "--max-uri-length", "--max-body-bytes",
        "--delta-token-ttl", "--rate-limit", "--rate-limit-burst", "--retry-after",
        "--retry-after-seconds", "--fault-429", "--fault-500", "--fault-503", "--fault-drop",
        "--latency-ms", "--latency-jitter-ms", "--empty-page-rate", "--faults-on-token",
        "--fault-seed", "--out-of-service-share", "--delta-order", "--fault-409-get",
    ):  # fmt: skip
        assert option in result.stdout, option


def test_cli_refuses_bad_values_with_exit_code_2(tmp_path):
    """An impossible setting (or a people file that is not valid) exits 2 with a message."""
    bad_file = tmp_path / "people.json"
    bad_file.write_text(json.dumps({"people": [{"id": "x"}]}), encoding="utf-8")
    for extra in (
        ["--fault-500", "3"],
        ["--delta-order", "sideways"],
        ["--fault-409-get", "0.6", "--fault-500", "0.6"],
        ["--user-agent", "maybe"],
        ["--people-file", str(bad_file)],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "sync", "simulator", "--port", "0", *extra],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert result.returncode == 2, (extra, result.stderr)
