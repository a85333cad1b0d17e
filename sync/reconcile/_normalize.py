"""Normalized matching keys (``IDSYNC_MATCH__NORMALIZE``): pure functions, no I/O.

A normalizer changes how two keys are *compared*, never what is written: the value idsync writes
onto a person is always the HR id exactly as HR has it. ``docs/matching.md`` explains each step.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sync.domain import Normalizer

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def _strip_leading_zeros(value: str) -> str:
    # "000" is the number zero, not an empty key: keep one digit.
    stripped = value.lstrip("0")
    return stripped or value[:1]


# \W is "not str.isalnum() and not _" in Python's Unicode mode: with _ it keeps what isalnum keeps.
_NOT_ALNUM = re.compile(r"[\W_]+")


def _alnum_only(value: str) -> str:
    return value if value.isalnum() else _NOT_ALNUM.sub("", value)


_STEPS: dict[Normalizer, Callable[[str], str]] = {
    Normalizer.TRIM: str.strip,
    Normalizer.CASEFOLD: str.casefold,
    Normalizer.STRIP_LEADING_ZEROS: _strip_leading_zeros,
    Normalizer.ALNUM_ONLY: _alnum_only,
}


def normalizer(steps: Sequence[Normalizer]) -> Callable[[str], str | None] | None:
    """One function applying ``steps`` in order; ``None`` when there is nothing to apply.

    The function returns ``None`` for a key that normalizes to nothing (``"--"`` with
    ``alnum_only``): an empty key matches no one.
    """
    if not steps:
        return None
    functions = tuple(_STEPS[step] for step in steps)

    def apply(value: str) -> str | None:
        for function in functions:
            value = function(value)
        return value or None

    return apply


def describe(steps: Sequence[Normalizer]) -> str:
    """The steps as the setting spells them: ``strip_leading_zeros,alnum_only``."""
    return ",".join(step.value for step in steps)
