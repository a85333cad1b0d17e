"""Why records need attention, in a few groups (``idsync status``): from the stored reason.

The groups follow the reasons ``_classify.py`` writes; ``tests/reconcile/test_reason_groups.py``
classifies a world with one record of each kind, so a change of wording there fails the test here.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from sync.domain import Rule, Situation

if TYPE_CHECKING:
    from collections.abc import Iterable


def reason_group(situation: str, rule: str | None, reason: str) -> str:
    """A short label of why an unmatched or disputed record is so."""
    if reason.startswith("manual link;"):
        return "linked by hand, waiting for the next run"  # `idsync link` wrote the row
    if situation == Situation.UNMATCHED.value:
        if rule == Rule.MANUAL.value:
            return "manual link to a person Protime no longer has"
        return "no candidate"
    if situation == Situation.DISPUTED.value:
        if reason.startswith("Protime shows"):
            return "the id is on two or more persons in Protime"
        if reason.startswith("person "):
            return "two or more employees on one person"
        if rule:
            return f"two or more candidates by rule {rule}"
    return "other"


def group_counts(rows: Iterable[tuple[str, str | None, str]]) -> list[tuple[str, str, int]]:
    """``(situation, group, count)`` for ``(situation, rule, reason)`` rows, most frequent first."""
    counts = Counter(
        (situation, reason_group(situation, rule, reason)) for situation, rule, reason in rows
    )
    return sorted(
        ((situation, group, count) for (situation, group), count in counts.items()),
        key=lambda item: (item[0] != Situation.UNMATCHED.value, -item[2], item[1]),
    )
