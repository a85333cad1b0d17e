from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sync.domain import Action, ActionKind, Classification, Outcome, Rule, Situation
from sync.errors import StateError, UsageError
from sync.state import ActionOutcome, RunSummary, StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _linked(hr_id: str, pid: int, **extra) -> Classification:
    fields = {
        "situation": Situation.LINKED,
        "protime_id": pid,
        "rule": Rule.REFERENCE,
        "evidence": f"HRMID={hr_id}",
        "reason": "carries our reference",
        "protime_value": hr_id,
    }
    fields.update(extra)
    return Classification(hr_id=hr_id, **fields)


def _write(hr_id: str, pid: int, situation: Situation = Situation.UNLINKED) -> Action:
    return Action(
        kind=ActionKind.WRITE,
        hr_id=hr_id,
        protime_id=pid,
        value=hr_id,
        situation=situation,
        reason="employee_number matched",
    )


def _delete(value: str, pid: int) -> Action:
    return Action(
        kind=ActionKind.DELETE,
        hr_id=value,
        protime_id=pid,
        value=value,
        situation=Situation.ORPHANED,
        reason="HR id gone",
    )


def _run(store: StateStore, **kwargs) -> str:
    return store.runs.start_run(
        trigger=kwargs.pop("trigger", "cli"),
        dry_run=kwargs.pop("dry_run", False),
        forced=kwargs.pop("forced", False),
        **kwargs,
    )


# ----------------------------------------------------------------------------------- runs


def test_a_run_round_trips_with_its_summary(store: StateStore) -> None:
    """start_run records a running run; finish_run stores status and figures, read back as dicts."""
    run_id = _run(store, trigger="schedule", only=["E1", "E2"])
    started = store.runs.run(run_id)
    assert started is not None
    assert started.status == "running"
    assert started.only_ids == ("E1", "E2")
    assert started.started_at.tzinfo is not None
    assert started.pid is not None
    summary = RunSummary(
        hr_count=10,
        protime_count=12,
        counts_by_situation={"linked": 9, "invalid": 1},
        actions_by_outcome={"write": {"succeeded": 2, "failed": 1}},
        api_calls={"200": 14, "429": 3},
        error=None,
    )
    store.runs.finish_run(run_id=run_id, status="partial", summary=summary)
    done = store.runs.run(run_id)
    assert done is not None
    assert done.status == "partial"
    assert done.counts_by_situation == {"linked": 9, "invalid": 1}
    assert done.actions_by_outcome == {"write": {"succeeded": 2, "failed": 1}}
    assert done.api_calls == {"200": 14, "429": 3}
    assert done.finished_at is not None
    assert done.duration_seconds is not None
    assert done.duration_seconds >= 0
    assert store.runs.run("nope") is None


def test_bad_run_arguments_are_refused(store: StateStore) -> None:
    """Unknown triggers and statuses, 'running' as a final status and unknown runs are errors."""
    with pytest.raises(ValueError, match=r"cron"):
        _run(store, trigger="cron")
    run_id = _run(store)
    with pytest.raises(ValueError, match="final"):
        store.runs.finish_run(run_id=run_id, status="running", summary=RunSummary())
    with pytest.raises(ValueError, match=r"great"):
        store.runs.finish_run(run_id=run_id, status="great", summary=RunSummary())
    with pytest.raises(StateError, match="unknown run"):
        store.runs.finish_run(run_id="missing", status="failed", summary=RunSummary())


def test_runs_lists_newest_first_with_a_limit(store: StateStore) -> None:
    """runs() returns the latest runs first, at most `limit` of them."""
    ids = [_run(store) for _ in range(3)]
    listed = [r.id for r in store.runs.runs(limit=2)]
    assert listed == [ids[2], ids[1]]


def test_learned_rate_is_the_latest_run_that_learned_one(store: StateStore) -> None:
    """A run's rate memory recalls the rate of the newest run that remembered one (runs without
    one are skipped), and remembers on its own run's row, whenever the run finishes."""
    assert store.runs.learned_rate() is None
    first = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    store.runs.rate_memory(first).remember(42.5)
    store.runs.finish_run(run_id=first, status="succeeded", summary=RunSummary())
    second = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    assert store.runs.rate_memory(second).recall() == 42.5
    store.runs.finish_run(run_id=second, status="succeeded", summary=RunSummary())
    store.runs.rate_memory(second).remember(61.0)  # the client closes after the run row ends
    fixed = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    store.runs.rate_memory(fixed).remember(None)  # a fixed rate: nothing learned
    store.runs.finish_run(run_id=fixed, status="succeeded", summary=RunSummary())
    assert store.runs.learned_rate() == 61.0
    row = store.runs.run(second)
    assert row is not None
    assert row.rate_per_second == 61.0


