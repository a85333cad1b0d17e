"""The simulator's world: generated people, people files, direct mutations, config validation."""

from __future__ import annotations

import json

import pytest

from sync.simulator import (
    PeopleDocumentError,
    SimPerson,
    Simulator,
    SimulatorConfig,
    World,
    generate_people,
    parse_people_document,
)
from sync.simulator._filter import FilterError, parse_filter


def test_generated_people_are_deterministic_and_unique():
    """The same seed gives the same people; badges, employee numbers and e-mails are unique."""
    first = generate_people(5000, seed=7)
    again = generate_people(5000, seed=7)
    other = generate_people(5000, seed=8)
    assert first == again
    assert first != other
    for attr in ("id", "badge_number", "employee_number", "email"):
        values = [getattr(p, attr) for p in first]
        assert len(set(values)) == len(values), attr
    assert [p.id for p in first] == sorted(p.id for p in first)


def test_generated_people_look_real():
    """Names come from real name lists, dates are ISO, and about the requested share has left."""
    people = generate_people(4000, seed=3, out_of_service_share=0.25)
    left = [p for p in people if p.out_of_service_date is not None]
    assert 0.2 < len(left) / len(people) < 0.3
    assert all(p.out_of_service_date > p.in_service_date for p in left)  # type: ignore[operator]
    assert all(p.email.endswith("@acme.example") for p in people)  # type: ignore[union-attr]
    assert len({p.last_name for p in people}) > 50
    assert all(len(p.badge_number) == 7 for p in people)  # type: ignore[arg-type]


def test_no_one_out_of_service_when_share_is_zero():
    """out_of_service_share=0 generates only people in service."""
    assert all(
        p.out_of_service_date is None for p in generate_people(500, seed=1, out_of_service_share=0)
    )


def test_config_seeds_people_and_references_from_a_file(tmp_path):
    """A people file sets people and their custom references; @ names in it are ignored."""
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": 7,
                    "firstName": "A",
                    "lastName": "B",
                    "badgeNumber": "1",
                    "externalReferences": {"HRMID": "E7", "@badge-number": "ignored"},
                },
                {"id": 3, "firstName": "C", "lastName": "D"},
            ]
        ),
        encoding="utf-8",
    )
    sim = Simulator(SimulatorConfig(people_file=path))
    assert sorted(sim.world.people) == [3, 7]
    assert [p.id for p in sim.world.people_list()] == [3, 7]
    assert sim.world.references("HRMID") == {"E7": 7}
    assert sim.world.all_references() == {("people", "HRMID"): {"E7": 7}}


@pytest.mark.parametrize(
    "document",
    [
        {"people": [{"id": "1", "firstName": "A", "lastName": "B"}]},
        {"people": [{"id": 1, "firstName": 5, "lastName": "B"}]},
        {"people": [{"id": 1, "firstName": "A", "lastName": "B", "salary": 1}]},
        {"people": [{"id": 1, "firstName": "A", "lastName": "B", "externalReferences": []}]},
        {"people": [{"id": 1, "firstName": "A", "lastName": "B", "externalReferences": {"X": 1}}]},
        {"people": "nope"},
        {"persons": []},
        {"people": [], "references": [{"value": "x", "internalReference": "abc"}]},
        {"people": [], "references": ["x"]},
        [1],
    ],
)
def test_bad_people_documents_are_refused(document):
    """A malformed people document raises PeopleDocumentError naming the problem."""
    with pytest.raises(PeopleDocumentError):
        parse_people_document(document)


def test_world_refuses_duplicate_ids_badges_and_dangling_references():
    """Duplicate ids or badge numbers, and references to unknown people, are refused."""
    world = World()
    person = SimPerson(1, "A", "B", badge_number="9")
    with pytest.raises(ValueError, match="twice"):
        world.replace_all([person, person])
    world.replace_all([person])
    with pytest.raises(ValueError, match="badge"):
        world.add_person(first_name="C", last_name="D", badge_number="9")
    with pytest.raises(ValueError, match="no people object"):
        world.set_reference("x", 2)
    with pytest.raises(ValueError, match="unknown people"):
        world.replace_all([person], [("people", "HRMID", "x", 5)])


def test_world_mutations_keep_indexes_and_references_consistent():
    """Updates re-index badge and employee numbers; removing a person drops its references."""
    world = World()
    world.replace_all([SimPerson(1, "A", "B", employee_number="E1", badge_number="B1")])
    added = world.add_person(first_name="C", last_name="D", employee_number="E1", badge_number="B2")
    assert added.id == 2
    assert world.by_employee_number("E1") == {1, 2}
    world.update_person(1, badge_number="B9", employee_number="E9")
    assert world.by_badge("B1") is None
    assert world.by_badge("B9") == 1
    assert world.by_employee_number("E1") == {2}
    world.set_reference("H2", 2)
    world.remove_person(2)
    assert world.references("HRMID") == {}
    assert world.by_badge("B2") is None
    with pytest.raises(KeyError):
        world.update_person(2, first_name="X")
    with pytest.raises(ValueError, match="cannot change"):
        world.update_person(1, id=3)


def test_change_versions_rise_with_every_change():
    """Each insert or update gets a higher changeVersion than any before it."""
    world = World()
    world.replace_all([SimPerson(1, "A", "B"), SimPerson(2, "C", "D")])
    before = world.change_sequence
    updated = world.update_person(1, last_name="Z")
    assert updated.change_version == before + 1
    assert world.person(1) == updated
    assert world.person_json(updated).startswith(b'{"id":1,"changeVersion":"00000000000000000003",')


