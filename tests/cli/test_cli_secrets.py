"""The client secret and the access tokens never reach any output of the CLI, even at DEBUG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_support import COUNT, everyone

from e2e.harness import CLIENT_SECRET, HRRow, row_for, sim_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import Simulator


def _idsync_script() -> list[str]:
    script = Path(sys.executable).parent / "idsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sync"]


def _rows(sim: Simulator) -> list[HRRow]:
    # One write Protime refuses (400), so error paths log too.
    return [*everyone(sim), row_for(sim.world.people_list()[COUNT], "TOO-LONG-FOR-PROTIME")]


@pytest.mark.slow
def test_no_secret_or_token_in_any_output_at_debug(
    served: Callable[..., Harness],
    idsync: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DEBUG reconcile (a subprocess, as in production) and a DEBUG `config check` print
    neither the client secret nor any token the simulator issued."""
    h = served(rows=_rows, config=sim_config(people=COUNT + 5, max_value_length=10))
    issued: list[str] = []
    register = h.sim.register_token

    def remember(access_token: str, client_id: str, scopes: frozenset[str]) -> object:
        issued.append(access_token)
        return register(access_token, client_id, scopes)

    monkeypatch.setattr(h.sim, "register_token", remember)
    env = h.env(IDSYNC_LOG__LEVEL="DEBUG")

    proc = subprocess.run(
        [*_idsync_script(), "reconcile"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    check = idsync("config", "check", env=env)
    assert check.code == 0, check.output

    outputs = proc.stdout + proc.stderr + check.output
    assert '"level": "debug"' in proc.stderr  # the run really logged at DEBUG
    assert "protime.request" in proc.stderr
    assert "write.not_done" in proc.stderr  # and logged the refused write
    assert len(issued) == 2  # one token for the run, one for the check
    for secret in (CLIENT_SECRET, *issued):
        assert secret not in outputs
