"""Review and approve: `plan`, `plan show`, `plans`, `apply`, `rollback`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sync.cli._common import (
    ConfigOption,
    SyncOption,
    open_store,
    out,
    print_json,
    print_table,
    read_reason,
    settings_and_logging,
    table,
    when,
)
from sync.cli._contracts import all_situations, document, nested_actions, result_object
from sync.cli._planfile import plan_object, read_plan, write_plan
from sync.cli.inspect import _run_by_prefix
from sync.cli.reconcile import _print, _stop_on_ctrl_c
from sync.domain import ActionKind, Situation
from sync.errors import UsageError
from sync.status import Trigger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sync.config import Settings
    from sync.domain import Action, Precondition
    from sync.reconcile import RunResult
    from sync.state import PlanRow, StateStore

_ROWS_ON_SCREEN = 50
_BLOCKED = 3
_KINDS = tuple(k.value for k in ActionKind)
_ACTION_COLUMNS = (
    "phase",
    "action",
    "HR id",
    "Protime id",
    "value",
    "counts toward",
    "expects",
    "reason",
)


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(
        help="Plan a reconcile for review (stored), or show a stored plan.", no_args_is_help=False
    )
    plan_app.callback(invoke_without_command=True)(plan)
    plan_app.command("show")(plan_show)
    app.add_typer(plan_app, name="plan")
    app.command("plans")(plans)
    app.command("apply")(apply)
    app.command("rollback")(rollback)


def plan(
    ctx: typer.Context,
    *,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="HR_ID", help="Plan only these HR ids (repeat)."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Plan records whose last write failed.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the whole plan to this file as JSON (streamed)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON.")] = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="Read every Protime person, not only the changes (the delta)."),
    ] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Compute what a reconcile would do and store it as a plan; write nothing to Protime.

    Exit 0 when a reconcile would proceed, 3 when it would block (the "would block" lines).
    """
    if ctx.invoked_subcommand is not None:
        return
    from sync.reconcile import make_plan

    settings = settings_and_logging(sync=sync, config=config)
    result = make_plan(
        settings=settings, only=tuple(only or ()), retry_failed=retry_failed, full=full
    )
    if result.plan_id is not None and output is not None:
        with open_store(settings) as store:
            header = store.plans.find_plan(result.plan_id)
            _write_file(output, header, settings, store.plans.iter_plan_actions(header.id))
    code = result.exit_code
    if code == 0 and result.would_block:
        code = _BLOCKED
    if as_json:
        body = {
            "plan_id": result.plan_id,
            "run_id": result.run_id,
            "status": result.status.value,
            "exit_code": code,
            "situations": all_situations(result.counts_by_situation)
            if result.counts_by_situation
            else {},
            "actions": nested_actions(result.actions_by_outcome),
            "would_block": list(result.would_block),
            "out": str(output) if output is not None and result.plan_id else None,
            "message": result.message or None,
        }
        print_json(document("plan", body))
    else:
        _print(result)
        _print_plan_hint(result.plan_id)
    raise typer.Exit(code)


def _write_file(
    path: Path, header: PlanRow, settings: Settings, actions: Iterable[tuple[Action, Precondition]]
) -> None:
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc.strerror or exc}") from None
    with stream:
        write_plan(stream, header, settings, actions)


def _print_plan_hint(plan_id: str | None) -> None:
    if plan_id is not None:
        short = plan_id[:8]
        out.print(
            f"plan [bold]{short}[/bold] stored ({plan_id}). Review: `idsync plan show {short}`;"
            f" approve and perform exactly it: `idsync apply {short}`"
        )


