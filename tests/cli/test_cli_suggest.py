"""End to end over HTTP: near misses unmatched without normalization, linked with it; `suggest`
explains them; `link --from` links a reviewed file, all or nothing."""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import TYPE_CHECKING

from contracts_support import validate
from e2e.harness import HRRow, sim_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import SimPerson, Simulator

LINKED = 30  # employees the rules match as they are
NEAR = 30  # employees whose number differs from their person's by zeros, case or dashes
DECOYS = 10  # persons without an HR row (unreached), two of them sharing a near miss's name
NORMALIZE = "casefold,alnum_only,strip_leading_zeros"


def _near_miss(i: int) -> tuple[str, str]:
    """(HR employee number, Protime employee number) of near miss ``i``."""
    if i % 3 == 0:
        return f"00{500 + i}", f"{500 + i}"  # leading zeros
    if i % 3 == 1:
        return f"AB{i:03d}X", f"ab{i:03d}x"  # case
    return f"B{i:04d}", f"B-{i:04d}"  # a dash


def _write_hr(path: Path, rows: list[tuple[str, str, SimPerson | None, str]]) -> None:
    """The HR table with name and birth-date columns (used by suggestions only)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS employees")
        conn.execute(
            "CREATE TABLE employees (row_id INTEGER PRIMARY KEY, employee_id TEXT,"
            " employee_number TEXT, badge TEXT, email TEXT, active INTEGER,"
            " first_name TEXT, last_name TEXT, birth_date TEXT)"
        )
        conn.executemany(
            "INSERT INTO employees (employee_id, employee_number, active, first_name, last_name,"
            " birth_date) VALUES (?, ?, 1, ?, ?, ?)",
            [
                (hr_id, number, p.first_name if p else None, p.last_name if p else None, born)
                for hr_id, number, p, born in rows
            ],
        )
    conn.close()


def _world(sim: Simulator) -> dict[str, int]:
    """Shape the simulator; returns each near miss's HR id -> its right person."""
    people = sim.world.people_list()
    right: dict[str, int] = {}
    for i in range(NEAR):
        person = people[LINKED + i]
        _, theirs = _near_miss(i)
        sim.world.update_person(person.id, employee_number=theirs)
        right[f"N{i:03d}"] = person.id
    # Decoys: unreached persons; two carry a near miss's exact name but another number.
    for k in range(DECOYS):
        decoy = people[LINKED + NEAR + k]
        sim.world.update_person(decoy.id, employee_number=f"{900 + k}")
        if k < 2:
            twin = people[LINKED + k]
            sim.world.update_person(decoy.id, first_name=twin.first_name, last_name=twin.last_name)
    return right


def _install(served: Callable[..., Harness]) -> tuple[Harness, dict[str, int]]:
    h = served(rows=[], config=sim_config(people=LINKED + NEAR + DECOYS, seed=5))
    right = _world(h.sim)
    people = h.sim.world.people_list()
    rows = [
        (f"E{i:03d}", people[i].employee_number, people[i], "1980-01-01") for i in range(LINKED)
    ]
    for i in range(NEAR):
        mine, _ = _near_miss(i)
        rows.append((f"N{i:03d}", mine, people[LINKED + i], f"1990-02-{1 + i % 28:02d}"))
    _write_hr(h.hr_path, rows)
    return h, right


def _env(h: Harness, **extra: str) -> dict[str, str]:
    return h.env(
        IDSYNC_HR__FIRST_NAME_COLUMN="first_name",
        IDSYNC_HR__LAST_NAME_COLUMN="last_name",
        IDSYNC_HR__BIRTH_DATE_COLUMN="birth_date",
        **extra,
    )


def _situations(result: CliResult) -> dict[str, str]:
    assert result.code == 0, result.output
    return {r["hr_id"]: r["situation"] for r in json.loads(result.stdout)["records"]}


