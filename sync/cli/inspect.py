"""Read-only commands: `status`, `show`, `runs`, `export`. They answer from the state database
alone, without calling Protime."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path  # noqa: TC003 - typer reads the annotation at run time
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from sync.cli._common import (
    ConfigOption,
    FileFormat,
    SyncOption,
    check_file_format,
    open_store,
    out,
    print_json,
    print_table,
    read_reason,
    settings_and_logging,
    table,
    when,
)
from sync.cli._contracts import (
    MAPPING_FIELDS,
    all_situations,
    csv_cells,
    document,
    event_object,
    mapping_object,
    rekey_object,
    run_object,
)
from sync.domain import Situation
from sync.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sync.config import Settings
    from sync.state import EventRow, MappingRow, Rekey, RunRow, StateStore

# `runs` prints run ids cut to this many characters (a UUID's first group: unique in practice);
# `runs show` takes any unique prefix of at least _MIN_PREFIX among the latest _PREFIX_SEARCH runs.
_SHORT_ID = 8
_MIN_PREFIX = 4
_PREFIX_SEARCH = 1000
# `runs show` lists this many of a run's events (the latest) unless --all.
_EVENTS = 1000


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("show")(show)
    app.command("export")(export)
    runs_app = typer.Typer(help="Past runs: list them, or show one.", no_args_is_help=False)
    runs_app.callback(invoke_without_command=True)(runs)
    runs_app.command("show")(run_show)
    app.add_typer(runs_app, name="runs")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Mappings by situation, unmatched and disputed by reason, and the latest runs."""
    from sync.reconcile._groups import group_counts

    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        counts = store.map.counts_by_situation()
        attention = group_counts(store.map.attention())
        recent = store.runs.runs(limit=5)
        learned = store.runs.learned_rate()
        running = store.runs.running()
    if as_json:
        print_json(
            document(
                "status",
                {
                    "situations": all_situations(counts),
                    "total": sum(counts.values()),
                    "attention": [
                        {"situation": s, "reason": group, "count": n} for s, group, n in attention
                    ],
                    "running": [_run_json(r) for r in running],
                    "recent_runs": [_run_json(r) for r in recent],
                    "learned_rate_per_second": learned,
                },
            )
        )
        return
    for run in running:
        out.print(_running_line(run))
    out.print(
        table(
            "Mappings by situation",
            ["situation", "count"],
            ((s.value, counts.get(s.value, 0)) for s in Situation),
        )
    )
    if attention:
        out.print(
            table(
                "Unmatched and disputed, by reason (idsync suggest proposes persons)",
                ["situation", "reason", "count"],
                attention,
            )
        )
    _print_runs(recent, title="Latest runs")
    _print_rate(settings, learned)


def _print_rate(settings: Settings, learned: float | None) -> None:
    rate = settings.protime.rate_limit_per_second
    if rate != "auto":
        setting = f"fixed at {rate:g}/s" if rate else "off"
        out.print(f"Request rate to Protime: {setting} (IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND)")
    elif learned is None:
        out.print(
            "Request rate to Protime: auto, nothing learned yet (the next run starts at 10/s)"
        )
    else:
        out.print(
            f"Request rate to Protime: auto, learned {learned:.1f}/s (the next run starts there;"
            f" at most {settings.protime.max_rate_per_second:g}/s)"
        )