def test_finishing_a_run_skips_its_pending_events(store: StateStore) -> None:
    """Events still pending when their run finishes become skipped; finished ones stay."""
    run_id = _run(store)
    first, second = store.events.record_pending(
        run_id=run_id, actions=[_write("E1", 1), _write("E2", 2)]
    )
    store.events.record_outcomes([ActionOutcome(first, _write("E1", 1), Outcome.SUCCEEDED, 201)])
    store.runs.finish_run(run_id=run_id, status="interrupted", summary=RunSummary())
    by_id = {e.id: e for e in store.events.events_for(run_id=run_id)}
    assert by_id[first].outcome == "succeeded"
    assert by_id[second].outcome == "skipped"
    assert by_id[second].completed_at is not None


def test_runs_left_running_by_a_dead_process_are_marked_interrupted(store: StateStore) -> None:
    """mark_interrupted_runs closes stale running runs and skips their pending events."""
    dead = _run(store)
    (event,) = store.events.record_pending(run_id=dead, actions=[_write("E1", 1)])
    current = _run(store)
    assert store.runs.mark_interrupted_runs(except_run_id=current) == 1
    dead_row = store.runs.run(dead)
    assert dead_row is not None
    assert dead_row.status == "interrupted"
    assert dead_row.error
    current_row = store.runs.run(current)
    assert current_row is not None
    assert current_row.status == "running"
    assert store.events.events_for(run_id=dead)[0].outcome == "skipped"
    assert store.events.events_for(run_id=dead)[0].id == event
    assert store.runs.mark_interrupted_runs(except_run_id=current) == 0


def test_load_prior_baseline_is_the_last_full_real_good_run(store: StateStore) -> None:
    """The gate's baseline ignores dry runs, --only runs and failed runs."""
    assert store.map.load_prior().last_good_hr_count is None
    good = _run(store)
    store.runs.finish_run(
        run_id=good, status="succeeded", summary=RunSummary(hr_count=100, protime_count=120)
    )
    for kwargs, status in (
        ({"dry_run": True}, "succeeded"),
        ({"only": ["E1"]}, "succeeded"),
        ({}, "failed"),
        ({}, "blocked"),
    ):
        other = _run(store, **kwargs)
        store.runs.finish_run(
            run_id=other, status=status, summary=RunSummary(hr_count=1, protime_count=1)
        )
    prior = store.map.load_prior()
    assert prior.last_good_hr_count == 100
    assert prior.last_good_protime_count == 120


# ------------------------------------------------------------------------ classifications


def test_save_says_whether_each_classification_got_its_own_row(store: StateStore) -> None:
    """Saving tells the run whether the map's rows are exactly its records: not when an id
    repeats or cannot key a row (a settled run takes its records from the map), whatever was
    unchanged since the last save."""
    rows = [_linked("E1", 1), Classification("E3", Situation.UNMATCHED, reason="no candidate")]
    for _ in range(2):  # the second save finds every row unchanged
        assert store.map.save_classifications(run_id=_run(store), classifications=rows, now=T0)
    repeated = [*rows, Classification("E3", Situation.INVALID, reason="duplicate id, rows 3, 7")]
    assert not store.map.save_classifications(run_id=_run(store), classifications=repeated, now=T0)
    unkeyable = [*rows, Classification("x" * 256, Situation.INVALID, reason="too long")]
    assert not store.map.save_classifications(run_id=_run(store), classifications=unkeyable, now=T0)


