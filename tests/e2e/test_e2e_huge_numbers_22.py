"""Issue 22, point 13, over HTTP with the installed CLI: HR rows holding huge numbers (an unbounded
PostgreSQL NUMERIC) are counted by the run exactly as `status` and `export` show them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

from db_support import fresh_postgres_schema
from e2e.harness import CLIENT_ID, CLIENT_SECRET, TENANT, migrate, sim_config
from sync.simulator import Simulator, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres

TOO_LONG = "9" * 300  # a valid NUMERIC(1000, 0), too long for any key (255 characters)


@pytest.fixture
def env(postgres_url: str, pg_schema_url: str) -> Iterator[dict[str, str]]:
    """HR on PostgreSQL with NUMERIC(1000, 0) ids and keys, state on PostgreSQL, the simulator
    over HTTP."""
    sim = Simulator(sim_config(people=5))
    first = sim.world.people_list()[0]
    with (
        fresh_postgres_schema(postgres_url, prefix="idsync_hr") as hr_url,
        serve_in_thread(sim) as base,
    ):
        engine = create_engine(hr_url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE employees (id NUMERIC(1000, 0), number NUMERIC(1000, 0),"
                    " active INTEGER)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO employees VALUES (1, :matching, 1), (CAST(:long AS NUMERIC), 2, 1),"
                    " (3, CAST(:long AS NUMERIC), 1), (1e30, 4, 1)"
                ),
                {"matching": int(first.employee_number or 0), "long": TOO_LONG},
            )
        engine.dispose()
        migrate(pg_schema_url)
        yield {
            "IDSYNC_DATABASE_URL": pg_schema_url,
            "IDSYNC_HR__URL": hr_url,
            "IDSYNC_HR__TABLE": "employees",
            "IDSYNC_HR__ID_COLUMN": "id",
            "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "number",
            "IDSYNC_HR__ACTIVE_COLUMN": "active",
            "IDSYNC_PROTIME__BASE_URL": base,
            "IDSYNC_PROTIME__TENANT": TENANT,
            "IDSYNC_PROTIME__TOKEN_URL": base + sim.token_path,
            "IDSYNC_PROTIME__CLIENT_ID": CLIENT_ID,
            "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
            "IDSYNC_PROTIME__USER_AGENT_COMPANY": "idsync e2e",
            "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND": "0",
            "IDSYNC_LOG__FORMAT": "json",
        }


def _json(env: dict[str, str], *args: str) -> Any:
    script = Path(sys.executable).parent / "idsync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sync"]
    done = subprocess.run(
        [*command, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"idsync {' '.join(args)}: {done.stdout}{done.stderr}"
    return json.loads(done.stdout)


def test_every_row_the_run_counts_is_in_status_and_export(env: dict[str, str]) -> None:
    """A 300-digit id is an invalid row keyed by its number, and the run's situation counts equal
    `status` and `export`, row for row."""
    assert _json(env, "reconcile", "--force", "--json")["status"] == "succeeded"
    ran = _json(env, "reconcile", "--json")  # the first run counted its one write "unlinked"
    assert ran["status"] == "succeeded"
    counted = {k: v for k, v in ran["situations"].items() if v}
    status = _json(env, "status", "--json")
    exported = _json(env, "export", "--format", "json")["mappings"]
    assert counted == {k: v for k, v in status["situations"].items() if v}
    assert counted == dict(Counter(m["situation"] for m in exported))
    invalid = [m for m in exported if m["situation"] == "invalid"]
    assert [(m["hr_id"], m["reason"]) for m in invalid] == [
        ("<row 2>", "row 2: longer than 255 characters (300)")
    ]
    # Huge match keys and a 31-digit id are valid; none of them is lost.
    assert {m["hr_id"] for m in exported} >= {"1", "3", str(10**30)}
