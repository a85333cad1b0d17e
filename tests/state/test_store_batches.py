"""Writes of many rows go to the database in batches and still come back whole and in order."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import String, cast, select

from sync.domain import Action, ActionKind, Classification, Outcome, Precondition, Rule, Situation
from sync.state import ActionOutcome, StateStore, _events, _map, _outcomes
from sync.state._base import _WRITE_BATCH
from sync.state._dialect import Dialect

if TYPE_CHECKING:
    from sync.state import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COUNT = 2 * _WRITE_BATCH + 7  # three batches, the last one short


def _run(store: StateStore) -> str:
    return store.runs.start_run(trigger="cli", dry_run=False, forced=False)


def test_many_pending_events_keep_one_id_per_action_in_action_order(store: StateStore) -> None:
    """record_pending over three batches returns one id per action, in the order of the actions."""
    run_id = _run(store)
    actions = [
        Action(
            kind=ActionKind.WRITE,
            hr_id=f"E{i:06d}",
            protime_id=i + 1,
            value=f"E{i:06d}",
            situation=Situation.UNLINKED,
            reason="unlinked",
        )
        for i in reversed(range(COUNT))  # not sorted by id: order must come from the actions
    ]
    ids = store.events.record_pending(run_id=run_id, actions=actions)
    assert len(ids) == len(set(ids)) == COUNT
    events = {e.id: e.hr_id for e in store.events.events_for(run_id=run_id, limit=COUNT + 1)}
    assert [events[i] for i in ids] == [a.hr_id for a in actions]


def test_many_new_and_changed_classifications_are_all_stored(store: StateStore) -> None:
    """save_classifications inserts and then updates three batches of rows, every one of them."""
    first = [
        Classification(
            hr_id=f"E{i:06d}",
            situation=Situation.LINKED,
            protime_id=i + 1,
            rule=Rule.REFERENCE,
            reason="linked",
        )
        for i in range(COUNT)
    ]
    store.map.save_classifications(run_id=_run(store), classifications=first, now=T0)
    changed = [
        Classification(hr_id=c.hr_id, situation=Situation.UNMATCHED, reason="gone from Protime")
        for c in first
    ]
    store.map.save_classifications(run_id=_run(store), classifications=changed, now=T0)
    rows = list(store.map.iter_mappings())
    assert len(rows) == COUNT
    assert {(r.situation, r.protime_id, r.reason) for r in rows} == {
        ("unmatched", None, "gone from Protime")
    }


def test_pending_ids_and_the_databases_own_ids_never_collide(store: StateStore) -> None:
    """Ids allocated for a bulk of pending events and ids the database gives an admin's event
    interleave without a collision, each id naming the event it was returned for."""
    run_id = _run(store)

    def pending(prefix: str, count: int) -> list[int]:
        actions = [
            Action(
                kind=ActionKind.WRITE,
                hr_id=f"{prefix}{i}",
                protime_id=i + 1,
                value=f"{prefix}{i}",
                situation=Situation.UNLINKED,
                reason="unlinked",
            )
            for i in range(count)
        ]
        return store.events.record_pending(run_id=run_id, actions=actions)

    first = pending("A", 3)
    store.admin.ignore(hr_id="X1")  # an admin event, its id from the database's own autoincrement
    second = pending("B", 2)
    admin = [e.id for e in store.events.events_for(hr_id="X1")]
    assert len(admin) == 1
    assert len({*first, *admin, *second}) == 6
    assert max(first) < admin[0] < min(second)
    events = {e.id: e.hr_id for e in store.events.events_for(limit=10)}
    assert [events[i] for i in first + second] == ["A0", "A1", "A2", "B0", "B1"]


def _batch_of_every_kind(store: StateStore, p: str) -> None:
    """One run whose single outcome batch holds every kind of outcome, its HR ids prefixed."""
    run_id = _run(store)
    unlinked = Situation.UNLINKED
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            *(
                Classification(hr_id=f"{p}E{i}", situation=unlinked, protime_id=i)
                for i in (1, 2, 3, 4, 6)
            ),
            Classification(
                hr_id=f"{p}O1", situation=Situation.ORPHANED, protime_id=50, protime_value=f"{p}O1"
            ),
        ],
        now=T0,
    )

    def write(hr_id: str, pid: int, reason: str = "matched", situation: Situation = unlinked):
        return Action(
            kind=ActionKind.WRITE,
            hr_id=hr_id,
            protime_id=pid,
            value=hr_id,
            situation=situation,
            reason=reason,
        )

    actions = [
        write(f"{p}E1", 1),  # a plain write on an existing row
        write(f"{p}E2", 2, reason=""),  # no reason: "written"
        write(f"{p}E3", 3),  # a re-key: the person held another HR id
        write(f"{p}O1", 50, situation=Situation.ORPHANED),  # a rollback's write stays orphaned
        write(f"{p}E5", 5),  # no row yet: inserted
        Action(  # two outcomes for one HR id in one batch: their order matters
            kind=ActionKind.DELETE,
            hr_id=f"{p}E4",
            protime_id=40,
            value=f"{p}E4",
            situation=Situation.DRIFTED,
            reason="on the wrong person",
        ),
        write(f"{p}E4", 4, situation=Situation.DRIFTED),
        write(f"{p}E6", 6),  # refused
    ]
    expected = [Precondition(expect_value=None, expect_holder=None) for _ in actions]
    expected[2] = Precondition(expect_value=f"{p}OLD", expect_holder=None)
    ids = store.events.record_pending(run_id=run_id, actions=actions, preconditions=expected)
    outcomes = [
        ActionOutcome(event_id=i, action=a, outcome=Outcome.SUCCEEDED, http_status=201)
        for i, a in zip(ids, actions, strict=True)
    ]
    outcomes[-1] = ActionOutcome(
        event_id=ids[-1], action=actions[-1], outcome=Outcome.FAILED, http_status=400, error="no"
    )
    store.events.record_outcomes(outcomes)


def _comparable(store: StateStore, p: str) -> dict[str, tuple[object, ...]]:
    """The rows of prefix ``p``, unprefixed, times reduced to whether they are set."""
    found: dict[str, tuple[object, ...]] = {}
    for row in store.map.iter_mappings():
        if not row.hr_id.startswith(p):
            continue
        values = []
        for name, value in asdict(row).items():
            if name in ("hr_id", "last_run_id"):
                continue
            if name.endswith("_at"):
                values.append(value is not None)
            else:
                values.append(value.replace(p, "") if isinstance(value, str) else value)
        found[row.hr_id.removeprefix(p)] = tuple(values)
    return found


def test_outcomes_applied_in_bulk_equal_outcomes_applied_row_by_row(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-based path for succeeded writes leaves every row exactly as the row-by-row path."""
    _batch_of_every_kind(store, "A")
    monkeypatch.setattr(_outcomes, "_bulk_writes", lambda _conn, _dialect, _relevant: [])
    _batch_of_every_kind(store, "B")
    bulk, by_row = _comparable(store, "A"), _comparable(store, "B")
    assert set(bulk) == {"E1", "E2", "E3", "E4", "E5", "E6", "O1"}
    assert bulk == by_row
    e3 = store.map.mapping("AE3")
    assert e3 is not None
    assert (e3.situation, e3.previous_hr_id, e3.reason) == ("linked", "AOLD", "written: matched")
    o1 = store.map.mapping("AO1")
    assert o1 is not None
    assert o1.situation == "orphaned"


