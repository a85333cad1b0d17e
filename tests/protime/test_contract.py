"""The API contract is declared once (sync/contract.py), and the simulator keeps to it."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sync import contract
from sync.config import ProtimeSettings
from sync.hr import _source as hr_source
from sync.simulator import ClientSpec, Simulator, SimulatorConfig
from sync.simulator import _config as sim_config
from sync.simulator._world import World
from sync.values import DEFAULT_MAX_LENGTH, value_problem

SECRET = "contract-secret-77"


def test_the_simulator_declares_the_contracts_paths_scopes_and_limits() -> None:
    """The simulator's own copies of the API path, the scopes and the limits equal the contract's."""
    assert sim_config.API_PREFIX == contract.API_PATH
    assert sim_config.PEOPLE_READ == contract.PEOPLE_READ_SCOPE
    assert sim_config.REFERENCES_WRITE == contract.REFERENCES_WRITE_SCOPE
    assert sim_config.REFERENCES_READ == contract.REFERENCES_READ_SCOPE
    assert frozenset(contract.DEFAULT_SCOPES.split()) == sim_config.IDSYNC_SCOPES
    assert SimulatorConfig().max_value_length == contract.MAX_VALUE_LENGTH
    default_name = inspect.signature(World.references).parameters["name"].default
    assert default_name == contract.DEFAULT_REFERENCE_NAME


def test_idsyncs_defaults_are_the_contracts() -> None:
    """The settings, the value rules and the HR read take their defaults from the contract."""
    settings = ProtimeSettings()
    assert settings.reference_name == contract.DEFAULT_REFERENCE_NAME
    assert settings.max_value_length == contract.MAX_VALUE_LENGTH
    assert set(settings.scopes.split()) == {
        contract.PEOPLE_READ_SCOPE,
        contract.REFERENCES_WRITE_SCOPE,
    }
    assert DEFAULT_MAX_LENGTH == contract.MAX_VALUE_LENGTH
    read_hr = inspect.signature(hr_source.read_hr).parameters["max_value_length"]
    assert read_hr.default == contract.MAX_VALUE_LENGTH
    for character in contract.FORBIDDEN_CHARACTERS:
        assert value_problem(f"H{character}1") is not None


def _put_statuses(values: list[str]) -> list[int]:
    sim = Simulator(
        SimulatorConfig(tenant="acme", people=1, seed=3, clients=(ClientSpec("idsync", SECRET),))
    )
    pid = sim.world.people_list()[0].id

    async def scenario() -> list[int]:
        headers = {"User-Agent": "idsync/test (contract)"}
        async with httpx.AsyncClient(transport=sim.transport(), headers=headers) as http:
            form: dict[str, Any] = {
                "grant_type": "client_credentials",
                "client_id": "idsync",
                "client_secret": SECRET,
                "scope": contract.DEFAULT_SCOPES,
            }
            token = (await http.post(sim.token_url, data=form)).json()["access_token"]
            statuses = []
            for value in values:
                url = httpx.URL(sim.base_url).copy_with(
                    raw_path=(
                        f"{contract.REFERENCES_PATH}/{contract.DEFAULT_REFERENCE_NAME}/"
                        + quote(value, safe="")
                    ).encode()
                )
                answer = await http.put(
                    url,
                    json={"internalReference": str(pid)},
                    headers={"Authorization": f"Bearer {token}"},
                )
                statuses.append(answer.status_code)
            return statuses

    return asyncio.run(scenario())


@pytest.mark.parametrize("character", sorted(contract.FORBIDDEN_CHARACTERS))
def test_the_simulator_refuses_each_forbidden_character(character: str) -> None:
    """A value holding a character the contract forbids is answered 400 by the simulator."""
    assert _put_statuses([f"H{character}1"]) == [400]


def test_the_simulator_takes_the_longest_value_and_refuses_one_more() -> None:
    """A value of the contract's maximum length is written; one character more is answered 400."""
    longest = "H" * contract.MAX_VALUE_LENGTH
    assert _put_statuses([longest, longest + "1"]) == [201, 400]
