"""Properties of stored plans over random worlds (hypothesis), under 409 and replace semantics:
plan then apply equals a reconcile, a mutated Protime makes exactly the touched actions stale,
and a rollback restores the Protime state before the run.

The worlds are those of ``test_reconcile_properties``; Protime is ``reconcile_model.ProtimeModel``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from reconcile_model import ProtimeModel
from test_reconcile_properties import SETTINGS, World, decide, worlds

from sync.domain import Action, ActionKind, Outcome, Plan, Precondition
from sync.reconcile._preconditions import Current, hr_fingerprints, iter_preconditions, verdicts
from sync.reconcile._rollback import rollback_actions
from sync.state import EventRow

MODES = st.sampled_from(["conflict", "replace"])


def _planned(world: World) -> list[tuple[Action, Precondition]]:
    the_plan = decide(world)
    return list(zip(the_plan.actions, iter_preconditions(the_plan, world.hr), strict=True))


def _check(world: World, planned, people) -> list[str]:
    current = Current.for_actions(people, planned)
    hr_now = hr_fingerprints(world.hr, {a.hr_id for a, _ in planned})
    return [v.state for v in verdicts(planned, current, hr_now)]


def _apply(model: ProtimeModel, actions, rng) -> None:
    model.apply(Plan(classifications=(), actions=tuple(actions)), rng)


def _events(planned) -> list[EventRow]:
    """The succeeded events a run that performed ``planned`` records (its preconditions)."""
    now = datetime.now(UTC)
    return [
        EventRow(
            id=i,
            run_id="r",
            hr_id=a.hr_id,
            protime_id=a.protime_id,
            action=a.kind.value,
            situation=a.situation.value,
            value=a.value,
            previous_value=pre.expect_value,
            reason=a.reason,
            outcome=Outcome.SUCCEEDED.value,
            http_status=200,
            error=None,
            attempts=1,
            created_at=now,
            completed_at=now,
            previous_protime_id=pre.expect_holder,
        )
        for i, (a, pre) in enumerate(sorted(planned, key=lambda p: p[0].phase))
    ]


@SETTINGS
@given(world=worlds(), mode=MODES, rng=st.randoms())
def test_plan_then_apply_ends_where_reconcile_ends_and_a_second_apply_does_nothing(
    world, mode, rng
):
    """Unchanged inputs: every action applies, the result equals a reconcile's; then all done."""
    reconciled = ProtimeModel.of(world.people, mode)
    _apply(reconciled, decide(world).actions, rng)

    planned = _planned(world)
    states = _check(world, planned, world.people)
    assert set(states) <= {"apply"}
    applied = ProtimeModel.of(world.people, mode)
    _apply(applied, [a for a, _ in planned], rng)
    assert applied.conflicts == []
    assert applied.pairs == reconciled.pairs

    assert set(_check(world, planned, applied.persons())) <= {"done"}


@SETTINGS
@given(world=worlds(), mode=MODES, data=st.data(), rng=st.randoms())
def test_mutating_protime_makes_exactly_the_touched_actions_stale(world, mode, data, rng):
    """Persons given a new value between plan and apply: the actions on them or on the values
    they held (and what waits for those) are stale; every other action applies cleanly."""
    planned = _planned(world)
    ids = [p.id for p in world.people]
    mutated = set(data.draw(st.lists(st.sampled_from(ids), unique=True) if ids else st.just([])))
    model = ProtimeModel.of(world.people, mode)
    model.pairs = {(v, p) for v, p in model.pairs if p not in mutated}
    model.pairs |= {(f"M{p}", p) for p in mutated}

    expected: list[str] = []
    stale_records: set[str] = set()
    for a, pre in sorted(planned, key=lambda item: item[0].phase):
        if a.kind is ActionKind.DELETE and (a.value, a.protime_id) not in model.pairs:
            state = "done"
        elif (
            a.protime_id in mutated
            or pre.expect_holder in mutated
            or a.hr_id in stale_records
            or (a.depends_on is not None and a.depends_on in stale_records)
        ):
            state = "stale"
            stale_records.add(a.hr_id)
        else:
            state = "apply"
        expected.append(state)
    order = sorted(range(len(planned)), key=lambda i: planned[i][0].phase)
    got = _check(world, planned, model.persons())
    assert [got[i] for i in order] == expected

    _apply(model, [a for (a, _), s in zip(planned, got, strict=True) if s == "apply"], rng)
    assert model.conflicts == []
    assert model.broken_invariants() == []


@SETTINGS
@given(world=worlds(), mode=MODES, rng=st.randoms())
def test_rollback_of_a_run_restores_every_reference_value(world, mode, rng):
    """Reconcile, then apply the rollback of that run: Protime holds exactly what it held before."""
    planned = _planned(world)
    model = ProtimeModel.of(world.people, mode)
    before = set(model.pairs)
    _apply(model, [a for a, _ in planned], rng)
    assert model.conflicts == []

    undo = rollback_actions(_events(planned), run_id="run-1", reference_name="HRMID")
    current = Current.for_actions(model.persons(), undo)
    assert {v.state for v in verdicts(undo, current, {})} <= {"apply"}
    _apply(model, [a for a, _ in undo], rng)
    assert model.conflicts == []
    assert model.pairs == before
