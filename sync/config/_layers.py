"""Layers of settings and the one :class:`Settings` built from them, each value kept with its origin.

A settings file's sync is put together from several places (the environment, the file's
``[syncs.NAME]`` and ``[defaults]`` tables, the secrets directory). Each place is a
:class:`Layer`: the values it gives, shaped like :class:`Settings`' input (top-level keys, and the
sections as tables), and for each value the name a user would look for (``IDSYNC_HR__TABLE``,
``syncs.acme.hr.table``). A wrong value is reported under the name of the place that gave it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from sync.config._settings import ENV_PREFIX, IDENTITY_FIELDS, Settings

if TYPE_CHECKING:
    from pathlib import Path

Key = tuple[str, ...]  # ("protime", "tenant") or ("database_url",)

_VARIABLE = re.compile(rf"{ENV_PREFIX}[A-Z0-9_]*[A-Z0-9]")


def section_model(name: str) -> type[BaseModel] | None:
    """The model of a section of :class:`Settings` (``hr``, ``protime``...), or None for a value."""
    info = Settings.model_fields.get(name)
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def is_setting(key: Key) -> bool:
    """Whether ``key`` names a field of :class:`Settings` (a value, a section, or a section's value)."""
    match key:
        case (name,):
            return name in Settings.model_fields and name not in IDENTITY_FIELDS
        case (section, name):
            model = section_model(section)
            return model is not None and name in model.model_fields
    return False


def variable_name(key: Key, prefix: str = ENV_PREFIX) -> str:
    """The environment variable of a setting: ``IDSYNC_PROTIME__TENANT``."""
    return prefix + "__".join(part.upper() for part in key)


@dataclass
class Layer:
    """Settings from one place: ``values`` shaped like :class:`Settings`' input, ``labels`` the
    name each value is known by there (one per value; a section given whole counts as a value)."""

    values: dict[str, Any] = field(default_factory=dict)
    labels: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, Any], label: Callable[[Key], str]) -> Layer:
        """A layer of ``values``, each value named by ``label(key)``."""
        layer = cls()
        for key, value in _leaves(values):
            layer.put(key, value, label(key))
        return layer

    def put(self, key: Key, value: Any, label: str) -> None:
        if len(key) == 1:
            self.values[key[0]] = value
        else:
            self.values.setdefault(key[0], {})[key[1]] = value
        self.labels[key] = label

    def keys(self) -> set[str]:
        """The top-level keys this layer gives (``hr``, ``database_url``...)."""
        return set(self.values)

    def only(self, names: Iterable[str]) -> Layer:
        """This layer narrowed to the top-level keys in ``names``."""
        wanted = set(names)
        return Layer(
            {k: v for k, v in self.values.items() if k in wanted},
            {k: v for k, v in self.labels.items() if k[0] in wanted},
        )


def _leaves(values: Mapping[str, Any]) -> list[tuple[Key, Any]]:
    # One level of sections, as Settings has: a section's value (a list, a table of normalizers)
    # is a value, not more sections.
    out: list[tuple[Key, Any]] = []
    for name, value in values.items():
        if section_model(name) is not None and isinstance(value, Mapping):
            out += [((name, sub), inner) for sub, inner in value.items()]
        else:
            out.append(((name,), value))
    return out


def merge(layers: Sequence[Layer]) -> Layer:
    """One layer of ``layers``, the first one giving a value winning it."""
    merged = Layer()
    for layer in layers:
        for key, value in _leaves(layer.values):
            # A section given as something else than a table (IDSYNC_HR='[1]', wrong anyway) and
            # values inside it exclude each other: the one from the higher layer stands, to be
            # reported under its own name.
            taken = any(key[:n] in merged.labels for n in range(1, len(key) + 1)) or any(
                k[: len(key)] == key for k in merged.labels
            )
            if not taken:
                merged.put(key, value, layer.labels[key])
    return merged


class _MappingEnvSource(EnvSettingsSource):
    """The environment source of pydantic-settings, reading a given mapping, not ``os.environ``."""

    def __init__(self, *, environ: Mapping[str, str], prefix: str) -> None:
        self._environ = environ
        super().__init__(Settings, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The hook pydantic-settings' own .env and secrets sources override to read elsewhere;
        # keeps its rules (case, `__` nesting, JSON sections) for a mapping the caller chose.
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def environment(environ: Mapping[str, str] | None) -> dict[str, str]:
    """The variables settings read, names lower-cased as pydantic-settings compares them.

    ``None``: the process environment over ``.env`` in the working directory, as
    :func:`~sync.config.load_settings` reads them; a mapping: that mapping alone.
    """
    if environ is not None:
        return {k.lower(): v for k, v in environ.items()}
    dotenv = DotEnvSettingsSource(Settings).env_vars
    merged = {k.lower(): v for k, v in dotenv.items() if v is not None}
    merged.update({k.lower(): v for k, v in os.environ.items()})
    return merged


def variables(environ: Mapping[str, str], *, prefix: str) -> Layer:
    """The settings given by the variables named ``<prefix>...`` in ``environ``.

    Raises ``SettingsError`` (pydantic-settings) for a section given whole as bad JSON.
    """
    values = _MappingEnvSource(environ=environ, prefix=prefix)()
    values = {k: v for k, v in values.items() if k not in IDENTITY_FIELDS}
    return Layer.of(values, lambda key: variable_name(key, prefix))


def secret_files(directory: Path | None, *, prefix: str) -> Layer:
    """The settings given by the files named ``<prefix>...`` in the secrets directory."""
    if directory is None or not directory.is_dir():
        return Layer()
    source = NestedSecretsSettingsSource(
        SecretsSettingsSource(Settings, secrets_dir=directory), secrets_prefix=prefix
    )
    values = {k: v for k, v in source().items() if k not in IDENTITY_FIELDS}
    return Layer.of(values, lambda key: variable_name(key, prefix))


class _Given(PydanticBaseSettingsSource):
    """The one source of a :class:`Settings` built from merged layers: their values, as given."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(Settings)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        del field  # the abstract method's signature; __call__ gives every value at once
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


def build(layer: Layer, *, fallback: Callable[[Key], str]) -> Settings | list[str]:
    """The :class:`Settings` of ``layer``'s values, or one line per problem, each naming the place
    that gave the wrong value (``fallback(key)`` for a problem of no one value, such as ``hr``)."""
    try:
        # _build_sources: pydantic-settings' way to hand over the sources of one instance, so
        # neither the process environment nor the secrets directory is read again here.
        return Settings(_build_sources=((_Given(layer.values),), {}))
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            key = tuple(str(p) for p in error["loc"] if not isinstance(p, int))
            label = _label_of(key, layer.labels, fallback)
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{label}: {_renamed(message, layer.labels, fallback)}")
        return lines


def _label_of(key: Key, labels: Mapping[Key, str], fallback: Callable[[Key], str]) -> str:
    for n in range(len(key), 0, -1):
        if key[:n] in labels:
            return labels[key[:n]]
    return fallback(key)


def _renamed(message: str, labels: Mapping[Key, str], fallback: Callable[[Key], str]) -> str:
    # The models' own messages name variables ("set IDSYNC_HR__TABLE or IDSYNC_HR__QUERY, not
    # both"); from a settings file, each is named where it was set (or would be set).
    def rename(match: re.Match[str]) -> str:
        key = tuple(match.group(0).removeprefix(ENV_PREFIX).lower().split("__"))
        if not is_setting(key):
            return match.group(0)
        return labels.get(key) or fallback(key)

    return _VARIABLE.sub(rename, message)
