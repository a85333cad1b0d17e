"""Shared pieces of the state store: table handles, row converters, small helpers.

Each concern of the store (runs, the map, events, plans, admin changes, the snapshot, settled
runs) is a part in its own module, built on :class:`StoreBase`; :class:`~sync.state._store.
StateStore` holds one of each. Nothing here branches on the dialect: what differs per database
is asked of the :class:`~sync.state._dialect.Dialect` of the store's database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.domain import Outcome, Situation
from sync.errors import UsageError
from sync.names import DEFAULT_SYNC, sync_name_problem
from sync.state._models import EVENTS, KEY_LENGTH, MAPPINGS, RUNS
from sync.state._rows import (
    EventAction,
    EventRow,
    MappingRow,
    RunRow,
)
from sync.status import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sqlalchemy import Row

    from sync.state._database import Database


_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit
_STREAM_ROWS = 5000  # rows fetched at a time when a whole table is compared
_WRITE_BATCH = 5000  # rows per executemany when many are inserted or updated at once
_GOOD_RUN = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)

_MAPPINGS = MAPPINGS
_EVENTS = EVENTS
_RUNS = RUNS
_M = MAPPINGS.c
_E = EVENTS.c
_R = RUNS.c

# What a classification determines; a row whose stored values equal these is "unchanged".
_CLASSIFIED = (
    "protime_id",
    "situation",
    "rule",
    "evidence",
    "reason",
    "protime_value",
    "candidates",
)
_BOUND_CLASSIFIED = tuple(f"v_{name}" for name in _CLASSIFIED)
# What an outcome may change on a mapping row.
_OUTCOME_FIELDS = (
    "situation",
    "protime_id",
    "protime_value",
    "last_written_value",
    "reason",
    "last_error",
    "attempts",
    "failed_fingerprint",
    "last_changed_at",
    "previous_hr_id",
    "last_written_at",
)
_MAPPING_COLUMNS = (
    _M.hr_id,
    _M.protime_id,
    _M.situation,
    _M.rule,
    _M.evidence,
    _M.reason,
    _M.manual,
    _M.ignored,
    _M.last_written_value,
    _M.protime_value,
    _M.candidates,
    _M.first_seen_at,
    _M.last_verified_at,
    _M.last_changed_at,
    _M.last_error,
    _M.attempts,
    _M.failed_fingerprint,
    _M.last_run_id,
    _M.previous_hr_id,
    _M.last_written_at,
)
# What a row of the table reads as: every column but ``sync``, which the store already knows.
_EVENT_COLUMNS = tuple(c for c in _EVENTS.c if c.key != "sync")
_RUN_COLUMNS = tuple(c for c in _RUNS.c if c.key != "sync")


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _candidates_text(candidates: Iterable[int]) -> str | None:
    text = ",".join(str(c) for c in candidates)
    return text or None


def _candidates_tuple(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(int(part) for part in text.split(",") if part)


def _json_or_empty(text: str | None) -> Any:
    if not text:
        return {}
    return json.loads(text)


def _mapping_row(row: Row[Any]) -> MappingRow:
    data = row._asdict()
    data["candidates"] = _candidates_tuple(data["candidates"])
    return MappingRow(**data)


def _event_row(row: Row[Any]) -> EventRow:
    return EventRow(**row._asdict())


def _run_row(row: Row[Any]) -> RunRow:
    data = row._asdict()
    data["only_ids"] = tuple(json.loads(data["only_ids"])) if data["only_ids"] else ()
    for name in ("counts_by_situation", "actions_by_outcome", "api_calls", "progress"):
        data[name] = _json_or_empty(data[name])
    return RunRow(**data)


def _admin_event(
    *,
    sync: str,
    action: EventAction,
    hr_id: str,
    now: datetime,
    protime_id: int | None = None,
    value: str | None = None,
    previous_value: str | None = None,
    reason: str,
) -> dict[str, Any]:
    return {
        "sync": sync,
        "run_id": None,
        "hr_id": hr_id,
        "protime_id": protime_id,
        "action": action.value,
        "situation": None,
        "value": value,
        "previous_value": previous_value,
        "reason": reason,
        "outcome": Outcome.SUCCEEDED.value,
        "http_status": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "completed_at": now,
    }


def _new_mapping(
    hr_id: str, *, sync: str, now: datetime, situation: Situation, reason: str
) -> dict[str, Any]:
    return {
        "sync": sync,
        "hr_id": hr_id,
        "protime_id": None,
        "situation": situation.value,
        "rule": None,
        "evidence": None,
        "reason": reason,
        "manual": False,
        "ignored": False,
        "last_written_value": None,
        "protime_value": None,
        "candidates": None,
        "first_seen_at": now,
        "last_verified_at": None,
        "last_changed_at": now,
        "last_error": None,
        "attempts": 0,
        "failed_fingerprint": None,
        "last_run_id": None,
        "previous_hr_id": None,
        "last_written_at": None,
    }


def _admin_key(hr_id: str) -> str:
    if not hr_id or len(hr_id) > KEY_LENGTH:
        raise UsageError(f"an HR id is 1-{KEY_LENGTH} characters; got {len(hr_id)}")
    return hr_id


def checked_sync(sync: str) -> str:
    """``sync`` when it can name a sync, else :class:`UsageError` saying why."""
    problem = sync_name_problem(sync)
    if problem:
        raise UsageError(problem)
    return sync


class StoreBase:
    """What every part of the store shares: the state database it works on, and the sync whose
    rows it reads and writes (every query filters by it, every insert sets it).

    Each part opens its own connection and transaction per call, so a part may be shared by
    threads; writers use :meth:`~sync.state._database.Database.write`.
    """

    def __init__(self, db: Database, *, sync: str = DEFAULT_SYNC) -> None:
        self._db = db
        self._engine = db.engine
        self._sync = checked_sync(sync)
