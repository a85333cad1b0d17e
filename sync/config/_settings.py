"""Settings, read from ``IDSYNC_...`` environment variables, a ``.env`` file and a secrets directory.

Built once in the entry point (:func:`load_settings`) and passed down; nothing reads the
environment at import time. A wrong or missing setting becomes one :class:`ConfigError` whose
message names the variable, so the CLI can exit 2 without a traceback.
"""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync import contract as _contract
from sync.contract import (
    DEFAULT_REFERENCE_NAME,
    MAX_VALUE_LENGTH,
    REFERENCE_NAME_PATTERN,
)
from sync.domain import Normalizer, Rule
from sync.errors import ConfigError
from sync.names import DEFAULT_SYNC

ENV_PREFIX = "IDSYNC_"
DEFAULT_SECRETS_DIR = "/run/secrets"
DEFAULT_SCOPES = _contract.DEFAULT_SCOPES  # a name of its own: sync/cli/simulator.py imports it
REQUEST_DEADLINE_READ_TIMEOUTS = 4  # the default request deadline, in read timeouts
DEFAULT_RUN_DEADLINE_SECONDS = 6 * 3600.0
_ENVIRONMENT_HOSTS = {"production": "myprotime.eu", "sandbox": "myprotimesandbox.eu"}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: object) -> float | None:
    """Seconds in ``24h``, ``30m``, ``1h30m``, ``90s``, ``2d`` or a bare number of seconds; None
    when ``value`` is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 and math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and math.isfinite(seconds) else None
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _DURATION_UNIT[u] for n, u in parts)


def _check_db_url(value: str, variable: str) -> str:
    try:
        make_url(value)
    except ArgumentError:
        raise ValueError(f"{variable} is not a database URL SQLAlchemy understands") from None
    except ValueError:
        # make_url turns the port with int(): its own message would name neither the setting
        # nor the part of the URL that is wrong (and must not show the URL: it holds a password).
        raise ValueError(f"{variable} has a port that is not a number") from None
    return value


# The driver each dialect is tested with: what to write when a URL names a driver not installed.
_DRIVER_URLS = {
    "mysql": "mysql+pymysql://user:password@host:3306/database",
    "mariadb": "mysql+pymysql://user:password@host:3306/database",
    "postgresql": "postgresql+psycopg://user:password@host:5432/database",
    "mssql": "mssql+pyodbc://user:password@dsn (pip install 'protime-idsync[mssql]')",
}


def driver_hint(url: str) -> str:
    """For a URL whose driver is not installed: the URL form that works, or ``""``."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return ""
    form = _DRIVER_URLS.get(backend)
    return f"; use the form {form}" if form else ""


def redact_url(url: str) -> str:
    """A database URL fit for logs and `config show`: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def redact_http_url(url: str | None) -> str | None:
    """An HTTP URL fit for output: any user-info (``user:secret@``) replaced by ``***@``."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def url_credentials(url: str | None) -> list[str]:
    """The secrets in an HTTP URL's user-info (password, or a lone user name that may be a token)."""
    if not url:
        return []
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    raw = password or user
    # Both spellings: the URL holds the percent-encoded one, a message may show the decoded one.
    return sorted({raw, unquote(raw)} - {""})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HRSettings(_Section):
    """Where the HR employees come from: one table or one query, and which column means what."""

    url: SecretStr | None = None  # None: the state database
    table: str | None = None
    query: str | None = None
    id_column: str = "employee_id"
    employee_number_column: str | None = None
    badge_number_column: str | None = None
    email_column: str | None = None
    active_column: str | None = None
    # For `idsync suggest` only (never matched on): names and birth date, each optional.
    first_name_column: str | None = None
    last_name_column: str | None = None
    birth_date_column: str | None = None
    # Optional write-back of the Protime id into the HR database (off unless both are set).
    writeback_table: str | None = None
    writeback_id_column: str | None = None
    writeback_column: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        # A field validator, so a bad URL is reported under IDSYNC_HR__URL, not IDSYNC_HR.
        if value is not None:
            _check_db_url(value.get_secret_value(), "IDSYNC_HR__URL")
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        # A trailing `;` is how a query is written in a SQL console; the check runs the query as
        # a subquery, where it is a syntax error: strip it, so the check and the read run one SQL.
        if value is None:
            return None
        return re.sub(r"[\s;]+$", "", value).strip() or None

    @model_validator(mode="after")
    def _table_or_query(self) -> HRSettings:
        if self.table and self.query:
            raise ValueError("set IDSYNC_HR__TABLE or IDSYNC_HR__QUERY, not both")
        if bool(self.writeback_table) != bool(self.writeback_column):
            raise ValueError(
                "IDSYNC_HR__WRITEBACK_TABLE and IDSYNC_HR__WRITEBACK_COLUMN go together"
            )
        return self

    def require(self) -> None:
        """Raise :class:`ConfigError` when the HR source is not said (no table and no query)."""
        if not self.table and not self.query:
            raise ConfigError(
                "missing setting: IDSYNC_HR__TABLE or IDSYNC_HR__QUERY (where the employees are)"
            )

    @property
    def writeback_enabled(self) -> bool:
        return bool(self.writeback_table and self.writeback_column)

    @property
    def url_variable(self) -> str:
        """The variable the HR database URL comes from: the state database's when unset."""
        return "IDSYNC_HR__URL" if self.url is not None else "IDSYNC_DATABASE_URL"


