"""The suggestion report as CSV or JSON, and the reviewed file ``idsync link --from`` reads back.

The CSV has one row per (HR employee, candidate), an employee without candidates one row with the
candidate columns empty, and one row per Protime person no HR employee reaches (``kind`` tells
them apart). An admin writes ``yes`` in ``accept`` for the pairs to link; on an ``unreached`` row
they may type the HR id too. The JSON carries the same, nested, with ``"accept": false`` in place.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from sync.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from sync.suggest._engine import Candidate, Report, Suggestion, Unreached

CSV_COLUMNS = (
    "kind",
    "hr_id",
    "situation",
    "rank",
    "protime_id",
    "score",
    "hr_name",
    "protime_name",
    "name_similarity",
    "agree",
    "differ",
    "normalize",
    "reason",
    "accept",
)
_JOIN = " | "
ACCEPT_YES = frozenset({"yes", "y", "true", "1", "x", "accept", "accepted", "ok"})
ACCEPT_NO = frozenset({"", "no", "n", "false", "0"})


def _candidate(c: Candidate, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "protime_id": c.protime_id,
        "score": c.score,
        "name": c.name,
        "name_similarity": c.name_similarity,
        "agree": list(c.agree),
        "differ": list(c.differ),
        "normalize": list(c.normalize),
        "accept": False,
    }


def _suggestion(s: Suggestion) -> dict[str, Any]:
    return {
        "hr_id": s.hr_id,
        "situation": s.situation.value,
        "reason": s.reason,
        "name": s.name,
        "hr_duplicates": list(s.hr_duplicates),
        "candidates": [_candidate(c, rank) for rank, c in enumerate(s.candidates, start=1)],
    }


def _unreached(u: Unreached) -> dict[str, Any]:
    return {
        "protime_id": u.protime_id,
        "name": u.name,
        "reference": u.reference,
        "employee_number": u.employee_number,
        "badge_number": u.badge_number,
        "email": u.email,
        "out_of_service": u.out_of_service,
        "suggested_for": list(u.suggested_for),
        "hr_id": None,
        "accept": False,
    }


def report_json(report: Report) -> dict[str, Any]:
    """The body of the JSON ``idsync suggest --format json`` writes (the CLI adds the schema
    name and versions: ``docs/schemas/suggest.schema.json``)."""
    return {
        "suggestions": [_suggestion(s) for s in report.suggestions],
        "unreached": [_unreached(u) for u in report.unreached],
    }


def _unreached_words(u: Unreached) -> str:
    keys = [
        f"{label} {value}"
        for label, value in (
            ("reference", u.reference),
            ("employee_number", u.employee_number),
            ("badge_number", u.badge_number),
            ("email", u.email),
        )
        if value
    ]
    words = "no HR employee reaches this person"
    if keys:
        words += f" ({', '.join(keys)})"
    if u.out_of_service:
        words += "; out of service"
    if u.suggested_for:
        words += f"; suggested above for {', '.join(u.suggested_for)}"
    return words


def write_csv(report: Report, stream: IO[str]) -> None:
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    for s in report.suggestions:
        reason = s.reason
        if s.hr_duplicates:
            reason += f" (same name and birth date in HR: {', '.join(s.hr_duplicates)})"
        head = ["suggestion", s.hr_id, s.situation.value]
        if not s.candidates:
            writer.writerow([*head, "", "", "", s.name or "", "", "", "", "", "", reason, ""])
        for rank, c in enumerate(s.candidates, start=1):
            similarity = "" if c.name_similarity is None else c.name_similarity
            writer.writerow(
                [
                    *head,
                    rank,
                    c.protime_id,
                    c.score,
                    s.name or "",
                    c.name or "",
                    similarity,
                    _JOIN.join(c.agree),
                    _JOIN.join(c.differ),
                    _JOIN.join(c.normalize),
                    reason,
                    "",
                ]
            )
    for u in report.unreached:
        writer.writerow(
            [
                "unreached",
                "",
                "",
                "",
                u.protime_id,
                "",
                "",
                u.name or "",
                "",
                "",
                "",
                "",
                _unreached_words(u),
                "",
            ]
        )


def write_json(document: Mapping[str, Any], stream: IO[str]) -> None:
    """A JSON document, indented one space per level (thousands of suggestions stay readable)."""
    json.dump(document, stream, ensure_ascii=False, indent=1)
    stream.write("\n")


# ----- the reviewed file -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewedRow:
    """One accepted row of a reviewed file; ``problem`` says why it cannot be linked as written."""

    where: str  # "line 7" (CSV) or "suggestions[3].candidates[0]" (JSON)
    hr_id: str | None
    protime_id: int | None
    problem: str | None = None


def _accepted(value: object) -> bool | None:
    """True/False for an accept cell; ``None`` when it is neither (a problem to report)."""
    if value is True or value is False:
        return value
    if value is None:
        return False
    text = str(value).strip().casefold()
    if text in ACCEPT_YES:
        return True
    if text in ACCEPT_NO:
        return False
    return None


def _row(where: str, hr_id: object, protime_id: object, accept: object) -> ReviewedRow | None:
    """The row when accepted (with its problem, if any), ``None`` when not accepted."""
    verdict = _accepted(accept)
    if verdict is False:
        return None
    hr_text = str(hr_id).strip() if hr_id is not None and str(hr_id).strip() else None
    pid: int | None = None
    if isinstance(protime_id, int) and not isinstance(protime_id, bool):
        pid = protime_id
    elif isinstance(protime_id, str) and protime_id.strip().isdecimal():
        pid = int(protime_id.strip())
    problem = None
    if verdict is None:
        problem = f"accept is {str(accept)!r}: write yes, or leave it empty"
    elif hr_text is None:
        problem = "accepted, but no hr_id"
    elif pid is None or pid <= 0:
        problem = f"accepted, but protime_id {protime_id!r} is not a positive number"
    return ReviewedRow(where=where, hr_id=hr_text, protime_id=pid, problem=problem)


def read_reviewed(path: Path) -> list[ReviewedRow]:
    """The accepted rows of a reviewed suggestion file (CSV or JSON, told by its content)."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    if content.lstrip()[:1] in ("[", "{"):
        return _read_json(path, content)
    return _read_csv(path, content)


def _read_csv(path: Path, content: str) -> list[ReviewedRow]:
    reader = csv.DictReader(content.splitlines())
    columns = set(reader.fieldnames or ())
    missing = [c for c in ("hr_id", "protime_id", "accept") if c not in columns]
    if missing:
        raise UsageError(
            f"{path}: the CSV has no column(s) {', '.join(missing)} (write yes in `accept`"
            " on the rows of an `idsync suggest` file)"
        )
    rows = []
    for record in reader:
        row = _row(
            f"line {reader.line_num}", record["hr_id"], record["protime_id"], record["accept"]
        )
        if row is not None:
            rows.append(row)
    return rows


def _read_json(path: Path, content: str) -> list[ReviewedRow]:
    try:
        document = json.loads(content)
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    rows: list[ReviewedRow] = []
    if isinstance(document, list):
        items = [(f"[{i}]", item) for i, item in enumerate(document)]
    elif isinstance(document, dict) and (
        isinstance(document.get("suggestions"), list) or isinstance(document.get("unreached"), list)
    ):
        items = []
        for i, s in enumerate(document.get("suggestions") or []):
            for j, c in enumerate(s.get("candidates") or [] if isinstance(s, dict) else []):
                if isinstance(c, dict):
                    items.append(
                        (f"suggestions[{i}].candidates[{j}]", {**c, "hr_id": s.get("hr_id")})
                    )
        items += [(f"unreached[{i}]", u) for i, u in enumerate(document.get("unreached") or [])]
    else:
        raise UsageError(
            f"{path}: expected a list of {{hr_id, protime_id, accept}} objects or an"
            " `idsync suggest --format json` report"
        )
    for where, item in items:
        if not isinstance(item, dict):
            rows.append(
                ReviewedRow(where=where, hr_id=None, protime_id=None, problem="not an object")
            )
            continue
        row = _row(where, item.get("hr_id"), item.get("protime_id"), item.get("accept"))
        if row is not None:
            rows.append(row)
    return rows
