"""The CLI behaves like a finished product: unknown ids are errors, links are not stolen, file
errors are one line, human output has no Python reprs."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

import pytest
from cli_support import COUNT, everyone

from contracts_support import validate
from e2e.harness import HRRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness


@pytest.fixture
def synced(served: Callable[..., Harness], idsync: Callable[..., CliResult]) -> Harness:
    """An installation after one reconcile: E000..E019 linked, U1 unmatched."""
    h = served(rows=lambda sim: [*everyone(sim), HRRow("U1", employee_number="NOBODY")])
    assert idsync("reconcile", env=h.env()).code == 0
    return h


def test_only_with_no_known_id_exits_2_and_writes_nothing(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`reconcile --only NOPE` names the id and exits 2; nothing is written."""
    writes = synced.writes()
    result = idsync("reconcile", "--only", "NOPE", env=synced.env())
    assert result.code == 2, result.output
    assert "NOPE" in result.stderr
    assert "Traceback" not in result.output
    assert synced.writes() == writes


def test_retry_of_unknown_or_unfailed_ids_exits_2(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`retry NOPE` names the unknown id; `retry E001` (not failed) says there is nothing to retry."""
    unknown = idsync("retry", "NOPE", env=synced.env())
    assert unknown.code == 2
    assert "NOPE" in unknown.stderr
    not_failed = idsync("retry", "E001", env=synced.env())
    assert not_failed.code == 2
    assert "nothing to retry" in not_failed.stderr
    assert idsync("retry", env=synced.env()).code == 0  # every failed record: none, fine


def test_link_refuses_a_person_mapped_to_another_id_unless_forced(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """Linking NEW to E001's person names E001 and exits 2; --force links it."""
    person = synced.sim.world.people_list()[1].id
    refused = idsync("link", "NEW-1", str(person), env=synced.env())
    assert refused.code == 2
    assert "E001" in refused.stderr
    assert "--force" in refused.stderr
    forced = idsync("link", "NEW-1", str(person), "--force", env=synced.env())
    assert forced.code == 0, forced.output
    shown = validate(json.loads(idsync("show", "NEW-1", "--json", env=synced.env()).stdout))
    assert shown["mappings"][0]["manual"] is True


def test_export_to_an_unwritable_path_is_one_line_exit_2(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`export -o /nonexistent/x.csv` prints one line naming the file, exit 2, no traceback."""
    result = idsync("export", "-o", "/nonexistent/x.csv", env=synced.env())
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "/nonexistent/x.csv" in lines[0]


def test_csv_export_has_the_json_columns(synced: Harness, idsync: Callable[..., CliResult]) -> None:
    """The CSV header is exactly the keys of each JSON mapping, values alike."""
    as_csv = list(csv.DictReader(io.StringIO(idsync("export", env=synced.env()).stdout)))
    as_json = validate(json.loads(idsync("export", "--format", "json", env=synced.env()).stdout))
    assert list(as_csv[0]) == list(as_json["mappings"][0])
    first_csv, first_json = as_csv[0], as_json["mappings"][0]
    assert first_csv["hr_id"] == first_json["hr_id"]
    assert first_csv["manual"] == "false"


def test_human_output_has_no_python_reprs(
    synced: Harness, idsync: Callable[..., CliResult]
) -> None:
    """`show` says yes/no, `runs show` gives counts and a rounded duration, never a dict."""
    shown = idsync("show", "E001", env=synced.env()).stdout
    assert "False" not in shown
    assert "True" not in shown
    assert "no" in shown
    runs = validate(json.loads(idsync("runs", "--json", env=synced.env()).stdout))["runs"]
    details = idsync("runs", "show", runs[0]["run_id"], env=synced.env()).stdout
    assert "{" not in details
    assert "linked" not in details or "linked 0" not in details
    assert f"unlinked {COUNT}" in details
    assert "write: succeeded" in details
    duration = runs[0]["duration_seconds"]
    assert f"{duration:.1f} s" in details
