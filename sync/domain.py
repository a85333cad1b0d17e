"""Plain data shared by the pipeline stages: what HR says, what Protime says, what we decide.

No I/O here. ``hr/`` produces :class:`HRSnapshot`, ``protime/`` produces :class:`Person`,
``state/`` produces :class:`PriorState`, and ``reconcile/`` turns them into :class:`Plan`.
Every type is frozen and slotted: a 100,000-employee run holds a few hundred thousand of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Situation(StrEnum):
    """Where one HR employee or one Protime person stands (README, "Situations")."""

    LINKED = "linked"
    UNLINKED = "unlinked"
    DRIFTED = "drifted"
    UNMATCHED = "unmatched"
    DISPUTED = "disputed"
    ORPHANED = "orphaned"
    INVALID = "invalid"
    IGNORED = "ignored"
    FAILED = "failed"


class Rule(StrEnum):
    """A matching rule. ``MANUAL`` is not configurable: an admin's link always wins."""

    REFERENCE = "reference"
    EMPLOYEE_NUMBER = "employee_number"
    BADGE_NUMBER = "badge_number"
    EMAIL = "email"
    MANUAL = "manual"


class Normalizer(StrEnum):
    """One step of ``IDSYNC_MATCH__NORMALIZE``: applied to both sides' keys when comparing only."""

    TRIM = "trim"  # surrounding white space
    CASEFOLD = "casefold"  # case-insensitive (str.casefold: also ß = ss)
    STRIP_LEADING_ZEROS = "strip_leading_zeros"  # 00123 = 123; "000" keeps one "0"
    ALNUM_ONLY = "alnum_only"  # only letters and digits: B-0042 = B 0042 = B0042


class ActionKind(StrEnum):
    """What a planned action does to Protime."""

    WRITE = "write"  # PUT external-references/people/<name>/<value> -> person
    DELETE = "delete"  # DELETE external-references/people/<name>/<value>


class ValueOwner(StrEnum):
    """Whom a reference value found in Protime belongs to, seen from HR. Decides if it may go."""

    EMPLOYEE = "employee"  # a valid, in-scope HR employee: only its own re-point moves it
    GONE = "gone"  # no HR row has this id (any more): may be removed
    OUT_OF_SCOPE = "out_of_scope"  # HR marks it inactive: may be removed
    PROTECTED = "protected"  # an invalid row's id, an ignored id, or on two persons: never touched


