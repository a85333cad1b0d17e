"""The settings file: TOML naming many syncs, read into :class:`~sync.config._layers.Layer` s.

Its shape is checked here, before any value is: an unknown key is a typo that must not pass
silently (the environment, shared with other programs, keeps ignoring unknown variables), and a
key set in the wrong table (a shared one inside a sync) is said so. Values are checked later, by
the models, once the layers of each sync are merged.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from sync.config._layers import Key, Layer, section_model
from sync.config._settings import IDENTITY_FIELDS, Settings
from sync.errors import ConfigError
from sync.names import sync_name_problem

if TYPE_CHECKING:
    from collections.abc import Mapping

# Settings every sync of a file shares: one state database (and its statement bound), one
# health and metrics listener, one log. The rest (the run lock's wait and the run deadline too:
# a large tenant may need a longer run) belong to each sync.
SHARED_KEYS = frozenset({"database_url", "state_timeout_seconds", "http", "log"})
SYNC_KEYS = frozenset(Settings.model_fields) - SHARED_KEYS - IDENTITY_FIELDS
# Keys of the file only, not of Settings: the deployment's run bound, where secret files are.
_DEPLOYMENT_KEYS = frozenset({"max_concurrent_runs", "secrets_dir"})
# `<key>_file = "path"`: the value of <key> is that file's text (a secret need not be inline).
_FILE_KEYS: frozenset[Key] = frozenset(
    {("database_url",), ("hr", "url"), ("protime", "client_secret")}
)
_FILE_SUFFIX = "_file"


@dataclass
class SettingsFile:
    """A settings file's content, checked in shape: each table as a layer, and its problems."""

    path: Path
    shared: Layer = field(default_factory=Layer)
    defaults: Layer = field(default_factory=Layer)
    syncs: dict[str, Layer] = field(default_factory=dict)
    max_concurrent_runs: tuple[object, str] | None = None  # (value, its label)
    secrets_dir: Path | None = None
    problems: list[str] = field(default_factory=list)


def read_settings_file(path: Path, *, named_by: str = "") -> SettingsFile:
    """The settings file at ``path``, its tables as layers. Raises :class:`ConfigError` when the
    file cannot be read or is not TOML (prefixed by ``named_by``, the variable that named it);
    problems of shape are collected in ``problems``."""
    lead = f"{named_by}: " if named_by else ""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{lead}cannot read the settings file {path}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{lead}the settings file {path} is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)" and never quotes the text.
        raise ConfigError(f"{lead}the settings file {path} is not valid TOML: {exc}") from None
    reader = _Reader(SettingsFile(path=path), base=path.absolute().parent)
    reader.document(document)
    return reader.out


