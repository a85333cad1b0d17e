"""Settings: one sync from ``IDSYNC_...`` environment variables, or many from a settings file.

:func:`load_settings` builds the environment-only :class:`Settings` (``_settings``);
:func:`load_deployment` every sync of this process, from a settings file when there is one
(``_deployment``, ``_file``, ``_layers``). The names are re-exported here, so ``from sync.config
import ...`` works as before the package split.
"""

from __future__ import annotations

from sync.config._deployment import (
    CONFIG_VARIABLE,
    DEFAULT_MAX_CONCURRENT_RUNS,
    MAX_CONCURRENT_RUNS_VARIABLE,
    Deployment,
    load_deployment,
    sync_variable_prefix,
)
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
    "CONFIG_VARIABLE",
    "DEFAULT_MAX_CONCURRENT_RUNS",
    "DEFAULT_RUN_DEADLINE_SECONDS",
    "DEFAULT_SCOPES",
    "DEFAULT_SECRETS_DIR",
    "ENV_PREFIX",
    "MAX_CONCURRENT_RUNS_VARIABLE",
    "REQUEST_DEADLINE_READ_TIMEOUTS",
    "Deployment",
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
    "load_deployment",
    "load_settings",
    "parse_duration",
    "redact_http_url",
    "redact_url",
    "sync_variable_prefix",
    "url_credentials",
]
