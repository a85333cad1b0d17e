"""The pure parts of incremental reads: when to read in full, and the snapshot after our calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.config import ProtimeSettings, ScheduleSettings, Settings, parse_duration
from sync.domain import Action, ActionKind, Person, Situation
from sync.reconcile._people import full_read_reason, read_fingerprint
from sync.reconcile._snapshot import References, after_writes
from sync.state import PeopleFeed

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _settings(every: str = "24h", reference: str = "HRMID") -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        protime=ProtimeSettings(base_url="https://x.example", tenant="t", reference_name=reference),
        schedule=ScheduleSettings(full_read_every=every),
    )


def _feed(settings: Settings, *, age: timedelta, link: str | None = "/d") -> PeopleFeed:
    return PeopleFeed(
        delta_link=link,
        fingerprint=read_fingerprint(settings),
        full_read_at=NOW - age,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400),
        ("30m", 1800),
        ("1h30m", 5400),
        ("90s", 90),
        ("2d", 172800),
        ("0", 0),
        ("45", 45),
        (" 12H ", 43200),
    ],
)
def test_durations_are_read_in_the_documented_forms(text: str, seconds: float) -> None:
    """IDSYNC_SCHEDULE__FULL_READ_EVERY takes 24h, 30m, 1h30m, 90s, 2d or seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "24x", "-1", "1h-5m", "nan", "inf", "1.5.h"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    """A value that is no duration is refused (a configuration error naming the variable)."""
    assert parse_duration(text) is None


def test_a_wrong_duration_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The settings refuse a bad duration with the variable's name in the message."""
    from sync.config import load_settings
    from sync.errors import ConfigError

    monkeypatch.setenv("IDSYNC_SCHEDULE__FULL_READ_EVERY", "daily")
    with pytest.raises(ConfigError, match="IDSYNC_SCHEDULE__FULL_READ_EVERY"):
        load_settings()


def test_the_delta_is_enough_within_the_interval() -> None:
    """A fresh feed with a link under the same settings needs no full read."""
    s = _settings()
    assert full_read_reason(s, _feed(s, age=timedelta(hours=23)), full=False, now=NOW) is None


@pytest.mark.parametrize(
    ("every", "age", "link", "full", "reason"),
    [
        ("24h", timedelta(hours=1), "/d", True, "asked for (--full)"),
        ("24h", timedelta(hours=1), None, False, "no delta token"),
        ("24h", timedelta(hours=24), "/d", False, "the last full read is 24.0 h old"),
        ("0", timedelta(0), "/d", False, "IDSYNC_SCHEDULE__FULL_READ_EVERY=0"),
    ],
)
def test_each_reason_for_a_full_read(
    every: str, age: timedelta, link: str | None, full: bool, reason: str
) -> None:
    """--full, a missing link, an elapsed interval and an interval of 0 each read in full."""
    s = _settings(every)
    got = full_read_reason(s, _feed(s, age=age, link=link), full=full, now=NOW)
    assert got is not None
    assert got.startswith(reason)


def test_no_feed_or_other_settings_read_in_full() -> None:
    """No snapshot yet, or one read under another reference name, reads in full."""
    s = _settings()
    assert full_read_reason(s, None, full=False, now=NOW) == "no snapshot of Protime yet"
    other = _feed(_settings(reference="OTHER"), age=timedelta(0))
    assert "settings that shape the snapshot" in (
        full_read_reason(s, other, full=False, now=NOW) or ""
    )


def _write(value: str, pid: int) -> Action:
    return Action(ActionKind.WRITE, value, pid, value, Situation.UNLINKED, "r")


def _delete(value: str, pid: int) -> Action:
    return Action(ActionKind.DELETE, value, pid, value, Situation.ORPHANED, "r")


def test_a_write_moves_a_value_and_replaces_what_the_person_held() -> None:
    """A PUT of V onto P takes V from its holder and replaces P's own value."""
    people = [Person(1, reference="A"), Person(2, reference="B"), Person(3)]
    assert after_writes(people, [_write("A", 2)]) == {1: None, 2: "A"}


def test_a_delete_clears_the_value_wherever_it_is() -> None:
    """A DELETE of V clears it on whoever holds it; an unknown value changes nothing."""
    people = [Person(1, reference="A"), Person(2)]
    assert after_writes(people, [_delete("A", 1), _delete("Z", 2)]) == {1: None}


def test_calls_apply_in_completion_order() -> None:
    """A delete then a write of the same value on another person leaves it on that person."""
    people = [Person(1, reference="A"), Person(2)]
    changed = after_writes(people, [_delete("A", 1), _write("A", 2), _write("C", 3)])
    # 3 is not in the snapshot: saving ignores it (the next full read adds that person).
    assert changed == {1: None, 2: "A", 3: "C"}
    assert after_writes(people, []) == {}


def test_a_value_written_twice_ends_on_the_last_person_and_a_replaced_one_is_free() -> None:
    """V written onto P1 then P2 ends on P2 alone; P1's value, replaced by V, no longer follows
    P1: a later delete of it clears nobody, and a value P2 held before is released."""
    people = [Person(1, reference="X"), Person(2, reference="Y"), Person(3, reference="Z")]
    calls = [_write("V", 1), _write("V", 2), _delete("X", 1), _write("Y", 3)]
    assert after_writes(people, calls) == {1: None, 2: "V", 3: "Y"}


def test_a_person_who_lost_a_value_and_got_another_keeps_the_new_one() -> None:
    """A delete of a value P held before a write replaced it does not clear what P holds now."""
    people = [Person(1, reference="A"), Person(2, reference="B")]
    calls = [_write("B", 1), _delete("A", 1), _delete("B", 2)]
    # A left 1 with the write; the delete of B after the write clears B where it now is: on 1.
    assert after_writes(people, calls) == {1: None, 2: None}
    assert after_writes(people, [_write("B", 1), _delete("A", 1)]) == {1: "B", 2: None}


def test_the_changes_come_in_id_order_and_look_up_by_id() -> None:
    """after_writes gives the changed ids in ascending order whatever the call order, and a
    lookup finds each id's value or none for an id it does not name."""
    people = [Person(9, reference="A"), Person(5), Person(2)]
    changed = after_writes(people, [_write("C", 5), _write("A", 2), _write("D", 7)])
    assert list(changed) == [2, 5, 7, 9]
    assert [changed[pid] for pid in changed] == ["A", "C", "D", None]
    assert changed.get(3, "missing") == "missing"
    assert len(changed) == 4
    assert References([], []) == {}
