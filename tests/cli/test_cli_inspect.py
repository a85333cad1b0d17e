"""The read-only commands: `status`, `show` both ways, `runs`, `runs show`, `export`. They answer
from the state database alone."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

import pytest
from cli_support import COUNT, everyone

from contracts_support import validate
from e2e.harness import HRRow
from sync.domain import Situation

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import Simulator


def _mixed(sim: Simulator) -> list[HRRow]:
    sim.world.set_reference("GONE-1", sim.world.people_list()[COUNT].id)  # an orphan
    return [*everyone(sim), HRRow("U1", employee_number="NOBODY"), HRRow("BAD/1")]


@pytest.fixture
def synced(served: Callable[..., Harness], idsync: Callable[..., CliResult]) -> Harness:
    """An installation after one successful reconcile (20 linked, 1 unmatched, 1 invalid, 1 orphan)."""
    h = served(rows=_mixed)
    result = idsync("reconcile", env=h.env())
    assert result.code == 0, result.output
    return h


def test_show_by_hr_id_and_by_protime_id(synced: Harness, idsync: Callable[..., CliResult]) -> None:
    """`show E003` and `show --protime-id N` name the same pair, its situation, why, and history."""
    person = synced.sim.world.people_list()[3].id
    by_hr = idsync("show", "E003", env=synced.env())
    assert by_hr.code == 0, by_hr.output
    for text in ("E003", str(person), "linked", "employee_number", "History", "write", "succeeded"):
        assert text in by_hr.stdout, text
    by_protime = idsync("show", "--protime-id", str(person), env=synced.env())
    assert by_protime.code == 0
    assert "E003" in by_protime.stdout
    as_json = validate(json.loads(idsync("show", "E003", "--json", env=synced.env()).stdout))
    assert [(m["hr_id"], m["protime_id"]) for m in as_json["mappings"]] == [("E003", person)]
    assert [e["outcome"] for e in as_json["history"]] == ["succeeded"]


def test_show_of_an_unknown_id_says_so_and_exits_non_zero(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """An id idsync never saw, either way round, is reported as unknown with a non-zero exit."""
    unknown = idsync("show", "NOT-AN-ID", env=synced.env())
    assert unknown.code != 0
    assert "'NOT-AN-ID' is not known" in unknown.stderr
    nobody = idsync("show", "--protime-id", "999999", env=synced.env())
    assert nobody.code != 0
    assert "999999 is not known" in nobody.stderr
    neither = idsync("show", env=synced.env())
    assert neither.code == 2
    assert "Traceback" not in unknown.output + nobody.output + neither.output


def test_show_of_unmatched_invalid_and_orphaned_records_says_why(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """Records that need attention show their situation and the reason in words."""
    unmatched = idsync("show", "U1", env=synced.env()).stdout
    assert "unmatched" in unmatched
    assert "no person matched" in unmatched
    assert "forbidden" in idsync("show", "BAD/1", env=synced.env()).stdout
    assert "orphaned" in idsync("show", "GONE-1", env=synced.env()).stdout


def test_status_counts_the_map_by_situation(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`status --json` counts mapping rows per situation and lists the latest run."""
    data = validate(json.loads(idsync("status", "--json", env=synced.env()).stdout))
    expected = {"linked": COUNT, "unmatched": 1, "invalid": 1, "orphaned": 1}
    assert data["situations"] == {s.value: expected.get(s.value, 0) for s in Situation}
    assert data["total"] == COUNT + 3
    assert [r["status"] for r in data["recent_runs"]] == ["succeeded"]
    table = idsync("status", env=synced.env())
    assert table.code == 0
    assert "Mappings by situation" in table.stdout


def test_status_shows_the_learned_rate(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """With `auto`, status names the rate the last run learned, in the table and in --json."""
    h = served(rows=everyone)
    env = h.env(IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND="auto")
    assert idsync("status", env=env).stdout.count("nothing learned yet") == 1
    assert idsync("reconcile", env=env).code == 0
    data = json.loads(idsync("status", "--json", env=env).stdout)
    learned = data["learned_rate_per_second"]
    assert learned is not None
    assert learned >= 10.0
    assert f"learned {learned:.1f}/s" in idsync("status", env=env).stdout
    fixed = idsync("status", env=h.env())  # the harness fixes the rate at 0: off
    assert "Request rate to Protime: off" in fixed.stdout


def test_runs_lists_runs_and_runs_show_gives_one(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`runs` lists every run newest first; `runs show ID` gives its figures and its writes."""
    assert idsync("reconcile", "--dry-run", env=synced.env()).code == 0
    runs = validate(json.loads(idsync("runs", "--json", env=synced.env()).stdout))["runs"]
    assert [(r["dry_run"], r["status"]) for r in runs] == [
        (True, "succeeded"),
        (False, "succeeded"),
    ]
    listing = idsync("runs", env=synced.env())
    assert listing.code == 0
    real = runs[1]["run_id"]
    assert real[:8] in listing.stdout
    shown = idsync("runs", "show", real, env=synced.env())
    assert shown.code == 0, shown.output
    assert real in shown.stdout
    assert "write" in shown.stdout
    assert "E000" in shown.stdout
    data = validate(json.loads(idsync("runs", "show", real, "--json", env=synced.env()).stdout))
    assert data["run"]["hr_count"] == COUNT + 1
    assert data["run"]["actions"] == {"write": {"succeeded": COUNT}}
    assert len(data["events"]) == COUNT
    missing = idsync("runs", "show", "no-such-run", env=synced.env())
    assert missing.code == 2
    assert "no run" in missing.stderr


def test_runs_show_takes_the_short_id_that_runs_prints(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """The run column of `runs` may be cut short on a narrow terminal: a unique prefix is enough."""
    (run,) = json.loads(idsync("runs", "--json", env=synced.env()).stdout)["runs"]
    shown = idsync("runs", "show", run["run_id"][:8], env=synced.env())
    assert shown.code == 0, shown.output
    assert run["run_id"] in shown.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_gives_one_row_per_mapping(
    synced: Harness, idsync: Callable[..., CliResult], fmt: str
) -> None:
    """`export --format csv|json` parses back to exactly the map: one row per HR id and orphan."""
    result = idsync("export", "--format", fmt, env=synced.env())
    assert result.code == 0, result.output
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
    else:
        rows = validate(json.loads(result.stdout))["mappings"]
    by_id = {r["hr_id"]: r for r in rows}
    assert len(by_id) == len(rows) == COUNT + 3
    people = synced.sim.world.people_list()
    for i in range(COUNT):
        row = by_id[f"E{i:03d}"]
        assert str(row["protime_id"]) == str(people[i].id)
        assert row["situation"] == "linked"
    assert by_id["U1"]["situation"] == "unmatched"
    assert by_id["BAD/1"]["situation"] == "invalid"
    assert by_id["GONE-1"]["situation"] == "orphaned"


def test_export_to_a_file(
    synced: Harness, idsync: Callable[..., CliResult], tmp_path: object
) -> None:
    """`export --output FILE` writes the same rows to the file instead of stdout."""
    from pathlib import Path

    target = Path(str(tmp_path)) / "map.json"
    result = idsync("export", "--format", "json", "--output", str(target), env=synced.env())
    assert result.code == 0
    assert len(validate(json.loads(target.read_text(encoding="utf-8")))["mappings"]) == COUNT + 3
    bad = idsync("export", "--format", "xml", env=synced.env())
    assert bad.code == 2
    assert "csv or json" in bad.stderr
