"""A stored plan as one JSON document, written and read streamed (``plan --out``, ``apply FILE``).

The document is what ``idsync plan show ID --json`` prints (schema ``plan-show``): the header
object under ``plan``, then ``actions``, one action per line. A 250,000-action plan is written
from the state database row by row, never held as JSON in memory, and read back the same way
(any other layout of the same JSON, e.g. pretty-printed by a tool, is read whole).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from sync.cli._contracts import action_object, all_situations, document
from sync.domain import Action, ActionKind, Precondition, Situation
from sync.errors import UsageError
from sync.state import PlanRow

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from sync.config import Settings

_OPEN = ', "actions": ['


def plan_object(header: PlanRow, settings: Settings) -> dict[str, Any]:
    """A stored plan's header, as ``plans``, ``plan show`` and ``plan --json`` give it."""
    expires = header.created_at + timedelta(hours=settings.safety.plan_ttl_hours)
    return {
        "plan_id": header.id,
        "origin": header.kind,
        "created_at": header.created_at.isoformat(),
        "expires_at": expires.isoformat(),
        "expired": expires < datetime.now(UTC),
        "run_id": header.run_id,
        "rollback_of": header.rollback_of,
        "settings_digest": header.settings_digest,
        "snapshot_fingerprint": header.snapshot_fingerprint,
        "situations": all_situations(header.counts_by_situation)
        if header.counts_by_situation
        else {},
        "actions": {kind: {"planned": n} for kind, n in header.actions_by_kind.items()},
        "action_count": header.action_count,
        "would_block": list(header.would_block),
        "applied_at": header.applied_at.isoformat() if header.applied_at else None,
        "applied_by": header.applied_by,
    }


def planned_object(action: Action, pre: Precondition) -> dict[str, Any]:
    """One action of a stored plan with its precondition (named as its event will be)."""
    return {
        **action_object(action),
        "previous_value": pre.expect_value,
        "previous_protime_id": pre.expect_holder,
        "hr_fingerprint": pre.hr_fingerprint,
    }


def write_plan(
    stream: TextIO,
    header: PlanRow,
    settings: Settings,
    actions: Iterable[tuple[Action, Precondition]],
) -> None:
    """Write the ``plan-show`` document, one action per line, streamed."""
    head = json.dumps(document("plan-show", {"plan": plan_object(header, settings)}))
    stream.write(head[:-1] + _OPEN)
    for index, (action, pre) in enumerate(actions):
        stream.write(",\n" if index else "\n")
        stream.write(json.dumps(planned_object(action, pre), ensure_ascii=False))
    stream.write("\n]}\n")


def _header(data: dict[str, Any]) -> PlanRow:
    situations = data.get("situations") or {}
    return PlanRow(
        id=str(data["plan_id"]),
        kind=str(data["origin"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        run_id=data.get("run_id"),
        rollback_of=data.get("rollback_of"),
        settings_digest=str(data["settings_digest"]),
        snapshot_fingerprint=data.get("snapshot_fingerprint"),
        counts_by_situation={k: int(v) for k, v in situations.items()},
        actions_by_kind={k: int(v.get("planned", 0)) for k, v in data["actions"].items()},
        would_block=tuple(data.get("would_block") or ()),
        action_count=int(data["action_count"]),
    )


def _action(data: dict[str, Any]) -> tuple[Action, Precondition]:
    return (
        Action(
            kind=ActionKind(data["action"]),
            hr_id=str(data["hr_id"]),
            protime_id=int(data["protime_id"]),
            value=str(data["value"]),
            situation=Situation(data["situation"]),
            reason=str(data["reason"]),
            phase=int(data["phase"]),
            depends_on=data.get("depends_on"),
        ),
        Precondition(
            data.get("previous_value"), data.get("previous_protime_id"), data.get("hr_fingerprint")
        ),
    )


def read_plan(path: Path) -> tuple[PlanRow, Iterator[tuple[Action, Precondition]]]:
    """The header of a plan file and an iterator over its actions (the file stays open until
    the iterator is exhausted). A file that is not a plan is a usage error (exit 2)."""
    try:
        stream = path.open(encoding="utf-8")
        first = stream.readline().rstrip("\n")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the plan file: {exc.strerror or exc}") from None
    try:
        if first.endswith(_OPEN):
            head = json.loads(first[: -len(_OPEN)] + "}")
            header = _header(head["plan"])
            return header, _lines(stream, path)
        stream.seek(0)
        whole = json.load(stream)
        stream.close()
        header = _header(whole["plan"])
        return header, iter([_action(a) for a in whole["actions"]])
    except (ValueError, KeyError, TypeError) as exc:
        stream.close()
        raise UsageError(f"{path}: not an idsync plan file ({exc})") from None


def _lines(stream: TextIO, path: Path) -> Iterator[tuple[Action, Precondition]]:
    with stream:
        for number, raw in enumerate(stream, start=2):
            line = raw.strip().rstrip(",")
            if not line:
                continue
            if line == "]}":
                return
            try:
                yield _action(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path}, line {number}: not a plan action ({exc})") from None
    raise UsageError(f"{path}: the plan file ends before its last action")
