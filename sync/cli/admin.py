"""Admin repairs: `link`, `unlink`, `ignore`, `unignore`, `retry`. Each writes an audit event;
the next reconcile acts on them (a manual link always wins)."""

from __future__ import annotations

from typing import Annotated

import typer

from sync.cli._common import open_store, out, settings_and_logging
from sync.values import value_problem


def register(app: typer.Typer) -> None:
    app.command("link")(link)
    app.command("unlink")(unlink)
    app.command("ignore")(ignore)
    app.command("unignore")(unignore)
    app.command("retry")(retry)


def _check_id(hr_id: str, max_length: int) -> None:
    problem = value_problem(hr_id, max_length=max_length)
    if problem:
        from sync.errors import UsageError

        raise UsageError(f"HR id {hr_id!r} cannot be a reference value: {problem}")


def link(
    hr_id: Annotated[str, typer.Argument(help="The HR employee id.")],
    protime_id: Annotated[int, typer.Argument(help="The Protime person id.", min=1)],
    force: Annotated[
        bool,
        typer.Option("--force", help="Link even though the person is mapped to another HR id now."),
    ] = False,
) -> None:
    """Link HR_ID to Protime person PROTIME_ID by hand; it wins over every matching rule.

    Refused (exit 2) when the map has that person under another HR id, unless --force: the next
    reconcile would re-point the person's reference from that id to HR_ID.
    """
    settings = settings_and_logging()
    _check_id(hr_id, settings.protime.max_value_length)
    with open_store(settings) as store:
        others = [r for r in store.mapping_by_protime_id(protime_id) if r.hr_id != hr_id]
        if others and not force:
            from sync.errors import UsageError

            named = ", ".join(f"{r.hr_id} ({r.situation})" for r in others)
            raise UsageError(
                f"Protime person {protime_id} is mapped to HR id {named}; linking {hr_id} to it"
                " would re-point the person's reference on the next reconcile."
                " Add --force to do that"
            )
        store.link(hr_id=hr_id, protime_id=protime_id)
    out.print(f"linked {hr_id} -> person {protime_id}; the next reconcile writes it")


def unlink(hr_id: Annotated[str, typer.Argument(help="The HR employee id.")]) -> None:
    """Remove a manual link; matching rules decide again on the next reconcile."""
    settings = settings_and_logging()
    with open_store(settings) as store:
        store.unlink(hr_id=hr_id)
    out.print(f"manual link of {hr_id} removed")


def ignore(hr_id: Annotated[str, typer.Argument(help="The HR employee id.")]) -> None:
    """Exclude HR_ID from reconciling (situation `ignored`) until `idsync unignore`."""
    settings = settings_and_logging()
    with open_store(settings) as store:
        store.ignore(hr_id=hr_id)
    out.print(f"{hr_id} is ignored")


def unignore(hr_id: Annotated[str, typer.Argument(help="The HR employee id.")]) -> None:
    """Take HR_ID back into reconciling."""
    settings = settings_and_logging()
    with open_store(settings) as store:
        store.unignore(hr_id=hr_id)
    out.print(f"{hr_id} is no longer ignored")


def retry(
    hr_ids: Annotated[
        list[str] | None, typer.Argument(help="HR ids to retry; none = every failed record.")
    ] = None,
) -> None:
    """Forget the permanent failure of these records so the next reconcile tries them again.

    Exit 2, changing nothing, when an id is unknown or when none of the ids given has a failure.
    """
    from sync.errors import UsageError

    settings = settings_and_logging()
    with open_store(settings) as store:
        if hr_ids:
            rows = {hr_id: store.mapping(hr_id) for hr_id in dict.fromkeys(hr_ids)}
            unknown = [hr_id for hr_id, row in rows.items() if row is None]
            if unknown:
                raise UsageError(
                    f"not known to idsync (not in the state database): {', '.join(unknown)}"
                )
            failed = [h for h, row in rows.items() if row is not None and row.failed_fingerprint]
            if not failed:
                raise UsageError(f"nothing to retry: no failed write for {', '.join(rows)}")
            cleared = store.clear_failed(hr_ids=failed)
            rest = [h for h in rows if h not in failed]
            if rest:
                out.print(f"no failed write to retry for {', '.join(rest)}")
        else:
            cleared = store.clear_failed(hr_ids=None)
    out.print(f"{cleared} failed record(s) will be retried on the next reconcile")
