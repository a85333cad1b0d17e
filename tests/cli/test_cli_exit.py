"""How the ``idsync`` process ends: its code, its output and its atexit handlers, without the
interpreter's teardown (sync/cli/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_PROGRAM = """
import atexit, sys, threading
marker = sys.argv[1]
# Written at exit, into the buffer: only a flush after the handlers makes it reach the caller.
atexit.register(lambda: (open(marker, "w").write("ran"), sys.stdout.write("written at exit\\n")))
if sys.argv[2] == "thread":
    # A non-daemon thread still running when the command ends: the normal exit waits for it.
    gate = threading.Event()
    threading.Thread(target=lambda: (gate.wait(0.5), open(marker + ".thread", "w").write("done"))).start()
sys.argv = ["idsync", *sys.argv[3:]]
from sync.cli import main
main()
"""


def _idsync(tmp_path: Path, *args: str, thread: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            _PROGRAM,
            str(tmp_path / "marker"),
            "thread" if thread else "-",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        # Block-buffered output, as a pipe normally has: what is left in the buffer is flushed.
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )


def test_the_process_keeps_its_exit_code_its_output_and_its_atexit_handlers(
    tmp_path: Path,
) -> None:
    """A command's exit code and every byte it wrote reach the caller, and atexit handlers run."""
    done = _idsync(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    version, at_exit = done.stdout.splitlines()
    assert version.startswith("idsync ")
    assert at_exit == "written at exit"
    assert (tmp_path / "marker").read_text() == "ran"


def test_a_usage_error_keeps_its_exit_code(tmp_path: Path) -> None:
    """A usage error still ends with exit code 2 and its message on stderr."""
    done = _idsync(tmp_path, "no-such-command")
    assert done.returncode == 2
    assert "No such command" in done.stderr
    assert (tmp_path / "marker").read_text() == "ran"


def test_a_running_thread_is_waited_for(tmp_path: Path) -> None:
    """With a non-daemon thread still running, the process waits for it as a normal exit does."""
    done = _idsync(tmp_path, "--version", thread=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "marker.thread").read_text() == "done"
    assert (tmp_path / "marker").read_text() == "ran"
