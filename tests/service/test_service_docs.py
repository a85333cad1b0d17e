"""docs/operations.md stays complete: every service setting, metric and log event has its entry."""

from __future__ import annotations

import re
from pathlib import Path

from sync.config import HttpSettings, LogSettings, ScheduleSettings
from sync.service import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def test_every_service_setting_is_documented() -> None:
    """Each IDSYNC_SCHEDULE__/HTTP__/LOG__ variable the settings accept has a row."""
    sections = {"SCHEDULE": ScheduleSettings, "HTTP": HttpSettings, "LOG": LogSettings}
    variables = [
        f"`IDSYNC_{section}__{field.upper()}`"
        for section, model in sections.items()
        for field in model.model_fields
    ]
    assert [v for v in variables if v not in DOC] == []


def test_every_metric_is_documented() -> None:
    """Each metric the service exposes is named, as exposed (counters with _total), in the table."""
    names = set()
    for family in Metrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        names.add(f"`{family.name}{suffix}`")
    assert sorted(n for n in names if n not in DOC) == []


def test_every_log_event_of_the_service_is_documented() -> None:
    """Each event name the service logs appears in the events table."""
    events = set()
    for path in (ROOT / "sync" / "service").glob("*.py"):
        events |= set(
            re.findall(r'log\.\w+\(\s*(?:#[^\n]*\n\s*)?"([a-z_]+\.[a-z_.]+)"', path.read_text())
        )
    assert events  # the pattern still finds them
    assert sorted(e for e in events if f"`{e}`" not in DOC) == []
