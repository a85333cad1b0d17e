"""`make test` on a machine with Python and make only (issue 22, point 8): what needs apt-get,
root or a database server skips with its reason, and the same tests fail under `CI=true`.

The machine is simulated for a subprocess: a PATH holding only the commands named below (no
apt-get, promtool, unshare or setpriv), an empty tools folder, and the database servers pointed at
a closed port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from deploy_support import ROOT

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

# Every command the `tools` recipe calls, but apt-get.
RECIPE_COMMANDS = ("make", "mkdir", "ls", "head", "dpkg-deb")
# One test per need: promtool (apt-get), namespaces (root, unshare, setpriv), each server.
NEEDY_TESTS = (
    "tests/deploy/test_monitoring.py::test_promtool_checks_the_alert_rules",
    "tests/deploy/test_container.py",
    "tests/hr/test_writeback.py::test_only_differing_rows_are_written",
)
REASONS = (
    "promtool is not installed",
    "needs unshare and setpriv",
    "PostgreSQL not reachable",
    "MariaDB not reachable",
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bare_machine(tmp_path: Path, *, ci: bool) -> dict[str, str]:
    """An environment without apt-get, promtool, unshare, setpriv or database servers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in RECIPE_COMMANDS:
        found = shutil.which(name)
        if found is not None and not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(found)
    (tmp_path / "tools").mkdir(exist_ok=True)
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS"}}
    env.update(
        PATH=str(bin_dir),
        IDSYNC_TEST_TOOLS_DIR=str(tmp_path / "tools"),
        IDSYNC_TEST_POSTGRES_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/test",
        IDSYNC_TEST_MARIADB_URL=f"mysql+pymysql://root@127.0.0.1:{port}/test",
    )
    if ci:
        env["CI"] = "true"
    return env


def _make_tools(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: `make test` itself needs it")
    return subprocess.run(
        [make, "--no-print-directory", "-C", str(ROOT), f"TOOLS={tmp_path / 'tools'}", "tools"],
        env=_bare_machine(tmp_path, ci=ci),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pytest(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-k",
            "not sqlite",
            *NEEDY_TESTS,
        ],
        cwd=ROOT,
        env=_bare_machine(tmp_path, ci=ci),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_tools_without_apt_get_says_so_and_succeeds(tmp_path: Path) -> None:
    """Without apt-get `make tools` prints that the alert-rule tests will skip, and exits 0."""
    done = _make_tools(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no apt-get on this machine" in done.stdout


def test_make_tools_without_apt_get_fails_in_ci(tmp_path: Path) -> None:
    """Under CI=true a missing apt-get fails `make tools`: CI must never pass without promtool."""
    done = _make_tools(tmp_path, ci=True)
    assert done.returncode != 0
    assert "apt-get" in done.stdout + done.stderr


def test_tests_that_need_more_skip_with_their_reasons(tmp_path: Path) -> None:
    """Outside CI the promtool, container and database-server tests skip, each saying what it
    needs, and the run passes."""
    done = _pytest(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" not in done.stdout.splitlines()[-1]  # every one of them skipped
    for reason in REASONS:
        assert reason in done.stdout, f"no skip says {reason!r}:\n{done.stdout[-3000:]}"


def test_the_same_tests_fail_in_ci(tmp_path: Path) -> None:
    """Under CI=true each missing piece is a failure, not a skip."""
    done = _pytest(tmp_path, ci=True)
    assert done.returncode == 1, done.stdout[-3000:]
    assert " skipped" not in done.stdout.splitlines()[-1]
    for reason in ("promtool is not installed", "needs unshare and setpriv", "unreachable in CI"):
        assert reason in done.stdout, f"no failure says {reason!r}:\n{done.stdout[-3000:]}"
