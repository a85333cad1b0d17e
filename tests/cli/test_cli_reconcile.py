"""`idsync reconcile` and its exit codes (design.md): 0 done, 1 failed, 2 usage or configuration,
3 blocked, 4 some records failed. Known errors never print a traceback."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from cli_support import COUNT, everyone

from contracts_support import validate
from e2e.harness import CLIENT_SECRET, HRRow, row_for, sim_config
from sync.state import open_database, run_lock

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import Simulator


def _no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.output, result.output


def test_reconcile_links_everyone_and_prints_a_summary(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A real run exits 0 and ends with the summary: counts by situation and writes by outcome."""
    h = served()
    result = idsync("reconcile", env=h.env())
    assert result.code == 0, result.output
    assert "Situations" in result.stdout
    assert "write:succeeded" in result.stdout
    assert "succeeded" in result.stdout
    assert len(h.references()) == COUNT
    again = idsync("reconcile", env=h.env())
    assert again.code == 0
    assert "write:" not in again.stdout  # nothing planned, nothing written


def test_dry_run_prints_the_plan_and_writes_nothing(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """--dry-run prints a table of the planned actions with their reasons and changes nothing."""
    h = served()
    result = idsync("reconcile", "--dry-run", env=h.env())
    assert result.code == 0, result.output
    assert f"Plan: {COUNT} action(s) (dry run, nothing written)" in result.stdout
    for column in ("phase", "action", "HR id", "Protime id", "reason"):
        assert column in result.stdout
    assert "E000" in result.stdout
    assert h.writes() == 0
    with h.store() as store:
        assert list(store.map.iter_mappings()) == []


def test_dry_run_json_is_the_plan_as_json(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """--dry-run --json prints one valid JSON document holding every planned action."""
    h = served(rows=lambda sim: [*everyone(sim), HRRow("U1", employee_number="NOBODY")])
    result = idsync("reconcile", "--dry-run", "--json", env=h.env())
    assert result.code == 0, result.output
    data = validate(json.loads(result.stdout))
    assert data["status"] == "succeeded"
    assert data["dry_run"] is True
    assert data["exit_code"] == 0
    assert data["situations"]["unlinked"] == COUNT
    assert data["situations"]["unmatched"] == 1
    people = h.sim.world.people_list()
    planned = {(a["action"], a["hr_id"], a["protime_id"], a["value"]) for a in data["plan"]}
    assert planned == {("write", f"E{i:03d}", people[i].id, f"E{i:03d}") for i in range(COUNT)}
    assert all(a["reason"] for a in data["plan"])
    assert [r["hr_id"] for r in data["records"] if r["situation"] == "unmatched"] == ["U1"]
    assert h.writes() == 0


def test_only_acts_on_the_ids_given(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """--only E001 --only E002 writes those two and nothing else; a full run does the rest."""
    h = served()
    result = idsync("reconcile", "--only", "E001", "--only", "E002", "--json", env=h.env())
    assert result.code == 0, result.output
    assert validate(json.loads(result.stdout))["actions"] == {"write": {"succeeded": 2}}
    assert set(h.references()) == {"E001", "E002"}
    full = idsync("reconcile", "--json", env=h.env())
    assert validate(json.loads(full.stdout))["actions"] == {"write": {"succeeded": COUNT - 2}}


def test_a_bad_setting_exits_2_naming_the_variable(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """IDSYNC_PROTIME__CONCURRENCY=abc stops before any work: exit 2, the variable named."""
    h = served()
    result = idsync("reconcile", env=h.env(IDSYNC_PROTIME__CONCURRENCY="abc"))
    assert result.code == 2
    assert "IDSYNC_PROTIME__CONCURRENCY" in result.stderr
    _no_traceback(result)
    assert h.sim.counters.count() == 0


def test_a_missing_client_id_exits_2_naming_it(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Without IDSYNC_PROTIME__CLIENT_ID the command says which setting is missing, exit 2."""
    h = served()
    env = h.env()
    del env["IDSYNC_PROTIME__CLIENT_ID"]
    result = idsync("reconcile", env=env)
    assert result.code == 2
    assert "missing setting(s): IDSYNC_PROTIME__CLIENT_ID" in result.stderr
    _no_traceback(result)


def test_a_missing_hr_source_exits_2_naming_it(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Without IDSYNC_HR__TABLE (or __QUERY) nothing is read: exit 2 with the variable named."""
    h = served()
    env = h.env()
    del env["IDSYNC_HR__TABLE"]
    result = idsync("reconcile", env=env)
    assert result.code == 2
    assert "IDSYNC_HR__TABLE" in result.stderr
    _no_traceback(result)
    assert h.sim.counters.count() == 0


def test_an_unmigrated_state_database_exits_2_and_says_db_upgrade(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Before `idsync db upgrade`, reconcile (and the read commands) say to run it, exit 2."""
    h = served(migrated=False)
    for args in (("reconcile",), ("status",), ("show", "E001"), ("runs",), ("export",)):
        result = idsync(*args, env=h.env())
        assert result.code == 2, (args, result.output)
        assert "idsync db upgrade" in result.stderr, args
        _no_traceback(result)
    assert h.sim.counters.count() == 0


def test_an_emptied_hr_table_is_blocked_with_exit_3(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """After a good run an empty HR table blocks (exit 3, the reason printed); --force runs."""
    h = served()
    assert idsync("reconcile", env=h.env()).code == 0
    h.set_hr([])
    writes = h.writes()
    blocked = idsync("reconcile", env=h.env())
    assert blocked.code == 3
    assert "blocked before any write" in blocked.stderr
    assert "blocked" in blocked.stdout
    assert f"HR 0, Protime {COUNT + 10}" in blocked.stdout
    # The blocked run reached classification: its counts are shown, its plan stored for review.
    assert "Situations" in blocked.stdout
    assert "idsync plan show" in blocked.stderr
    assert h.writes() == writes
    assert idsync("reconcile", "--force", env=h.env()).code == 0


def test_a_run_while_another_holds_the_lock_exits_3(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A reconcile that finds the run lock held reports it (skipped) and exits 3 at once."""
    h = served()
    db = open_database(h.state_url)
    try:
        with run_lock(db):
            result = idsync("reconcile", env=h.env())
    finally:
        db.dispose()
    assert result.code == 3
    assert "locked" in result.output
    assert h.writes() == 0


def test_some_records_failing_exits_4(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A write Protime refuses for good (400) makes the run partial: exit 4, the rest written."""

    def rows(sim: Simulator) -> list[HRRow]:
        return [*everyone(sim), row_for(sim.world.people_list()[COUNT], "TOO-LONG-FOR-PROTIME")]

    h = served(rows=rows, config=sim_config(people=COUNT + 5, max_value_length=10))
    result = idsync("reconcile", env=h.env())
    assert result.code == 4, result.output
    assert "write:failed" in result.stdout
    assert len(h.references()) == COUNT
    show = idsync("show", "TOO-LONG-FOR-PROTIME", env=h.env())
    assert "failed" in show.stdout
    assert "400" in show.stdout


def test_protime_unreachable_exits_1_with_the_reason(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Protime not answering at all (nothing listens) fails the run: exit 1, one line why."""
    h = served()
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = h.env(
        IDSYNC_PROTIME__BASE_URL=nowhere,
        IDSYNC_PROTIME__TOKEN_URL=f"{nowhere}/tenants/acme/connect/token",
        IDSYNC_PROTIME__RETRY_ATTEMPTS="1",
    )
    result = idsync("reconcile", env=env)
    assert result.code == 1
    assert "no answer from the token endpoint" in result.stderr
    assert "failed" in result.stdout
    assert CLIENT_SECRET not in result.output
    _no_traceback(result)
