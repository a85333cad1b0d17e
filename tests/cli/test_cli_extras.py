"""Commands that need an optional extra say which one, instead of an ImportError."""

from __future__ import annotations

import importlib.util

import pytest

from sync.cli._common import require_simulator
from sync.errors import UsageError


def test_simulator_commands_name_the_missing_extra(monkeypatch) -> None:
    """Without starlette/uvicorn (the image), `idsync simulator` exits 2 naming the extra."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in {"starlette", "uvicorn"} else real(name, *a),
    )
    with pytest.raises(UsageError, match=r"protime-idsync\[simulator\]") as caught:
        require_simulator("simulator")
    assert caught.value.exit_code == 2


def test_simulator_extra_present_in_dev() -> None:
    """With the extra installed (make install), the check lets the command through."""
    require_simulator("demo")
