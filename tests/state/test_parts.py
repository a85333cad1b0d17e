"""The store's shape: one part per concern, each giving what reconcile's ports ask of it."""

from __future__ import annotations

import inspect

import pytest

from sync.reconcile import _ports
from sync.state import StateStore

_PARTS = ("runs", "map", "events", "plans", "admin", "snapshot", "settled")
# Reconcile's port per part (admin changes are the CLI's, not a run's).
_PORTS = {
    "runs": _ports.Runs,
    "map": _ports.Map,
    "events": _ports.Events,
    "plans": _ports.Plans,
    "snapshot": _ports.Snapshot,
    "settled": _ports.Settled,
}


def _shape(function: object) -> list[tuple[str, inspect._ParameterKind]]:
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind) for p in parameters]


def test_the_store_is_its_parts_and_the_database(store: StateStore) -> None:
    """A store's public attributes are its seven parts and its database, nothing flat beside."""
    assert {name for name in vars(store) if not name.startswith("_")} == {*_PARTS, "db"}
    own = {name for name in dir(StateStore) if not name.startswith("_")}
    assert own == {"open", "lock", "close"}


@pytest.mark.parametrize("part", sorted(_PORTS))
def test_each_part_gives_its_port_with_the_same_parameters(store: StateStore, part: str) -> None:
    """Every method reconcile's port names exists on the part with the port's parameters."""
    port = _PORTS[part]
    names = [n for n in vars(port) if not n.startswith("_") and callable(getattr(port, n))]
    assert names
    for name in names:
        assert _shape(getattr(getattr(store, part), name)) == _shape(getattr(port, name))[1:]
