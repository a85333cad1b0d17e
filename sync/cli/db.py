"""`idsync db upgrade` and `idsync db current`: the state database schema."""

from __future__ import annotations

import typer

from sync.cli._common import ConfigOption, out, reachable_database, settings_and_logging
from sync.config import redact_url


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The state database schema (Alembic).", no_args_is_help=True)
    db_app.command("upgrade")(upgrade)
    db_app.command("current")(current)
    app.add_typer(db_app, name="db")


def upgrade(config: ConfigOption = None) -> None:
    """Migrate the state database to the latest schema (safe to run twice, or concurrently)."""
    from sync.state import current_revision, head_revision
    from sync.state import upgrade as do_upgrade

    settings = settings_and_logging(config=config, any_sync=True)
    with reachable_database(settings) as db:
        before = current_revision(db)
        do_upgrade(db)
        after = current_revision(db)
    target = redact_url(settings.state_url)
    if before == after:
        out.print(f"{target}: already at head ({after})")
    else:
        out.print(f"{target}: upgraded {before or 'empty'} -> {after} (head {head_revision()})")


def current(config: ConfigOption = None) -> None:
    """Print the schema revision of the state database and the code's head revision."""
    from sync.state import current_revision, head_revision

    settings = settings_and_logging(config=config, any_sync=True)
    with reachable_database(settings) as db:
        revision = current_revision(db)
    head = head_revision()
    state = "at head" if revision == head else "behind: run `idsync db upgrade`"
    out.print(f"database {revision or 'empty'}, code {head}: {state}")
    if revision != head:
        raise typer.Exit(2)