def test_the_bulk_path_takes_the_plain_writes_only(store: StateStore) -> None:
    """Only succeeded writes on an existing row, alone in their batch and matching their pending
    event, are applied in SQL; the rest go row by row."""
    taken: list[str] = []
    real = _outcomes._bulk_writes

    def spy(conn: object, dialect: object, relevant: object) -> list[ActionOutcome]:
        chosen = real(conn, dialect, relevant)  # type: ignore[arg-type]
        taken.extend(o.action.hr_id for o in chosen)
        return chosen

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_outcomes, "_bulk_writes", spy)
        _batch_of_every_kind(store, "A")
    assert sorted(taken) == ["AE1", "AE2", "AE3", "AO1"]


def test_pending_events_in_bulk_equal_pending_events_inserted_with_returning(
    store: StateStore, migrated: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pending events loaded as plain rows (COPY, executemany of tuples) are stored exactly as
    the portable INSERT ... RETURNING path stores them, created_at to the microsecond."""
    monkeypatch.setattr(_events, "_now", lambda: datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))
    run_id = _run(store)

    def actions(p: str) -> list[Action]:
        return [
            Action(
                kind=ActionKind.WRITE,
                hr_id=f"{p}E1",
                protime_id=1,
                value=f"{p}E1",
                situation=Situation.UNLINKED,
                reason="employee_number 1 matched person 1",
            ),
            Action(
                kind=ActionKind.DELETE,
                hr_id=f"{p}E2",
                protime_id=2,
                value=f"{p}E2",
                situation=Situation.DRIFTED,
                reason="",
            ),
            Action(
                kind=ActionKind.WRITE,
                hr_id=f"{p}E3",
                protime_id=3,
                value=f"{p}E3 \u00e9\t'\"\\N",  # text COPY would mangle unless escaped
                situation=Situation.UNLINKED,
                reason="a\nb",
            ),
        ]

    expected = [
        Precondition(expect_value=None, expect_holder=None),
        Precondition(expect_value="X", expect_holder=None),
        Precondition(expect_value="OLD", expect_holder=7),
    ]
    bulk = store.events.record_pending(run_id=run_id, actions=actions("A"), preconditions=expected)
    monkeypatch.setattr(store.db.dialect, "allocate_ids", lambda _conn, _column, _count: None)
    returned = store.events.record_pending(
        run_id=run_id, actions=actions("B"), preconditions=expected
    )
    events = {e.id: e for e in store.events.events_for(run_id=run_id, limit=10)}

    def comparable(ids: list[int], p: str) -> list[dict[str, object]]:
        rows = []
        for i in ids:
            row = asdict(events[i])
            del row["id"]
            row["hr_id"] = str(row["hr_id"]).removeprefix(p)
            row["value"] = str(row["value"]).removeprefix(p)
            rows.append(row)
        return rows

    assert comparable(bulk, "A") == comparable(returned, "B")
    assert events[bulk[2]].value == "AE3 \u00e9\t'\"\\N"
    assert events[bulk[0]].created_at == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # Stored alike too, not only read back alike: SQLite keeps timestamps as text, and text
    # written by the driver's own datetime adapter would sort apart from SQLAlchemy's.
    with migrated.engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(_events._E.id, cast(_events._E.created_at, String)).where(
                    _events._E.id.in_([bulk[0], returned[0]])
                )
            )
            .tuples()
            .all()
        )
    assert stored[bulk[0]] == stored[returned[0]]


@pytest.mark.parametrize("path", ["dialect", "generic"])
def test_update_rows_sets_values_and_constants_on_every_path(migrated: Database, path: str) -> None:
    """update_rows writes each row's own values and the shared constants, the same on the
    dialect's bulk path and on SQLAlchemy's executemany."""
    store = StateStore(migrated)
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            Classification(hr_id=f"E{i}", situation=Situation.UNMATCHED, reason="none")
            for i in range(3)
        ],
        now=T0,
    )
    later = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    second = _run(store)
    m = _map._M
    # "generic": what any other database gets, on this one.
    dialect = migrated.dialect if path == "dialect" else Dialect(driver=migrated.dialect.driver)
    with migrated.write() as conn:
        dialect.update_rows(
            conn,
            _map._MAPPINGS,
            m.hr_id,
            [m.protime_id, m.situation, m.reason],
            [("E0", 10, "linked", "it's\ttab"), ("E2", None, "disputed", "")],
            constants={"last_changed_at": later, "last_run_id": second},
        )
    rows = {r.hr_id: r for r in (store.map.mapping(f"E{i}") for i in range(3)) if r is not None}
    assert (rows["E0"].protime_id, rows["E0"].situation, rows["E0"].reason) == (
        10,
        "linked",
        "it's\ttab",
    )
    assert (rows["E2"].protime_id, rows["E2"].situation, rows["E2"].reason) == (
        None,
        "disputed",
        "",
    )
    assert rows["E0"].last_changed_at == rows["E2"].last_changed_at == later
    assert rows["E0"].last_run_id == rows["E2"].last_run_id == second
    assert (rows["E1"].situation, rows["E1"].last_changed_at, rows["E1"].last_run_id) == (
        "unmatched",
        T0,
        run_id,
    )
