"""Properties of classify + plan over random worlds (hypothesis).

Worlds are small on purpose, so that collisions are the rule: HR employees share employee and
badge numbers, persons carry stale references or other employees' ids, manual links point to
missing persons, invalid rows share ids with valid ones, ids are ignored or out of scope.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reconcile_model import ProtimeModel, by_id

from sync.config import ReactionSettings
from sync.domain import (
    ActionKind,
    HREmployee,
    HRSnapshot,
    InvalidHRRow,
    Person,
    Plan,
    PriorState,
    Rule,
    Situation,
)
from sync.reconcile._classify import classify
from sync.reconcile._plan import plan

HR_IDS = [f"H{i}" for i in range(8)]
STALE = ["S0", "S1", "S2"]
NUMBERS = ["E0", "E1", "E2", "E3", " E1"]
BADGES = ["B0", "B1", "B2"]
EMAILS = ["a@x.org", "A@X.org ", "b@x.org"]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class World:
    hr: HRSnapshot
    people: tuple[Person, ...]
    prior: PriorState
    rules: tuple[Rule, ...]
    reactions: ReactionSettings


def _maybe(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(values)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    # Half the worlds are "structured": employee and person numbers pair up one to one, so most
    # employees resolve and the references Protime holds (other employees' ids, stale ids) make
    # chains of moves, swaps and holds. The other half draw numbers from a tiny pool: disputes.
    structured = draw(st.booleans())
    # Sizes are drawn uniformly: hypothesis's own lists favour very short ones.
    ids = draw(st.permutations(HR_IDS))[: draw(st.integers(0, len(HR_IDS)))]
    count = len(ids) + draw(st.integers(0, 2)) if structured else draw(st.integers(0, 8))
    person_ids = list(range(1, count + 1))
    if structured:
        numbers = [f"N{i}" for i in range(count)]
        emp_numbers = draw(st.permutations(numbers))
        person_numbers = draw(st.permutations(numbers))
    employees = tuple(
        HREmployee(
            hr_id=hr_id,
            employee_number=emp_numbers[i] if structured else draw(_maybe(NUMBERS)),
            badge_number=draw(_maybe(BADGES)),
            email=draw(_maybe(EMAILS)),
        )
        for i, hr_id in enumerate(ids)
    )
    raw_invalid = draw(st.lists(_maybe([*HR_IDS, " H1", "H/2", "  "]), max_size=2))
    invalid = tuple(InvalidHRRow(n + 100, raw, "bad row") for n, raw in enumerate(raw_invalid))
    out_of_scope = draw(st.frozensets(st.sampled_from(HR_IDS + STALE), max_size=3))
    pool = [*ids, *STALE[:1]] if structured and ids else HR_IDS + STALE
    values = draw(st.permutations(pool))[: draw(st.integers(0, count))]
    holders = draw(st.permutations(person_ids))
    held = dict(zip(holders, values, strict=False))  # Protime keeps a value on one person
    if structured and draw(st.booleans()):
        # Ids shuffled across the employees' own persons: swaps and longer cycles abound.
        own = {
            pid: ids[emp_numbers.index(number)]
            for pid, number in zip(person_ids, person_numbers, strict=True)
            if number in emp_numbers[: len(ids)]
        }
        shuffled = draw(st.permutations(sorted(own.values())))
        held = dict(zip(sorted(own), shuffled, strict=True))
    people = tuple(
        Person(
            id=pid,
            reference=held.get(pid),
            employee_number=person_numbers[pid - 1] if structured else draw(_maybe(NUMBERS)),
            badge_number=draw(_maybe(BADGES)),
            email=draw(_maybe(EMAILS)),
            out_of_service=draw(st.booleans()),
        )
        for pid in person_ids
    )
    manual = draw(st.dictionaries(st.sampled_from(HR_IDS), st.integers(1, count + 2), max_size=2))
    ignored = draw(st.frozensets(st.sampled_from(HR_IDS + STALE), max_size=2))
    if structured and draw(st.integers(0, 3)):
        rules: tuple[Rule, ...] = (Rule.EMPLOYEE_NUMBER, Rule.REFERENCE)[: draw(st.integers(1, 2))]
    else:
        order = draw(st.permutations(list(Rule)[:4]))
        rules = tuple(order[: draw(st.integers(1, 4))])
    reactions = ReactionSettings(
        unlinked=draw(st.sampled_from(["write", "report"])),
        drifted=draw(st.sampled_from(["repoint", "repoint", "repoint", "report"])),
        orphaned=draw(st.sampled_from(["report", "delete"])),
    )
    return World(
        hr=HRSnapshot(employees=employees, invalid=invalid, out_of_scope_ids=out_of_scope),
        people=people,
        prior=PriorState(manual_links=manual, ignored_hr_ids=ignored),
        rules=rules,
        reactions=reactions,
    )


def decide(world: World, people=None, *, prior=None, **kw) -> Plan:
    prior = prior or world.prior
    found = classify(hr=world.hr, people=people or world.people, prior=prior, rules=world.rules)
    return plan(classifications=found, reactions=world.reactions, prior=prior, **kw)


@SETTINGS
@given(world=worlds(), mode=st.sampled_from(["replace", "conflict", "naive"]), rng=st.randoms())
def test_after_apply_a_second_plan_is_empty(world, mode, rng):
    """Applied phase by phase in any order within a phase, a plan converges in one round."""
    model = ProtimeModel.of(world.people, mode)
    model.apply(decide(world), rng)
    # Stronger than "converges within a few rounds": no write ever meets a taken person.
    assert model.conflicts == []
    assert model.broken_invariants() == []
    again = decide(world, model.persons())
    assert again.actions == ()


@SETTINGS
@given(world=worlds(), rng=st.randoms())
def test_no_person_ever_holds_two_ids_and_no_id_sits_on_two_persons(world, rng):
    """With Protime accepting anything, the plan still never doubles a value or a person."""
    model = ProtimeModel.of(world.people, "naive")
    the_plan = decide(world)
    phases = sorted({a.phase for a in the_plan.actions})
    for phase in phases:  # checked after every phase, not just at the end
        model.apply(
            replace(the_plan, actions=[a for a in the_plan.actions if a.phase == phase]), rng
        )
        assert model.broken_invariants() == []


@SETTINGS
@given(world=worlds())
def test_nothing_is_done_for_disputed_unmatched_invalid_or_ignored(world):
    """Actions belong to unlinked, drifted or orphaned records, and spare protected values."""
    the_plan = decide(world)
    found = by_id(the_plan.classifications)
    hands_off = {
        hr_id for hr_id, c in found.items() if c.situation in {Situation.INVALID, Situation.IGNORED}
    }
    unresolved = {
        hr_id
        for hr_id, c in found.items()
        if c.situation in {Situation.DISPUTED, Situation.UNMATCHED}
    }
    for action in the_plan.actions:
        owner = found[action.hr_id]
        assert owner.situation in {Situation.UNLINKED, Situation.DRIFTED, Situation.ORPHANED}
        assert action.value not in hands_off
        assert action.value not in world.prior.ignored_hr_ids
        if action.kind is ActionKind.WRITE:
            assert action.value == action.hr_id
        elif action.value == action.hr_id:
            # An orphan's delete, or the one value of a swap that gives way and is rewritten.
            rewritten = (ActionKind.WRITE, action.value)
            assert owner.situation is Situation.ORPHANED or rewritten in {
                (a.kind, a.value) for a in the_plan.actions if a.phase > 0
            }
        elif action.value in found:
            # Another HR id's value is deleted only when an admin's link claims its person and
            # that id itself has nowhere to go; a moving id is moved, never deleted.
            assert owner.rule is Rule.MANUAL
            assert action.value in unresolved


@SETTINGS
@given(world=worlds(), rng=st.randoms())
def test_result_does_not_depend_on_input_order(world, rng):
    """Shuffling HR rows, invalid rows, persons and manual links changes nothing."""
    employees, invalid, people = (
        list(world.hr.employees),
        list(world.hr.invalid),
        list(world.people),
    )
    links = list(world.prior.manual_links.items())
    for items in (employees, invalid, people, links):
        rng.shuffle(items)
    shuffled = replace(
        world,
        hr=replace(world.hr, employees=tuple(employees), invalid=tuple(invalid)),
        people=tuple(people),
        prior=replace(world.prior, manual_links=dict(links)),
    )
    assert decide(shuffled) == decide(world)


@SETTINGS
@given(world=worlds(), data=st.data())
def test_failed_records_are_skipped_until_retried(world, data):
    """Records whose action failed get no action; the rest of the plan is a subset; retry restores it."""
    full = decide(world)
    hr_ids = sorted({a.hr_id for a in full.actions})
    chosen = data.draw(st.lists(st.sampled_from(hr_ids), unique=True) if hr_ids else st.just([]))
    failed = {
        hr_id: data.draw(st.sampled_from([a for a in full.actions if a.hr_id == hr_id])).fingerprint
        for hr_id in chosen
    }
    prior = replace(world.prior, failed=failed)
    skipped = decide(world, prior=prior)
    found = by_id(skipped.classifications)
    assert set(skipped.actions) <= set(full.actions)
    for hr_id in chosen:
        assert found[hr_id].situation is Situation.FAILED
        assert all(a.hr_id != hr_id for a in skipped.actions)
    assert decide(world, prior=prior, retry_failed=True) == full


@SETTINGS
@given(world=worlds(), data=st.data(), rng=st.randoms())
def test_only_never_acts_outside_its_ids_and_never_conflicts(world, data, rng):
    """--only plans a subset of the full plan within its ids, and it applies without a 409."""
    full = decide(world)
    only = data.draw(st.frozensets(st.sampled_from([*HR_IDS, *STALE])))
    partial = decide(world, only=only)
    assert set(partial.actions) <= set(full.actions)
    assert {a.hr_id for a in partial.actions} <= only
    assert [c.situation for c in partial.classifications] == [
        c.situation for c in full.classifications
    ]
    model = ProtimeModel.of(world.people, "conflict")
    model.apply(partial, rng)
    assert model.conflicts == []