def show(
    hr_id: Annotated[str | None, typer.Argument(help="The HR employee id.")] = None,
    protime_id: Annotated[
        int | None, typer.Option("--protime-id", help="Look up by Protime person id instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """The pair, its situation, why, and its history. Exit 2 when the id is unknown."""
    if (hr_id is None) == (protime_id is None):
        raise UsageError("give an HR_ID or --protime-id N (exactly one)")
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        rekeys: list[Rekey] = []
        if hr_id is not None:
            row = store.map.mapping(hr_id)
            rows = [row] if row is not None else []
            what = f"HR id {hr_id!r}"
            events = _chronological(store.events.events_for(hr_id=hr_id))
            rekeys = store.events.rekeys(hr_id)
        else:
            assert protime_id is not None  # checked above; narrows the type
            rows = store.map.mapping_by_protime_id(protime_id)
            what = f"Protime person {protime_id}"
            events = _chronological(store.events.events_for(protime_id=protime_id))
    if not rows and not rekeys:
        raise UsageError(f"{what} is not known to idsync (not in the state database)")
    if as_json:
        print_json(
            document(
                "show",
                {
                    "mappings": [mapping_object(r) for r in rows],
                    "history": [event_object(e) for e in events],
                    "rekeys": [rekey_object(r, rekey_story(r)) for r in rekeys],
                },
            )
        )
        return
    for row in rows:
        _print_mapping(row)
    if rekeys:
        out.print(table("Re-keys", ["story"], ((rekey_story(r),) for r in rekeys)))
    _print_events(events)


def rekey_story(r: Rekey) -> str:
    """``E-1 → E-9 (person 4711) on 2026-11-30 12:00 UTC, run 1a2b3c4d, because ...``."""
    run = f"run {r.run_id[:_SHORT_ID]}" if r.run_id else "by an admin"
    person = f" (person {r.protime_id})" if r.protime_id is not None else ""
    because = f", because {r.reason}" if r.reason else ""
    return f"{r.old} → {r.new}{person} on {when(r.at)}, {run}{because}"


def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """The latest runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        recent = store.runs.runs(limit=limit)
    if as_json:
        print_json(document("runs", {"runs": [_run_json(r) for r in recent]}))
        return
    _print_runs(recent, title="Runs")


def run_show(
    run_id: Annotated[
        str, typer.Argument(help="The run id, or its start as `idsync runs` prints it.")
    ],
    show_all: Annotated[
        bool,
        typer.Option("--all", help=f"Every event of the run, not only the latest {_EVENTS:,}."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """One run: its summary and its writes (the latest 1,000 unless --all)."""
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        found = store.runs.run(run_id) or _run_by_prefix(store, run_id)
        total = store.events.count_events(run_id=found.id)
        events: Iterable[EventRow] = (
            store.events.iter_run_events(found.id)
            if show_all
            else _chronological(store.events.events_for(run_id=found.id, limit=_EVENTS))
        )
        if as_json:
            print_json(
                document(
                    "runs-show",
                    {
                        "run": _run_json(found),
                        "events_total": total,
                        "events": (event_object(e) for e in events),
                    },
                )
            )
            return
        out.print(table(f"Run {found.id}", ["field", "value"], _run_fields(found)))
        _print_events(events)
    if not show_all and total > _EVENTS:
        out.print(
            f"showing the latest {_EVENTS:,} of {total:,} events;"
            f" `idsync runs show {found.id[:_SHORT_ID]} --all` for every one"
        )


def _run_json(run: RunRow) -> dict[str, object]:
    """A run's JSON object, its full-read reason true for apply and rollback (read_reason)."""
    data = run_object(run)
    data["protime_read_reason"] = read_reason(
        run.trigger, run.protime_read, run.protime_read_reason
    )
    return data


def _run_by_prefix(store: StateStore, prefix: str) -> RunRow:
    """The one recent run whose id starts with ``prefix`` (``runs`` prints ids cut short)."""
    if len(prefix) >= _MIN_PREFIX:
        matches = [r for r in store.runs.runs(limit=_PREFIX_SEARCH) if r.id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(f"{prefix!r} is the start of {len(matches)} run ids; give more of it")
    raise UsageError(f"no run {prefix!r} (see `idsync runs`)")


def export(
    fmt: FileFormat = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """The whole map, one row per HR id (and per orphaned value)."""
    check_file_format(fmt)
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        stream = _open_output(output) if output else sys.stdout
        try:
            if fmt == "csv":
                writer = csv.writer(stream)
                writer.writerow(MAPPING_FIELDS)
                for row in store.map.iter_mappings():
                    writer.writerow(csv_cells(mapping_object(row)))
            else:
                # Streamed: the document's head, then one mapping per line (a million rows
                # never sit in memory), then the tail. The same object as print_json would give.
                head = json.dumps(document("export", {}), ensure_ascii=False)[:-1]
                stream.write(head + ', "mappings": [\n')
                for index, row in enumerate(store.map.iter_mappings()):
                    prefix = ",\n" if index else ""
                    stream.write(prefix + json.dumps(mapping_object(row), ensure_ascii=False))
                stream.write("\n]}\n")
        finally:
            if output:
                stream.close()


def _open_output(path: Path) -> TextIO:
    """The export file, or one line naming the file and the reason (exit 2), never a traceback."""
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write: {exc.strerror or exc}") from None


def _print_mapping(row: MappingRow) -> None:
    data = mapping_object(row)
    data.update(
        first_seen_at=when(row.first_seen_at),
        last_verified_at=when(row.last_verified_at),
        last_changed_at=when(row.last_changed_at),
        last_written_at=when(row.last_written_at),
    )
    out.print(
        table(
            f"HR id {row.hr_id}: three ways",
            ["side", "value"],
            [
                (f"HR wants (on person {human(row.protime_id)})", human(row.hr_wants)),
                (
                    "idsync last wrote",
                    f"{human(row.last_written_value)}"
                    + (f" on {when(row.last_written_at)}" if row.last_written_at else ""),
                ),
                ("Protime showed (last read)", human(row.protime_value)),
            ],
        )
    )
    out.print(
        table(
            f"HR id {row.hr_id}",
            ["field", "value"],
            [(name.replace("_", " "), human(data[name])) for name in MAPPING_FIELDS],
        )
    )


def human(value: object) -> str:
    """A value for a table: yes/no, lists joined, nothing as "-"; never a Python repr."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _running_line(run: RunRow) -> str:
    """One line for a run in progress: where it is, how fast, how long left, how fresh."""
    head = f"Running: run {run.id[:_SHORT_ID]} ({run.trigger}, started {when(run.started_at)}"
    head += f" on {run.host} pid {run.pid})" if run.host else ")"
    progress = run.progress
    if not progress:
        return head + ", starting"
    done, total = progress.get("done", 0), progress.get("total")
    figures = f"{done:,}" + (f" of {total:,} ({100 * done / total:.1f} %)" if total else "")
    parts = [f"{head}, {progress.get('phase')}: {figures}"]
    if progress.get("rate_per_second"):
        parts.append(f"{progress['rate_per_second']:,.1f}/s")
    if progress.get("eta_seconds") is not None:
        parts.append(f"about {_duration(float(progress['eta_seconds']))} left")
    updated = progress.get("updated_at")
    if updated:
        age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds()
        parts.append(f"updated {_duration(max(age, 0.0))} ago")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "-"


def _run_fields(run: RunRow) -> list[tuple[str, str]]:
    actions = "; ".join(
        f"{kind}: {_counts(dict(outcomes))}" for kind, outcomes in run.actions_by_outcome.items()
    )
    duration = f"{run.duration_seconds:.1f} s" if run.duration_seconds is not None else "-"
    return [
        ("run", run.id),
        ("trigger", run.trigger),
        ("status", run.status),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("duration", duration),
        ("dry run", human(run.dry_run)),
        ("forced", human(run.forced)),
        ("only", human(list(run.only_ids))),
        ("HR employees", human(run.hr_count)),
        ("Protime people", human(run.protime_count)),
        ("Protime read", _read(run)),
        ("situations", _counts(run.counts_by_situation)),
        ("actions", actions or "-"),
        ("API calls", _counts(run.api_calls)),
        ("message", human(run.error)),
        ("host", human(run.host)),
        ("pid", human(run.pid)),
    ]


def _read(run: RunRow) -> str:
    """Which read of Protime the run did, and why a full one."""
    if run.protime_read is None:
        return "-"
    why = read_reason(run.trigger, run.protime_read, run.protime_read_reason)
    return run.protime_read + (f" ({why})" if why else "")


def _chronological(newest_first: list[EventRow]) -> list[EventRow]:
    """A history reads as a story: oldest first, by completion time (the store's order reversed)."""
    return newest_first[::-1]


def _print_events(events: Iterable[EventRow]) -> None:
    print_table(
        "History",
        ["when", "run", "action", "HR id", "Protime id", "value", "outcome", "detail"],
        (
            (
                when(e.created_at),
                e.run_id or "admin",
                e.action,
                e.hr_id,
                e.protime_id,
                e.value,
                e.outcome,
                e.error or e.reason or "",
            )
            for e in events
        ),
    )


def _print_runs(recent: list[RunRow], *, title: str) -> None:
    out.print(
        table(
            title,
            [
                "run",
                "trigger",
                "started",
                "status",
                "dry",
                "seconds",
                "HR",
                "Protime",
                "read",
                "message",
            ],
            (
                (
                    r.id[:_SHORT_ID],
                    r.trigger,
                    when(r.started_at),
                    r.status,
                    "yes" if r.dry_run else "",
                    f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "",
                    r.hr_count,
                    r.protime_count,
                    r.protime_read or "",
                    (r.error or "")[:80],
                )
                for r in recent
            ),
        )
    )
