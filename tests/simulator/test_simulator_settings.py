"""The fault settings' one declaration: the CLI options, the config and the checks all come from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import typer

from sync.cli._main import _register, app
from sync.simulator import Faults, Simulator, SimulatorConfig


def _simulator_options() -> dict[str, typer.core.TyperOption]:
    _register()
    command = typer.main.get_command(app).commands["simulator"]
    return {p.name: p for p in command.params if isinstance(p, typer.core.TyperOption)}


def test_every_fault_setting_but_the_storm_is_an_option_with_its_declared_default():
    """`idsync simulator` has one option per Faults field (fault_every_429 stays code-only),
    named after the field, with the field's default."""
    options = _simulator_options()
    for field in dataclasses.fields(Faults):
        if field.name == "fault_every_429":
            assert field.name not in options
            continue
        assert options[field.name].default == field.default, field.name
        assert options[field.name].help, field.name


def test_the_fault_seed_defaults_to_the_world_seed_everywhere():
    """Left unset, fault_seed is the world's seed, in the config, in sim.faults and after reset."""
    config = SimulatorConfig(seed=3)
    assert config.fault_seed is None
    assert config.faults().fault_seed == 3
    sim = Simulator(config)
    sim.set_faults(fault_seed=9)
    sim.reset()
    assert sim.faults.fault_seed == 3
    assert SimulatorConfig(seed=3, fault_seed=5).faults().fault_seed == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fault_every_429": -1}, "fault_every_429 must be >= 0"),
        ({"latency_jitter_ms": -0.5}, "latency_jitter_ms must be >= 0"),
        ({"retry_after_seconds": float("nan")}, "retry_after_seconds must be >= 0"),
        ({"empty_page_rate": 1.01}, "empty_page_rate must be between 0 and 1"),
        ({"rate_limit_burst": None}, "rate_limit_burst must be a number"),
    ],
)
def test_the_declared_bounds_refuse_a_value_at_runtime_as_at_construction(changes, message):
    """set_faults checks a change against the same declared bounds as SimulatorConfig."""
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**changes)
    with pytest.raises(ValueError, match=message):
        Simulator().set_faults(**changes)


def test_reading_the_declaration_loads_no_server_library():
    """Importing the config (as every `idsync` start does) loads neither httpx, starlette nor
    uvicorn: the production image has no simulator extra."""
    code = (
        "import sys, sync.simulator._config; "
        "print(sorted(m for m in ('httpx', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