def test_save_inserts_then_only_touches_what_changed(store: StateStore) -> None:
    """New rows are inserted; unchanged rows only get last_verified_at; changed rows last_changed_at."""
    run1 = _run(store)
    store.map.save_classifications(
        run_id=run1,
        classifications=[
            _linked("E1", 1),
            _linked("E2", 2),
            Classification("E3", Situation.UNMATCHED, reason="no candidate"),
        ],
        now=T0,
    )
    e1 = store.map.mapping("E1")
    assert e1 is not None
    assert (e1.protime_id, e1.situation, e1.rule, e1.evidence) == (
        1,
        "linked",
        "reference",
        "HRMID=E1",
    )
    assert e1.first_seen_at == e1.last_changed_at == e1.last_verified_at == T0
    assert e1.last_run_id == run1

    run2 = _run(store)
    later = T0 + timedelta(hours=1)
    store.map.save_classifications(
        run_id=run2,
        classifications=[
            _linked("E1", 1),
            _linked("E2", 2, situation=Situation.DRIFTED, protime_value="X9", reason="holds X9"),
            Classification("E3", Situation.UNMATCHED, reason="no candidate"),
        ],
        now=later,
    )
    e1, e2 = store.map.mapping("E1"), store.map.mapping("E2")
    assert e1 is not None
    assert e2 is not None
    assert e1.last_verified_at == later
    assert e1.last_changed_at == T0
    assert e1.last_run_id == run2
    assert (e2.situation, e2.protime_value, e2.reason) == ("drifted", "X9", "holds X9")
    assert e2.last_changed_at == later
    assert e2.first_seen_at == T0
    assert store.map.counts_by_situation() == {"linked": 1, "drifted": 1, "unmatched": 1}


def test_an_unverified_save_writes_only_what_changed_and_keeps_last_verified(
    store: StateStore,
) -> None:
    """A save from an incremental read leaves unchanged rows alone and never sets last_verified_at."""
    run1 = _run(store)
    store.map.save_classifications(
        run_id=run1, classifications=[_linked("E1", 1), _linked("E2", 2)], now=T0
    )
    run2 = _run(store)
    later = T0 + timedelta(hours=1)
    store.map.save_classifications(
        run_id=run2,
        classifications=[
            _linked("E1", 1),
            _linked("E2", 2, situation=Situation.DRIFTED, protime_value="X9", reason="holds X9"),
            _linked("E3", 3),
        ],
        now=later,
        verified=False,
    )
    e1, e2, e3 = store.map.mapping("E1"), store.map.mapping("E2"), store.map.mapping("E3")
    assert e1 is not None
    assert e2 is not None
    assert e3 is not None
    # Unchanged: not written at all.
    assert (e1.last_verified_at, e1.last_changed_at, e1.last_run_id) == (T0, T0, run1)
    # Changed: its new values and this run, but still verified by the first run's full read.
    assert (e2.situation, e2.last_changed_at, e2.last_run_id) == ("drifted", later, run2)
    assert e2.last_verified_at == T0
    # New: no full read has classified it yet.
    assert (e3.first_seen_at, e3.last_verified_at, e3.last_run_id) == (later, None, run2)


def test_a_partial_save_over_many_unclassified_rows_verifies_only_its_own(
    store: StateStore,
) -> None:
    """A save that leaves more than one IN list of rows unclassified (an --only run) verifies,
    changes and inserts exactly its own rows, and leaves the others as they were."""
    run1 = _run(store)
    store.map.save_classifications(
        run_id=run1, classifications=[_linked(f"E{i}", i + 1) for i in range(700)], now=T0
    )
    run2 = _run(store)
    later = T0 + timedelta(hours=1)
    store.map.save_classifications(
        run_id=run2,
        classifications=[
            _linked("E1", 2),
            _linked("E2", 3, situation=Situation.DRIFTED, protime_value="X9", reason="holds X9"),
            _linked("N1", 900),
        ],
        now=later,
    )
    rows = {r.hr_id: r for r in store.map.iter_mappings()}
    assert len(rows) == 701
    assert (rows["E1"].last_verified_at, rows["E1"].last_changed_at) == (later, T0)
    assert (rows["E2"].situation, rows["E2"].last_changed_at) == ("drifted", later)
    assert rows["E2"].last_verified_at == later
    assert (rows["N1"].first_seen_at, rows["N1"].last_verified_at) == (later, later)
    others = [r for k, r in rows.items() if k not in {"E1", "E2", "N1"}]
    assert {(r.last_verified_at, r.last_run_id) for r in others} == {(T0, run1)}


