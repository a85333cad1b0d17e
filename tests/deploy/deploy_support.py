"""Helpers of the deploy-kit tests (a distinct module name: conftest is not importable twice)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
METRIC_NAME = re.compile(r"\bidsync_[a-z_]+\b")


def tool(name: str, *, local: Path | None = None) -> str:
    """The path of a command-line tool; fails in CI and skips elsewhere when it is missing.

    ``make test`` installs them (`make tools`, the dev extra), so a missing tool in CI is a bug
    of the test setup, never a reason to pass.
    """
    if local is not None and local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        venv_bin = ROOT / ".venv" / "bin" / name
        found = str(venv_bin) if venv_bin.is_file() else None
    if found is None:
        message = f"{name} is not installed (`make tools` / `make install` install it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def promtool() -> str:
    # `make tools` unpacks it into .tools/; IDSYNC_TEST_TOOLS_DIR points elsewhere (the test of a
    # machine without it uses an empty folder).
    tools = Path(os.environ.get("IDSYNC_TEST_TOOLS_DIR", ROOT / ".tools"))
    return tool("promtool", local=tools / "usr" / "bin" / "promtool")
