"""`.env.example` lists every setting with its default and loads as a settings file."""

from __future__ import annotations

import re
from datetime import timedelta

from deploy_support import ROOT

from settings_support import settings_variables as all_fields
from sync.config import ENV_PREFIX, Settings, parse_duration

LINE = re.compile(r"^#? ?(IDSYNC_[A-Z0-9_]+)=(.*)$")
# Read from the process environment before the settings are built, so not a field.
NOT_FIELDS = {"IDSYNC_SECRETS_DIR"}


def settings_variables() -> list[str]:
    """The settings' variables, and those read before the settings are built."""
    return all_fields() + sorted(NOT_FIELDS)


def _example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return {m[1]: m[2] for line in text.splitlines() if (m := LINE.match(line))}


def test_env_example_lists_exactly_the_settings() -> None:
    """Every variable the settings accept is in .env.example, and nothing else is."""
    example = _example()
    assert sorted(example) == sorted(settings_variables())


def test_env_example_defaults_are_the_real_defaults() -> None:
    """Each commented-out line shows the default the settings really use."""
    defaults = Settings(_env_file=None)
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    for line in text.splitlines():
        match = re.match(r"^# (IDSYNC_[A-Z0-9_]+)=(.*)$", line)
        if not match or match[1] in NOT_FIELDS:
            continue
        value: object = defaults
        for part in match[1].removeprefix(ENV_PREFIX).lower().split("__"):
            value = getattr(value, part)
        if value is None:
            assert match[2] == "", match[1]
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, timedelta):  # written as a duration: 24h
            assert parse_duration(match[2]) == value.total_seconds(), match[1]
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        assert match[2] == str(value), match[1]


def test_env_example_loads_as_an_env_file(tmp_path, monkeypatch) -> None:
    """Used as it is, .env.example gives valid settings (the uncommented lines are examples)."""
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.hr.table == "employees"
    assert settings.protime.tenant == "acme"
