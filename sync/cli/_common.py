"""Helpers shared by the command modules: settings, logging, the state store, printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from sync.config import Deployment, Settings, load_deployment
from sync.display import printable
from sync.errors import StateError, UsageError
from sync.logging import configure_logging, register_settings_secrets
from sync.state import Database, StateStore, check_schema, describe_error, open_database
from sync.status import Trigger

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# Off a terminal rich would assume 80 columns and cut ids and times in tables: pipes get room.
_PIPE_WIDTH = 200
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH
)


# Every command that works on one sync takes these two (README "Many syncs").
SyncOption = Annotated[
    str | None,
    typer.Option(
        "--sync",
        metavar="NAME",
        help="The sync to work on (a [syncs.NAME] of the settings file); needed when there are"
        " several.",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="The TOML settings file (default: IDSYNC_CONFIG; without either, the environment"
        " describes one sync, `default`).",
    ),
]


def settings_and_logging(
    *,
    sync: str | None = None,
    config: Path | None = None,
    any_sync: bool = False,
    quiet_on_tty: bool = True,
) -> Settings:
    """Load the settings of the sync the command works on (ConfigError, or UsageError for a
    missing or unknown ``--sync``: exit 2 in main) and set up logging for a CLI command.

    ``any_sync``: the command needs only what every sync shares (the state database), so a
    settings file with several syncs needs no ``--sync``. On a terminal the CLI shows warnings
    only (tables and a progress bar speak for the rest); in a pipe or a container every event is
    a JSON line on stderr.
    """
    deployment = load_deployment(config_path=config)
    if any_sync and sync is None:
        settings = next(iter(deployment.syncs.values()))
    else:
        settings = deployment.settings_for(sync)
    _logging(settings, quiet_on_tty=quiet_on_tty)
    for other in deployment.syncs.values():
        register_settings_secrets(other)  # any sync's secret is masked in any line
    return settings


def deployment_and_logging(*, config: Path | None = None) -> Deployment:
    """Every sync of the deployment, for a command about all of them (``syncs``, ``serve``,
    ``config check``); logging as the first sync's settings say (every sync shares ``log``)."""
    deployment = load_deployment(config_path=config)
    _logging(next(iter(deployment.syncs.values())), quiet_on_tty=True)
    for settings in deployment.syncs.values():
        register_settings_secrets(settings)  # any sync's secret is masked in any line
    return deployment


def _logging(settings: Settings, *, quiet_on_tty: bool) -> None:
    level = settings.log.level
    if quiet_on_tty and sys.stderr.isatty() and level == "INFO":
        level = "WARNING"
    configure_logging(level=level, fmt=settings.log.format)
    register_settings_secrets(settings)


@contextmanager
def unreachable_as_state_error(db: Database) -> Iterator[None]:
    """A database error from ``db`` becomes one line (:class:`StateError`), not a traceback."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StateError(f"state database unreachable: {describe_error(exc, url=db.url)}") from None


def state_database(settings: Settings) -> Database:
    """The state database the settings name, its statements bounded as they say."""
    return open_database(settings.state_url, timeout=settings.state_timeout_seconds)


@contextmanager
def reachable_database(settings: Settings) -> Iterator[Database]:
    """The state database for a command that needs no schema check (``db upgrade``,
    ``db current``): an unreachable one is one line, and it is disposed of on the way out."""
    db = state_database(settings)
    try:
        with unreachable_as_state_error(db):
            yield db
    finally:
        db.dispose()


@contextmanager
def open_store(settings: Settings, *, check: bool = True) -> Iterator[StateStore]:
    db = state_database(settings)
    try:
        if check:
            check_schema(db)
        yield StateStore(db, sync=settings.sync_name)
    finally:
        db.dispose()


def require_simulator(command: str) -> None:
    """Exit 2 with the install hint when the `simulator` extra (starlette, uvicorn) is missing.

    The production image installs the runtime dependencies only; the simulator is for the demo,
    the tests and benchmarks.
    """
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"`idsync {command}` needs the simulator extra ({', '.join(missing)} not installed):"
            " pip install 'protime-idsync[simulator]'"
        )


# `export` and `suggest` write a file in one of the same two formats, refused the same way.
FileFormat = Annotated[str, typer.Option("--format", help="csv or json.")]


def check_file_format(fmt: str) -> None:
    """A ``--format`` other than csv or json is a usage error (exit 2)."""
    if fmt not in {"csv", "json"}:
        raise UsageError(f"--format must be csv or json, not {fmt!r}")


def jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, written as it goes: lists may be iterators.

    The text is exactly ``json.dumps(jsonable(value), indent=2, ensure_ascii=False)``, but no
    more than one list item is ever held as text: a ``reconcile --json`` of 250,000 records
    built as one string (and its dicts) took the process past 1.4 GB.
    """
    write = sys.stdout.write
    for chunk in _json_chunks(value, "\n"):
        write(chunk)
    write("\n")


# One encoder for every scalar: json.dumps with an argument builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode
_CONTAINERS = (dict, list, tuple, set, frozenset, Iterator)


def _json_chunks(value: Any, newline: str) -> Iterator[str]:
    """The indented JSON text of ``value`` in pieces; ``newline`` is its line break and indent."""
    if is_dataclass(value) and not isinstance(value, type):
        value = jsonable(value)
    if not isinstance(value, _CONTAINERS):
        yield _encode(jsonable(value))
        return
    is_object = isinstance(value, dict)
    items: Iterator[tuple[object, Any]] = (
        iter(value.items()) if isinstance(value, dict) else ((None, v) for v in value)
    )
    opening, closing = ("{", "}") if is_object else ("[", "]")
    inner = newline + "  "
    first = True
    for key, item in items:
        head = (opening if first else ",") + inner
        if is_object:
            head += _encode(str(key)) + ": "
        first = False
        if isinstance(item, _CONTAINERS) or (is_dataclass(item) and not isinstance(item, type)):
            yield head
            yield from _json_chunks(item, inner)
        else:
            yield head + _encode(jsonable(item))
    yield opening + closing if first else newline + closing


def shown(value: object) -> str:
    """Data from HR or Protime as a human sees it: control and bidi characters escaped
    (``\\u202e``), and no rich markup (an id ``[red]`` is printed as written)."""
    return escape(printable(str(value)))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    t = Table(title=shown(title), title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if cell is None else shown(cell) for cell in row))
    return t


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, chunk: int = 1000
) -> None:
    """``rows`` as tables of at most ``chunk`` rows each, printed as they come.

    One rich table of every row (``--all`` on a plan of 250,000 actions) would be measured and
    held whole before its first line is printed; a table per chunk prints at once and keeps
    memory flat. The title goes on the first table (so an empty ``rows`` still prints it).
    """
    batch: list[Sequence[object]] = []
    first = True
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            out.print(table(title if first else "", columns, batch))
            batch, first = [], False
    if batch or first:
        out.print(table(title if first else "", columns, batch))


# apply and rollback read Protime in full whatever was asked: each precondition is judged on what
# Protime holds, and a value changed there by someone else shows only in a full read. The run
# records that as a full read "asked for (--full)", which no one typed: the CLI says why.
_FULL_BY_DESIGN = frozenset({Trigger.APPLY, Trigger.ROLLBACK})


def read_reason(trigger: str | None, read: str | None, reason: str | None) -> str | None:
    """Why a run read Protime in full, as the CLI shows it: true for apply and rollback too."""
    if read == "full" and trigger in _FULL_BY_DESIGN:
        return f"{trigger} judges every precondition on a full read"
    return reason


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
