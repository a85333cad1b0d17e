"""Settings: one sync from ``IDSYNC_...`` environment variables, or many from a settings file.

:func:`load_settings` builds today's environment-only :class:`Settings` (``_settings``). The models
live in ``_settings`` and are re-exported here, so ``from sync.config import ...`` names them as
before the package split.
"""

from __future__ import annotations

from sync.config._settings import (
    DEFAULT_RUN_DEADLINE_SECONDS,
    DEFAULT_SCOPES,
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    REQUEST_DEADLINE_READ_TIMEOUTS,
    HRSettings,
    HttpSettings,
    LogSettings,
    MatchSettings,
    ProtimeSettings,
    ReactionSettings,
    SafetySettings,
    ScheduleSettings,
    Settings,
    driver_hint,
    load_settings,
    parse_duration,
    redact_http_url,
    redact_url,
    url_credentials,
)

__all__ = [
    "DEFAULT_RUN_DEADLINE_SECONDS",
    "DEFAULT_SCOPES",
    "DEFAULT_SECRETS_DIR",
    "ENV_PREFIX",
    "REQUEST_DEADLINE_READ_TIMEOUTS",
    "HRSettings",
    "HttpSettings",
    "LogSettings",
    "MatchSettings",
    "ProtimeSettings",
    "ReactionSettings",
    "SafetySettings",
    "ScheduleSettings",
    "Settings",
    "driver_hint",
    "load_settings",
    "parse_duration",
    "redact_http_url",
    "redact_url",
    "url_credentials",
]
