"""The installed wheel runs the way the image runs it (no Docker engine here to build the image).

As the image does: the locked runtime dependencies and the wheel in a pip-less virtual
environment, no simulator extra; `idsync serve` as uid 10001, as PID 1 of its own PID namespace
(`unshare --pid --fork --mount-proc`), with every file system read-only but the state volume; the
Dockerfile's own HEALTHCHECK command; SIGTERM exits 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deploy_support import IN_CI, ROOT, tool

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

UID = 10001
DEADLINE = 60.0
TENANT = "acme"


def _need_namespaces() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root to create namespaces and switch to uid 10001"
    elif shutil.which("unshare") is None or shutil.which("setpriv") is None:
        problem = "needs unshare and setpriv (util-linux)"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """/opt/idsync as the Dockerfile builds it: locked dependencies, then the wheel, no pip."""
    _need_namespaces()
    root = Path(tempfile.mkdtemp(prefix="idsync-image-"))
    root.chmod(0o755)
    try:
        dist = root / "dist"
        subprocess.run(
            [tool("uv"), "build", "--wheel", "--out-dir", str(dist), str(ROOT)],
            check=True,
            capture_output=True,
        )
        venv = root / "opt" / "idsync"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        quiet = ["--quiet", "--no-cache-dir"]
        subprocess.run(
            [*pip, *quiet, "--require-hashes", "--no-deps", "-r", str(ROOT / "requirements.lock")],
            check=True,
            capture_output=True,
        )
        (wheel,) = dist.glob("*.whl")
        subprocess.run([*pip, *quiet, "--no-deps", str(wheel)], check=True, capture_output=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "check"],
            check=True,
            capture_output=True,
        )
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        yield venv
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthcheck_command() -> list[str]:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", dockerfile, re.DOTALL)
    assert match, "the Dockerfile has no HEALTHCHECK CMD"
    return list(json.loads(match[1]))


# Runs as PID 1 of the new namespaces: the state volume gets its own (writable) mount, every other
# mount turns read-only, a probe proves both as uid 10001, then idsync replaces the shell.
_ENTRY = r"""
set -eu
mount --make-rprivate /
mount --bind "$STATE" "$STATE"
for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$mp" in "$STATE"|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
drop="setpriv --reuid 10001 --regid 10001 --clear-groups --inh-caps=-all --bounding-set=-all"
$drop sh -c 'touch /tmp/idsync-probe 2>/dev/null && echo "probe: /tmp writable" || echo "probe: /tmp read-only"'
$drop sh -c 'touch "$STATE/probe" && rm "$STATE/probe" && echo "probe: state writable"'
cd "$STATE"
exec $drop "$VENV/bin/idsync" serve
"""


def test_installed_wheel_serves_as_the_image_does(image_root: Path, tmp_path: Path) -> None:
    """uid 10001, PID 1, read-only but the state volume: a run succeeds, HEALTHCHECK passes, SIGTERM exits 0."""
    pytest.importorskip("starlette")  # the simulator runs in the test process, not in the "image"
    from sync.simulator import Simulator, SimulatorConfig, serve_in_thread

    venv = image_root
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import starlette"], capture_output=True, check=False
    )
    assert imported.returncode != 0, "the image must not carry the simulator's starlette"

    state = Path(tempfile.mkdtemp(prefix="idsync-state-"))
    os.chown(state, UID, UID)
    state.chmod(0o750)
    sim = Simulator(SimulatorConfig(tenant=TENANT, people=30, seed=3))
    people = sim.world.people_list()
    with sqlite3.connect(state / "idsync.db") as conn:
        conn.execute("CREATE TABLE employees (employee_id TEXT, employee_number TEXT)")
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?)",
            [(f"E{i}", p.employee_number) for i, p in enumerate(people)],
        )
    for path in state.iterdir():
        os.chown(path, UID, UID)
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with serve_in_thread(sim) as base_url, log_path.open("wb") as log:
        env = {
            "PATH": f"{venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "STATE": str(state),
            "VENV": str(venv),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "IDSYNC_DATABASE_URL": f"sqlite:///{state}/idsync.db",
            "IDSYNC_HTTP__HOST": "127.0.0.1",
            "IDSYNC_HTTP__PORT": str(port),
            "IDSYNC_LOG__FORMAT": "json",
            "IDSYNC_SECRETS_DIR": str(state / "no-secrets"),
            "IDSYNC_HR__TABLE": "employees",
            "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
            "IDSYNC_PROTIME__BASE_URL": base_url,
            "IDSYNC_PROTIME__TENANT": TENANT,
            "IDSYNC_PROTIME__TOKEN_URL": f"{base_url}/tenants/{TENANT}/connect/token",
            "IDSYNC_PROTIME__CLIENT_ID": "demo-client",
            "IDSYNC_PROTIME__CLIENT_SECRET": "demo-secret",
            "IDSYNC_SCHEDULE__INTERVAL_SECONDS": "3600",
            "IDSYNC_SCHEDULE__SHUTDOWN_GRACE_SECONDS": "10",
        }
        process = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", _ENTRY],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        try:
            child = _wait(lambda: _child_of(process.pid), process, log_path)
            status = Path(f"/proc/{child}/status").read_text()
            assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.MULTILINE), status
            metrics = _wait(lambda: _succeeded_run(port), process, log_path)
            assert 'idsync_runs_total{status="succeeded",sync="default"} 1.0' in metrics
            uid_line = re.search(
                r"^Uid:\s+(\d+)", Path(f"/proc/{child}/status").read_text(), re.MULTILINE
            )
            assert uid_line
            assert int(uid_line[1]) == UID
            health = subprocess.run(
                [str(venv / "bin" / "python"), *_healthcheck_command()[1:]],
                env={"IDSYNC_HTTP__PORT": str(port), "PATH": "/usr/bin:/bin"},
                capture_output=True,
                check=False,
                timeout=10,
            )
            assert health.returncode == 0, health.stderr
            os.kill(child, signal.SIGTERM)
            assert process.wait(timeout=DEADLINE) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert "probe: /tmp read-only" in output
    assert "probe: state writable" in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["event"] == "service.stop" and e.get("clean") for e in events), output
    shutil.rmtree(state, ignore_errors=True)


def _wait(condition, process: subprocess.Popen[bytes], log_path: Path):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until truthy; fail with the log if the process dies or time runs out."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"idsync exited {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {DEADLINE} s:\n{log_path.read_text()}")
        time.sleep(0.05)


def _child_of(pid: int) -> int | None:
    """The host pid of unshare's forked child (PID 1 inside), once it has exec'd idsync."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"idsync\x00serve" in cmdline:
            return int(entry.name)
    return None


def _succeeded_run(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return text if 'idsync_runs_total{status="succeeded",sync="default"} 1.0' in text else None
