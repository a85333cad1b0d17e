"""Admin repairs: `link`, `unlink`, `ignore`, `unignore`, `retry`. Each writes an audit event;
the next reconcile acts on them (a manual link always wins)."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - typer reads the annotation at run time
from typing import TYPE_CHECKING, Annotated

import typer

from sync.cli._common import (
    ConfigOption,
    SyncOption,
    err,
    open_store,
    out,
    settings_and_logging,
    shown,
)
from sync.errors import UsageError
from sync.values import value_problem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sync.config import Settings
    from sync.suggest import ReviewedRow


def register(app: typer.Typer) -> None:
    app.command("link")(link)
    app.command("unlink")(unlink)
    app.command("ignore")(ignore)
    app.command("unignore")(unignore)
    app.command("retry")(retry)


def _check_id(hr_id: str, max_length: int) -> None:
    problem = value_problem(hr_id, max_length=max_length)
    if problem:
        raise UsageError(f"HR id {hr_id!r} cannot be a reference value: {problem}")


def link(
    hr_id: Annotated[str | None, typer.Argument(help="The HR employee id.")] = None,
    protime_id: Annotated[int | None, typer.Argument(help="The Protime person id.", min=1)] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A reviewed `idsync suggest` file (CSV or JSON): link its accepted rows."
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="With --from: link the good rows, report the bad.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Link a person even when another HR id holds it now."),
    ] = False,
    *,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Link HR_ID to Protime person PROTIME_ID by hand; it wins over every matching rule.

    With --from FILE, every accepted row of a reviewed suggestion file is checked first (the
    checks of a single link, the HR id known, the person existing in Protime, no id twice in the
    file) and nothing is linked when any row is wrong, unless --skip-bad.
    """
    settings = settings_and_logging(sync=sync, config=config)
    if from_file is not None:
        if hr_id is not None or protime_id is not None:
            raise UsageError("give HR_ID PROTIME_ID or --from FILE, not both")
        _link_from(settings, from_file, skip_bad=skip_bad, force=force)
        return
    if hr_id is None or protime_id is None:
        raise UsageError("give HR_ID and PROTIME_ID (or --from FILE)")
    if skip_bad:
        raise UsageError("--skip-bad goes with --from FILE")
    _check_id(hr_id, settings.protime.max_value_length)
    with open_store(settings) as store:
        store.admin.link(hr_id=hr_id, protime_id=protime_id, force=force)
    out.print(f"linked {shown(hr_id)} -> person {protime_id}; the next reconcile writes it")


def _link_from(settings: Settings, path: Path, *, skip_bad: bool, force: bool) -> None:
    """Check every accepted row, then link all of them in one transaction (or the good ones)."""
    from sync.suggest import read_reviewed

    rows = read_reviewed(path)
    if not rows:
        out.print(f"{path}: no accepted rows (write yes in the accept column); nothing linked")
        return
    problems = _row_problems(settings, rows)
    # Identical accepted pairs (the same pair on two rows) are one link; the first row speaks.
    first: dict[tuple[str, int], int] = {}
    for i, row in enumerate(rows):
        if i not in problems and row.hr_id is not None and row.protime_id is not None:
            first.setdefault((row.hr_id, row.protime_id), i)
    pairs = list(first)
    with open_store(settings) as store:
        linked, refused = store.admin.link_many(
            pairs, force=force, skip_bad=skip_bad, check_only=bool(problems) and not skip_bad
        )
    for index, problem in refused:
        problems[first[pairs[index]]] = problem
    for i in sorted(problems):
        err.print(f"{path}: {rows[i].where}: {shown(problems[i])}")
    if problems and not linked:
        raise UsageError(
            f"{len(problems)} of {len(rows)} accepted row(s) cannot be linked; nothing was linked"
            + ("" if skip_bad else " (fix them, or give --skip-bad to link the others)")
        )
    out.print(
        f"linked {len(linked)} pair(s) from {path}"
        + (f"; {len(problems)} bad row(s) skipped" if problems else "")
        + "; the next reconcile writes them"
    )
    if problems:
        raise typer.Exit(4)


def _row_problems(settings: Settings, rows: Sequence[ReviewedRow]) -> dict[int, str]:
    """Row index -> problem, for what the file alone or Protime says (one GET per person)."""
    from sync.suggest import existing_persons

    problems: dict[int, str] = {i: row.problem for i, row in enumerate(rows) if row.problem}
    max_length = settings.protime.max_value_length
    for i, row in enumerate(rows):
        if i not in problems and row.hr_id is not None:
            problem = value_problem(row.hr_id, max_length=max_length)
            if problem:
                problems[i] = f"HR id {row.hr_id!r} cannot be a reference value: {problem}"
    ids = [r.protime_id for i, r in enumerate(rows) if i not in problems]
    known = existing_persons(settings=settings, ids=[p for p in ids if p is not None])
    for i, row in enumerate(rows):
        if i not in problems and row.protime_id not in known:
            problems[i] = f"Protime has no person {row.protime_id}"
    return problems


def unlink(
    hr_id: Annotated[str, typer.Argument(help="The HR employee id.")],
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Remove a manual link; matching rules decide again on the next reconcile."""
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        store.admin.unlink(hr_id=hr_id)
    out.print(f"manual link of {shown(hr_id)} removed")


def ignore(
    hr_id: Annotated[str, typer.Argument(help="The HR employee id.")],
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Exclude HR_ID from reconciling (situation `ignored`) until `idsync unignore`."""
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        store.admin.ignore(hr_id=hr_id)
    out.print(f"{shown(hr_id)} is ignored")


def unignore(
    hr_id: Annotated[str, typer.Argument(help="The HR employee id.")],
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Take HR_ID back into reconciling."""
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        store.admin.unignore(hr_id=hr_id)
    out.print(f"{shown(hr_id)} is no longer ignored")


def retry(
    hr_ids: Annotated[
        list[str] | None, typer.Argument(help="HR ids to retry; none = every failed record.")
    ] = None,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Forget the permanent failure of these records so the next reconcile tries them again.

    Exit 2, changing nothing, when an id is unknown or when none of the ids given has a failure.
    """
    settings = settings_and_logging(sync=sync, config=config)
    with open_store(settings) as store:
        if hr_ids:
            rows = {hr_id: store.map.mapping(hr_id) for hr_id in dict.fromkeys(hr_ids)}
            unknown = [hr_id for hr_id, row in rows.items() if row is None]
            if unknown:
                raise UsageError(
                    f"not known to idsync (not in the state database): {', '.join(unknown)}"
                )
            failed = [h for h, row in rows.items() if row is not None and row.failed_fingerprint]
            if not failed:
                raise UsageError(f"nothing to retry: no failed write for {', '.join(rows)}")
            cleared = store.admin.clear_failed(hr_ids=failed)
            rest = [h for h in rows if h not in failed]
            if rest:
                out.print(f"no failed write to retry for {shown(', '.join(rest))}")
        else:
            cleared = store.admin.clear_failed(hr_ids=None)
    out.print(f"{cleared} failed record(s) will be retried on the next reconcile")
