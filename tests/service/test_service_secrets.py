"""Secrets from files: one file per variable in IDSYNC_SECRETS_DIR, nested sections included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sync.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("IDSYNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IDSYNC_SECRETS_DIR", str(directory))
    return directory


def _field(settings: Any, variable: str) -> Any:
    value = settings
    for part in variable.removeprefix("IDSYNC_").lower().split("__"):
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_nested_and_top_level_variables_are_read_from_files(secrets_dir: Path) -> None:
    """IDSYNC_PROTIME__CLIENT_SECRET and IDSYNC_DATABASE_URL files fill their fields, newline stripped."""
    (secrets_dir / "IDSYNC_PROTIME__CLIENT_SECRET").write_text("cs-from-file\n")
    (secrets_dir / "idsync_database_url").write_text("postgresql+psycopg://idsync:pw@db/idsync\n")
    (secrets_dir / "IDSYNC_HR__URL").write_text("mysql+pymysql://hr:pw@hr/hr")
    settings = load_settings()
    assert _field(settings, "IDSYNC_PROTIME__CLIENT_SECRET") == "cs-from-file"
    assert (
        settings.state_url == "postgresql+psycopg://idsync:pw@db/idsync"
    )  # file names ignore case
    assert settings.hr_url == "mysql+pymysql://hr:pw@hr/hr"


def test_the_environment_wins_over_a_file(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable set in the environment takes precedence over its secrets file."""
    (secrets_dir / "IDSYNC_PROTIME__CLIENT_SECRET").write_text("from-file")
    monkeypatch.setenv("IDSYNC_PROTIME__CLIENT_SECRET", "from-env")
    assert _field(load_settings(), "IDSYNC_PROTIME__CLIENT_SECRET") == "from-env"


def test_every_compose_secret_reaches_its_setting(secrets_dir: Path) -> None:
    """Each secret the compose example mounts for idsync is read into the setting its name says."""
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    targets = [s["target"] for s in compose["services"]["idsync"]["secrets"]]
    assert "IDSYNC_PROTIME__CLIENT_SECRET" in targets
    assert "IDSYNC_DATABASE_URL" in targets
    values = {}
    for number, target in enumerate(targets):
        values[target] = f"postgresql+psycopg://user:secret{number}@host/db"
        (secrets_dir / target).write_text(values[target] + "\n")
    settings = load_settings()
    for target, value in values.items():
        assert _field(settings, target) == value
