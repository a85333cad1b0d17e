"""One sync's worth of state, written and read back through a store (tests of many syncs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sync.domain import (
    Action,
    ActionKind,
    Classification,
    Outcome,
    Person,
    Precondition,
    Rule,
    Situation,
)
from sync.state import ActionOutcome, PlanRow, RunSummary, StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = "k" * 64


def fill(store: StateStore, pid: int, *, finish: bool = True) -> dict[str, str]:
    """One sync's state: a run that wrote E2, its map (E1 linked to ``pid``, E2 written to
    ``pid + 1``), a stored plan, a snapshot of persons 1 and 2, a settlement, a learned rate."""
    run_id = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            Classification(
                hr_id="E1",
                situation=Situation.LINKED,
                protime_id=pid,
                rule=Rule.REFERENCE,
                evidence=f"HRMID=E1 on {pid}",
                reason="carries our reference",
                protime_value="E1",
            ),
            Classification(
                hr_id="E2",
                situation=Situation.UNLINKED,
                protime_id=pid + 1,
                rule=Rule.EMPLOYEE_NUMBER,
                reason="employee number matched",
            ),
        ],
        now=T0,
        prune=True,
    )
    write = Action(
        kind=ActionKind.WRITE,
        hr_id="E2",
        protime_id=pid + 1,
        value="E2",
        situation=Situation.UNLINKED,
        reason="employee number matched",
    )
    (event_id,) = store.events.record_pending(run_id=run_id, actions=[write])
    store.events.record_outcomes(
        [ActionOutcome(event_id=event_id, action=write, outcome=Outcome.SUCCEEDED, attempts=1)]
    )
    plan_id = str(uuid.uuid4())
    store.plans.save_plan(
        PlanRow(
            id=plan_id,
            kind="reconcile",
            created_at=datetime.now(UTC),
            run_id=run_id,
            rollback_of=None,
            settings_digest="s" * 64,
            snapshot_fingerprint=None,
            counts_by_situation={"unlinked": 1},
            actions_by_kind={"write": 1},
            would_block=(),
            action_count=1,
        ),
        [(write, Precondition(None, None, None))],
    )
    store.snapshot.save_people(
        full=[
            Person(id=1, employee_number=f"N{pid}", reference="E1"),
            Person(id=2, employee_number=f"M{pid}", reference=None),
        ],
        versions={1: f"v{pid}"},
        delta_link=f"/people?delta&deltaToken={pid}",
        fingerprint="f" * 64,
        full_read_at=T0,
        now=T0,
        run_id=run_id,
    )
    store.runs.remember_rate(run_id=run_id, rate=float(pid))
    if finish:
        store.runs.finish_run(
            run_id=run_id, status="succeeded", summary=RunSummary(hr_count=2, protime_count=2)
        )
        store.settled.settle(run_id=run_id, key=KEY)
    return {"run": run_id, "plan": plan_id}


def view(store: StateStore) -> dict[str, object]:
    """Everything a store reads about its sync, comparable."""
    feed = store.snapshot.people_feed()
    return {
        "E1": store.map.mapping("E1"),
        "E2": store.map.mapping("E2"),
        "map": list(store.map.iter_mappings()),
        "counts": store.map.counts_by_situation(),
        "linked": store.map.linked_pairs(),
        "prior": store.map.load_prior(),
        "runs": [r.id for r in store.runs.runs()],
        "events": [(e.id, e.run_id, e.hr_id, e.outcome) for e in store.events.events_for()],
        "plans": [p.id for p in store.plans.plans()],
        "feed": (feed.delta_link, feed.settled_key) if feed else None,
        "people": store.snapshot.load_people(),
        "versions": store.snapshot.people_versions(ids=[1, 2]),
        "rate": store.runs.learned_rate(),
    }