def test_save_keeps_admin_flags_and_prunes_only_when_asked(store: StateStore) -> None:
    """save never flips manual/ignored; prune drops unclassified rows except admin-pinned ones."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[_linked("E1", 1), _linked("E2", 2), _linked("E3", 3)],
        now=T0,
    )
    store.admin.link(hr_id="E1", protime_id=1)
    store.admin.ignore(hr_id="E2")
    store.map.save_classifications(
        run_id=run_id, classifications=[_linked("E1", 1), _linked("E2", 2)], now=T0
    )
    e1, e2 = store.map.mapping("E1"), store.map.mapping("E2")
    assert e1 is not None
    assert e2 is not None
    assert e1.manual
    assert e2.ignored
    assert store.map.mapping("E3") is not None  # not pruned without prune=True

    store.map.save_classifications(run_id=run_id, classifications=[], now=T0, prune=True)
    assert store.map.mapping("E3") is None
    assert store.map.mapping("E1") is not None
    assert store.map.mapping("E2") is not None


def test_save_skips_unkeyable_ids_and_keeps_the_first_duplicate(store: StateStore) -> None:
    """Empty or over-long ids are not stored; a repeated hr_id keeps its first classification."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            Classification("", Situation.INVALID, reason="empty"),
            Classification("x" * 300, Situation.INVALID, reason="too long"),
            Classification("D1", Situation.INVALID, reason="duplicate id, rows 3, 7"),
            Classification("D1", Situation.INVALID, reason="second"),
        ],
        now=T0,
    )
    d1 = store.map.mapping("D1")
    assert d1 is not None
    assert d1.reason == "duplicate id, rows 3, 7"
    assert store.map.counts_by_situation() == {"invalid": 1}


def test_disputed_candidates_round_trip(store: StateStore) -> None:
    """The Protime ids that made a record disputed come back as a tuple of ints."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[Classification("E1", Situation.DISPUTED, candidates=(7, 9), reason="two")],
        now=T0,
    )
    row = store.map.mapping("E1")
    assert row is not None
    assert row.candidates == (7, 9)


# ---------------------------------------------------------------------------- outcomes


def test_pending_events_are_written_in_order_with_previous_values(store: StateStore) -> None:
    """record_pending returns ids in action order; previous_value is what the person held."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[_linked("E1", 1, situation=Situation.DRIFTED, protime_value="OLD")],
        now=T0,
    )
    actions = [_write("E1", 1, Situation.DRIFTED), _delete("GONE", 5), _write("E2", 2)]
    ids = store.events.record_pending(run_id=run_id, actions=actions)
    assert len(ids) == 3
    assert ids == sorted(ids)
    events = {e.id: e for e in store.events.events_for(run_id=run_id)}
    assert [events[i].hr_id for i in ids] == ["E1", "GONE", "E2"]
    assert [events[i].previous_value for i in ids] == ["OLD", "GONE", None]
    assert {e.outcome for e in events.values()} == {"pending"}
    assert store.events.record_pending(run_id=run_id, actions=[]) == []


def test_outcomes_update_events_and_mapping_rows(store: StateStore) -> None:
    """Success links and clears failures; permanent failure sets the fingerprint; retriable counts."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            Classification("E1", Situation.UNLINKED, protime_id=1),
            Classification("E2", Situation.UNLINKED, protime_id=2),
            Classification("E3", Situation.UNLINKED, protime_id=3),
            Classification("E4", Situation.UNLINKED, protime_id=4),
        ],
        now=T0,
    )
    actions = [_write("E1", 1), _write("E2", 2), _write("E3", 3), _write("E4", 4)]
    ids = store.events.record_pending(run_id=run_id, actions=actions)
    store.events.record_outcomes(
        [
            ActionOutcome(ids[0], actions[0], Outcome.SUCCEEDED, 201),
            ActionOutcome(ids[1], actions[1], Outcome.FAILED, 404, "person not found", 1),
            ActionOutcome(ids[2], actions[2], Outcome.RETRIABLE, 503, "unavailable", 8),
            ActionOutcome(ids[3], actions[3], Outcome.SKIPPED),
        ]
    )
    e1, e2, e3, e4 = (store.map.mapping(k) for k in ("E1", "E2", "E3", "E4"))
    assert e1 is not None
    assert (e1.situation, e1.last_written_value, e1.protime_value, e1.last_error) == (
        "linked",
        "E1",
        "E1",
        None,
    )
    assert e2 is not None
    assert (e2.situation, e2.failed_fingerprint, e2.last_error, e2.attempts) == (
        "failed",
        actions[1].fingerprint,
        "person not found",
        1,
    )
    assert e3 is not None
    assert (e3.situation, e3.attempts, e3.last_error, e3.failed_fingerprint) == (
        "unlinked",
        8,
        "unavailable",
        None,
    )
    assert e4 is not None
    assert (e4.situation, e4.attempts) == ("unlinked", 0)
    events = {e.id: e for e in store.events.events_for(run_id=run_id)}
    assert [events[i].outcome for i in ids] == ["succeeded", "failed", "retriable", "skipped"]
    assert events[ids[1]].http_status == 404
    assert events[ids[2]].attempts == 8
    assert store.map.load_prior().failed == {"E2": actions[1].fingerprint}

    # A later success clears the failure.
    (again,) = store.events.record_pending(run_id=run_id, actions=[actions[1]])
    store.events.record_outcomes([ActionOutcome(again, actions[1], Outcome.SUCCEEDED, 200)])
    e2 = store.map.mapping("E2")
    assert e2 is not None
    assert (e2.situation, e2.failed_fingerprint, e2.attempts, e2.last_error) == (
        "linked",
        None,
        0,
        None,
    )


def test_deleting_an_orphan_removes_its_row_but_not_its_history(store: StateStore) -> None:
    """A successful delete of an orphaned value drops the orphan row; the events remain."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            Classification("GONE", Situation.ORPHANED, protime_id=5, protime_value="GONE")
        ],
        now=T0,
    )
    action = _delete("GONE", 5)
    (event,) = store.events.record_pending(run_id=run_id, actions=[action])
    store.events.record_outcomes([ActionOutcome(event, action, Outcome.SUCCEEDED, 204)])
    assert store.map.mapping("GONE") is None
    assert [e.action for e in store.events.events_for(hr_id="GONE")] == ["delete"]