def test_put_reference_outcomes():
    """The PUT rule: create, update, conflict on a second value, replace when asked, no object."""
    world = World()
    world.replace_all([SimPerson(1, "A", "B"), SimPerson(2, "C", "D")])
    assert world.put_reference("people", "HRMID", "v1", 1, replace=False).outcome.value == "created"
    assert world.put_reference("people", "HRMID", "v1", 1, replace=False).outcome.value == "updated"
    conflict = world.put_reference("people", "HRMID", "v2", 1, replace=False)
    assert (conflict.outcome.value, conflict.held_value) == ("conflict", "v1")
    assert world.put_reference("people", "HRMID", "v2", 1, replace=True).outcome.value == "created"
    assert world.references() == {"v2": 1}
    assert (
        world.put_reference("people", "HRMID", "v2", 9, replace=False).outcome.value == "no-object"
    )
    assert (
        world.put_reference("terminals", "CODE", "v", 1, replace=False).outcome.value == "no-object"
    )


def test_dump_round_trips_through_parse():
    """The full-state dump is a people document that rebuilds the same world."""
    sim = Simulator(SimulatorConfig(people=20, seed=4))
    sim.world.set_reference("E1", sim.world.people_list()[3].id)
    people, refs = parse_people_document(json.loads(json.dumps(sim.world.dump())))
    copy = World()
    copy.replace_all(people, refs)
    assert copy.people_list() == sim.world.people_list()
    assert copy.all_references() == sim.world.all_references()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenant": "a b"}, "tenant"),
        ({"people": -1}, "people"),
        ({"page_size": 0}, "page_size"),
        ({"clients": ()}, "client"),
        ({"scope_error_status": 402}, "scope_error_status"),
        ({"one_value_per_person": "ignore"}, "one_value_per_person"),
        ({"fault_rate_500": 1.5}, "fault_rate_500"),
        ({"fault_rate_500": 0.6, "fault_rate_503": 0.6}, "> 1"),
        ({"rate_limit_per_second": 0}, "rate_limit_per_second"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"retry_after_style": "sometimes"}, "retry_after_style"),
        ({"latency_ms": -1}, "latency"),
        ({"max_uri_length": 10}, "max_uri_length"),
        ({"out_of_service_share": 2}, "out_of_service_share"),
        ({"token_ttl_seconds": 0}, "lifetimes"),
    ],
)
def test_config_validation(changes, message):
    """Impossible settings are refused at construction with the field named."""
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**changes)


def test_set_faults_validates_and_reseeds():
    """set_faults refuses unknown or invalid fields and restarts the RNG on a new seed."""
    sim = Simulator()
    with pytest.raises(TypeError):
        sim.set_faults(nonsense=1)
    with pytest.raises(ValueError, match="fault_rate_503"):
        sim.set_faults(fault_rate_503=-0.1)
    sim.set_faults(fault_seed=5)
    first = [sim.rng.random() for _ in range(3)]
    sim.set_faults(fault_seed=5)
    assert [sim.rng.random() for _ in range(3)] == first


def test_client_spec_repr_hides_the_secret():
    """A ClientSpec's repr (and so the config's) never shows the secret."""
    config = SimulatorConfig()
    assert "demo-secret" not in repr(config)
    assert "demo-client" in repr(config)


def test_reset_restores_the_configured_start():
    """reset() brings back the generated people, clears references, tokens, counters and faults."""
    sim = Simulator(SimulatorConfig(people=10))
    original = sim.world.people_list()
    sim.world.remove_person(original[0].id)
    sim.world.set_reference("x", original[1].id)
    sim.issue_token()
    sim.set_faults(fault_rate_500=1.0)
    sim.world.counters.record("people.list", 200)
    sim.reset()
    assert sim.world.people_list() == original
    assert sim.world.all_references() == {}
    assert sim.tokens_issued == 0
    assert sim.faults.fault_rate_500 == 0
    assert sim.counters.count() == 0


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("id eq 1 id", "after the expression"),
        ("id eq 'x'", "integer"),
        ("firstName ge 3", "quoted string"),
        ("firstName in ()", "literal"),
        ("firstName in ('a' 'b')", "',' or ')'"),
        ("firstName", "expected eq"),
        ("~", "unexpected character"),
    ],
)
def test_filter_errors_name_the_problem(expression, fragment):
    """Parse errors say what is wrong."""
    with pytest.raises(FilterError) as info:
        parse_filter(expression)
    assert fragment in str(info.value)


def test_filter_uses_indexes_where_it_can():
    """id/badge/employee-number equality narrows candidates; other fields fall back to a scan."""
    world = World()
    world.replace_all(
        [
            SimPerson(i, "A", "B", badge_number=f"b{i}", employee_number=f"e{i}")
            for i in range(1, 50)
        ]
    )
    assert parse_filter("id in (3, 4, 99)").candidates(world) == [3, 4, 99]
    assert parse_filter("badgeNumber eq 'b7' or employeeNumber eq 'e8'").candidates(world) == [7, 8]
    assert parse_filter("id in (3, 4) and lastName eq 'B'").candidates(world) == [3, 4]
    assert parse_filter("lastName eq 'B'").candidates(world) is None
    assert parse_filter("id eq 3 or lastName eq 'B'").candidates(world) is None
    quoted = parse_filter("lastName eq 'O''Brien'")
    assert quoted.matches(SimPerson(1, "A", "O'Brien"))


def test_hand_written_person_json_equals_json_dumps():
    """SimPerson.api_json gives exactly the bytes json.dumps gives, odd characters included."""
    people = [
        *generate_people(300, seed=9),
        SimPerson(5, 'Zoë "Q"\\', "O'Brien\u2028\x01", None, None, "7", "2020-01-01", None, 3),
    ]
    for person in people:
        expected = json.dumps(person.to_api(), separators=(",", ":"), ensure_ascii=False)
        assert person.api_json() == expected.encode()
