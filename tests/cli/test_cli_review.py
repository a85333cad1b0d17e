"""Reviewing a blocked plan from the CLI: `plan show` lists what blocks first and says how to see
the rest, a blocked `reconcile` says its next step on stdout, `runs show` says what it leaves out,
and `apply` / `rollback` say truly why they read Protime in full."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from cli_support import COUNT, everyone

from contracts_support import validate
from sync.domain import Action, ActionKind, Situation

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness, HRRow
    from sync.simulator import Simulator

ORPHANS = 6
DRIFTED = 2
# Few deletes allowed: the orphans (deleted under IDSYNC_REACTIONS__ORPHANED=delete) block.
BLOCKING = {"IDSYNC_REACTIONS__ORPHANED": "delete", "IDSYNC_SAFETY__MAX_DELETES": "3"}


def _orphans_and_drift(sim: Simulator) -> list[HRRow]:
    """Everyone of HR matched; ORPHANS more people hold values HR does not have (`ZZ..`, sorted
    after every HR id, so the plan's order puts their deletes last); the last DRIFTED people of
    HR hold a value that is not theirs (a re-point: a delete and a write)."""
    people = sim.world.people_list()
    for i, person in enumerate(people[COUNT : COUNT + ORPHANS]):
        sim.world.set_reference(f"ZZGONE{i}", person.id)
    for i, person in enumerate(people[COUNT - DRIFTED : COUNT]):
        sim.world.set_reference(f"ZZWRONG{i}", person.id)
    return everyone(sim)


@pytest.fixture
def blocked(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> tuple[Harness, str]:
    """A reconcile blocked by IDSYNC_SAFETY__MAX_DELETES, and the id of the plan it stored."""
    h = served(rows=_orphans_and_drift)
    result = idsync("reconcile", "--json", env=h.env(**BLOCKING))
    assert result.code == 3, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "blocked"
    assert report["plan_id"]
    return h, report["plan_id"]


def _rows(stdout: str) -> list[list[str]]:
    """The cells of every table row printed (rich's box lines: `│ a │ b │`)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.strip().startswith("│")
    ]


def _action_rows(stdout: str) -> list[list[str]]:
    """The rows of the actions table of `plan show` (phase, action, HR id, ...)."""
    return [r for r in _rows(stdout) if len(r) == 8 and r[1] in {"write", "delete"}]


def test_plan_show_lists_deletes_then_repoints_then_the_rest(
    blocked: tuple[Harness, str], idsync: Callable[..., CliResult]
) -> None:
    """`plan show` lists the deletes first, then the re-points, then the other actions, each
    naming the safety limit that counts it, though the plan's own order is by HR id."""
    h, plan_id = blocked
    result = idsync("plan", "show", plan_id[:8], "--all", env=h.env(**BLOCKING))
    assert result.code == 0, result.output
    rows = _action_rows(result.stdout)
    with h.store() as store:
        planned = [a for a, _ in store.plans.iter_plan_actions(plan_id)]
    assert len(rows) == len(planned)
    assert planned[0].kind is ActionKind.WRITE  # the plan itself: by HR id, E000 first
    deletes = sum(1 for a in planned if a.kind is ActionKind.DELETE)
    repoints = sum(
        1 for a in planned if a.situation is Situation.DRIFTED and a.kind is not ActionKind.DELETE
    )
    assert deletes >= ORPHANS
    assert repoints >= DRIFTED
    groups = [
        "delete" if r[1] == "delete" else "re-point" if "re-points" in r[5] else "rest"
        for r in rows
    ]
    assert groups == ["delete"] * deletes + ["re-point"] * repoints + ["rest"] * (
        len(rows) - deletes - repoints
    )
    assert all(r[5].startswith("deletes") for r in rows[:deletes])
    assert "... and" not in result.stdout
    assert f"count {deletes} delete(s) (IDSYNC_SAFETY__MAX_DELETES)" in result.stdout


def test_plan_show_limit_keeps_the_blocking_actions_and_says_how_to_see_the_rest(
    blocked: tuple[Harness, str], idsync: Callable[..., CliResult]
) -> None:
    """`plan show --limit N` lists the first N blocking actions and its "... and M more" line
    names `--all` and `--limit`; without --limit the default is 50 rows."""
    h, plan_id = blocked
    with h.store() as store:
        total = sum(1 for _ in store.plans.iter_plan_actions(plan_id))
    result = idsync("plan", "show", plan_id[:8], "--limit", "4", env=h.env(**BLOCKING))
    assert result.code == 0, result.output
    rows = _action_rows(result.stdout)
    assert [r[1] for r in rows] == ["delete"] * 4
    more = re.search(r"\.\.\. and (\d+) more: (.*)", result.stdout)
    assert more is not None, result.stdout
    assert int(more.group(1)) == total - 4
    assert f"idsync plan show {plan_id[:8]} --all" in more.group(2)
    assert "--limit N" in more.group(2)
    default = idsync("plan", "show", plan_id[:8], env=h.env(**BLOCKING))
    assert len(_action_rows(default.stdout)) == min(total, 50)


def test_plan_show_action_filters_by_kind_and_refuses_an_unknown_kind(
    blocked: tuple[Harness, str], idsync: Callable[..., CliResult]
) -> None:
    """`--action delete` lists only the deletes; an unknown kind exits 2 naming every kind."""
    h, plan_id = blocked
    deletes = idsync("plan", "show", plan_id[:8], "--action", "delete", env=h.env(**BLOCKING))
    assert deletes.code == 0, deletes.output
    rows = _action_rows(deletes.stdout)
    assert rows
    assert {r[1] for r in rows} == {"delete"}
    assert {f"ZZGONE{i}" for i in range(ORPHANS)} <= {r[4] for r in rows}
    writes = idsync("plan", "show", plan_id[:8], "--action", "write", "--limit", "2", env=h.env())
    assert [r[1] for r in _action_rows(writes.stdout)] == ["write", "write"]
    assert f"idsync plan show {plan_id[:8]} --action write --all" in writes.stdout
    bad = idsync("plan", "show", plan_id[:8], "--action", "rename", env=h.env())
    assert bad.code == 2
    assert "write, delete" in bad.stderr
    assert "Traceback" not in bad.output


def test_plan_show_refuses_contradictions_and_keeps_its_json_whole(
    blocked: tuple[Harness, str], idsync: Callable[..., CliResult]
) -> None:
    """`--all` with `--limit`, or `--json` with a filter, exit 2; `--json --all` is the whole
    plan, valid against the plan-show schema."""
    h, plan_id = blocked
    both = idsync("plan", "show", plan_id[:8], "--all", "--limit", "3", env=h.env())
    assert both.code == 2
    assert "--all and --limit" in both.stderr
    filtered = idsync("plan", "show", plan_id[:8], "--json", "--action", "delete", env=h.env())
    assert filtered.code == 2
    assert "jq" in filtered.stderr
    whole = idsync("plan", "show", plan_id[:8], "--json", "--all", env=h.env())
    assert whole.code == 0, whole.output
    document = validate(json.loads(whole.stdout))
    assert len(document["actions"]) == document["plan"]["action_count"]


def test_a_blocked_reconcile_prints_what_blocked_it_and_the_next_step_on_stdout(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A reconcile blocked by a threshold prints the limit it exceeded and `idsync plan show ID`
    / `idsync apply ID` on stdout, not only on stderr."""
    h = served(rows=_orphans_and_drift)
    result = idsync("reconcile", env=h.env(**BLOCKING))
    assert result.code == 3, result.output
    with h.store() as store:
        (plan,) = store.plans.plans()
    short = plan.id[:8]
    assert "blocked by: " in result.stdout
    assert "IDSYNC_SAFETY__MAX_DELETES" in result.stdout
    assert f"`idsync plan show {short}`" in result.stdout
    assert f"`idsync apply {short}`" in result.stdout
    assert h.writes() == 0


def test_a_reconcile_blocked_by_the_input_gate_does_not_advise_apply(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """Blocked by the input gate (an emptied HR table), stdout names the plan to review and says
    the gate blocks `idsync apply` too, instead of advising it."""
    h = served()
    assert idsync("reconcile", env=h.env()).code == 0
    h.set_hr([])
    result = idsync("reconcile", env=h.env())
    assert result.code == 3, result.output
    assert "blocked by: the HR snapshot" in result.stdout
    assert "idsync plan show" in result.stdout
    assert "the input gate blocks `idsync apply` too" in result.stdout
    assert "approve exactly it" not in result.stdout


def _add_events(h: Harness, run_id: str, count: int) -> None:
    """``count`` more write events recorded (pending) for ``run_id``: a long run's history."""
    actions = [
        Action(ActionKind.WRITE, f"X{i:05d}", 1, f"X{i:05d}", Situation.UNLINKED, "test")
        for i in range(count)
    ]
    with h.store() as store:
        store.events.record_pending(run_id=run_id, actions=actions)


def test_runs_show_says_what_it_leaves_out_and_all_shows_every_event(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """`runs show` of a run with more than 1,000 events says "showing the latest 1,000 of N" and
    `--all` for every one; `--all` lists them all, and --json carries events_total."""
    h = served()
    assert idsync("reconcile", env=h.env()).code == 0
    with h.store() as store:
        (run,) = store.runs.runs()
    _add_events(h, run.id, 1200)
    total = COUNT + 1200
    shown = idsync("runs", "show", run.id[:8], env=h.env())
    assert shown.code == 0, shown.output
    assert f"showing the latest 1,000 of {total:,} events" in shown.stdout
    assert f"`idsync runs show {run.id[:8]} --all` for every one" in shown.stdout
    every = idsync("runs", "show", run.id[:8], "--all", env=h.env())
    assert every.code == 0, every.output
    assert "showing the latest" not in every.stdout
    history = [r for r in _rows(every.stdout) if len(r) == 8 and r[1].startswith(run.id[:8])]
    assert len(history) == total
    data = validate(json.loads(idsync("runs", "show", run.id, "--json", env=h.env()).stdout))
    assert (data["events_total"], len(data["events"])) == (total, 1000)
    data = validate(
        json.loads(idsync("runs", "show", run.id, "--json", "--all", env=h.env()).stdout)
    )
    assert (data["events_total"], len(data["events"])) == (total, total)


def test_runs_show_of_a_small_run_says_nothing_is_left_out(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """A run with fewer than 1,000 events is shown whole, with no "showing" line."""
    h = served()
    assert idsync("reconcile", env=h.env()).code == 0
    with h.store() as store:
        (run,) = store.runs.runs()
    shown = idsync("runs", "show", run.id[:8], env=h.env())
    assert "showing the latest" not in shown.stdout
    data = validate(json.loads(idsync("runs", "show", run.id, "--json", env=h.env()).stdout))
    assert data["events_total"] == len(data["events"]) == COUNT


def test_apply_and_rollback_say_truly_why_they_read_protime_in_full(
    blocked: tuple[Harness, str], idsync: Callable[..., CliResult]
) -> None:
    """`apply` and `rollback --yes` print "Protime read: full (apply/rollback judges every
    precondition on a full read)", never "asked for (--full)", in text, JSON and `runs show`."""
    h, plan_id = blocked
    applied = idsync("apply", plan_id[:8], env=h.env(**BLOCKING))
    assert applied.code == 0, applied.output
    assert "Protime read: full (apply judges every precondition on a full read)" in applied.stdout
    assert "--full" not in applied.stdout  # the logs (stderr) still say it: _people.py's
    again = idsync("apply", plan_id[:8], "--json", env=h.env(**BLOCKING))
    report = validate(json.loads(again.stdout))
    assert report["protime_read_reason"] == "apply judges every precondition on a full read"
    undo = idsync("rollback", report["run_id"][:8], "--yes", env=h.env(**BLOCKING))
    assert undo.code == 0, undo.output
    assert "Protime read: full (rollback judges every precondition on a full read)" in undo.stdout
    assert "--full" not in undo.stdout
    runs = validate(json.loads(idsync("runs", "--json", env=h.env()).stdout))["runs"]
    reasons = {r["trigger"]: r["protime_read_reason"] for r in runs if r["trigger"] != "cli"}
    assert reasons == {
        "apply": "apply judges every precondition on a full read",
        "rollback": "rollback judges every precondition on a full read",
    }
    shown = idsync("runs", "show", report["run_id"][:8], env=h.env())
    assert "full (apply judges every precondition on a full read)" in shown.stdout