@dataclass
class _Reader:
    out: SettingsFile
    base: Path  # relative paths in the file are relative to its folder

    def problem(self, label: str, message: str) -> None:
        self.out.problems.append(f"{label}: {message}")

    def document(self, document: Mapping[str, Any]) -> None:
        top_keys = SHARED_KEYS | _DEPLOYMENT_KEYS | {"defaults", "syncs"}
        shared: dict[str, Any] = {}
        for key, value in document.items():
            if key == "syncs":
                self.syncs(value)
            elif key == "defaults":
                if self.is_table(value, "defaults"):
                    self.out.defaults = self.sync_table(value, "defaults")
            elif key == "max_concurrent_runs":
                self.out.max_concurrent_runs = (value, key)
            elif key == "secrets_dir":
                if isinstance(value, str) and value:
                    self.out.secrets_dir = self.path_of(value)
                else:
                    self.problem(key, "must be the path of a folder")
            elif self.known(
                key,
                "",
                top_keys,
                SYNC_KEYS,
                "every sync has its own: set it in [defaults] or [syncs.NAME]",
            ):
                shared[key] = value
        if "syncs" not in document:
            self.problem(
                "syncs",
                "the settings file has no [syncs] table: name each sync in a [syncs.NAME] table",
            )
        self.out.shared = self.table(shared, "")

    def syncs(self, value: object) -> None:
        if not self.is_table(value, "syncs"):
            return
        if not value:
            self.problem("syncs", "no sync: name each sync in a [syncs.NAME] table")
        for name, table in value.items():
            where = f"syncs.{name}"
            problem = sync_name_problem(name)
            if problem is not None:
                self.problem(where, problem)
            elif self.is_table(table, where):
                self.out.syncs[name] = self.sync_table(table, where)

    def sync_table(self, table: Mapping[str, Any], where: str) -> Layer:
        kept = {
            key: value
            for key, value in table.items()
            if self.known(
                key,
                where,
                SYNC_KEYS,
                SHARED_KEYS | _DEPLOYMENT_KEYS,
                "it is shared by every sync: set it at the top of the file",
            )
        }
        return self.table(kept, where)

    def known(
        self,
        key: str,
        where: str,
        allowed: frozenset[str],
        misplaced: frozenset[str] = frozenset(),
        hint: str = "",
        *,
        section: str | None = None,
    ) -> bool:
        """Whether ``key`` may be set in the table ``where``; a problem said when not."""
        plain = key.removesuffix(_FILE_SUFFIX)
        in_section = (section,) if section else ()
        if key in allowed or (
            key != plain and plain in allowed and (*in_section, plain) in _FILE_KEYS
        ):
            return True
        if plain in misplaced:
            self.problem(_join(where, key), f"cannot be set here: {hint}")
        elif key != plain and plain in allowed:
            readable = ", ".join(".".join(k) for k in sorted(_FILE_KEYS))
            self.problem(_join(where, key), f"unknown key: only {readable} can be read from a file")
        else:
            with_files = allowed | {
                f"{plain}{_FILE_SUFFIX}" for plain in allowed if (*in_section, plain) in _FILE_KEYS
            }
            self.problem(_join(where, key), _unknown(key, with_files))
        return False

    def table(self, table: Mapping[str, Any], where: str) -> Layer:
        """The layer of one table whose top-level keys are known: sections checked key by key."""
        layer = Layer()
        for key, value in table.items():
            model = section_model(key)
            if model is None:
                self.value(layer, (key,), value, where)
            elif self.is_table(value, _join(where, key)):
                allowed = frozenset(model.model_fields)
                for sub, inner in value.items():
                    if self.known(sub, _join(where, key), allowed, section=key):
                        self.value(layer, (key, sub), inner, where)
        return layer

    def value(self, layer: Layer, key: Key, value: object, where: str) -> None:
        label = _join(where, *key)
        if not key[-1].endswith(_FILE_SUFFIX):
            if key in layer.labels:  # put by its `_file` twin, just before
                self.problem(label, f"set {key[-1]} or {key[-1]}{_FILE_SUFFIX}, not both")
            else:
                layer.put(key, value, label)
            return
        real = (*key[:-1], key[-1].removesuffix(_FILE_SUFFIX))
        if real in layer.labels:
            self.problem(label, f"set {real[-1]} or {key[-1]}, not both")
        elif not isinstance(value, str) or not value:
            self.problem(label, "must be the path of a file holding the value")
        else:
            secret = self.secret(self.path_of(value), label)
            if secret is not None:
                layer.put(real, secret, label)

    def secret(self, path: Path, label: str) -> str | None:
        """The text of a file holding one value, less one trailing line break (as `echo` leaves)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.problem(label, f"cannot read {path}: {exc.strerror or exc}")
            return None
        except UnicodeDecodeError:
            self.problem(label, f"{path} is not UTF-8 text")
            return None
        text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
        if not text:
            self.problem(label, f"{path} is empty")
            return None
        return text

    def path_of(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def is_table(self, value: object, label: str) -> TypeGuard[dict[str, Any]]:
        if isinstance(value, dict):
            return True
        self.problem(label, "must be a table")
        return False


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _unknown(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
