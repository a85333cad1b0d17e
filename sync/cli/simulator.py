"""`idsync simulator`: serve the Protime simulator over HTTP (filled in by the simulator work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulator")
    def simulator() -> None:
        """Serve a Protime Connector API simulator (not built yet)."""
        raise typer.Exit(1)