class ProtimeSettings(_Section):
    """How to reach the Connector API. The four connection settings are checked on use."""

    base_url: str | None = None  # https://acme.myprotime.eu
    tenant: str | None = None
    environment: Literal["production", "sandbox"] = "production"
    token_url: str | None = None  # derived from tenant and environment when unset
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: str = DEFAULT_SCOPES
    reference_name: str = Field(
        default=DEFAULT_REFERENCE_NAME, pattern=f"^{REFERENCE_NAME_PATTERN}$"
    )
    user_agent_company: str = "unknown"
    max_value_length: int = Field(default=MAX_VALUE_LENGTH, ge=1, le=4000)
    concurrency: int = Field(default=8, ge=1, le=256)
    # "on": read the people delta between full reads; "off": read in full every run (for a
    # tenant whose one people delta another integration holds).
    delta: Literal["on", "off"] = "on"
    # "auto": find Protime's undisclosed limit (sync.protime._rate); a number fixes the rate;
    # 0: no client-side limit.
    rate_limit_per_second: float | Literal["auto"] = "auto"
    max_rate_per_second: float = Field(default=200.0, gt=0)  # the ceiling of "auto"
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    # The whole of one HTTP exchange (connect, headers, body), whatever the server trickles: the
    # read timeout above only bounds the wait for the next byte. None: 4 x the read timeout.
    request_deadline_seconds: float | None = Field(default=None, gt=0)
    # The largest answer body accepted, counted after decompression. A people page of 100
    # persons is some 50 KB; 16 MiB leaves room for far larger pages and refuses bombs.
    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # The most people a full read takes when no good run has counted Protime yet (later runs are
    # bounded by IDSYNC_SAFETY__MAX_GROWTH_RATIO times the last good run's count): endless pages
    # of new people stop there and the run is blocked, not read for ever.
    max_people: int = Field(default=2_000_000, ge=1)
    retry_attempts: int = Field(default=8, ge=1, le=100)
    retry_timeout_seconds: float = Field(default=300.0, gt=0)
    # A Retry-After longer than this ends the run (interrupted) instead of waiting: Protime asked
    # for hours, and the run would hold its lock and every other call that long.
    max_retry_after_seconds: float = Field(default=300.0, gt=0)
    token_refresh_margin_seconds: float = Field(default=120.0, ge=0)

    @field_validator("rate_limit_per_second", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            rate = float(value)  # type: ignore[arg-type] # anything else is refused below
        except (TypeError, ValueError):
            rate = -1.0
        if not rate >= 0 or rate == float("inf"):
            raise ValueError(
                f"must be 'auto' or a number of requests per second >= 0, not {value!r}"
            )
        return rate

    @property
    def delta_on(self) -> bool:
        """Whether runs read the people delta between full reads (``IDSYNC_PROTIME__DELTA``)."""
        return self.delta == "on"

    @property
    def adaptive_rate(self) -> bool:
        """Whether the client finds Protime's limit itself (``auto``)."""
        return self.rate_limit_per_second == "auto"

    @field_validator("base_url", "token_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def request_deadline(self) -> float:
        """Seconds one HTTP exchange may take in all (``IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS``)."""
        if self.request_deadline_seconds is not None:
            return self.request_deadline_seconds
        return REQUEST_DEADLINE_READ_TIMEOUTS * self.read_timeout_seconds

    @property
    def resolved_token_url(self) -> str | None:
        if self.token_url:
            return self.token_url
        if not self.tenant:
            return None
        host = _ENVIRONMENT_HOSTS[self.environment]
        return f"https://authentication.{host}/tenants/{self.tenant}/connect/token"

    def require(self) -> None:
        """Raise :class:`ConfigError` naming every connection setting that is missing."""
        missing = [
            f"{ENV_PREFIX}PROTIME__{name.upper()}"
            for name in ("base_url", "tenant", "client_id", "client_secret")
            if getattr(self, name) in (None, "")
        ]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")


class MatchSettings(_Section):
    """Matching rules, in order. The first rule that yields exactly one candidate wins."""

    rules: Annotated[tuple[Rule, ...], NoDecode] = (
        Rule.REFERENCE,
        Rule.EMPLOYEE_NUMBER,
        Rule.BADGE_NUMBER,
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",") if part.strip()]
            allowed = {r.value for r in Rule if r is not Rule.MANUAL}
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(
                    f"unknown rule(s) {', '.join(unknown)}; choose from {', '.join(sorted(allowed))}"
                )
            if not names:
                raise ValueError("needs at least one rule")
            if len(set(names)) != len(names):
                raise ValueError("lists a rule twice")
            return tuple(names)
        return value

    # Rule name (or "*" for every rule) -> normalizers in order. Written as
    # `trim,strip_leading_zeros` (every rule) or `employee_number=strip_leading_zeros,alnum_only;
    # badge_number=casefold` (per rule); `*=...` next to per-rule entries sets the rest.
    normalize: Annotated[dict[str, tuple[Normalizer, ...]], NoDecode] = Field(default_factory=dict)

    @field_validator("normalize", mode="before")
    @classmethod
    def _parse_normalize(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_normalize(value)
        return value

    @field_validator("normalize")
    @classmethod
    def _check_normalize(
        cls, value: dict[str, tuple[Normalizer, ...]]
    ) -> dict[str, tuple[Normalizer, ...]]:
        allowed = {r.value for r in Rule if r is not Rule.MANUAL}
        unknown = sorted(k for k in value if k != "*" and k not in allowed)
        if unknown:
            raise ValueError(
                f"unknown rule(s) {', '.join(unknown)}; choose from {', '.join(sorted(allowed))}"
                " or * for every rule"
            )
        for rule, steps in value.items():
            if len(set(steps)) != len(steps):
                raise ValueError(f"lists a normalizer twice for {rule}")
        return value

    def normalizers(self) -> dict[Rule, tuple[Normalizer, ...]]:
        """Each configured rule's normalizers, in order (rules without any are left out)."""
        every = self.normalize.get("*", ())
        out: dict[Rule, tuple[Normalizer, ...]] = {}
        for rule in self.rules:
            steps = self.normalize.get(rule.value, every)
            if steps:
                out[rule] = steps
        return out


def _parse_normalize(text: str) -> dict[str, tuple[str, ...]]:
    """``trim,casefold`` or ``employee_number=strip_leading_zeros;*=trim`` -> rule -> steps."""
    allowed = {n.value for n in Normalizer}
    parsed: dict[str, tuple[str, ...]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        rule, sep, names_text = part.partition("=")
        if not sep:
            rule, names_text = "*", part
        rule = rule.strip()
        names = tuple(n.strip() for n in names_text.split(",") if n.strip())
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValueError(
                f"unknown normalizer(s) {', '.join(unknown)}; choose from"
                f" {', '.join(n.value for n in Normalizer)}"
            )
        if rule in parsed:
            raise ValueError(f"gives the normalizers for {rule} twice")
        parsed[rule] = names
    return parsed


class ReactionSettings(_Section):
    """What to do per situation; the defaults are the README's situation table."""

    unlinked: Literal["write", "report"] = "write"
    drifted: Literal["repoint", "report"] = "repoint"
    orphaned: Literal["report", "delete"] = "report"


class SafetySettings(_Section):
    """Limits that block a run before any write (exit 3) unless ``--force``."""

    max_deletes: int = Field(default=10, ge=0)
    max_repoints: int = Field(default=100, ge=0)
    max_writes: int | None = Field(default=None, ge=0)  # None: no limit on total writes
    min_snapshot_ratio: float = Field(default=0.9, ge=0, le=1)
    # The twin of the shrink gate: an HR snapshot, or a plan, this many times larger than the
    # last good run's blocks the run (a dropped filter, an active column that no longer filters).
    max_growth_ratio: float = Field(default=1.5, ge=1)
    allow_empty_snapshot: bool = False
    # `idsync apply` refuses a plan older than this (exit 3): its review is stale.
    plan_ttl_hours: float = Field(default=24.0, gt=0)


class ScheduleSettings(_Section):
    interval_seconds: int | None = Field(default=None, ge=1)
    cron: str | None = None
    run_at_start: bool = True
    misfire_grace_seconds: int = Field(default=3600, ge=1)
    timezone: str = "UTC"  # of the cron expression (an IANA name: Europe/Brussels)
    # SIGTERM: how long the running run may take to reach a safe point before the process exits.
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    # Between full reads of Protime a run reads only the people delta; a custom reference changed
    # in Protime by someone else shows only in a full read, so this bounds how late it is seen.
    full_read_every: timedelta = timedelta(hours=24)

    @field_validator("full_read_every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, timedelta):
            return value
        seconds = parse_duration(value)
        if seconds is None:
            raise ValueError(
                f"must be a duration such as 24h, 30m, 90s, 2d or 1h30m (0: read in full every"
                f" run), not {value!r}"
            )
        return timedelta(seconds=seconds)


class HttpSettings(_Section):
    host: str = "0.0.0.0"  # noqa: S104 - the container's health and metrics listener serves the pod network
    port: int = Field(default=9464, ge=0, le=65535)
    failing_runs_unready: int = Field(default=3, ge=1)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    # A run logs `run.progress` this often while it reads and writes (and updates its run row).
    progress_seconds: float = Field(default=15.0, gt=0)


# Fields of Settings that say which sync the settings are, not how it runs: no variable, file key
# or secret sets them (see Settings.sync_name).
IDENTITY_FIELDS = frozenset({"sync_name"})


class _WithoutIdentity(PydanticBaseSettingsSource):
    """A source of settings with the identity fields dropped (``IDSYNC_SYNC_NAME`` sets nothing)."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self._source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self._source()
        return {k: v for k, v in values.items() if k not in IDENTITY_FIELDS}


class Settings(BaseSettings):
    """All of idsync's settings. See README "Configuration" for each variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # Which sync these settings are: the [syncs.NAME] the settings file gave them, `default` for
    # the environment alone. Set by the loader only (never read from a variable or a file key: the
    # name keys the sync's rows in the state database), and left out of dumps and fingerprints.
    sync_name: str = Field(default=DEFAULT_SYNC, exclude=True)
    database_url: SecretStr = SecretStr("sqlite:///idsync.db")
    lock_timeout_seconds: float = Field(default=0.0, ge=0)  # how long a run waits for the lock
    # A run still going after this long stops like an interrupt: it records what it did and
    # releases the lock, so a hung upstream never holds the lock for good.
    run_deadline_seconds: float = Field(default=DEFAULT_RUN_DEADLINE_SECONDS, gt=0)
    # The longest one state-database statement may take: PostgreSQL's statement_timeout, then
    # the client closes a connection silent for 5 s more; PyMySQL's socket timeouts.
    state_timeout_seconds: float = Field(default=60.0, gt=0)
    hr: HRSettings = HRSettings()
    protime: ProtimeSettings = ProtimeSettings()
    match: MatchSettings = MatchSettings()
    reactions: ReactionSettings = ReactionSettings()
    safety: SafetySettings = SafetySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A secrets directory holds one file per variable, named like it
        # (/run/secrets/IDSYNC_PROTIME__CLIENT_SECRET). The default source maps top-level fields
        # only; the nested one follows `__` into the sections, as the environment does.
        del settings_cls
        return (
            init_settings,
            _WithoutIdentity(env_settings),
            _WithoutIdentity(dotenv_settings),
            _WithoutIdentity(NestedSecretsSettingsSource(file_secret_settings)),
        )

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: SecretStr) -> SecretStr:
        _check_db_url(value.get_secret_value(), "IDSYNC_DATABASE_URL")
        return value

    @property
    def hr_url(self) -> str:
        """The HR database URL; the state database when none is set."""
        source = self.hr.url if self.hr.url is not None else self.database_url
        return source.get_secret_value()

    @property
    def state_url(self) -> str:
        return self.database_url.get_secret_value()


def _variable_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, ``.env`` and the secrets directory.

    Raises :class:`ConfigError` with one line per problem, each naming its variable.
    """
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR", DEFAULT_SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides)
    if Path(secrets_dir).is_dir():
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return Settings(**kwargs)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{_variable_name(error['loc'])}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