def test_outcome_without_a_mapping_row_creates_one(store: StateStore) -> None:
    """An outcome for an HR id with no row yet creates the row instead of losing the result."""
    run_id = _run(store)
    action = _write("NEW", 8)
    (event,) = store.events.record_pending(run_id=run_id, actions=[action])
    store.events.record_outcomes([ActionOutcome(event, action, Outcome.SUCCEEDED, 201)])
    row = store.map.mapping("NEW")
    assert row is not None
    assert (row.situation, row.protime_id, row.last_written_value) == ("linked", 8, "NEW")


def test_pending_is_not_an_outcome(store: StateStore) -> None:
    """record_outcomes refuses 'pending'."""
    with pytest.raises(ValueError, match="pending"):
        store.events.record_outcomes([ActionOutcome(1, _write("E1", 1), Outcome.PENDING)])


# ------------------------------------------------------------------------------- reads


def test_lookups_both_ways_and_event_filters(store: StateStore) -> None:
    """mapping, mapping_by_protime_id and events_for answer from the state alone, newest first."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[_linked("E1", 1), Classification("OLD", Situation.ORPHANED, protime_id=1)],
        now=T0,
    )
    assert [m.hr_id for m in store.map.mapping_by_protime_id(1)] == ["E1", "OLD"]
    assert store.map.mapping_by_protime_id(99) == []
    assert store.map.mapping("missing") is None
    ids = store.events.record_pending(
        run_id=run_id, actions=[_write("E1", 1), _write("E1", 1), _write("E2", 2)]
    )
    assert [e.id for e in store.events.events_for(hr_id="E1")] == [ids[1], ids[0]]
    assert [e.id for e in store.events.events_for(protime_id=2)] == [ids[2]]
    assert [e.id for e in store.events.events_for(run_id=run_id, limit=1)] == [ids[2]]
    assert [e.id for e in store.events.events_for(hr_id="E1", protime_id=2)] == []


def test_iter_mappings_streams_every_row_in_id_order(store: StateStore) -> None:
    """iter_mappings yields all rows, ordered by HR id, as plain values."""
    run_id = _run(store)
    keys = [f"E{i:04d}" for i in range(2500)]
    store.map.save_classifications(
        run_id=run_id,
        classifications=[_linked(k, i + 1) for i, k in enumerate(reversed(keys))],
        now=T0,
    )
    streamed = list(store.map.iter_mappings())
    assert [m.hr_id for m in streamed] == keys
    assert all(m.first_seen_at.tzinfo is not None for m in streamed[:5])


def test_linked_pairs_are_the_linked_rows_with_their_person(store: StateStore) -> None:
    """linked_pairs maps every linked HR id to its person; other situations are left out."""
    run_id = _run(store)
    store.map.save_classifications(
        run_id=run_id,
        classifications=[
            _linked("E1", 1),
            _linked("E2", 2),
            Classification(hr_id="E3", situation=Situation.UNLINKED, protime_id=3),
            Classification(hr_id="E4", situation=Situation.UNMATCHED),
        ],
        now=T0,
    )
    assert store.map.linked_pairs() == {"E1": 1, "E2": 2}


def test_timestamps_come_back_as_aware_utc(store: StateStore) -> None:
    """A time given in another zone is stored and read back as the same instant in UTC."""
    run_id = _run(store)
    plus_two = datetime(2026, 6, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    store.map.save_classifications(run_id=run_id, classifications=[_linked("E1", 1)], now=plus_two)
    row = store.map.mapping("E1")
    assert row is not None
    assert row.first_seen_at == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert row.first_seen_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    """A naive datetime cannot reach the database: its zone would be a guess."""
    run_id = _run(store)
    with pytest.raises(Exception, match="naive"):
        store.map.save_classifications(
            run_id=run_id, classifications=[_linked("E1", 1)], now=T0.replace(tzinfo=None)
        )


# ------------------------------------------------------------------------------ admin


def test_link_and_unlink_write_audit_events(store: StateStore) -> None:
    """link pins an HR id to a person (manual link in load_prior); unlink removes it; both audited."""
    store.admin.link(hr_id="E1", protime_id=10)
    row = store.map.mapping("E1")
    assert row is not None
    assert (row.manual, row.protime_id, row.rule) == (True, 10, "manual")
    assert store.map.load_prior().manual_links == {"E1": 10}
    store.admin.link(hr_id="E1", protime_id=11)
    store.admin.unlink(hr_id="E1")
    row = store.map.mapping("E1")
    assert row is not None
    assert not row.manual
    assert store.map.load_prior().manual_links == {}
    events = store.events.events_for(hr_id="E1")
    assert [(e.action, e.value, e.previous_value, e.run_id) for e in events] == [
        ("unlink", None, "11", None),
        ("link", "11", "10", None),
        ("link", "10", None, None),
    ]
    with pytest.raises(UsageError, match="no manual link"):
        store.admin.unlink(hr_id="E1")


def test_link_refuses_bad_ids_and_a_second_manual_link_to_one_person(store: StateStore) -> None:
    """An id that cannot be a reference value, or a person already linked by hand, is refused."""
    with pytest.raises(UsageError, match="forbidden"):
        store.admin.link(hr_id="E/1", protime_id=1)
    with pytest.raises(UsageError, match="positive"):
        store.admin.link(hr_id="E1", protime_id=0)
    store.admin.link(hr_id="E1", protime_id=1)
    with pytest.raises(UsageError, match="already linked by hand to HR id 'E1'"):
        store.admin.link(hr_id="E2", protime_id=1)


def test_ignore_and_unignore(store: StateStore) -> None:
    """ignore creates or flags the row (in load_prior); unignore clears it; both audited."""
    store.admin.ignore(hr_id="E1")
    row = store.map.mapping("E1")
    assert row is not None
    assert (row.ignored, row.situation) == (True, "ignored")
    assert store.map.load_prior().ignored_hr_ids == frozenset({"E1"})
    store.admin.unignore(hr_id="E1")
    assert store.map.load_prior().ignored_hr_ids == frozenset()
    assert [e.action for e in store.events.events_for(hr_id="E1")] == ["unignore", "ignore"]
    with pytest.raises(UsageError, match="not ignored"):
        store.admin.unignore(hr_id="E1")
    with pytest.raises(UsageError):
        store.admin.ignore(hr_id="")


def test_clear_failed_forgets_failures_so_they_are_retried(store: StateStore) -> None:
    """clear_failed clears the fingerprints (all or some), audits each, and returns the count."""
    run_id = _run(store)
    actions = [_write("E1", 1), _write("E2", 2), _write("E3", 3)]
    ids = store.events.record_pending(run_id=run_id, actions=actions)
    store.events.record_outcomes(
        [
            ActionOutcome(i, a, Outcome.FAILED, 400, "bad", 1)
            for i, a in zip(ids, actions, strict=True)
        ]
    )
    assert store.admin.clear_failed(hr_ids=["E1", "nobody"]) == 1
    assert set(store.map.load_prior().failed) == {"E2", "E3"}
    assert store.admin.clear_failed() == 2
    assert store.map.load_prior().failed == {}
    assert store.events.events_for(hr_id="E1")[0].action == "clear_failed"
    assert store.admin.clear_failed() == 0
