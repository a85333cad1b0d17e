"""End to end over HTTP: `idsync suggest` ranks the person agreeing on every configured key
first, in the 240,000-employee trial's shape (one employee number on two persons, one badge one
letter off)."""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from contracts_support import validate
from e2e.harness import sim_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import Simulator

TWINS = 6  # disputed employees, each with a right person and a badge-typo twin
LINKED = 10  # employees the rules link (their persons are no one's candidates)


def _world(sim: Simulator) -> tuple[list[tuple[str, ...]], dict[str, tuple[int, int]]]:
    """Shape the simulator; returns the HR rows and each disputed HR id -> (right, typo)."""
    people = sim.world.people_list()
    rows: list[tuple[str, ...]] = []
    pairs: dict[str, tuple[int, int]] = {}
    for k in range(TWINS):
        low, high = people[2 * k], people[2 * k + 1]
        # The typo twin has the lower person id half of the time: ids never decide.
        right, typo = (high, low) if k % 2 == 0 else (low, high)
        number, badge = f"{200471 + k}", f"B{100471 + k}"
        for person, held in ((right, badge), (typo, f"D{100471 + k}")):
            sim.world.update_person(
                person.id,
                employee_number=number,
                badge_number=held,
                email=right.email,
                first_name=right.first_name,
                last_name=right.last_name,
            )
        hr_id = f"T{k:03d}"
        rows.append((hr_id, number, badge, right.email or "", right.first_name, right.last_name))
        pairs[hr_id] = (right.id, typo.id)
    for i in range(LINKED):
        p = people[2 * TWINS + i]
        rows.append((f"E{i:03d}", p.employee_number or "", "", "", p.first_name, p.last_name))
    return rows, pairs


def _write_hr(path: Path, rows: list[tuple[str, ...]]) -> None:
    """The HR table with name columns (read by `suggest` only)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS employees")
        conn.execute(
            "CREATE TABLE employees (row_id INTEGER PRIMARY KEY, employee_id TEXT,"
            " employee_number TEXT, badge TEXT, email TEXT, active INTEGER,"
            " first_name TEXT, last_name TEXT)"
        )
        conn.executemany(
            "INSERT INTO employees (employee_id, employee_number, badge, email, active,"
            " first_name, last_name) VALUES (?, ?, NULLIF(?, ''), NULLIF(?, ''), 1, ?, ?)",
            rows,
        )
    conn.close()


@pytest.mark.parametrize(
    ("rules", "agreeing"),
    [
        ("reference,employee_number,badge_number,email", ("employee_number", "badge_number")),
        ("reference,employee_number,badge_number", ("employee_number", "badge_number")),
    ],
)
def test_suggest_ranks_the_person_agreeing_on_every_configured_key_first(
    served: Callable[..., Harness],
    idsync: Callable[..., CliResult],
    tmp_path: Path,
    rules: str,
    agreeing: tuple[str, ...],
) -> None:
    """For every disputed employee of the trial's shape, rank 1 in the JSON and the CSV report
    is the person agreeing on employee number and badge, with the higher score and every
    agreeing key in its evidence, and rank 2 names its badge as differing."""
    h = served(rows=[], config=sim_config(people=2 * TWINS + LINKED, seed=3))
    rows, pairs = _world(h.sim)
    _write_hr(h.hr_path, rows)
    env = h.env(
        IDSYNC_MATCH__RULES=rules,
        IDSYNC_HR__FIRST_NAME_COLUMN="first_name",
        IDSYNC_HR__LAST_NAME_COLUMN="last_name",
    )

    out = tmp_path / "suggest.json"
    result = idsync("suggest", "--format", "json", "--out", str(out), env=env)
    assert result.code == 0, result.output
    assert f"{TWINS} unmatched or disputed employee(s)" in result.stderr
    document = validate(json.loads(out.read_text(encoding="utf-8")))
    by_id = {s["hr_id"]: s for s in document["suggestions"]}
    assert set(by_id) == set(pairs)
    for hr_id, (right, typo) in pairs.items():
        s = by_id[hr_id]
        assert s["situation"] == "disputed"
        first, second = s["candidates"]
        assert (first["protime_id"], second["protime_id"]) == (right, typo), s
        assert first["score"] > second["score"]
        assert first["differ"] == []
        for field in agreeing:
            assert any(words.startswith(f"{field} ") for words in first["agree"]), first
        assert any("email " in words for words in first["agree"])  # agrees, configured or not
        (badge,) = second["differ"]
        assert badge.startswith("badge_number B"), badge
        assert "(differs, " in badge, badge

    as_csv = tmp_path / "suggest.csv"
    result = idsync("suggest", "--format", "csv", "--out", str(as_csv), env=env)
    assert result.code == 0, result.output
    with as_csv.open(encoding="utf-8", newline="") as stream:
        first_rows = {
            r["hr_id"]: int(r["protime_id"])
            for r in csv.DictReader(stream)
            if r["kind"] == "suggestion" and r["rank"] == "1"
        }
    assert first_rows == {hr_id: right for hr_id, (right, _) in pairs.items()}
