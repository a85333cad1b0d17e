"""`idsync serve`: the long-running service (schedule, health and metrics, graceful stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve() -> int:
        """Reconcile on a schedule until SIGTERM / SIGINT, with /healthz, /readyz and /metrics.

        Configured by environment variables only: IDSYNC_SCHEDULE__*, IDSYNC_HTTP__*, IDSYNC_LOG__* and those of `idsync reconcile` (docs/operations.md).

        Migrates the state database at start. Exits 0 after a signal, 2 on a configuration error.
        """
        from sync.config import load_settings
        from sync.service import serve as run_service

        return run_service(settings=load_settings(), exit_process=True)
