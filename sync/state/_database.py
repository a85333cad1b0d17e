"""The one way the state database is opened: :func:`open_database` gives a :class:`Database`.

The URL's backend picks the :class:`~sync.state._dialect.Dialect` once (SQLite, PostgreSQL,
MySQL/MariaDB, or a generic one for anything else SQLAlchemy knows); the engine is made by it and
everything that differs per database is asked of it afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sync.config import driver_hint
from sync.errors import ConfigError
from sync.state._dialect import Dialect, MySQL
from sync.state._postgresql import PostgreSQL
from sync.state._sqlite import SQLite

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Connection, Engine

# The longest one state-database statement may take (IDSYNC_STATE_TIMEOUT_SECONDS).
DEFAULT_STATE_TIMEOUT_SECONDS = 60.0

_DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SQLite,
    "postgresql": PostgreSQL,
    "mysql": MySQL,
    "mariadb": MySQL,
}


def dialect_for(url: URL) -> Dialect:
    """The dialect object for ``url``'s backend (:class:`Dialect` itself for any other)."""
    kind = _DIALECTS.get(url.get_backend_name(), Dialect)
    return kind(driver=url.get_driver_name())


class Database:
    """The state database: its engine and its dialect, made together by :func:`open_database`."""

    def __init__(self, engine: Engine, dialect: Dialect) -> None:
        self.engine = engine
        self.dialect = dialect

    @property
    def url(self) -> URL:
        return self.engine.url

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a writer transaction, committed on success, rolled back on error
        (SQLite: ``BEGIN IMMEDIATE``, so writers queue instead of failing half-way)."""
        with self.engine.connect() as conn:
            writer = self.dialect.writer(conn)
            with writer.begin():
                yield writer

    def dispose(self) -> None:
        """Close the engine's pooled connections (the database can still be used afterwards)."""
        self.engine.dispose()


def open_database(url: str, *, timeout: float = DEFAULT_STATE_TIMEOUT_SECONDS) -> Database:
    """The state database at ``url``, with an engine tuned for its dialect.

    ``timeout`` bounds every statement (``IDSYNC_STATE_TIMEOUT_SECONDS``; see
    docs/operations.md, "Bounds"). Raises :class:`~sync.errors.ConfigError` (naming
    ``IDSYNC_DATABASE_URL``, never the URL itself, which may hold a password) when the URL cannot
    be parsed or its driver is missing. Connects lazily: nothing is reached yet.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "IDSYNC_DATABASE_URL is not a database URL SQLAlchemy understands"
        ) from None
    try:
        dialect = dialect_for(parsed)
        return Database(dialect.engine(parsed, timeout=timeout), dialect)
    except (ArgumentError, ImportError) as exc:
        # An unknown dialect (NoSuchModuleError is an ArgumentError), a driver not installed,
        # or a URL option the dialect refuses: a configuration error, said in one line.
        hint = driver_hint(url) if isinstance(exc, ImportError) else ""
        raise ConfigError(
            f"IDSYNC_DATABASE_URL: cannot use {parsed.render_as_string(hide_password=True)}: "
            f"{describe_error(exc, url=parsed)}{hint}"
        ) from None


def describe_error(exc: BaseException, *, url: URL | str | None = None) -> str:
    """One line about a database error, fit for a user: the driver's message, no SQL, no password.

    SQLAlchemy's own text appends the statement and its parameters; the driver's first line says
    what went wrong. The URL's password is blanked out should a driver ever echo it.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    password = None
    if url is not None:
        try:
            password = make_url(url).password if isinstance(url, str) else url.password
        except ArgumentError:
            password = None
    if password:
        line = line.replace(str(password), "***")
    return line
