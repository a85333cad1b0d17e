"""Suggestions for what the matching rules could not resolve, and bulk links from a reviewed file.

``build_report`` reads HR and Protime (with names) and classifies as a run would; ``suggest`` is
the pure core; ``write_csv`` / ``write_json`` write the report; ``read_reviewed`` reads it back
with the admin's ``accept`` column for ``idsync link --from``.
"""

from sync.suggest._engine import Candidate, Report, Suggestion, Unreached, suggest
from sync.suggest._inputs import build_report, existing_persons
from sync.suggest._report import ReviewedRow, read_reviewed, report_json, write_csv, write_json

__all__ = [
    "Candidate",
    "Report",
    "ReviewedRow",
    "Suggestion",
    "Unreached",
    "build_report",
    "existing_persons",
    "read_reviewed",
    "report_json",
    "suggest",
    "write_csv",
    "write_json",
]
