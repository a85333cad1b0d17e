"""The names of syncs. A deployment runs one sync or many (one HR source, one Protime tenant and one
reference name each); every row of the state database belongs to one of them by name.

A leaf module, imported by the configuration, the state database, the CLI and the service, so the
default name and the rule for names are declared once.
"""

from __future__ import annotations

import re

# The one sync of an environment-only configuration, and the owner of every row that existed
# before the state database knew of syncs.
DEFAULT_SYNC = "default"

# Lower-case letters, digits and dashes, starting with a letter or a digit: usable unquoted in a
# TOML table name, an environment variable (dashes become underscores), a metric label and a
# lock name.
SYNC_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_SYNC_NAME = re.compile(SYNC_NAME_PATTERN)


def sync_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a sync, or None when it can."""
    if _SYNC_NAME.fullmatch(name):
        return None
    return f"{name!r} is not a sync name: it must match {SYNC_NAME_PATTERN}"
