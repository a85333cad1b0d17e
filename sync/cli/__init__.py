"""The admin CLI ``idsync``. Parsing and printing only; the work lives in the service modules.

:func:`main` imports nothing heavy before it has armed ``idsync serve``'s signal relay: a SIGTERM
that arrives while the CLI and the settings load is never lost (sync/_signals.py).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

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
    except SystemExit as exc:
        if argv is not None or not isinstance(exc.code, int | None):
            raise
        code = exc.code or 0
    else:  # pragma: no cover - run_cli always exits
        code = 0
    finally:
        _signals.release_early()
    _exit(code)


def _exit(code: int) -> None:
    """End the ``idsync`` process without tearing down the interpreter.

    Everything a normal exit does that anyone can observe still happens: the atexit handlers run
    (logging's flush among them) and the standard streams are flushed. What is skipped is freeing
    every module and object one by one, 0.1-0.2 s of a short command (a settled run is a couple
    of seconds). With a thread still running, the normal exit waits for it instead.
    """
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - what interpreter shutdown would call, once
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written
            code = code or 1
    os._exit(code)


def __getattr__(name: str) -> object:
    if name == "app":  # the typer app, for callers that embed the CLI
        from sync.cli._main import app

        return app
    raise AttributeError(name)
