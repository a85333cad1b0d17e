"""Entry point: builds the typer app from the command modules and maps errors to exit codes.

Exit codes (README): 0 done; 1 failed; 2 usage or configuration; 3 blocked; 4 some records failed.
"""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer
from sqlalchemy.exc import SQLAlchemyError

from sync.display import printable
from sync.errors import IdsyncError
from sync.logging import get_logger, redact_text

log = get_logger(__name__)

app = typer.Typer(
    name="idsync",
    help="Keep Protime people addressable by HR employee ids.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # `idsync --install-completion` / `--show-completion` (bash, zsh, fish, PowerShell): README.
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_registered: list[bool] = []


def _print_version(value: bool) -> None:
    if value:
        from sync import __version__

        sys.stdout.write(f"idsync {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Keep Protime people addressable by HR employee ids."""
    del version


def _register() -> None:
    # Each command module adds its commands to `app`; importing them here keeps `import sync.cli`
    # cheap for callers that only want `main`. Once per process: `main` may be called again (tests,
    # an embedding tool) and typer would otherwise stack a second copy of every command.
    if _registered:
        return
    # Each from its own module, not `from sync.cli import ...`: the package imports this module
    # (for `main` and `app`), so this one must not import the package back.
    from sync.cli.admin import register as admin
    from sync.cli.config import register as config
    from sync.cli.db import register as db
    from sync.cli.demo import register as demo
    from sync.cli.inspect import register as inspect
    from sync.cli.plans import register as plans
    from sync.cli.reconcile import register as reconcile
    from sync.cli.serve import register as serve
    from sync.cli.simulator import register as simulator
    from sync.cli.suggest import register as suggest
    from sync.cli.syncs import register as syncs

    commands = (
        reconcile,
        plans,
        inspect,
        syncs,
        suggest,
        admin,
        db,
        config,
        serve,
        simulator,
        demo,
    )
    for register in commands:
        register(app)
    _registered.append(True)


def _one_line(message: str) -> str:
    # Multi-line messages (config errors list one problem a line) keep their lines; each is
    # made safe to print.
    return "\n".join(printable(redact_text(line)) for line in message.splitlines())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code; never a traceback for a known error."""
    _register()
    try:
        result = app(args=argv, prog_name="idsync", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except typer.TyperException as exc:
        # Typer (0.2x) ships its own copy of click: a bad option, argument or command raises
        # its UsageError (exit code 2), which is no click.ClickException.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"idsync: {exc}\n")
        sys.exit(exc.exit_code)
    except (click.Abort, typer.Abort):
        sys.stderr.write("idsync: aborted\n")
        sys.exit(1)
    except IdsyncError as exc:
        sys.stderr.write(f"idsync: {_one_line(str(exc))}\n")
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:
        # A database failure no command turned into its own message: still one line, no SQL,
        # no password (the drivers' first line, then every registered secret masked).
        from sync.state import describe_error

        sys.stderr.write(f"idsync: database error: {_one_line(describe_error(exc))}\n")
        sys.exit(1)
    except Exception as exc:
        # A bug: one line for the user, the traceback in the log at DEBUG for the developer.
        log.debug("cli.crashed", exc_info=True)
        sys.stderr.write(
            f"idsync: unexpected error: {_one_line(f'{type(exc).__name__}: {exc}')} "
            "(IDSYNC_LOG__LEVEL=DEBUG logs the traceback)\n"
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
