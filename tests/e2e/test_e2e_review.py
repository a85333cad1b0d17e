"""Review and approve over real HTTP with the installed CLI: a blocked first sync, its plan
applied exactly once, then rolled back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from contracts_support import validate
from e2e.harness import HRRow, row_for, store_engine
from sync.reconcile import RunStatus, apply_plan
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e.harness import Harness
    from sync.simulator import Simulator

KEPT = 18
ORPHANS = 12


def _idsync(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "idsync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sync"]
    env = {**os.environ, **h.env(IDSYNC_REACTIONS__ORPHANED="delete")}
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _tenant_with_orphans(sim: Simulator) -> list[HRRow]:
    # The first 18 people are employees; the next 12 carry HRMID values HR does not have.
    people = sim.world.people_list()
    for i, person in enumerate(people[KEPT : KEPT + ORPHANS]):
        sim.world.set_reference(f"GONE{i:02d}", person.id)
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(people[:KEPT])]


def test_blocked_first_sync_is_reviewed_applied_once_and_rolled_back(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    """12 orphans under delete block a first sync with a plan id; `apply ID` performs exactly it,
    a second apply performs nothing, and `rollback RUN --yes` puts every value back."""
    h = make_harness(rows=_tenant_with_orphans)
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        before = h.references()
        assert sum(1 for v in before if v.startswith("GONE")) == ORPHANS

        blocked = _idsync(h, "reconcile", "--json")
        assert blocked.returncode == 3, blocked.stderr
        report = validate(json.loads(blocked.stdout))
        assert report["status"] == "blocked"
        assert report["situations"]["orphaned"] == ORPHANS
        assert any("IDSYNC_SAFETY__MAX_DELETES" in line for line in report["would_block"])
        plan_id = report["plan_id"]
        assert plan_id
        assert h.references() == before  # blocked: nothing written

        shown = _idsync(h, "plan", "show", plan_id[:8], "--json")
        assert shown.returncode == 0, shown.stderr
        document = validate(json.loads(shown.stdout))
        assert (
            sorted(a["action"] for a in document["actions"])
            == ["delete"] * ORPHANS + ["write"] * KEPT
        )

        applied = _idsync(h, "apply", plan_id[:8], "--json")
        assert applied.returncode == 0, applied.stderr
        outcome = validate(json.loads(applied.stdout))
        assert outcome["applied"] == ORPHANS + KEPT
        assert outcome["stale"] == []
        after = h.references()
        assert not any(v.startswith("GONE") for v in after)
        assert sorted(after) == [f"E{i:03d}" for i in range(KEPT)]

        writes = h.writes()
        again = _idsync(h, "apply", plan_id[:8], "--json")
        assert again.returncode == 0, again.stderr
        second = validate(json.loads(again.stdout))
        assert (second["applied"], second["already_done"], second["stale"]) == (
            0,
            ORPHANS + KEPT,
            [],
        )
        assert h.writes() == writes  # nothing performed

        undo = _idsync(h, "rollback", outcome["run_id"][:8], "--yes")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        assert h.references() == before
        runs = _idsync(h, "runs", "--json")
        triggers = [r["trigger"] for r in validate(json.loads(runs.stdout))["runs"]]
        assert triggers[:3] == ["rollback", "apply", "apply"]
        listed = _idsync(h, "plans")
        assert re.search(r"rollback of " + outcome["run_id"][:8], listed.stdout)


def _blocked_plan(h: Harness) -> str:
    h.reactions["orphaned"] = "delete"
    result = h.run()
    assert result.status is RunStatus.BLOCKED, result.message
    assert result.plan_id is not None
    assert result.counts_by_situation["orphaned"] == ORPHANS  # the counts the run reached
    return result.plan_id


def test_apply_skips_stale_actions_and_strict_applies_nothing(
    make_harness: Callable[..., Harness],
) -> None:
    """A value moved between plan and apply makes its action stale (listed, recorded as an
    event); --strict then applies nothing, and without it the rest is applied."""
    h = make_harness(rows=_tenant_with_orphans)
    plan_id = _blocked_plan(h)
    people = h.sim.world.people_list()
    moved = people[KEPT]  # holds GONE00 in the plan
    elsewhere = people[-1]  # holds nothing
    h.sim.world.set_reference("GONE00", elsewhere.id)  # an admin moved it in Protime
    writes = h.writes()

    strict = apply_plan(settings=h.settings, plan_id=plan_id, strict=True, protime=h.client())
    assert strict.status is RunStatus.BLOCKED
    assert len(strict.stale) == 1
    assert h.writes() == writes

    result = apply_plan(settings=h.settings, plan_id=plan_id, protime=h.client())
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert [a for a, _ in result.stale] == [f"delete GONE00 on person {moved.id} (GONE00)"]
    assert f"'GONE00' is now on person {elsewhere.id}" in result.stale[0][1]
    assert result.actions_by_outcome == {
        "delete:succeeded": ORPHANS - 1,
        "write:succeeded": KEPT,
        "delete:stale": 1,
    }
    assert h.references()["GONE00"] == elsewhere.id  # never deleted from a person not reviewed
    with h.store() as store:
        (event,) = [
            e for e in store.events.events_for(run_id=result.run_id) if e.outcome == "stale"
        ]
    assert event.value == "GONE00"


def test_a_plan_older_than_its_ttl_is_refused(make_harness: Callable[..., Harness]) -> None:
    """IDSYNC_SAFETY__PLAN_TTL_HOURS: an expired plan is refused (blocked, exit 3), nothing done."""
    h = make_harness(rows=_tenant_with_orphans)
    plan_id = _blocked_plan(h)
    with h.store() as store, store_engine(store).begin() as conn:
        conn.execute(
            text("UPDATE plans SET created_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(hours=25), "id": plan_id},
        )
    writes = h.writes()
    result = apply_plan(settings=h.settings, plan_id=plan_id, protime=h.client())
    assert result.status is RunStatus.BLOCKED
    assert result.exit_code == 3
    assert "IDSYNC_SAFETY__PLAN_TTL_HOURS=24" in result.message
    assert h.writes() == writes


def test_plan_out_file_is_applied_from_the_file(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    """`plan --out F --json` stores the plan, writes it streamed (exit 3: it would block), and
    `apply F` performs it; `plans --json` lists it as applied."""
    h = make_harness(rows=_tenant_with_orphans)
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        path = tmp_path / "first-sync.json"
        planned = _idsync(h, "plan", "--out", str(path), "--json")
        assert planned.returncode == 3, planned.stderr
        summary = validate(json.loads(planned.stdout))
        assert summary["actions"] == {"delete": {"planned": ORPHANS}, "write": {"planned": KEPT}}
        assert summary["would_block"]
        assert h.writes() == 0
        document = validate(json.loads(path.read_text(encoding="utf-8")))
        assert document["plan"]["plan_id"] == summary["plan_id"]
        assert len(document["actions"]) == ORPHANS + KEPT

        applied = _idsync(h, "apply", str(path), "--json")
        assert applied.returncode == 0, applied.stderr
        assert validate(json.loads(applied.stdout))["applied"] == ORPHANS + KEPT
        listed = validate(json.loads(_idsync(h, "plans", "--json").stdout))
        (only,) = listed["plans"]
        assert only["applied_by"] == json.loads(applied.stdout)["run_id"]


def test_a_value_changed_in_protime_since_idsync_wrote_it_says_so(
    make_harness: Callable[..., Harness],
) -> None:
    """The three-way view: a reference idsync wrote and someone changed in Protime is drifted
    "changed in Protime since idsync wrote it on ..."; the map keeps what idsync wrote and when."""
    h = make_harness(
        rows=lambda sim: [
            row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:5])
        ]
    )
    assert h.run().status is RunStatus.SUCCEEDED
    person = h.sim.world.people_list()[0]
    h.sim.world.set_reference("TYPO", person.id)  # someone overwrote E000 in Protime
    dry = h.run(dry_run=True)
    assert dry.plan is not None
    (record,) = [c for c in dry.plan.classifications if c.hr_id == "E000"]
    assert record.reason.startswith("changed in Protime since idsync wrote it on ")
    with h.store() as store:
        row = store.map.mapping("E000")
    assert row is not None
    assert (row.hr_wants, row.last_written_value) == ("E000", "E000")
    assert row.last_written_at is not None


def test_the_installed_cli_shows_what_blocked_a_first_sync_and_why_apply_reads_in_full(
    make_harness: Callable[..., Harness],
) -> None:
    """With the installed `idsync`: a blocked reconcile prints its next step on stdout, `plan
    show --limit` lists the deletes (sorted after the writes by HR id) first, and `apply` says
    it read Protime in full to judge the preconditions."""
    h = make_harness(rows=_tenant_with_orphans)
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        blocked = _idsync(h, "reconcile")
        assert blocked.returncode == 3, blocked.stderr
        found = re.search(r"next: review the plan with `idsync plan show (\w{8})`", blocked.stdout)
        assert found is not None, blocked.stdout
        short = found.group(1)
        assert f"approve exactly it with `idsync apply {short}`" in blocked.stdout

        shown = _idsync(h, "plan", "show", short, "--limit", str(ORPHANS))
        assert shown.returncode == 0, shown.stderr
        listed = re.findall(r"│\s*\d+\s*│\s*(write|delete)\s*│", shown.stdout)
        assert listed == ["delete"] * ORPHANS
        assert f"... and {KEPT} more: `idsync plan show {short} --all`" in shown.stdout

        applied = _idsync(h, "apply", short)
        assert applied.returncode == 0, applied.stderr
        assert "Protime read: full (apply judges every precondition on a full read)" in (
            applied.stdout
        )