class Outcome(StrEnum):
    """How one action ended. ``PENDING`` is recorded before the call, so a crash leaves a trace."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # permanent for these inputs (4xx other than 401/429)
    RETRIABLE = "retriable"  # gave up after retries (429/5xx/network); next run tries again
    SKIPPED = "skipped"  # not attempted (run interrupted or an earlier step of the record failed)
    STALE = "stale"  # a stored plan's action whose precondition no longer holds: not attempted


@dataclass(frozen=True, slots=True)
class HREmployee:
    """One valid, in-scope HR row. ``hr_id`` is already checked against the API assumptions in docs/simulator.md."""

    hr_id: str
    employee_number: str | None = None
    badge_number: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidHRRow:
    """An HR row we cannot use. ``hr_id`` is the raw id as text (``None`` when empty)."""

    row_number: int
    hr_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class HRSnapshot:
    """Everything one read of the HR source yields.

    ``out_of_scope_ids`` are valid ids whose active column is false: their references are orphans.
    """

    employees: tuple[HREmployee, ...]
    invalid: tuple[InvalidHRRow, ...] = ()
    out_of_scope_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Person:
    """One Protime person, as read with the predefined references and our custom reference."""

    id: int
    employee_number: str | None = None
    badge_number: str | None = None
    email: str | None = None
    reference: str | None = None  # value of our custom reference (e.g. HRMID), None when unset
    out_of_service: bool = False


@dataclass(frozen=True, slots=True)
class NamedPerson(Person):
    """A person with the fields only ``idsync suggest`` reads: names (and always the e-mail).

    Never used for matching; a reconcile reads plain :class:`Person` objects and keeps no names.
    """

    first_name: str | None = None
    last_name: str | None = None


@dataclass(frozen=True, slots=True)
class HRDetails:
    """What HR says about an employee beyond its keys, for suggestions only, never for matching."""

    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None  # ISO 8601 (YYYY-MM-DD)


@dataclass(frozen=True, slots=True)
class PriorState:
    """What the state database tells the planner. Built by ``state/``, read by ``reconcile/``.

    ``failed`` maps an HR id to the fingerprint of the action that failed permanently; the same
    action is not retried until its inputs (and so its fingerprint) change, or on demand.
    """

    manual_links: dict[str, int] = field(default_factory=dict)
    ignored_hr_ids: frozenset[str] = frozenset()
    failed: dict[str, str] = field(default_factory=dict)
    last_good_hr_count: int | None = None
    last_good_protime_count: int | None = None
    # Actions the last good run planned (all outcomes); the growth gate compares the plan with it.
    last_good_action_count: int | None = None


@dataclass(frozen=True, slots=True)
class Classification:
    """The situation of one HR id (or, for orphans, of one Protime person).

    ``hr_id`` is the HR id, or for an orphan the value Protime holds. ``candidates`` lists the
    Protime ids that made a record disputed. ``evidence`` says what matched (``"employee_number=E1"``).
    """

    hr_id: str
    situation: Situation
    protime_id: int | None = None
    rule: Rule | None = None
    evidence: str | None = None
    reason: str = ""
    protime_value: str | None = None  # what the matched person holds for our reference now
    candidates: tuple[int, ...] = ()
    # Added for the planner (reconcile/_plan.py), which sees only classifications:
    held_by: int | None = None  # the person that holds the value ``hr_id`` in Protime now
    protime_value_owner: ValueOwner | None = None  # whom ``protime_value`` belongs to


def matched_evidence(rule: Rule, key: str) -> str:
    """What matched, as records say it: ``employee_number=E1``."""
    return f"{rule}={key}"


class LinkedClassification(Classification):
    """A linked record whose reason and evidence are worded when read, not when classified.

    A no-change run holds one linked record per employee at its memory peak (planning); their
    text (about 160 bytes each, 40 MB at 250,000) is made only when a row is stored or shown.
    It reads, compares and hashes as the :class:`Classification` with that text; a copy made by
    ``dataclasses.replace`` is a plain :class:`Classification`. ``evidence`` ``None`` at
    construction means the reference rule matched the HR id itself (``reference=<hr_id>``).
    """

    __slots__ = ("_evidence", "_name")
    _evidence: str | None
    _name: str

    def __new__(cls, **changes: Any) -> Any:
        if changes:  # dataclasses.replace() passes every field by keyword
            return Classification(**changes)
        return super().__new__(cls)

    def __init__(self, **changes: Any) -> None:  # see of(); replace() skips it
        pass

    @classmethod
    def of(
        cls,
        *,
        hr_id: str,
        protime_id: int,
        rule: Rule,
        evidence: str | None,
        held_by: int | None,
        reference_name: str,
    ) -> LinkedClassification:
        """The record of ``hr_id``, which person ``protime_id`` holds as its reference."""
        made = cls()
        put = object.__setattr__  # the class is frozen
        put(made, "hr_id", hr_id)
        put(made, "situation", Situation.LINKED)
        put(made, "protime_id", protime_id)
        put(made, "rule", rule)
        put(made, "protime_value", hr_id)
        put(made, "candidates", ())
        put(made, "held_by", held_by)
        put(made, "protime_value_owner", None)
        put(made, "_evidence", evidence)
        put(made, "_name", reference_name)
        return made

    @property
    def evidence(self) -> str:
        if self._evidence is not None:
            return self._evidence
        return matched_evidence(Rule.REFERENCE, self.hr_id)

    @property
    def reason(self) -> str:
        how = "by an admin's link" if self.rule is Rule.MANUAL else f"by {self.rule}"
        return f"person {self.protime_id} holds {self._name} {self.hr_id} (matched {how})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Classification):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Classification))

    __hash__ = Classification.__hash__


@dataclass(frozen=True, slots=True)
class Action:
    """One call to Protime with its reason. ``phase`` orders calls: all of phase 0 before 1, etc."""

    kind: ActionKind
    hr_id: str
    protime_id: int
    value: str
    situation: Situation
    reason: str
    phase: int = 0
    # The HR id of another record whose earlier-phase action frees this action's person; when
    # that action did not succeed, this one would fail too (409) or clobber (replace) and is skipped.
    depends_on: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the inputs of this action; a failed action is retried once this changes."""
        return f"{self.kind}:{self.value}:{self.protime_id}"


@dataclass(frozen=True, slots=True)
class Precondition:
    """What an action of a stored plan expects to find when it is applied.

    ``expect_value`` is the value the action's person held for our reference and
    ``expect_holder`` the person that held the action's value, both as the plan saw them;
    ``hr_fingerprint`` identifies the HR row of the action's HR id (``None``: not checked).
    """

    expect_value: str | None
    expect_holder: int | None
    hr_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The pure planner's answer: one classification per HR id / orphan, and the actions."""

    classifications: tuple[Classification, ...]
    actions: tuple[Action, ...]

    def count(self, situation: Situation) -> int:
        return sum(1 for c in self.classifications if c.situation is situation)