def plan_show(
    plan_id: Annotated[str, typer.Argument(help="A plan id (any unique prefix of 4+).")],
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            metavar="KIND",
            help=f"List only the actions of this kind ({', '.join(_KINDS)}).",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help=f"List at most this many actions (default {_ROWS_ON_SCREEN})."
        ),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List every action.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole plan as JSON (the --out document).")
    ] = False,
    *,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """One stored plan: its header, the would-block lines and its actions with their
    preconditions; what the safety limits count (deletes, then re-points) listed first."""
    kind = _kind(action)
    if show_all and limit is not None:
        raise UsageError("--all and --limit contradict each other: choose one")
    if as_json and (kind is not None or limit is not None):
        raise UsageError(
            "--json prints the whole plan (the document `idsync apply FILE` reads): --action and"
            " --limit are for the table; filter the JSON with a tool such as jq"
        )
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        header = store.plans.find_plan(plan_id)
        if as_json:
            write_plan(sys.stdout, header, settings, store.plans.iter_plan_actions(header.id))
            return
        _print_header(header, settings)
        counts = store.plans.plan_action_counts(header.id)
        deletes = sum(n for (k, _), n in counts.items() if k == ActionKind.DELETE.value)
        repoints = sum(n for (_, sit), n in counts.items() if sit == Situation.DRIFTED.value)
        total = sum(counts.values())
        listed = sum(n for (k, _), n in counts.items() if kind is None or k == kind.value)
        out.print(
            f"The safety limits count {deletes:,} delete(s) (IDSYNC_SAFETY__MAX_DELETES) and"
            f" {repoints:,} re-point action(s) (IDSYNC_SAFETY__MAX_REPOINTS): listed first,"
            " deletes then re-points, then the rest."
        )
        rows = None if show_all else (limit or _ROWS_ON_SCREEN)
        actions = store.plans.iter_plan_actions_for_review(header.id, kind=kind, limit=rows)
        title = (
            f"Actions: {total:,}"
            if kind is None
            else f"Actions of kind {kind.value}: {listed:,} of {total:,}"
        )
        print_table(
            title,
            _ACTION_COLUMNS,
            (
                (
                    a.phase,
                    a.kind.value,
                    a.hr_id,
                    a.protime_id,
                    a.value,
                    _counts_toward(a),
                    _expects(pre),
                    a.reason,
                )
                for a, pre in actions
            ),
        )
    if rows is not None and listed > rows:
        again = f"idsync plan show {header.id[:8]}" + (f" --action {kind.value}" if kind else "")
        out.print(
            f"... and {listed - rows:,} more: `{again} --all` for every one, or `--limit N` for"
            " the first N"
            + ("" if kind else f"; `--action KIND` for one kind ({', '.join(_KINDS)})")
        )


def _kind(value: str | None) -> ActionKind | None:
    """The --action value as an action kind; a usage error (exit 2) naming the kinds if none."""
    if value is None:
        return None
    try:
        return ActionKind(value.strip().lower())
    except ValueError:
        raise UsageError(
            f"--action {value!r} is not an action kind: use one of {', '.join(_KINDS)}"
        ) from None


def _counts_toward(action: Action) -> str:
    """Which safety limits count this action (the gates' own rules, docs/matching.md)."""
    limits = []
    if action.kind is ActionKind.DELETE:
        limits.append("deletes")
    if action.situation is Situation.DRIFTED:
        limits.append("re-points")
    return ", ".join(limits)


def _expects(pre: Precondition) -> str:
    person = "free" if pre.expect_value is None else f"holding {pre.expect_value}"
    holder = "on no one" if pre.expect_holder is None else f"on {pre.expect_holder}"
    return f"person {person}; value {holder}"


def _print_header(header: PlanRow, settings: Settings) -> None:
    data = plan_object(header, settings)
    out.print(
        table(
            f"Plan {header.id}",
            ["field", "value"],
            [
                ("origin", header.kind),
                ("created", when(header.created_at)),
                ("expires", data["expires_at"][:19].replace("T", " ")),
                ("made by run", header.run_id or "-"),
                ("rolls back run", header.rollback_of or "-"),
                (
                    "actions",
                    ", ".join(f"{k} {n}" for k, n in header.actions_by_kind.items()) or "-",
                ),
                (
                    "applied",
                    f"{when(header.applied_at)} by {header.applied_by}"
                    if header.applied_by
                    else "-",
                ),
            ],
        )
    )
    if header.counts_by_situation:
        out.print(
            table(
                "Situations",
                ["situation", "count"],
                ((s.value, header.counts_by_situation.get(s.value, 0)) for s in Situation),
            )
        )
    for line in header.would_block:
        out.print(f"[yellow]would block: {line}[/yellow]")


