"""The store's shape: parts with narrow interfaces, and the old flat methods reconcile still uses."""

from __future__ import annotations

import ast
import inspect

import pytest

from sync.reconcile._ports import RunState
from sync.state import StateStore
from sync.state import _reconcile_compat as compat

_PARTS = ("runs", "map", "events", "plans", "admin", "snapshot", "settled")
# What the store itself offers besides its parts.
_OWN = {"lock", "close", "open"}
_RUN_STATE = sorted(
    name for name in dir(RunState) if not name.startswith("_") and callable(getattr(RunState, name))
)


def _shape(function: object) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", _RUN_STATE)
def test_every_run_state_method_is_on_the_store_with_its_signature(name: str) -> None:
    """Each method the RunState port names is callable on StateStore with the same parameters."""
    assert _shape(getattr(StateStore, name)) == _shape(getattr(RunState, name))


def test_the_compat_methods_are_one_line_delegations_to_the_parts() -> None:
    """Every method of the temporary compat module is one call of the same method on a part."""
    tree = ast.parse(inspect.getsource(compat))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    assert methods
    for method in methods:
        (statement,) = method.body
        call = statement.value
        assert isinstance(call, ast.Call), method.name
        target = call.func
        assert isinstance(target, ast.Attribute), method.name
        assert target.attr == method.name
        assert isinstance(target.value, ast.Attribute), method.name
        assert target.value.attr in _PARTS, method.name


def test_the_store_offers_only_its_parts_and_the_compat_methods(store: StateStore) -> None:
    """Apart from the parts, lock, close and open, StateStore's public names are the compat ones."""
    public = {name for name in dir(StateStore) if not name.startswith("_")}
    names = {n for n in vars(compat.ReconcileCompat) if not n.startswith("_")}
    assert public - names - _OWN == set()
    assert {name for name in vars(store) if not name.startswith("_")} == {*_PARTS, "db"}
