"""The Protime Connector API client: token, paging, retries, rate limit, reference writes.

Everything the rest of idsync needs is re-exported here; the modules behind it are private. What
the API promises (paths, scopes, the default reference name, value rules) is declared once in
:mod:`sync.contract`, a leaf every layer may import.
"""

from __future__ import annotations

from sync.contract import (
    API_PATH,
    PEOPLE_READ_SCOPE,
    REFERENCES_READ_SCOPE,
    REFERENCES_WRITE_SCOPE,
)
from sync.protime._client import ChangesPage, PeoplePage, ProtimeClient
from sync.protime._parse import Change, MalformedAnswerError
from sync.protime._rate import RateMemory
from sync.protime._retry import Backoff, is_retriable, parse_retry_after
from sync.protime._stats import ClientStats, RequestEvent, RequestKind

__all__ = [
    "API_PATH",
    "PEOPLE_READ_SCOPE",
    "REFERENCES_READ_SCOPE",
    "REFERENCES_WRITE_SCOPE",
    "Backoff",
    "Change",
    "ChangesPage",
    "ClientStats",
    "MalformedAnswerError",
    "PeoplePage",
    "ProtimeClient",
    "RateMemory",
    "RequestEvent",
    "RequestKind",
    "is_retriable",
    "parse_retry_after",
]
