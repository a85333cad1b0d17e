"""`idsync serve` as a command: configuration errors exit 2 with the variable named, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    clean.update({"IDSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", **env})
    return subprocess.run(
        [sys.executable, "-m", "sync", "serve"],
        cwd=tmp_path,  # no stray .env
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "IDSYNC_SCHEDULE__INTERVAL_SECONDS"),
        ({"IDSYNC_SCHEDULE__CRON": "0 25 * * *"}, "IDSYNC_SCHEDULE__CRON"),
        (
            {"IDSYNC_SCHEDULE__CRON": "0 2 * * *", "IDSYNC_SCHEDULE__TIMEZONE": "Nowhere/City"},
            "IDSYNC_SCHEDULE__TIMEZONE",
        ),
        ({"IDSYNC_SCHEDULE__INTERVAL_SECONDS": "0"}, "IDSYNC_SCHEDULE__INTERVAL_SECONDS"),
        (
            {"IDSYNC_SCHEDULE__INTERVAL_SECONDS": "60", "IDSYNC_HTTP__PORT": "http"},
            "IDSYNC_HTTP__PORT",
        ),
        ({"IDSYNC_SCHEDULE__INTERVAL_SECONDS": "60"}, "IDSYNC_PROTIME__CLIENT_SECRET"),
        (
            {
                "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "60",
                "IDSYNC_PROTIME__BASE_URL": "http://127.0.0.1:9",
                "IDSYNC_PROTIME__TENANT": "acme",
                "IDSYNC_PROTIME__CLIENT_ID": "idsync",
                "IDSYNC_PROTIME__CLIENT_SECRET": "x-secret",
            },
            "IDSYNC_HR__TABLE",
        ),
    ],
)
def test_configuration_errors_exit_2_naming_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    """A wrong or missing service setting: exit 2, the variable in the message, no traceback, no DB."""
    result = _serve(tmp_path, **env)
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state.db").exists()
