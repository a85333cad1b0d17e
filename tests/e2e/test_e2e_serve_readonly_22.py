"""Issue 22, point 13, over HTTP with the installed CLI: `idsync serve` on a state database that
refuses writes (a PostgreSQL session in read-only mode, as on a standby or a read-only role) logs
each failed run as one line with the database's reason, never a traceback, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import make_url

from e2e.harness import row_for
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_only(url: str) -> str:
    """The same schema, every transaction of the session read-only."""
    parsed = make_url(url)
    options = f"{parsed.query['options']} -cdefault_transaction_read_only=on"
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def test_serve_on_a_read_only_state_database_logs_one_line_per_run(
    make_harness: Callable[..., Harness], pg_schema_url: str, tmp_path: Path
) -> None:
    """Two scheduled runs fail on the read-only database: two `scheduler.run_error` lines naming
    the refusal, no `scheduler.run_crashed`, no traceback; SIGTERM then ends serve with 0."""
    h = make_harness(
        rows=lambda sim: [row_for(p, f"E{i}") for i, p in enumerate(sim.world.people_list())],
        state_url=pg_schema_url,
    )
    script = Path(sys.executable).parent / "idsync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sync"]
    with serve_in_thread(h.sim) as base:
        h.base_url = base
        env = {
            **os.environ,
            **h.env(
                IDSYNC_DATABASE_URL=_read_only(pg_schema_url),
                IDSYNC_SCHEDULE__INTERVAL_SECONDS="1",
                IDSYNC_HTTP__HOST="127.0.0.1",
                IDSYNC_HTTP__PORT=str(_free_port()),
            ),
        }
        process = subprocess.Popen(
            [*command, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        events: list[dict[str, Any]] = []
        try:
            assert process.stderr is not None
            deadline = time.monotonic() + 120
            for line in process.stderr:
                if line.startswith("{"):
                    events.append(json.loads(line))
                if sum(e["event"] == "scheduler.run_error" for e in events) >= 2:
                    break
                assert time.monotonic() < deadline, f"no two failed runs: {events}"
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0
    errors = [e for e in events if e["event"] == "scheduler.run_error"]
    assert all("read-only transaction" in e["error"] for e in errors), errors
    assert not [e for e in events if e["event"] == "scheduler.run_crashed"]
    assert not [e for e in events if "exception" in e or "Traceback" in json.dumps(e)]
    assert h.writes() == 0
