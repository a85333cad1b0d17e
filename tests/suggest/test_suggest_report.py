"""The report files: what `suggest` writes, and what `link --from` reads back from a reviewed one."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sync.domain import Situation
from sync.errors import UsageError
from sync.suggest import (
    Candidate,
    Report,
    Suggestion,
    Unreached,
    read_reviewed,
    report_json,
    write_csv,
    write_json,
)


def _report() -> Report:
    cand = Candidate(
        protime_id=7,
        score=88.5,
        name="Jan Peeters",
        agree=("employee_number 00123 = 123 (equal with strip_leading_zeros)",),
        differ=(),
        normalize=("employee_number=strip_leading_zeros",),
        name_similarity=100.0,
    )
    return Report(
        suggestions=(
            Suggestion("E1", Situation.UNMATCHED, "no person matched", "Jan Peeters", (cand,)),
            Suggestion("E2", Situation.UNMATCHED, "no person matched", None, ()),
        ),
        unreached=(
            Unreached(
                protime_id=9,
                name="Els Maes",
                reference=None,
                employee_number="55",
                badge_number=None,
                email=None,
                out_of_service=False,
                suggested_for=(),
            ),
        ),
    )


def _csv_rows(report: Report) -> list[dict[str, str]]:
    stream = io.StringIO()
    write_csv(report, stream)
    return list(csv.DictReader(io.StringIO(stream.getvalue())))


def test_csv_has_a_row_per_candidate_per_employee_without_and_per_unreached_person():
    """Every employee appears (with or without candidates), then the unreached persons."""
    rows = _csv_rows(_report())
    assert [(r["kind"], r["hr_id"], r["rank"], r["protime_id"]) for r in rows] == [
        ("suggestion", "E1", "1", "7"),
        ("suggestion", "E2", "", ""),
        ("unreached", "", "", "9"),
    ]
    assert rows[0]["normalize"] == "employee_number=strip_leading_zeros"
    assert {r["accept"] for r in rows} == {""}
    assert "employee_number 55" in rows[2]["reason"]


def _reviewed(tmp_path, rows, name="reviewed.csv"):
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_reviewed_csv_gives_the_accepted_rows_with_their_problems(tmp_path):
    """yes/x/true accept, empty/no do not, anything else and missing ids are problems."""
    rows = _csv_rows(_report())
    rows[0]["accept"] = "Yes"
    rows[2].update(accept="x", hr_id="E3")
    rows.append({**rows[0], "accept": "maybe", "hr_id": "E4"})
    rows.append({**rows[0], "accept": "yes", "hr_id": ""})
    rows.append({**rows[0], "accept": "yes", "hr_id": "E5", "protime_id": "abc"})
    rows.append({**rows[0], "accept": "no", "hr_id": "E6"})
    accepted = read_reviewed(_reviewed(tmp_path, rows))
    assert [(r.where, r.hr_id, r.protime_id, r.problem) for r in accepted] == [
        ("line 2", "E1", 7, None),
        ("line 4", "E3", 9, None),
        ("line 5", "E4", 7, "accept is 'maybe': write yes, or leave it empty"),
        ("line 6", None, 7, "accepted, but no hr_id"),
        ("line 7", "E5", None, "accepted, but protime_id 'abc' is not a positive number"),
    ]


def test_reviewed_json_report_and_flat_list(tmp_path):
    """The JSON report with accept set in place, or a flat list of rows, reads the same way."""
    stream = io.StringIO()
    write_json(report_json(_report()), stream)
    document = json.loads(stream.getvalue())
    document["suggestions"][0]["candidates"][0]["accept"] = True
    document["unreached"][0].update(accept="yes", hr_id="E3")
    path = tmp_path / "reviewed.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    got = [(r.hr_id, r.protime_id, r.problem) for r in read_reviewed(path)]
    assert got == [("E1", 7, None), ("E3", 9, None)]

    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([{"hr_id": "E1", "protime_id": 7, "accept": True}]), "utf-8")
    assert [(r.hr_id, r.protime_id) for r in read_reviewed(flat)] == [("E1", 7)]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("hr_id,protime_id\nE1,7\n", r"no column\(s\) accept"),
        ("{not json", "is not valid JSON"),
        ('{"something": 1}', "expected a list"),
    ],
)
def test_unusable_files_are_usage_errors(tmp_path, content, words):
    """A file without the columns, or not JSON, is refused with what is wrong."""
    path = tmp_path / "f"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=words):
        read_reviewed(path)
