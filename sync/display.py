"""Text fit for a human's terminal: control, format (bidi) and separator characters escaped.

HR ids and Protime answers are data from elsewhere. Printed raw, a U+202E (right-to-left
override) would reorder the rest of an operator's table line, and an escape sequence would drive
the terminal. Every human output (tables, one-line errors, run messages) goes through
:func:`printable`; JSON output escapes them by its own rules.
"""

from __future__ import annotations

import re
import unicodedata

# Cc (C0/C1 controls), Cf (bidi overrides and isolates, zero-width joiners...), Zl/Zp (line and
# paragraph separators), Co/Cs/Cn (private, surrogates, unassigned): shown as \uXXXX.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
# The fast path: printable ASCII and ordinary letters need no look at their category.
_PLAIN = re.compile(r"[\x20-\x7e\u00a0-\u00ac\u00ae-\u05ff]*")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"  # noqa: PLR2004


def printable(text: str) -> str:
    """``text`` with every character that could hide or reorder what follows shown as ``\\uXXXX``."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(
        _escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )
