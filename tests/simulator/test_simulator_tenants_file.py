"""The tenants file of `idsync simulator --tenants-file`, and the command that serves it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from sim_helpers import API, GUIDE_PEOPLE, UA
from sync.simulator import IDSYNC_SCOPES, TenantsFileError, load_tenants_file

if TYPE_CHECKING:
    from pathlib import Path

GOOD = """
[defaults]
people = 12
rate_limit_per_second = 50   # an integer where the config holds a float

[tenants.acme]
seed = 3
client_id = "acme-client"
client_secret = "acme-secret"

[tenants.globex]
people_file = "globex.json"
fault_rate_500 = 0.25
scopes = "connector-protimeapi-people.read"
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "globex.json").write_text(json.dumps({"people": GUIDE_PEOPLE}), encoding="utf-8")
    path = tmp_path / "tenants.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_tenants_file_gives_each_tenant_its_config_over_the_defaults(tmp_path):
    """Each table is one tenant's SimulatorConfig: its keys over [defaults] over the command
    line's defaults, people_file relative to the file, its one client from client_id/secret."""
    configs = load_tenants_file(_write(tmp_path, GOOD))
    assert list(configs) == ["acme", "globex"]
    acme, globex = configs["acme"], configs["globex"]
    assert (acme.tenant, acme.people, acme.seed, acme.rate_limit_per_second) == (
        "acme",
        12,
        3,
        50.0,
    )
    assert [(c.client_id, c.client_secret, c.scopes) for c in acme.clients] == [
        ("acme-client", "acme-secret", IDSYNC_SCOPES)
    ]
    assert globex.people_file == tmp_path / "globex.json"
    assert globex.fault_rate_500 == 0.25
    assert [(c.client_id, c.client_secret) for c in globex.clients] == [
        ("demo-client", "demo-secret")
    ]
    assert globex.clients[0].scopes == frozenset({"connector-protimeapi-people.read"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.Acme]\n", r"tenant name 'Acme' must match \^\[a-z0-9\]"),
        ('[tenants."acme corp"]\n', "tenant name 'acme corp' must match"),
        ("[tenants.acme]\npeeple = 3\n", r"\[tenants.acme\]: unknown key 'peeple'"),
        ("[tenants.acme]\ntenant = 'x'\n", "unknown key 'tenant' \\(set by the table's name\\)"),
        ("[tenants.acme]\npeople = '3'\n", "people must be an integer, got '3'"),
        ("[tenants.acme]\npeople = true\n", "people must be an integer, got True"),
        ("[tenants.acme]\nfaults_on_token = 1\n", "faults_on_token must be true or false"),
        ("[tenants.acme]\nfault_rate_500 = 3\n", r"\[tenants.acme\]: fault_rate_500 must be"),
        ("[tenants.acme]\npage_size = 0\n", "page_size must be between 1"),
        ("[tenants.acme]\npeople_file = 'nope.json'\n", "people_file .*nope.json.*no such file"),
        ("[defaults]\nseed = 'x'\n[tenants.acme]\n", r"\[defaults\]: seed must be an integer"),
        ("[tenant.acme]\n", "unknown top-level key\\(s\\) 'tenant'"),
        ("[defaults]\npeople = 3\n", "no tenants"),
        ("[tenants]\nacme = 3\n", r"\[tenants.acme\] must be a table"),
        ("[tenants.acme\n", "not valid TOML"),
    ],
)
def test_a_bad_tenants_file_is_refused_naming_the_file_the_tenant_and_the_key(
    tmp_path, text, message
):
    """A bad tenant name, an unknown key, a value of the wrong type or out of bounds, a missing
    people file or a file that is not TOML raise TenantsFileError naming the file and where."""
    path = _write(tmp_path, text)
    with pytest.raises(TenantsFileError, match=message) as caught:
        load_tenants_file(path)
    assert str(caught.value).startswith(f"tenants file {path}: ")


def test_a_missing_tenants_file_is_refused(tmp_path):
    """A tenants file that does not exist raises TenantsFileError, not OSError."""
    with pytest.raises(TenantsFileError, match="cannot read it"):
        load_tenants_file(tmp_path / "absent.toml")


def _read_until(process: subprocess.Popen[str], last: str, deadline: float) -> list[str]:
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(last):
            return lines
    raise AssertionError(f"no line starting with {last!r} in {lines}")


