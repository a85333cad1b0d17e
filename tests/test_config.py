from __future__ import annotations

import pytest

from sync.config import load_settings
from sync.domain import Normalizer, Rule
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


def test_normalize_for_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain list in IDSYNC_MATCH__NORMALIZE applies, in its order, to every configured rule."""
    monkeypatch.setenv("IDSYNC_MATCH__RULES", "reference,employee_number")
    monkeypatch.setenv("IDSYNC_MATCH__NORMALIZE", " strip_leading_zeros , trim ")
    steps = (Normalizer.STRIP_LEADING_ZEROS, Normalizer.TRIM)
    assert load_settings().match.normalizers() == {
        Rule.REFERENCE: steps,
        Rule.EMPLOYEE_NUMBER: steps,
    }


def test_normalize_per_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rule=steps` entries set one rule; `*=` the others; an empty entry switches a rule off."""
    monkeypatch.setenv("IDSYNC_MATCH__RULES", "reference,employee_number,badge_number,email")
    monkeypatch.setenv(
        "IDSYNC_MATCH__NORMALIZE",
        "employee_number=strip_leading_zeros,alnum_only; *=casefold; reference=",
    )
    assert load_settings().match.normalizers() == {
        Rule.EMPLOYEE_NUMBER: (Normalizer.STRIP_LEADING_ZEROS, Normalizer.ALNUM_ONLY),
        Rule.BADGE_NUMBER: (Normalizer.CASEFOLD,),
        Rule.EMAIL: (Normalizer.CASEFOLD,),
    }


def test_normalize_unset_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without IDSYNC_MATCH__NORMALIZE no rule normalizes anything."""
    monkeypatch.delenv("IDSYNC_MATCH__NORMALIZE", raising=False)
    assert load_settings().match.normalizers() == {}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("trim,upper", "unknown normalizer(s) upper"),
        ("shoe_size=trim", "unknown rule(s) shoe_size"),
        ("trim,trim", "lists a normalizer twice"),
        ("email=trim;email=casefold", "gives the normalizers for email twice"),
    ],
)
def test_bad_normalize_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    """A wrong IDSYNC_MATCH__NORMALIZE names the variable and the problem."""
    monkeypatch.setenv("IDSYNC_MATCH__NORMALIZE", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "IDSYNC_MATCH__NORMALIZE" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("variable", ["IDSYNC_HR__URL", "IDSYNC_DATABASE_URL"])
def test_a_database_url_with_a_bad_port_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A URL whose port is no number is reported under its own variable, without the password."""
    monkeypatch.setenv(variable, "postgresql://user:s3cr3t-pw@host:abc/db")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert f"  {variable}: {variable} has a port that is not a number" in text
    assert "s3cr3t-pw" not in text
