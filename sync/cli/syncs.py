"""`idsync syncs`: every sync of the deployment, its last run, its map and its next run.

The same document is ``idsync serve``'s ``/syncs`` answer: the service calls
:func:`syncs_document` with what it knows of each sync (``here``), which a command run beside it
cannot know (a run waiting for a worker, Protime's "call me later").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sync.cli._common import (
    ConfigOption,
    deployment_and_logging,
    out,
    print_json,
    print_table,
    state_database,
    unreachable_as_state_error,
    when,
)
from sync.cli._contracts import all_situations, document, run_object
from sync.errors import IdsyncError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sync.config import Deployment, Settings
    from sync.state import Database


def register(app: typer.Typer) -> None:
    app.command("syncs")(syncs)


def syncs(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Every sync: its tenant and reference name, the last run, the map by situation, the next
    scheduled run. Reads the state database only."""
    from sync.state import check_schema

    deployment = deployment_and_logging(config=config)
    first = next(iter(deployment.syncs.values()))
    db = state_database(first)
    try:
        with unreachable_as_state_error(db):
            check_schema(db)
            body = syncs_document(deployment, db)
    finally:
        db.dispose()
    if as_json:
        print_json(body)
        return
    rows = []
    for sync in body["syncs"]:
        last = sync["last_run"] or {}
        counts = sync["situations"]
        rows.append(
            (
                sync["name"],
                sync["tenant"] or "-",
                sync["reference_name"],
                "running" if sync["running"] else (last.get("status") or "never run"),
                when(_parse(last.get("finished_at"))),
                counts.get("linked", 0),
                sum(counts.values()) - counts.get("linked", 0),
                when(_parse(sync["next_run_at"])),
            )
        )
    print_table(
        "Syncs",
        ("sync", "tenant", "reference", "status", "last run", "linked", "other", "next run"),
        rows,
    )
    out.print(f"{len(rows)} sync(s); `idsync status --sync NAME` tells one in full")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def syncs_document(
    deployment: Deployment,
    db: Database,
    *,
    here: Mapping[str, Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``syncs`` document: one object per sync, in the settings file's order."""
    from sync.state import sync_overview

    moment = now or datetime.now(UTC)
    overviews = {o.name: o for o in sync_overview(db, list(deployment.syncs))}
    items = []
    for name, settings in deployment.syncs.items():
        overview = overviews[name]
        item: dict[str, Any] = {
            "name": name,
            "tenant": settings.protime.tenant,
            "reference_name": settings.protime.reference_name,
            "schedule": {
                "interval_seconds": settings.schedule.interval_seconds,
                "cron": settings.schedule.cron,
            },
            "running": overview.running,
            "last_run": run_object(overview.latest) if overview.latest is not None else None,
            "situations": all_situations(overview.counts_by_situation),
            "next_run_at": _next_run(settings, moment),
        }
        if here is not None:
            mine = dict(here.get(name, {}))
            item["next_run_at"] = mine.pop("next_run_at", item["next_run_at"])
            item["here"] = mine
        items.append(item)
    return document("syncs", {"syncs": items})


def _next_run(settings: Settings, now: datetime) -> str | None:
    """The schedule's next tick after ``now`` (what ``serve`` would do), None without one."""
    from sync.service._scheduler import build_trigger

    try:
        trigger = build_trigger(settings.schedule)
    except IdsyncError:
        return None  # no schedule: only run by hand
    when_next = trigger.get_next_fire_time(None, now)
    return when_next.isoformat() if when_next is not None else None
