"""`idsync reconcile`: one run now, from the terminal."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from sync.cli._common import (
    ConfigOption,
    SyncOption,
    err,
    out,
    print_json,
    read_reason,
    settings_and_logging,
    shown,
    table,
)
from sync.cli._contracts import action_object, document, record_object, result_object
from sync.domain import Situation
from sync.status import RunStatus, Trigger

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from sync.reconcile import RunResult

_PLAN_ROWS_ON_SCREEN = 50
# How a blocked run's message says the input gate is among its reasons (it blocks an apply too).
_INPUT_GATE = "the input gate blocks"


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile(
        *,
        sync: SyncOption = None,
        config: ConfigOption = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Plan and print, write nothing.")
        ] = False,
        only: Annotated[
            list[str] | None,
            typer.Option("--only", metavar="HR_ID", help="Act only on these HR ids (repeat)."),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the result (and plan) as JSON.")
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="Go past the input gate and the safety thresholds."),
        ] = False,
        retry_failed: Annotated[
            bool,
            typer.Option("--retry-failed", help="Retry records whose last write failed."),
        ] = False,
        full: Annotated[
            bool,
            typer.Option(
                "--full", help="Read every Protime person, not only the changes (the delta)."
            ),
        ] = False,
    ) -> None:
        """Reconcile once: read HR and Protime, plan, and (unless --dry-run) write."""
        from sync.reconcile import run

        settings = settings_and_logging(sync=sync, config=config)
        progress_cb = None
        bar: Progress | None = None
        if sys.stderr.isatty() and not as_json and not dry_run:
            bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            task = bar.add_task("writing", total=None)

            def progress_cb(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            bar.start()
        stop = threading.Event()
        restore = _stop_on_ctrl_c(stop)
        try:
            result = run(
                settings=settings,
                trigger=Trigger.CLI,
                dry_run=dry_run,
                force=force,
                full=full,
                only=tuple(only or ()),
                retry_failed=retry_failed,
                stop=stop,
                progress=progress_cb,
            )
        finally:
            restore()
            if bar is not None:
                bar.stop()
        if as_json:
            print_json(_as_dict(result))
        else:
            _print(result)
            _print_next_step(result)
        raise typer.Exit(result.exit_code)


def _stop_on_ctrl_c(stop: threading.Event) -> Callable[[], None]:
    """First Ctrl-C (or SIGTERM): stop, end `interrupted`. Second: abort at once.

    Stopping cuts a read off (nothing is kept, the next run reads again) and lets the writes
    in flight finish and be recorded. Returns the function that puts the previous SIGINT and
    SIGTERM handlers back. Signals can only be set from the main thread; elsewhere (an
    embedding caller) they keep their default meaning.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        err.print(
            f"{name}: stopping after the calls in flight (a read is cut off at once);"
            " Ctrl-C again to abort at once"
        )

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _as_dict(result: RunResult) -> dict[str, object]:
    """The ``reconcile`` document; its plan and records are iterators, made as they are printed."""
    body = result_object(result)
    body["settled_since"] = result.settled_since
    plan = result.plan
    if plan is not None:
        body["plan"] = (action_object(a) for a in plan.actions)
        body["records"] = (
            record_object(c) for c in plan.classifications if c.situation is not Situation.LINKED
        )
    elif result.records is not None:  # a settled run: nothing planned, the map's records
        body["plan"] = []
        body["records"] = (record_object(c) for c in result.records)
    return document("reconcile", body)


def _print(result: RunResult, *, trigger: Trigger | None = None) -> None:
    """A run's human summary; ``trigger`` (``apply``, ``rollback``) words why it read in full."""
    if result.dry_run and result.plan is not None:
        actions = result.plan.actions
        out.print(
            table(
                f"Plan: {len(actions)} action(s) (dry run, nothing written)",
                ["phase", "action", "HR id", "Protime id", "value", "reason"],
                (
                    (a.phase, a.kind.value, a.hr_id, a.protime_id, a.value, a.reason)
                    for a in actions[:_PLAN_ROWS_ON_SCREEN]
                ),
            )
        )
        if len(actions) > _PLAN_ROWS_ON_SCREEN:
            out.print(f"... and {len(actions) - _PLAN_ROWS_ON_SCREEN} more (use --json for all)")
        attention = [
            c
            for c in result.plan.classifications
            if c.situation
            in {Situation.DISPUTED, Situation.INVALID, Situation.UNMATCHED, Situation.FAILED}
        ]
        if attention:
            out.print(
                table(
                    f"Records needing attention: {len(attention)}",
                    ["HR id", "situation", "reason"],
                    (
                        (c.hr_id, c.situation.value, c.reason)
                        for c in attention[:_PLAN_ROWS_ON_SCREEN]
                    ),
                )
            )
    if result.counts_by_situation:  # none when the run stopped before classifying
        out.print(
            table(
                "Situations",
                ["situation", "count"],
                ((s.value, result.counts_by_situation.get(s.value, 0)) for s in Situation),
            )
        )
    if result.actions_by_outcome:
        out.print(
            table(
                "Actions",
                ["action:outcome", "count"],
                sorted(result.actions_by_outcome.items()),
            )
        )
    calls = sum(result.api_requests.values())
    why_full = read_reason(trigger, result.protime_read, result.protime_read_reason)
    out.print(
        f"run {result.run_id or '-'}: [bold]{result.status.value}[/bold] in "
        f"{result.duration_seconds:.1f}s; HR {result.hr_count}, Protime {result.protime_count}, "
        f"{calls} API call(s), {result.retries} retr{'y' if result.retries == 1 else 'ies'}"
        + (f"; Protime read: {result.protime_read}" if result.protime_read else "")
        + (f" ({shown(why_full)})" if why_full else "")
        + (
            f"; nothing changed since run {result.settled_since[:8]}: not planned again"
            if result.settled_since
            else ""
        )
    )
    if result.dry_run:
        for line in result.would_block:
            out.print(f"[yellow]would block: {line}[/yellow]")
    if result.message:
        err.print(f"[yellow]{shown(result.message)}[/yellow]")


def _print_next_step(result: RunResult) -> None:
    """A blocked reconcile: what blocked it and what to do next, on stdout with the summary.

    The run's message (stderr, the run row, the logs) says it too, but the one reading the
    output must not need stderr to find the plan the run stored.
    """
    if result.status is not RunStatus.BLOCKED or result.dry_run:
        return
    for line in result.would_block:
        out.print(f"[yellow]blocked by: {shown(line)}[/yellow]")
    if result.plan_id is None:
        return
    short = result.plan_id[:8]
    review = f"review the plan with `idsync plan show {short}` (what blocks is listed first)"
    if _INPUT_GATE in result.message:
        out.print(
            f"next: {review}; the input gate blocks `idsync apply` too: check the source, or"
            " run once with --force if the change is real"
        )
    else:
        out.print(f"next: {review}; approve exactly it with `idsync apply {short}`")
