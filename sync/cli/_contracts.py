"""The machine contracts of the CLI: every ``--json`` document and ``export``, in one vocabulary.

Each document is an object that starts with ``schema`` (its name), ``schema_version`` and
``idsync_version``; its JSON Schema (2020-12) is ``docs/schemas/<schema>.schema.json``. The same
thing has the same name everywhere: a run is always :func:`run_object` (``run_id``, ``status``,
``situations`` with every situation, ``actions`` as kind -> outcome -> count, ``api_calls`` as
``"<kind>:<status>"`` -> count, ``message``...), a map row always :func:`mapping_object`, an audit
event always :func:`event_object`. A field is added in a minor change; a field renamed or removed,
or a meaning changed, raises ``schema_version``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync import __version__
from sync.domain import Situation

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sync.domain import Action, Classification
    from sync.reconcile import RunResult
    from sync.state import EventRow, MappingRow, Rekey, RunRow

SCHEMA_VERSION = 1

# The columns of `export` (CSV) and the keys of each exported mapping (JSON), in this order.
MAPPING_FIELDS = (
    "hr_id",
    "protime_id",
    "situation",
    "rule",
    "evidence",
    "reason",
    "manual",
    "ignored",
    "candidates",
    "hr_wants",
    "last_written_value",
    "last_written_at",
    "protime_value",
    "first_seen_at",
    "last_verified_at",
    "last_changed_at",
    "last_error",
    "attempts",
    "last_run_id",
    "previous_hr_id",
)


def document(schema: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A top-level JSON document: its name and versions first, then ``body``."""
    return {
        "schema": schema,
        "schema_version": SCHEMA_VERSION,
        "idsync_version": __version__,
        **body,
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def seconds(value: float | None) -> float | None:
    """Durations are given to the millisecond: more digits are noise, not precision."""
    return round(value, 3) if value is not None else None


def all_situations(counts: Mapping[str, int]) -> dict[str, int]:
    """Every situation with its count, zeros included, in the documented order."""
    result = {s.value: int(counts.get(s.value, 0)) for s in Situation}
    result.update({k: int(v) for k, v in counts.items() if k not in result})
    return result


def nested_actions(flat: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{"write:succeeded": 3}`` -> ``{"write": {"succeeded": 3}}`` (the run table's form)."""
    nested: dict[str, dict[str, int]] = {}
    for key, count in flat.items():
        kind, _, outcome = key.partition(":")
        nested.setdefault(kind, {})[outcome] = int(count)
    return nested


def run_object(row: RunRow) -> dict[str, Any]:
    """One run as every command gives it (``runs``, ``runs show``, ``status``)."""
    return {
        "run_id": row.id,
        "trigger": row.trigger,
        "status": row.status,
        "dry_run": row.dry_run,
        "forced": row.forced,
        "only": list(row.only_ids),
        "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at),
        "duration_seconds": seconds(row.duration_seconds),
        "hr_count": row.hr_count,
        "protime_count": row.protime_count,
        "situations": all_situations(row.counts_by_situation),
        "actions": {k: dict(v) for k, v in row.actions_by_outcome.items()},
        "api_calls": dict(row.api_calls),
        "message": row.error,
        "host": row.host,
        "pid": row.pid,
        "plan_id": row.plan_id,
        "rate_per_second": row.rate_per_second,
        "progress": dict(row.progress) if row.progress else None,
        "protime_read": row.protime_read,
        "protime_read_reason": row.protime_read_reason,
    }


def result_object(result: RunResult) -> dict[str, Any]:
    """The run ``reconcile`` just did, named as :func:`run_object` names a stored run."""
    return {
        "run_id": result.run_id,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "dry_run": result.dry_run,
        "duration_seconds": seconds(result.duration_seconds),
        "hr_count": result.hr_count,
        "protime_count": result.protime_count,
        "situations": all_situations(result.counts_by_situation)
        if result.counts_by_situation
        else {},
        "actions": nested_actions(result.actions_by_outcome),
        "api_calls": dict(result.api_requests),
        "retries": result.retries,
        "rate_per_second": (
            round(result.rate_per_second, 2) if result.rate_per_second is not None else None
        ),
        "message": result.message or None,
        "plan_id": result.plan_id,
        "would_block": list(result.would_block),
        "protime_read": result.protime_read,
        "protime_read_reason": result.protime_read_reason,
    }


def mapping_object(row: MappingRow) -> dict[str, Any]:
    """One row of the map: exactly :data:`MAPPING_FIELDS`."""
    return {
        "hr_id": row.hr_id,
        "protime_id": row.protime_id,
        "situation": row.situation,
        "rule": row.rule,
        "evidence": row.evidence,
        "reason": row.reason,
        "manual": row.manual,
        "ignored": row.ignored,
        "candidates": list(row.candidates),
        "hr_wants": row.hr_wants,
        "last_written_value": row.last_written_value,
        "last_written_at": _time(row.last_written_at),
        "protime_value": row.protime_value,
        "first_seen_at": _time(row.first_seen_at),
        "last_verified_at": _time(row.last_verified_at),
        "last_changed_at": _time(row.last_changed_at),
        "last_error": row.last_error,
        "attempts": row.attempts,
        "last_run_id": row.last_run_id,
        "previous_hr_id": row.previous_hr_id,
    }


def rekey_object(rekey: Rekey, story: str) -> dict[str, Any]:
    """One re-key of ``show``: the person's reference moved from ``old`` to ``new``."""
    return {
        "old": rekey.old,
        "new": rekey.new,
        "protime_id": rekey.protime_id,
        "at": _time(rekey.at),
        "run_id": rekey.run_id,
        "reason": rekey.reason,
        "story": story,
    }


def csv_cells(mapping: Mapping[str, Any]) -> list[str]:
    """A mapping object as CSV cells: the same columns, lists space-separated, booleans true/false."""
    cells = []
    for name in MAPPING_FIELDS:
        value = mapping[name]
        if value is None:
            cells.append("")
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, list):
            cells.append(" ".join(str(v) for v in value))
        else:
            cells.append(str(value))
    return cells


def event_object(row: EventRow) -> dict[str, Any]:
    """One audit event (a write, a delete, or an admin's change)."""
    return {
        "event_id": row.id,
        "run_id": row.run_id,
        "hr_id": row.hr_id,
        "protime_id": row.protime_id,
        "action": row.action,
        "situation": row.situation,
        "value": row.value,
        "previous_value": row.previous_value,
        "previous_protime_id": row.previous_protime_id,
        "reason": row.reason,
        "outcome": row.outcome,
        "http_status": row.http_status,
        "error": row.error,
        "attempts": row.attempts,
        "created_at": _time(row.created_at),
        "completed_at": _time(row.completed_at),
    }


def action_object(action: Action) -> dict[str, Any]:
    """One planned call, named as its audit event will be (``action``: write or delete)."""
    return {
        "action": action.kind.value,
        "hr_id": action.hr_id,
        "protime_id": action.protime_id,
        "value": action.value,
        "situation": action.situation.value,
        "reason": action.reason,
        "phase": action.phase,
        "depends_on": action.depends_on,
    }


def record_object(record: Classification) -> dict[str, Any]:
    """One classified record of a plan, named as its map row is."""
    return {
        "hr_id": record.hr_id,
        "situation": record.situation.value,
        "protime_id": record.protime_id,
        "rule": record.rule.value if record.rule is not None else None,
        "evidence": record.evidence,
        "reason": record.reason,
        "protime_value": record.protime_value,
        "candidates": list(record.candidates),
    }
