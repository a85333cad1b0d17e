"""The tenants file of ``idsync simulator --tenants-file``: one TOML table per tenant.

::

    [defaults]                  # optional: what every tenant starts from
    people = 2000
    rate_limit_per_second = 50

    [tenants.acme]
    seed = 1
    client_id = "acme-client"
    client_secret = "acme-secret"

    [tenants.globex]
    people_file = "globex.json"   # relative to this file
    fault_rate_500 = 0.01

A table's keys are ``SimulatorConfig`` field names (the fault settings included), plus
``client_id``, ``client_secret`` and ``scopes`` (space separated) for its one client. What a
table leaves out comes from ``[defaults]``, then from the defaults of ``idsync simulator``
(1,000 people, ``demo-client`` / ``demo-secret``). TOML because every value is a scalar a person
writes by hand, and comments say why a tenant is set as it is.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.simulator._config import IDSYNC_SCOPES, ClientSpec, SimulatorConfig
from sync.simulator._multi import tenant_name_problem

if TYPE_CHECKING:
    from collections.abc import Mapping

# What the command line starts a tenant with, where SimulatorConfig's own default differs.
_CLI_DEFAULTS: dict[str, Any] = {
    "people": 1000,
    "client_id": "demo-client",
    "client_secret": "demo-secret",
}
# Set through the table's name or its client keys, never directly.
_NOT_KEYS = frozenset({"tenant", "clients", "host_suffix"})
_CLIENT_KEYS = ("client_id", "client_secret", "scopes")
# The type of the fields whose default (None) does not tell it.
_NONE_DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "rate_limit_per_second": (int, float),
    "fault_seed": (int,),
    "people_file": (str,),
}


class TenantsFileError(ValueError):
    """A tenants file that cannot be read or names a bad tenant or setting; the message says
    which file, tenant and key."""


def _key_types() -> dict[str, tuple[type, ...]]:
    types: dict[str, tuple[type, ...]] = dict.fromkeys(_CLIENT_KEYS, (str,))
    for f in fields(SimulatorConfig):
        if f.name in _NOT_KEYS:
            continue
        default = f.default
        if f.name in _NONE_DEFAULT_TYPES:
            types[f.name] = _NONE_DEFAULT_TYPES[f.name]
        elif isinstance(default, bool):
            types[f.name] = (bool,)
        elif isinstance(default, float):
            types[f.name] = (int, float)
        else:
            types[f.name] = (type(default),)
    return types


_KEY_TYPES = _key_types()
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def load_tenants_file(path: Path) -> dict[str, SimulatorConfig]:
    """The tenants of a tenants file, by name, in file order; ``TenantsFileError`` when it is
    missing, not TOML, or has a bad tenant name, key or value."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantsFileError(f"tenants file {path}: cannot read it: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TenantsFileError(f"tenants file {path}: not valid TOML: {exc}") from None
    return parse_tenants(data, base_dir=path.parent, source=f"tenants file {path}")


def parse_tenants(
    data: Mapping[str, Any], *, base_dir: Path, source: str = "tenants"
) -> dict[str, SimulatorConfig]:
    """``{name: SimulatorConfig}`` from the tables of a tenants file (already parsed);
    ``people_file`` paths are taken relative to ``base_dir``."""
    unknown = sorted(set(data) - {"defaults", "tenants"})
    if unknown:
        raise TenantsFileError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}"
            " (expected [defaults] and [tenants.<name>] tables)"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise TenantsFileError(f"{source}: [defaults] must be a table")
    _check_keys(defaults, f"{source}: [defaults]")
    tenants = data.get("tenants")
    if not isinstance(tenants, dict) or not tenants:
        raise TenantsFileError(f"{source}: no tenants (add a [tenants.<name>] table per tenant)")
    configs: dict[str, SimulatorConfig] = {}
    for name, table in tenants.items():
        where = f"{source}: [tenants.{name}]"
        if (problem := tenant_name_problem(name)) is not None:
            raise TenantsFileError(f"{source}: {problem}")
        if not isinstance(table, dict):
            raise TenantsFileError(f"{where} must be a table")
        _check_keys(table, where)
        configs[name] = _config(name, {**_CLI_DEFAULTS, **defaults, **table}, base_dir, where)
    return configs


def _check_keys(table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        expected = _KEY_TYPES.get(key)
        if expected is None:
            hint = " (set by the table's name)" if key in _NOT_KEYS else ""
            raise TenantsFileError(f"{where}: unknown key {key!r}{hint}")
        if isinstance(value, bool) and bool not in expected:
            expected_name = _TYPE_NAMES[expected[-1]]
            raise TenantsFileError(f"{where}: {key} must be {expected_name}, got {value!r}")
        if not isinstance(value, expected):
            expected_name = _TYPE_NAMES[expected[-1]]
            raise TenantsFileError(f"{where}: {key} must be {expected_name}, got {value!r}")


def _config(name: str, values: dict[str, Any], base_dir: Path, where: str) -> SimulatorConfig:
    client = ClientSpec(
        values.pop("client_id"),
        values.pop("client_secret"),
        frozenset(values.pop("scopes").split()) if "scopes" in values else IDSYNC_SCOPES,
    )
    if "people_file" in values:
        people_file = base_dir / Path(values["people_file"])
        if not people_file.is_file():
            raise TenantsFileError(f"{where}: people_file {str(people_file)!r}: no such file")
        values["people_file"] = people_file
    for key, value in values.items():
        if _KEY_TYPES[key] == (int, float):
            values[key] = float(value)  # TOML writes 50 for 50.0; the config holds floats
    try:
        return SimulatorConfig(tenant=name, clients=(client,), **values)
    except (ValueError, TypeError) as exc:
        raise TenantsFileError(f"{where}: {exc}") from None
