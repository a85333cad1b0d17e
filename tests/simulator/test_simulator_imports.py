"""The simulator's modules stand apart from the client they are used to test."""

from __future__ import annotations

import ast
from pathlib import Path

import sync.simulator

_PACKAGE = Path(sync.simulator.__file__).parent


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_simulator_module_imports_the_protime_client():
    """No module of sync/simulator imports sync.protime, at any level of the file (a simulator
    that borrowed the client's code would agree with it by construction)."""
    offenders = {
        path.name: sorted(n for n in _imported(path) if n.split(".")[:2] == ["sync", "protime"])
        for path in sorted(_PACKAGE.glob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_handler_modules_do_not_import_the_simulator_back():
    """The API, token, delta, injection and admin modules see the simulator through the
    Protocols of _types only, so the package has no import circle."""
    handlers = ["_admin", "_api", "_delta", "_inject", "_people_api", "_references_api", "_token"]
    for name in handlers:
        imported = _imported(_PACKAGE / f"{name}.py")
        assert not imported & {"sync.simulator", "sync.simulator._simulator"}, name
