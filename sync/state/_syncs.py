"""Many syncs at a glance (a future ``idsync syncs``): per sync its latest finished run, whether
one is running and its map's counts by situation; and the syncs that have rows at all.

Built for a deployment of hundreds of syncs: a fixed handful of statements whatever the number of
syncs (names go in batches of ``_CHUNK``), never a statement per sync per table. The latest run of
each sync is one index seek on ``runs (sync, started_at)``; the counts read the map's
``(sync, situation)`` index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, literal, select, union, union_all

from sync.state._base import _CHUNK, _E, _M, _R, _RUN_COLUMNS, _chunks, _run_row, checked_sync
from sync.status import RunStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Column, ScalarSelect, Select, Subquery

    from sync.state._database import Database
    from sync.state._rows import RunRow


@dataclass(frozen=True, slots=True)
class SyncOverview:
    """One sync as the state database holds it."""

    name: str
    latest: RunRow | None  # the latest run that is over (any status but running); None: none yet
    running: bool  # a run of this sync is recorded as running now
    counts_by_situation: dict[str, int] = field(default_factory=dict)  # the map's rows now


def sync_overview(db: Database, names: Sequence[str]) -> list[SyncOverview]:
    """An overview of each sync of ``names`` (in that order; a sync without rows has no run, no
    counts). :class:`~sync.errors.UsageError` for a name that cannot name a sync."""
    wanted = list(dict.fromkeys(checked_sync(name) for name in names))
    latest: dict[str, RunRow] = {}
    running: set[str] = set()
    counts: dict[str, dict[str, int]] = {name: {} for name in wanted}
    with db.engine.connect() as conn:
        for chunk in _chunks(wanted, _CHUNK):
            named = _names(chunk)
            owners = {
                run_id: name
                for name, run_id in conn.execute(
                    select(named.c.name, _latest_finished(named)).select_from(named)
                )
                if run_id is not None
            }
            if owners:
                query = select(*_RUN_COLUMNS).where(_R.id.in_(list(owners)))
                for row in conn.execute(query):
                    latest[owners[row.id]] = _run_row(row)
            running.update(
                conn.execute(
                    select(_R.sync)
                    .where(_R.sync.in_(chunk), _R.status == RunStatus.RUNNING.value)
                    .distinct()
                ).scalars()
            )
            rows = conn.execute(
                select(_M.sync, _M.situation, func.count())
                .where(_M.sync.in_(chunk))
                .group_by(_M.sync, _M.situation)
            )
            for sync, situation, count in rows:
                counts[sync][situation] = int(count)
    return [
        SyncOverview(
            name=name,
            latest=latest.get(name),
            running=name in running,
            counts_by_situation=counts[name],
        )
        for name in wanted
    ]


def syncs_in_database(db: Database) -> list[str]:
    """The names of the syncs that have rows in the state database, sorted.

    Every sync that ran has runs; one that only an admin touched has map rows and events. Each
    table is read by a loose index scan (a recursive query taking the next name after the last),
    one seek per sync, not a read of every row: the map and the events hold millions.
    """
    scans = [_distinct_syncs(column) for column in (_R.sync, _M.sync, _E.sync)]
    with db.engine.connect() as conn:
        return sorted(conn.execute(union(*scans)).scalars())


def _distinct_syncs(column: Column[Any]) -> Select[tuple[Any]]:
    """The distinct values of an indexed ``sync`` column, one index seek each."""
    table = column.table
    found = select(func.min(column).label("name")).cte(f"syncs_{table.name}", recursive=True)
    later = table.alias(f"later_{table.name}")
    following = select(func.min(later.c.sync)).where(later.c.sync > found.c.name)
    found = found.union_all(select(following.scalar_subquery()).where(found.c.name.is_not(None)))
    return select(found.c.name).where(found.c.name.is_not(None))


def _names(chunk: Sequence[str]) -> Subquery:
    """The names as a one-column table (a UNION ALL of literals: VALUES lists are not portable)."""
    selects = [select(literal(name, type_=_R.sync.type).label("name")) for name in chunk]
    if len(selects) == 1:
        return selects[0].subquery("names")
    return union_all(*selects).subquery("names")


def _latest_finished(named: Subquery) -> ScalarSelect[str]:
    """Per name, the id of its latest run that is over: a correlated seek per name."""
    return (
        select(_R.id)
        .where(_R.sync == named.c.name, _R.status != RunStatus.RUNNING.value)
        .order_by(_R.started_at.desc(), _R.id)
        .limit(1)
        .scalar_subquery()
    )
