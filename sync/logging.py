"""The one logging setup of idsync, for the CLI and the service alike.

structlog renders every event, ours and those of the standard-library loggers of our dependencies
(httpx, httpcore, sqlalchemy, alembic, apscheduler, uvicorn), through one
:class:`structlog.stdlib.ProcessorFormatter` on the root logger: one event per line, JSON when the
stream is not a terminal. ``run_id`` / ``hr_id`` bound with :func:`bind_context` appear on every
line logged while they are bound, whichever logger wrote it.

Redaction is defence in depth: the code never logs a secret on purpose, and this module still
removes the values of secret-looking keys, masks ``Bearer ...``, ``client_secret=...``,
``"access_token": "..."`` and database-URL passwords in every string, and masks every value
registered with :func:`register_secret` (the client secret, each access token) wherever it appears
in the final line.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote, quote_plus

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

    from sync.config import Settings

__all__ = [
    "LogFormat",
    "bind_context",
    "configure_logging",
    "get_logger",
    "redact_text",
    "register_secret",
    "register_settings_secrets",
    "unbind_context",
]

LogFormat = Literal["auto", "json", "console"]

MASK = "***"
_HANDLER_NAME = "idsync"
_MIN_SECRET_LENGTH = 4  # shorter registered values would mask ordinary words

# Third-party loggers: (level at INFO and above, level when the root level is DEBUG). The effective
# level is never below the root level. sqlalchemy stays at WARNING even at DEBUG: its INFO/DEBUG
# output is every statement and every row (HR personal data), which no log sink should receive.
_THIRD_PARTY_LEVELS: dict[str, tuple[int, int]] = {
    "httpx": (logging.WARNING, logging.DEBUG),  # one INFO line per request: too much at INFO
    "httpcore": (logging.WARNING, logging.DEBUG),
    "sqlalchemy": (logging.WARNING, logging.WARNING),
    "sqlalchemy.engine": (logging.WARNING, logging.WARNING),
    "sqlalchemy.pool": (logging.WARNING, logging.WARNING),
    "alembic": (logging.INFO, logging.INFO),  # migrations are rare and worth a line each
    "alembic.runtime.plugins": (logging.WARNING, logging.DEBUG),  # a line per plugin otherwise
    "apscheduler": (logging.WARNING, logging.DEBUG),  # we log our own scheduler.tick
    "uvicorn": (logging.INFO, logging.INFO),
    "uvicorn.error": (logging.INFO, logging.INFO),
    "uvicorn.access": (logging.WARNING, logging.INFO),  # a line per probe otherwise
    "stamina": (logging.INFO, logging.DEBUG),
    "py.warnings": (logging.WARNING, logging.WARNING),
}

_SECRET_KEY = re.compile(
    r"secret|passw(?:or)?d|\bpwd\b|authori[sz]ation|cookie|api_?key|credential|(?:^|_)token$",
    re.IGNORECASE,
)
_SECRET_WORDS = (
    r"client_secret|access_token|refresh_token|id_token|password|passwd|secret|token|api_?key"  # noqa: S105 - field names, not a secret
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values, in any rendering (dict repr, bytes tuples of httpcore, prose).
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {MASK}"),
    (re.compile(r"\b(Basic)\s+[A-Za-z0-9+/]{8,}={0,2}"), rf"\1 {MASK}"),
    # Form bodies and query strings: client_secret=...&...
    (re.compile(rf"\b({_SECRET_WORDS})=[^&\s\"',;)]+", re.IGNORECASE), rf"\1={MASK}"),
    # JSON and dict reprs: "access_token": "..." / 'client_secret': '...'
    (
        re.compile(
            rf"""(["'](?:{_SECRET_WORDS}|authorization)["']\s*[:=]\s*b?["'])[^"']*""",
            re.IGNORECASE,
        ),
        rf"\1{MASK}",
    ),
    # user:password@ in any URL (database URLs above all).
    (
        re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/?#@\s\"']*:)[^@\s\"']*(@)", re.IGNORECASE),
        rf"\1{MASK}\2",
    ),
)

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_configure_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its URL-encoded forms) wherever it appears in a log line from now on.

    Call it with the client secret when the settings are loaded and with every access token as
    it is received. Values shorter than 4 characters are ignored: masking them would garble text.
    """
    global _secrets  # noqa: PLW0603 - one process-wide set, replaced atomically under the lock
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets = _secrets | {value, quote(value, safe=""), quote_plus(value)}


def register_settings_secrets(settings: Settings) -> None:
    """:func:`register_secret` the client secret and the database passwords of ``settings``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from sync.config import url_credentials

    if settings.protime.client_secret is not None:
        register_secret(settings.protime.client_secret.get_secret_value())
    for http_url in (settings.protime.base_url, settings.protime.resolved_token_url):
        for credential in url_credentials(http_url):
            register_secret(credential)
    urls = [settings.state_url]
    if settings.hr.url is not None:
        urls.append(settings.hr.url.get_secret_value())
    for url in urls:
        try:
            register_secret(make_url(url).password)
        except ArgumentError:
            continue


