"""Admin repairs: `link`, `unlink`, `ignore`, `unignore`, `retry` change what the next run plans."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cli_support import COUNT, everyone

from contracts_support import validate
from e2e.harness import HRRow, row_for, sim_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import Simulator

TOO_LONG = "TOO-LONG-FOR-PROTIME"


def _world(sim: Simulator) -> list[HRRow]:
    people = sim.world.people_list()
    sim.world.update_person(people[COUNT].id, employee_number="DUP-1")
    sim.world.update_person(people[COUNT + 1].id, employee_number="DUP-1")
    return [
        *everyone(sim),
        HRRow("X1", employee_number="DUP-1"),  # disputed: two candidates
        row_for(people[COUNT + 2], TOO_LONG),  # Protime refuses it (400): failed
    ]


def _plan(h: Harness, idsync: Callable[..., CliResult]) -> tuple[dict[str, str], set[tuple]]:
    """Situation per HR id and the planned (kind, hr_id, protime_id) of a dry run."""
    result = idsync("reconcile", "--dry-run", "--json", env=h.env())
    assert result.code == 0, result.output
    data = validate(json.loads(result.stdout))
    situations = {r["hr_id"]: r["situation"] for r in data["records"]}
    return situations, {(a["action"], a["hr_id"], a["protime_id"]) for a in data["plan"]}


def test_admin_commands_change_the_next_plan(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """link makes a disputed id writable, unlink undoes it, ignore/unignore take an id out and
    back, and retry lets a permanently failed write be tried again."""
    h = served(rows=_world, config=sim_config(people=COUNT + 5, max_value_length=10))
    env = h.env()
    people = h.sim.world.people_list()
    first = idsync("reconcile", env=env)
    assert first.code == 4, first.output  # the too-long id failed

    situations, plan = _plan(h, idsync)
    assert situations["X1"] == "disputed"
    assert situations[TOO_LONG] == "failed"
    assert plan == set()

    linked = idsync("link", "X1", str(people[COUNT].id), env=env)
    assert linked.code == 0, linked.output
    assert "the next reconcile writes it" in linked.stdout
    assert _plan(h, idsync)[1] == {("write", "X1", people[COUNT].id)}

    assert idsync("unlink", "X1", env=env).code == 0
    situations, plan = _plan(h, idsync)
    assert situations["X1"] == "disputed"
    assert plan == set()

    assert idsync("ignore", "E001", env=env).code == 0
    assert h.sim.world.references().get("E001") == people[1].id
    situations, _ = _plan(h, idsync)
    assert situations["E001"] == "ignored"
    assert idsync("unignore", "E001", env=env).code == 0
    assert "E001" not in _plan(h, idsync)[0]  # linked again: not a record needing attention

    retried = idsync("retry", TOO_LONG, env=env)
    assert retried.code == 0
    assert "1 failed record(s) will be retried" in retried.stdout
    assert _plan(h, idsync)[1] == {("write", TOO_LONG, people[COUNT + 2].id)}

    with h.store() as store:
        history = [e.action for e in store.events.events_for(hr_id="X1")]
    assert history == ["unlink", "link"]


def test_admin_commands_refuse_what_they_cannot_do(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Bad ids, bad person numbers, unknown options and undoing what was never done exit 2 with
    a one-line reason, never a traceback."""
    h = served()
    env = h.env()
    cases = [
        (("link", "BAD/1", "1001"), "cannot be a reference value"),
        (("link", "E001", "0"), "Invalid value for 'protime_id'"),
        (("link", "E001", "abc"), "Invalid value for 'protime_id'"),
        (("link", "E001"), "give HR_ID and PROTIME_ID"),
        (("link", "--from", "no-such-file.csv"), "cannot read no-such-file.csv"),
        (("link", "E001", "1", "--skip-bad"), "--skip-bad goes with --from"),
        (("reconcile", "--no-such-option"), "No such option"),
        (("no-such-command",), "No such command"),
        (("unlink", "E001"), "has no manual link"),
        (("unignore", "E001"), "is not ignored"),
    ]
    for args, text in cases:
        result = idsync(*args, env=env)
        assert result.code == 2, (args, result.output)
        assert text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert idsync("retry", env=env).stdout.startswith("0 failed record(s)")
