"""What the Protime Connector API promises, declared once (docs/protime-client.md).

The client, the settings' defaults and the HR validation import these. The simulator keeps its
own copies on purpose (it plays Protime, not idsync); tests/protime/test_contract.py compares them.
This module imports nothing of idsync, so any module may import it without a cycle.
"""

from __future__ import annotations

API_PATH = "/connector/protimeapi/api/v1"
PEOPLE_PATH = f"{API_PATH}/people"
# One custom external reference of people: PUT/GET/DELETE {REFERENCES_PATH}/{name}/{value}.
REFERENCES_PATH = f"{API_PATH}/external-references/people"

PEOPLE_READ_SCOPE = "connector-protimeapi-people.read"
REFERENCES_WRITE_SCOPE = "connector-protimeapi-external-references.write"
REFERENCES_READ_SCOPE = "connector-protimeapi-external-references.read"
# What idsync asks for: reading people and writing its reference (a write scope reads too).
DEFAULT_SCOPES = f"{PEOPLE_READ_SCOPE} {REFERENCES_WRITE_SCOPE}"

# Protime's own references of a person, read alongside ours.
EMPLOYEE_NUMBER_REFERENCE = "@employee-number"
BADGE_NUMBER_REFERENCE = "@badge-number"

DEFAULT_REFERENCE_NAME = "HRMID"
# A reference name: what the API accepts in the path segment that names the reference.
REFERENCE_NAME_PATTERN = r"[A-Za-z0-9_-]{1,64}"
# A reference value: at most this many characters, none of these (nor control characters).
MAX_VALUE_LENGTH = 255
FORBIDDEN_CHARACTERS = frozenset("/\\?#%&*:<>")