def redact_text(text: str) -> str:
    """``text`` with every known secret pattern and every registered secret masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    # Longest first, so a secret that contains another registered one is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_value(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_KEY.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(None, v) for v in value]
    return value


_LEADING_KEYS = ("timestamp", "level", "event", "logger")


def _redact_event(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    # The fixed keys first, so a line reads the same way whichever logger wrote it.
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return {key: _redact_value(key, value) for key, value in ordered.items()}


def _drop_noise(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in `color_message`.
    event_dict.pop("color_message", None)
    return event_dict


class _MaskedRenderer:
    """The final renderer, then one last pass over the rendered line: nothing escapes the mask,
    not even a secret inside the repr of an object or in a traceback the console renderer draws."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        rendered = self._renderer(logger, name, event_dict)
        text = rendered.decode("utf-8") if isinstance(rendered, bytes) else str(rendered)
        return redact_text(text)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _printable_values(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Console lines are read by people: an HR id's U+202E or escape sequence is shown escaped,
    not obeyed (JSON lines escape them by JSON's rules). Tracebacks keep their lines."""
    from sync.display import printable

    for key, value in event_dict.items():
        if isinstance(value, str) and key not in ("exception", "stack"):
            event_dict[key] = printable(value)
    return event_dict


def _renderer(fmt: LogFormat, stream: IO[str]) -> tuple[list[Processor], Processor]:
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and is_tty):
        return [_printable_values], structlog.dev.ConsoleRenderer(colors=is_tty)
    # JSON: the traceback becomes an "exception" string field, so it is redacted like any other
    # field and stays on the event's one line.
    return [structlog.processors.format_exc_info], structlog.processors.JSONRenderer(
        default=repr, sort_keys=False
    )


def configure_logging(
    *, level: str = "INFO", fmt: LogFormat = "auto", stream: IO[str] | None = None
) -> None:
    """Route structlog and the standard library through one formatter writing to ``stream``.

    ``fmt``: ``auto`` is JSON unless ``stream`` is a terminal, then the console renderer.
    Calling it again replaces the previous setup (one handler, never two).
    """
    target = stream if stream is not None else sys.stderr
    root_level = logging.getLevelNamesMapping().get(level.upper())
    if root_level is None:
        raise ValueError(f"unknown log level {level!r}")
    format_processors, renderer = _renderer(fmt, target)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder(), _drop_noise],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *format_processors,
            _redact_event,
            _MaskedRenderer(renderer),
        ],
    )
    handler = logging.StreamHandler(target)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    with _configure_lock:
        structlog.configure(
            processors=[
                *_shared_processors(),
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            # Not cached: a later configure_logging (tests, `serve` after the CLI) must take effect.
            cache_logger_on_first_use=False,
        )
        root = logging.getLogger()
        for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
            root.removeHandler(old)
            old.close()  # flushes; a StreamHandler never closes the stream it was given
        root.addHandler(handler)
        root.setLevel(root_level)
        for name, (normal, debug) in _THIRD_PARTY_LEVELS.items():
            third_party = logging.getLogger(name)
            third_party.setLevel(max(root_level, debug if root_level <= logging.DEBUG else normal))
            # A dependency (alembic's fileConfig, uvicorn's dictConfig) may have given it its own
            # handler or disabled it; ours is the one way out.
            third_party.handlers.clear()
            third_party.propagate = True
            third_party.disabled = False
        for name, existing in logging.root.manager.loggerDict.items():
            if (name == "sync" or name.startswith("sync.")) and isinstance(
                existing, logging.Logger
            ):
                existing.disabled = False
        logging.captureWarnings(capture=True)
        # The Protime client logs each retry itself (call, reason, wait); stamina's own hooks
        # would add a second warning per retry and count into the global Prometheus registry.
        import stamina.instrumentation

        stamina.instrumentation.set_on_retry_hooks([])


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; its events go through :func:`configure_logging`'s formatter."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_context(**fields: Any) -> None:
    """Add ``fields`` (``run_id=...``, ``hr_id=...``) to every event of this thread / task."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind_context(*names: str) -> None:
    """Remove fields bound with :func:`bind_context`."""
    structlog.contextvars.unbind_contextvars(*names)
