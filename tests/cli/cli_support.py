"""Running ``idsync`` in-process for the CLI tests.

:func:`run_idsync` calls ``sync.cli.main`` (the console script's entry point, with its exit-code
mapping) inside click's CliRunner isolation, with ``IDSYNC_*`` variables as the environment.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from click.testing import CliRunner

from e2e.harness import HRRow, row_for
from sync.cli import main

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sync.simulator import Simulator

COUNT = 20


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_idsync(args: Sequence[str], env: dict[str, str]) -> CliResult:
    """``idsync ARGS`` in this process; logging is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    runner = CliRunner()
    code: Any = 0
    try:
        with runner.isolation(env={"COLUMNS": "200", **env}) as streams:
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code
            sys.stdout.flush()
            sys.stderr.flush()
            stdout = streams[0].getvalue().decode()
            stderr = streams[1].getvalue().decode()
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**saved)
    return CliResult(code if isinstance(code, int) else 1, stdout, stderr)


def everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]
