"""The streamed JSON printer writes what ``json.dumps(..., indent=2)`` of the whole value would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from sync.cli._common import jsonable, print_json
from sync.domain import Situation

if TYPE_CHECKING:
    from collections.abc import Callable

_CASES: list[tuple[str, Callable[[], Any]]] = [
    ("empty object", dict),
    ("empty list", list),
    ("scalar", lambda: "é\u202e"),
    ("nested empties", lambda: {"a": [], "b": {}, "c": [[], [{}]]}),
    (
        "a document with iterators",
        lambda: {
            "schema": "reconcile",
            "plan": ({"action": "write", "n": i, "when": None} for i in range(3)),
            "records": iter(()),
            "more": ([i, {"x": 1.5, "y": True}] for i in range(2)),
            "enum": Situation.LINKED,
            "at": datetime(2026, 1, 1, tzinfo=UTC),
            1: {2: "three"},
        },
    ),
]


@pytest.mark.parametrize(("name", "make"), _CASES, ids=[n for n, _ in _CASES])
def test_print_json_matches_json_dumps(
    name: str, make: Callable[[], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Lists given as iterators print exactly as the same value built whole would."""
    whole = (
        {k: list(v) if k in ("plan", "records", "more") else v for k, v in make().items()}
        if isinstance(make(), dict)
        else make()
    )
    print_json(make())
    assert (
        capsys.readouterr().out == json.dumps(jsonable(whole), indent=2, ensure_ascii=False) + "\n"
    ), name