def test_near_misses_match_only_with_normalization(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Without normalization the 30 near misses are unmatched; with it they are linked, each to
    its right person, and the value written is the HR id exactly as HR has it."""
    h, right = _install(served)
    plain = _situations(idsync("reconcile", "--dry-run", "--json", env=_env(h)))
    assert [plain[hr_id] for hr_id in right] == ["unmatched"] * NEAR

    result = idsync("reconcile", "--json", env=_env(h, IDSYNC_MATCH__NORMALIZE=NORMALIZE))
    assert result.code == 0, result.output
    held = h.references()
    assert {hr_id: held.get(hr_id) for hr_id in right} == right
    again = idsync(
        "reconcile", "--dry-run", "--json", env=_env(h, IDSYNC_MATCH__NORMALIZE=NORMALIZE)
    )
    assert json.loads(again.stdout)["situations"]["linked"] == LINKED + NEAR


def _suggest(h: Harness, idsync: Callable[..., CliResult], out: Path, fmt: str) -> None:
    result = idsync("suggest", "--format", fmt, "--out", str(out), env=_env(h))
    assert result.code == 0, result.output
    assert f"{NEAR} unmatched or disputed employee(s)" in result.stderr


def _accept_first(source: Path, target: Path, *, spoil: str | None = None) -> None:
    """The reviewed file: yes on every rank-1 suggestion; ``spoil`` gets an unknown person."""
    with source.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        fields = list(reader.fieldnames or ())
        rows = list(reader)
    for row in rows:
        if row["kind"] == "suggestion" and row["rank"] == "1":
            row["accept"] = "yes"
            if row["hr_id"] == spoil:
                row["protime_id"] = "999999"
    with target.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_suggest_ranks_the_right_person_and_link_from_links_the_reviewed_file(
    served: Callable[..., Harness], idsync: Callable[..., CliResult], tmp_path: Path
) -> None:
    """With normalization off, `suggest` ranks the right person first for the near misses and
    says what normalization would make them equal; a reviewed file with one bad row links
    nothing; the clean file links all of them, and the next reconcile writes them."""
    h, right = _install(served)
    env = _env(h)
    assert idsync("reconcile", env=env).code == 0
    status = validate(json.loads(idsync("status", "--json", env=env).stdout))
    assert {"situation": "unmatched", "reason": "no candidate", "count": NEAR} in status[
        "attention"
    ]

    report = tmp_path / "suggest.csv"
    _suggest(h, idsync, report, "csv")
    with report.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    first = {
        r["hr_id"]: int(r["protime_id"])
        for r in rows
        if r["kind"] == "suggestion" and r["rank"] == "1"
    }
    hits = sum(1 for hr_id, pid in right.items() if first.get(hr_id) == pid)
    assert hits >= 28, (hits, first)
    top = next(r for r in rows if r["hr_id"] == "N000" and r["rank"] == "1")
    assert "employee_number=strip_leading_zeros" in top["normalize"]
    unreached = {int(r["protime_id"]) for r in rows if r["kind"] == "unreached"}
    people = h.sim.world.people_list()
    assert {p.id for p in people[LINKED + NEAR :]} <= unreached

    as_json = tmp_path / "suggest.json"
    _suggest(h, idsync, as_json, "json")
    document = validate(json.loads(as_json.read_text(encoding="utf-8")))
    assert len(document["suggestions"]) == NEAR
    assert document["suggestions"][0]["candidates"][0]["accept"] is False

    spoiled = tmp_path / "reviewed-bad.csv"
    _accept_first(report, spoiled, spoil="N007")
    bad = idsync("link", "--from", str(spoiled), env=env)
    assert bad.code == 2, bad.output
    assert "Protime has no person 999999" in bad.stderr
    assert "nothing was linked" in bad.stderr
    with h.store() as store:
        assert store.map.load_prior().manual_links == {}

    reviewed = tmp_path / "reviewed.csv"
    _accept_first(report, reviewed)
    good = idsync("link", "--from", str(reviewed), env=env)
    assert good.code == 0, good.output
    assert f"linked {NEAR} pair(s)" in good.stdout
    with h.store() as store:
        assert store.map.load_prior().manual_links == first
    assert idsync("reconcile", env=env).code == 0
    held = h.references()
    assert {hr_id: held.get(hr_id) for hr_id in right} == first


def test_a_rekey_is_told_by_show_from_both_ids_and_exported(
    served: Callable[..., Harness], idsync: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Person 1 held E-1 (gone from HR); E-9 has its employee number: the run moves the person's
    reference to E-9, and show E-1, show E-9 and export all say so."""

    def world(sim: Simulator) -> list[HRRow]:
        person = sim.world.people_list()[0]
        sim.world.set_reference("E-1", person.id)
        return [HRRow("E-9", employee_number=person.employee_number)]

    h = served(rows=world)
    env = h.env()
    assert idsync("reconcile", env=env).code == 0
    person = h.sim.world.people_list()[0].id
    assert h.references() == {"E-9": person}
    for hr_id in ("E-1", "E-9"):
        shown = validate(json.loads(idsync("show", hr_id, "--json", env=env).stdout))
        (rekey,) = shown["rekeys"]
        assert (rekey["old"], rekey["new"], rekey["protime_id"]) == ("E-1", "E-9", person)
        assert rekey["story"].startswith(f"E-1 → E-9 (person {person}) on ")
        assert "because " in rekey["story"]
        assert "holds HRMID E-1 instead" in rekey["story"]
    table = idsync("show", "E-1", env=env)
    assert table.code == 0
    assert "E-1 → E-9" in table.stdout
    exported = tmp_path / "map.csv"
    assert idsync("export", "-o", str(exported), env=env).code == 0
    with exported.open(encoding="utf-8", newline="") as stream:
        rows = {r["hr_id"]: r for r in csv.DictReader(stream)}
    assert rows["E-9"]["previous_hr_id"] == "E-1"
