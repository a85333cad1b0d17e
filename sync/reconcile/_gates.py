"""The two safety checks that block a run before any write (exit 3), pure and I/O-free.

The input gate looks at the snapshots before classification; the thresholds look at the plan.
Both only raise: the caller skips them under ``--force``. Decisions (see ``docs/matching.md``):

* An empty snapshot blocks, for HR *and* for Protime (a wrong tenant or a missing scope reads as
  "no people"), unless ``IDSYNC_SAFETY__ALLOW_EMPTY_SNAPSHOT`` is set. That setting lets an empty
  snapshot through on its own, but a drop from a non-empty last good run to zero is still a
  shrink and still blocks.
* A snapshot shrinks sharply when it is below ``min_snapshot_ratio`` times the last good run's
  count. Without a last good run (or one that counted zero) there is nothing to compare to. The
  comparison is exact (90 of 100 at ratio 0.9 passes).
* Growth (the shrink gate's twin): an HR snapshot, or a plan, larger than
  ``max_growth_ratio`` times the last good run's (its valid employees; all the actions it planned)
  blocks. A dropped filter or an active column that no longer filters shows as growth. Without a
  last good run, or one that counted or planned zero, there is nothing to compare to (a steady
  state plans nothing, so the first changes after it pass). Strictly greater blocks. Plans of
  ordinary churn never trip it: a plan of at most 100 actions, or 1 % of the last good HR
  snapshot, passes whatever the last run planned (50 writes after 10 is a normal Monday).
* Thresholds: deletes counts every DELETE (orphans and the stale values a re-point removes);
  re-points counts every action of a drifted record (its deletes and writes); writes counts all
  actions. A limit is exceeded when the count is strictly greater than it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from sync.domain import ActionKind, Situation
from sync.errors import InputGateError, ThresholdError

if TYPE_CHECKING:
    from sync.config import SafetySettings
    from sync.domain import Plan, PriorState

_VAR = "IDSYNC_SAFETY__"
# Plans this small (or within 1 % of the HR snapshot) are ordinary churn, never "growth".
_CHURN_FLOOR = 100


def check_input_gate(
    *, hr_count: int, protime_count: int, prior: PriorState, safety: SafetySettings
) -> None:
    """Raise :class:`InputGateError` when a snapshot is empty or shrank sharply."""
    ratio = Fraction(str(safety.min_snapshot_ratio))
    problems = []
    for label, unit, now, last in (
        ("HR", "valid employees", hr_count, prior.last_good_hr_count),
        ("Protime", "people", protime_count, prior.last_good_protime_count),
    ):
        last_text = "no earlier good run" if last is None else f"the last good run had {last}"
        if last and now < ratio * last:
            problems.append(
                f"the {label} snapshot has {now} {unit}, {last_text}: ratio {_floor3(now, last)},"
                f" below the minimum {float(ratio):g} ({_VAR}MIN_SNAPSHOT_RATIO)"
            )
        elif now == 0 and not safety.allow_empty_snapshot:
            problems.append(
                f"the {label} snapshot is empty (0 {unit}; {last_text});"
                f" set {_VAR}ALLOW_EMPTY_SNAPSHOT=true if that is expected"
            )
    growth = Fraction(str(safety.max_growth_ratio))
    last_hr = prior.last_good_hr_count
    if last_hr and hr_count > growth * last_hr:
        problems.append(
            f"the HR snapshot has {hr_count} valid employees, the last good run had {last_hr}:"
            f" more than {float(growth):g} times as many ({_VAR}MAX_GROWTH_RATIO)"
        )
    if problems:
        raise InputGateError(
            "blocked before any write: "
            + "; ".join(problems)
            + ". Check the source; if the change is real, run once with --force."
        )


# Above MAX_GROWTH_RATIO times the last good run's Protime count, a read may still take this many
# more people before it is stopped (a small tenant growing by a few people is not a runaway read).
READ_MARGIN = 1000


def protime_read_limit(
    *, last_protime_count: int | None, safety: SafetySettings, max_people: int
) -> tuple[int, str]:
    """The most people a Protime read may take, and what sets it, as a sentence naming the setting.

    ``max_growth_ratio`` times the last good run's Protime count plus :data:`READ_MARGIN`; without
    such a run (or one that counted zero), ``IDSYNC_PROTIME__MAX_PEOPLE``. A read past it is
    stopped and blocks the run like the input gate (issue 22: endless pages of new people).
    """
    if last_protime_count:
        growth = Fraction(str(safety.max_growth_ratio))
        limit = int(growth * last_protime_count) + READ_MARGIN
        return limit, (
            f"{float(growth):g} ({_VAR}MAX_GROWTH_RATIO) times the last good run's"
            f" {last_protime_count} people, plus {READ_MARGIN}"
        )
    return max_people, "IDSYNC_PROTIME__MAX_PEOPLE (no earlier good run)"


def read_limit_error(*, limit: int, why: str, read: int, what: str) -> InputGateError:
    """The error of a Protime read stopped at ``limit`` after taking ``read`` people or items."""
    return InputGateError(
        f"blocked before any write: the Protime {what} passed {limit} ({why}) with {read} read,"
        " and was stopped there. Check Protime's paging; if the tenant really grew that much,"
        f" raise {_VAR}MAX_GROWTH_RATIO (or IDSYNC_PROTIME__MAX_PEOPLE on a first run)."
    )


def _floor3(now: int, last: int) -> str:
    # Rounded down, so a ratio just under the minimum never prints as equal to it.
    return f"{(1000 * now // last) / 1000:g}"


def check_thresholds(
    *, plan: Plan, safety: SafetySettings, prior: PriorState | None = None
) -> None:
    """Raise :class:`ThresholdError` naming every safety limit the plan exceeds, with figures.

    With ``prior``, a plan over ``max_growth_ratio`` times the last good run's actions blocks too.
    """
    deletes = sum(1 for a in plan.actions if a.kind is ActionKind.DELETE)
    repoints = sum(1 for a in plan.actions if a.situation is Situation.DRIFTED)
    total = len(plan.actions)
    problems = []
    if deletes > safety.max_deletes:
        problems.append(
            f"{deletes} deletes planned, limit {safety.max_deletes} ({_VAR}MAX_DELETES)"
        )
    if repoints > safety.max_repoints:
        problems.append(
            f"{repoints} re-point actions planned, limit {safety.max_repoints} ({_VAR}MAX_REPOINTS)"
        )
    if safety.max_writes is not None and total > safety.max_writes:
        problems.append(f"{total} actions planned, limit {safety.max_writes} ({_VAR}MAX_WRITES)")
    last = prior.last_good_action_count if prior is not None else None
    growth = Fraction(str(safety.max_growth_ratio))
    floor = max(_CHURN_FLOOR, (prior.last_good_hr_count or 0) // 100) if prior else 0
    if last and total > growth * last and total > floor:
        problems.append(
            f"{total} actions planned, the last good run planned {last}: more than"
            f" {float(growth):g} times as many ({_VAR}MAX_GROWTH_RATIO)"
        )
    if problems:
        raise ThresholdError(
            "blocked before any write: "
            + "; ".join(problems)
            + ". Review the plan (`idsync plan show`) and approve exactly it (`idsync apply`),"
            " raise the limit, or run once with --force."
        )