def plans(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many plans.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """The latest stored plans, newest first."""
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        found = store.plans.plans(limit=limit)
    if as_json:
        print_json(document("plans", {"plans": [plan_object(p, settings) for p in found]}))
        return
    out.print(
        table(
            "Plans",
            ["plan", "origin", "created", "actions", "would block", "applied by"],
            (
                (
                    p.id[:8],
                    p.kind if p.rollback_of is None else f"rollback of {p.rollback_of[:8]}",
                    when(p.created_at),
                    p.action_count,
                    len(p.would_block) or "",
                    (p.applied_by or "")[:8],
                )
                for p in found
            ),
        )
    )


def _resolve(store: StateStore, reference: str) -> str:
    """A plan id from a prefix, or from a plan file (stored first if the database lacks it)."""
    path = Path(reference)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UsageError(f"{path}: no such plan file")
        header, actions = read_plan(path)
        if store.plans.plan(header.id) is None:
            store.plans.save_plan(header, actions)
        return header.id
    return store.plans.find_plan(reference).id


def apply(
    plan_ref: Annotated[
        str, typer.Argument(metavar="PLAN", help="A plan id (unique prefix) or a plan file.")
    ],
    strict: Annotated[
        bool, typer.Option("--strict", help="Apply nothing if any action is stale.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Perform exactly a reviewed plan: its actions whose preconditions still hold."""

    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        plan_id = _resolve(store, plan_ref)
    result = _applied(settings, plan_id, strict=strict)
    _report_apply(result, as_json=as_json, trigger=Trigger.APPLY)


def _applied(
    settings: Settings, plan_id: str, *, strict: bool, trigger: Trigger = Trigger.APPLY
) -> RunResult:
    from sync.reconcile import apply_plan

    stop = threading.Event()
    restore = _stop_on_ctrl_c(stop)
    try:
        return apply_plan(
            settings=settings, plan_id=plan_id, strict=strict, trigger=trigger, stop=stop
        )
    finally:
        restore()


def _report_apply(result: RunResult, *, as_json: bool, trigger: Trigger) -> None:
    succeeded = sum(n for k, n in result.actions_by_outcome.items() if k.endswith(":succeeded"))
    failed = sum(
        n for k, n in result.actions_by_outcome.items() if k.endswith((":failed", ":retriable"))
    )
    if as_json:
        body = {
            **result_object(result),
            "plan_id": result.plan_id,
            "applied": succeeded,
            "already_done": result.done,
            "failed": failed,
            "stale": [{"action": a, "why": why} for a, why in result.stale],
            "protime_read_reason": read_reason(
                trigger, result.protime_read, result.protime_read_reason
            ),
        }
        print_json(document("apply", body))
    else:
        _print(result, trigger=trigger)
        out.print(
            f"plan {(result.plan_id or '-')[:8]}: {succeeded} applied, {result.done} already"
            f" done, {len(result.stale)} stale, {failed} failed"
        )
        if result.stale:
            out.print(
                table(
                    f"Stale (not applied): {len(result.stale)}",
                    ["action", "why"],
                    result.stale[:_ROWS_ON_SCREEN],
                )
            )
    raise typer.Exit(result.exit_code)


def rollback(
    run_ref: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run to undo (prefix).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the undo plan; store nothing, write nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply the undo plan at once.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Build the plan that undoes a run's Protime changes; store it, show it, or apply it."""
    from sync.reconcile import rollback as build

    if dry_run and yes:
        raise UsageError("--dry-run and --yes contradict each other: choose one")
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        run = _run_by_prefix(store, run_ref)
        header, planned = build(settings=settings, run_id=run.id, store=store, keep=not dry_run)
    out.print(
        table(
            f"Undo of run {run.id[:8]} ({run.trigger}, {when(run.started_at)}): {len(planned)} action(s)",
            ["phase", "action", "value", "Protime id", "expects", "reason"],
            (
                (a.phase, a.kind.value, a.value, a.protime_id, _expects(pre), a.reason)
                for a, pre in planned[:_ROWS_ON_SCREEN]
            ),
        )
    )
    if len(planned) > _ROWS_ON_SCREEN:
        more = f"... and {len(planned) - _ROWS_ON_SCREEN:,} more"
        if not dry_run:
            more += f": `idsync plan show {header.id[:8]} --all` lists every one"
        out.print(more)
    if dry_run:
        out.print("dry run: nothing stored, nothing written")
        return
    if not yes:
        _print_plan_hint(header.id)
        return
    _report_apply(
        _applied(settings, header.id, strict=False, trigger=Trigger.ROLLBACK),
        as_json=False,
        trigger=Trigger.ROLLBACK,
    )