@pytest.mark.slow
def test_cli_serves_every_tenant_of_the_file_and_lists_each_in_its_banner(tmp_path):
    """`idsync simulator --tenants-file` prints, per tenant, the idsync settings that reach it,
    serves each tenant at them and stops with exit 0 on SIGTERM."""
    path = _write(tmp_path, GOOD)
    command = [
        sys.executable,
        "-m",
        "sync",
        "simulator",
        "--port",
        "0",
        "--tenants-file",
        str(path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        banner = _read_until(process, "Press Ctrl+C", time.monotonic() + 60)
        base = re.search(r"BASE_URL=(http://127\.0\.0\.1:\d+)/t/acme$", banner[3])
        assert base is not None, banner
        root = base.group(1)
        assert banner == [
            f"Protime simulator for 2 tenants: {12 + len(GUIDE_PEOPLE)} people",
            "idsync settings per tenant (each the exact value the variable wants):",
            "tenant 'acme': 12 people",
            f"  IDSYNC_PROTIME__BASE_URL={root}/t/acme",
            "  IDSYNC_PROTIME__TENANT=acme",
            f"  IDSYNC_PROTIME__TOKEN_URL={root}/t/acme/tenants/acme/connect/token",
            "  IDSYNC_PROTIME__CLIENT_ID=acme-client",
            "  IDSYNC_PROTIME__CLIENT_SECRET=acme-secret",
            f"tenant 'globex': {len(GUIDE_PEOPLE)} people",
            f"  IDSYNC_PROTIME__BASE_URL={root}/t/globex",
            "  IDSYNC_PROTIME__TENANT=globex",
            f"  IDSYNC_PROTIME__TOKEN_URL={root}/t/globex/tenants/globex/connect/token",
            "  IDSYNC_PROTIME__CLIENT_ID=demo-client",
            "  IDSYNC_PROTIME__CLIENT_SECRET=demo-secret",
            "  IDSYNC_PROTIME__SCOPES=connector-protimeapi-people.read",
            "For curl and scripts: a tenant's API is its BASE_URL + /connector/protimeapi/api/v1",
            (
                f"  admin (test-only, no token): {root}/_sim/tenants, {root}/_sim/request-records,"
                " and BASE_URL/_sim/state per tenant"
            ),
            "Press Ctrl+C to stop.",
        ]
        form = {
            "grant_type": "client_credentials",
            "client_id": "acme-client",
            "client_secret": "acme-secret",
        }
        headers = {"User-Agent": UA}
        token = httpx.post(
            f"{root}/t/acme/tenants/acme/connect/token", data=form, headers=headers
        ).json()["access_token"]
        page = httpx.get(
            f"{root}/t/acme{API}/people", headers={**headers, "Authorization": f"Bearer {token}"}
        ).json()
        tenants = httpx.get(f"{root}/_sim/tenants").json()["tenants"]
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(page["value"]) == 12
    assert [t["tenant"] for t in tenants] == ["acme", "globex"]
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--people", "5"], "--people cannot be combined with --tenants-file"),
        (["--fault-500", "0.1"], "--fault-500 cannot be combined with --tenants-file"),
        ([], "tenant name 'Acme' must match"),
    ],
)
def test_cli_refuses_a_bad_tenants_file_or_an_option_it_replaces_with_exit_2(
    tmp_path, extra, message
):
    """A tenants file with a bad tenant, or a single-tenant option beside the file, exits 2 with
    a message before serving."""
    path = _write(tmp_path, "[tenants.Acme]\n" if not extra else GOOD)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sync",
            "simulator",
            "--port",
            "0",
            "--tenants-file",
            str(path),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


@pytest.mark.slow
def test_cli_single_tenant_banner_is_unchanged():
    """Without --tenants-file the banner is, byte for byte, the one docs/simulator.md shows."""
    command = [
        sys.executable, "-m", "sync", "simulator", "--host", "127.0.0.1", "--port", "0",
        "--tenant", "acme", "--people", "10", "--seed", "7", "--page-size", "100",
        "--client-id", "demo-client", "--client-secret", "demo-secret",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        banner = _read_until(process, "Press Ctrl+C", time.monotonic() + 60)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    port = re.search(r":(\d+)$", banner[2])
    assert port is not None, banner
    root = f"http://127.0.0.1:{port.group(1)}"
    assert banner == [
        "Protime simulator for tenant 'acme': 10 people",
        "idsync settings (each the exact value the variable wants):",
        f"  IDSYNC_PROTIME__BASE_URL={root}",
        "  IDSYNC_PROTIME__TENANT=acme",
        f"  IDSYNC_PROTIME__TOKEN_URL={root}/tenants/acme/connect/token",
        "  IDSYNC_PROTIME__CLIENT_ID=demo-client",
        "  IDSYNC_PROTIME__CLIENT_SECRET=demo-secret",
        "For curl and scripts (not idsync settings; idsync adds the API path itself):",
        f"  API base URL : {root}/connector/protimeapi/api/v1",
        f"  token URL    : {root}/tenants/acme/connect/token",
        "  client id    : demo-client",
        "  client secret: demo-secret",
        (
            "  scopes       : connector-protimeapi-people.read"
            " connector-protimeapi-external-references.write"
        ),
        f"  admin (test-only, no token): {root}/_sim/state",
        "Press Ctrl+C to stop.",
    ]
