"""The admin CLI ``idsync``. Parsing and printing only; the work lives in the service modules.

:func:`main` imports nothing heavy before it has armed ``idsync serve``'s signal relay: a SIGTERM
that arrives while the CLI and the settings load is never lost (sync/_signals.py).
"""

from __future__ import annotations

import sys

from sync import _signals
from sync._malloc import fix_mmap_threshold

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code; never a traceback for a known error."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        _signals.catch_early()
    fix_mmap_threshold()  # large freed tables go back to the system (sync/_malloc.py)
    from sync.cli._main import main as run_cli

    try:
        run_cli(argv)
    finally:
        _signals.release_early()


def __getattr__(name: str) -> object:
    if name == "app":  # the typer app, for callers that embed the CLI
        from sync.cli._main import app

        return app
    raise AttributeError(name)
