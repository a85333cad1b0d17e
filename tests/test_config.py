from __future__ import annotations

import pytest

from sync.config import load_settings
from sync.domain import Rule
from sync.errors import ConfigError


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, settings load with design.md's defaults."""
    monkeypatch.delenv("IDSYNC_MATCH__RULES", raising=False)
    settings = load_settings()
    assert settings.match.rules == (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER)
    assert settings.protime.reference_name == "HRMID"


def test_bad_values_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wrong setting is reported once, by its environment variable name."""
    monkeypatch.setenv("IDSYNC_PROTIME__CONCURRENCY", "many")
    monkeypatch.setenv("IDSYNC_MATCH__RULES", "email,shoe_size")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "IDSYNC_PROTIME__CONCURRENCY" in text
    assert "IDSYNC_MATCH__RULES" in text
    assert "shoe_size" in text


def test_rules_parse_from_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """IDSYNC_MATCH__RULES is an ordered comma-separated list."""
    monkeypatch.setenv("IDSYNC_MATCH__RULES", " email , badge_number ")
    assert load_settings().match.rules == (Rule.EMAIL, Rule.BADGE_NUMBER)


def test_missing_protime_connection_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """require() lists every missing connection variable in one message."""
    monkeypatch.setenv("IDSYNC_PROTIME__TENANT", "acme")
    with pytest.raises(ConfigError) as info:
        load_settings().protime.require()
    assert "IDSYNC_PROTIME__CLIENT_SECRET" in str(info.value)
    assert "IDSYNC_PROTIME__TENANT" not in str(info.value)
