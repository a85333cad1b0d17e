"""A deployment: the syncs one idsync process knows, from the environment alone or a settings file.

**A sync** is one HR source, one Protime tenant with its credentials, one reference name, and its
rules, reactions, safety limits and schedule: one :class:`~sync.config.Settings`. Without a
settings file the environment gives one sync, named ``default``, exactly as
:func:`~sync.config.load_settings` reads it. A settings file (TOML, named by ``IDSYNC_CONFIG`` or
``--config``) names many, one ``[syncs.NAME]`` table each.

Where each value of a sync comes from, the first that gives it winning:

1. ``IDSYNC_SYNCS__<NAME>__...``: a variable for this sync (the name upper-cased, ``-`` as ``_``),
   in the environment or else as a file of that name in the secrets directory;
2. the file's ``[syncs.NAME]`` table (a ``..._file`` key reads the value from a file);
3. ``IDSYNC_...``: the variable of today, in the environment or else the secrets directory, a
   default for every sync;
4. the file's ``[defaults]`` table;
5. the built-in default.

The keys every sync shares (``database_url``, ``state_timeout_seconds``, ``http``, ``log``) and
``max_concurrent_runs`` are set at the top of the file; their ``IDSYNC_...`` variable wins over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, NoReturn

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_settings import SettingsError

from sync.config._file import SHARED_KEYS, SYNC_KEYS, SettingsFile, read_settings_file
from sync.config._layers import Key, Layer, build, environment, merge, secret_files, variables
from sync.config._settings import DEFAULT_SECRETS_DIR, ENV_PREFIX, Settings, load_settings
from sync.errors import ConfigError, UsageError
from sync.names import DEFAULT_SYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"
MAX_CONCURRENT_RUNS_VARIABLE = f"{ENV_PREFIX}MAX_CONCURRENT_RUNS"
DEFAULT_MAX_CONCURRENT_RUNS = 4
_SECRETS_DIR_VARIABLE = f"{ENV_PREFIX}SECRETS_DIR"

_RUNS = TypeAdapter(Annotated[int, Field(ge=1)])


@dataclass(frozen=True)
class Deployment:
    """The syncs of one idsync process, in the order the settings file names them.

    ``max_concurrent_runs``: how many runs of different syncs ``serve`` lets go at once;
    ``source``: the settings file, None when the environment alone gave the one ``default`` sync.
    """

    syncs: Mapping[str, Settings]
    max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS
    source: Path | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.syncs)

    def settings_for(self, name: str | None) -> Settings:
        """The settings of the sync ``name``; None: of the only sync.

        Raises :class:`UsageError` (exit 2), listing the syncs, for an unknown name, or for None
        when there are several.
        """
        if name is None:
            if len(self.syncs) == 1:
                return next(iter(self.syncs.values()))
            raise UsageError(f"there are {len(self.syncs)} syncs: name one of {self._listed()}")
        settings = self.syncs.get(name)
        if settings is None:
            raise UsageError(f"there is no sync named {name!r}: name one of {self._listed()}")
        return settings

    def _listed(self) -> str:
        return ", ".join(self.syncs)


def sync_variable_prefix(name: str) -> str:
    """The prefix of a sync's own variables: ``IDSYNC_SYNCS__ACME_EU__`` for ``acme-eu``."""
    return f"{ENV_PREFIX}SYNCS__{name.upper().replace('-', '_')}__"


