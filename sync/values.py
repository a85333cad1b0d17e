"""The rules a custom external-reference value and name must follow (the API assumptions in docs/simulator.md).

One place, used by the HR row validation (so a bad id is ``invalid`` before any call), by the
Protime client (checked again before every PUT/DELETE) and by the simulator (which answers 400).
"""

from __future__ import annotations

import re
import unicodedata

from sync.contract import FORBIDDEN_CHARACTERS, MAX_VALUE_LENGTH, REFERENCE_NAME_PATTERN

DEFAULT_MAX_LENGTH = MAX_VALUE_LENGTH
_NAME = re.compile(REFERENCE_NAME_PATTERN)


# Characters a value may hold: anything but the forbidden ones and the control characters
# (Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F).
_ALLOWED = re.compile(
    "[^" + "".join(re.escape(c) for c in sorted(FORBIDDEN_CHARACTERS)) + r"\x00-\x1f\x7f-\x9f]+"
)
_DOT_SEGMENTS = frozenset({".", ".."})


def value_problem(value: object, *, max_length: int = DEFAULT_MAX_LENGTH) -> str | None:
    """Why ``value`` cannot be a reference value, or ``None`` when it can."""
    # The common case, a good value, in one regex match: this runs for every HR row (100,000s a
    # run) and before every call. Anything else goes through the rules below for its reason.
    if (
        type(value) is str
        and len(value) <= max_length
        and _ALLOWED.fullmatch(value)
        and value == value.strip()
        and value not in _DOT_SEGMENTS
    ):
        return None
    return _explain(value, max_length=max_length)


def _explain(value: object, *, max_length: int) -> str | None:
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if value == "":
        return "empty"
    if value in {".", ".."}:
        return "'.' and '..' are path segments, not values"
    if value != value.strip():
        return "leading or trailing white space"
    if len(value) > max_length:
        return f"longer than {max_length} characters ({len(value)})"
    bad = sorted({ch for ch in value if ch in FORBIDDEN_CHARACTERS})
    if bad:
        return f"forbidden character(s) {' '.join(bad)}"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "control character"
    return None


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a custom reference name, or ``None`` when it can."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "must be 1-64 letters, digits, '-' or '_'"
    return None
