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
) -> None:
    """Link HR_ID to Protime person PROTIME_ID by hand; it wins over every matching rule."""
    settings = settings_and_logging()
    _check_id(hr_id, settings.protime.max_value_length)
    with open_store(settings) as store:
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
    """Forget the permanent failure of these records so the next reconcile tries them again."""
    settings = settings_and_logging()
    with open_store(settings) as store:
        cleared = store.clear_failed(hr_ids=hr_ids or None)
    out.print(f"{cleared} failed record(s) will be retried on the next reconcile")
