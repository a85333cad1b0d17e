"""`idsync serve`: the long-running service (schedules, health and metrics, graceful stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.cli._common import ConfigOption, SyncOption  # noqa: TC001 - typer reads them at run time

if TYPE_CHECKING:
    import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(*, sync: SyncOption = None, config: ConfigOption = None) -> int:
        """Reconcile every sync on its schedule until SIGTERM / SIGINT, with /healthz, /readyz,
        /metrics and /syncs.

        Configured by the settings file (--config, IDSYNC_CONFIG) or the environment alone:
        IDSYNC_SCHEDULE__*, IDSYNC_HTTP__*, IDSYNC_LOG__*, IDSYNC_MAX_CONCURRENT_RUNS and those of
        `idsync reconcile` (docs/operations.md). --sync serves that one sync only.

        Migrates the state database at start. Exits 0 after a signal, 2 on a configuration error.
        """
        from sync.cli.syncs import syncs_document
        from sync.config import Deployment, load_deployment
        from sync.service import serve as run_service
        from sync.state import open_database

        deployment = load_deployment(config_path=config)
        if sync is not None:
            chosen = {sync: deployment.settings_for(sync)}
            deployment = Deployment(
                syncs=chosen,
                max_concurrent_runs=deployment.max_concurrent_runs,
                source=deployment.source,
            )
        first = next(iter(deployment.syncs.values()))

        def document(here: object) -> dict[str, object]:
            db = open_database(first.state_url, timeout=first.state_timeout_seconds)
            try:
                return syncs_document(deployment, db, here=here)  # type: ignore[arg-type]
            finally:
                db.dispose()

        return run_service(
            syncs=deployment.syncs,
            max_concurrent_runs=deployment.max_concurrent_runs,
            syncs_document=document,
            exit_process=True,
        )