def load_deployment(
    *, config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Deployment:
    """The syncs of this process: from the settings file ``config_path``, else the one named by
    ``IDSYNC_CONFIG``, else the environment alone (one sync, ``default``).

    ``environ``: the variables to read; None: the process environment over ``.env`` in the working
    directory, as :func:`load_settings` reads them. The precedence of the places a value comes
    from is in this module's docstring and README "Many syncs: the settings file".

    Raises :class:`ConfigError` with one line per problem, each naming the sync and the key (the
    file's ``syncs.NAME.section.key`` or the variable).
    """
    env = environment(environ)
    if config_path is not None:
        return _from_file(config_path, env)
    named = env.get(CONFIG_VARIABLE.lower())
    if not named:
        return _from_environment(env, process=environ is None)
    return _from_file(Path(named), env, named_by=CONFIG_VARIABLE)


def _from_environment(env: Mapping[str, str], *, process: bool) -> Deployment:
    problems: list[str] = []
    runs = _max_concurrent_runs(env, None, problems)
    try:
        settings = load_settings() if process else _settings_of(env)
    except ConfigError as exc:
        raise ConfigError("\n  ".join([str(exc), *problems])) from None
    _raise(problems)
    return Deployment(syncs=MappingProxyType({DEFAULT_SYNC: settings}), max_concurrent_runs=runs)


def _settings_of(env: Mapping[str, str]) -> Settings:
    """What load_settings gives, read from ``env`` (no ``.env``: the caller chose the variables)."""
    problems: list[str] = []
    secrets_dir = Path(env.get(_SECRETS_DIR_VARIABLE.lower(), DEFAULT_SECRETS_DIR))
    layers = [
        _variables(env, ENV_PREFIX, problems),
        secret_files(secrets_dir, prefix=ENV_PREFIX),
    ]
    result = build(merge(layers), fallback=_variable_of)
    if isinstance(result, list):
        _fail([*problems, *result])
    _raise(problems)
    return result


def _from_file(path: Path, env: Mapping[str, str], *, named_by: str = "") -> Deployment:
    file = read_settings_file(path, named_by=named_by)
    problems = list(file.problems)
    secrets_dir = _secrets_dir(env, file)
    plain = merge(
        [_variables(env, ENV_PREFIX, problems), secret_files(secrets_dir, prefix=ENV_PREFIX)]
    )
    shared = merge([plain.only(SHARED_KEYS), file.shared])
    defaults = [plain.only(SYNC_KEYS), file.defaults]
    syncs: dict[str, Settings] = {}
    for name, table in file.syncs.items():
        prefix = sync_variable_prefix(name)
        own = merge([_variables(env, prefix, problems), secret_files(secrets_dir, prefix=prefix)])
        for key in sorted(own.keys() & SHARED_KEYS):
            label = next(v for k, v in own.labels.items() if k[0] == key)
            problems.append(
                f"{label}: {key} is shared by every sync: set {ENV_PREFIX}{key.upper()}"
                " or the top of the settings file"
            )
        layers = [own.only(SYNC_KEYS), table, *defaults, shared]
        result = build(merge(layers), fallback=_in_sync(name))
        if isinstance(result, Settings):
            syncs[name] = result.model_copy(update={"sync_name": name})
        else:
            problems += result
    runs = _max_concurrent_runs(env, file.max_concurrent_runs, problems)
    if len(syncs) == len(file.syncs):
        problems += _shared_references(syncs)
    _raise(problems, source=path)
    return Deployment(
        syncs=MappingProxyType(syncs), max_concurrent_runs=runs, source=path.absolute()
    )


def _secrets_dir(env: Mapping[str, str], file: SettingsFile) -> Path:
    if env.get(_SECRETS_DIR_VARIABLE.lower()):
        return Path(env[_SECRETS_DIR_VARIABLE.lower()])
    return file.secrets_dir or Path(DEFAULT_SECRETS_DIR)


def _variables(env: Mapping[str, str], prefix: str, problems: list[str]) -> Layer:
    try:
        return variables(env, prefix=prefix)
    except SettingsError as exc:
        # A section given whole as JSON that is not (IDSYNC_HR='{...'): pydantic-settings names
        # the field (never the value) in its message.
        field = re.search(r'field "(\w+)"', str(exc))
        name = prefix + (field.group(1).upper() if field else "...")
        problems.append(f"{name}: is not valid JSON (a section given whole is a JSON object)")
        return Layer()


def _max_concurrent_runs(
    env: Mapping[str, str], in_file: tuple[object, str] | None, problems: list[str]
) -> int:
    given = env.get(MAX_CONCURRENT_RUNS_VARIABLE.lower())
    value: object
    if given is not None:
        value, label = given, MAX_CONCURRENT_RUNS_VARIABLE
    elif in_file is not None:
        value, label = in_file
    else:
        return DEFAULT_MAX_CONCURRENT_RUNS
    try:
        return _RUNS.validate_python(value)
    except ValidationError as exc:
        problems.append(f"{label}: {exc.errors(include_url=False)[0]['msg']}")
        return DEFAULT_MAX_CONCURRENT_RUNS


def _shared_references(syncs: Mapping[str, Settings]) -> list[str]:
    """Two syncs writing one reference name in one tenant would undo each other's values."""
    seen: dict[tuple[str, str, str], str] = {}
    problems = []
    for name, settings in syncs.items():
        protime = settings.protime
        if not protime.tenant:
            continue
        key = (protime.tenant.casefold(), protime.environment, protime.reference_name)
        if key in seen:
            problems.append(
                f"syncs.{seen[key]} and syncs.{name}: both write the reference"
                f" {protime.reference_name} in the Protime tenant {protime.tenant}"
                f" ({protime.environment}), so each would overwrite the other's values: give one"
                " of them another protime.reference_name"
            )
        else:
            seen[key] = name
    return problems + _shared_deltas(syncs)


def _shared_deltas(syncs: Mapping[str, Settings]) -> list[str]:
    """A tenant has one people delta: a second sync reading it would replace the first's link
    on every run (both then read in full, each warning of the other), so one reads it at most."""
    readers: dict[tuple[str, str], list[str]] = {}
    for name, settings in syncs.items():
        protime = settings.protime
        if protime.tenant and protime.delta == "on":
            key = (protime.tenant.casefold(), protime.environment)
            readers.setdefault(key, []).append(name)
    return [
        f"syncs.{', syncs.'.join(names)}: all read the people delta of the Protime tenant"
        f" {key[0]} ({key[1]}), which has one: each would replace the other's link and read in"
        f' full every run; set protime.delta = "off" in all but one of them (a full read'
        " every run)"
        for key, names in readers.items()
        if len(names) > 1
    ]


def _variable_of(key: Key) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in key)


def _in_sync(name: str) -> Callable[[Key], str]:
    return lambda key: ".".join(("syncs", name, *key))


def _raise(problems: list[str], *, source: Path | None = None) -> None:
    """Raise the one :class:`ConfigError` of ``problems``, if any."""
    if problems:
        _fail(problems, source=source)


def _fail(problems: list[str], *, source: Path | None = None) -> NoReturn:
    where = f" ({source})" if source is not None else ""
    # A shared value that is wrong is wrong for every sync: said once, not once per sync.
    lines = list(dict.fromkeys(problems))
    raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(lines))
