"""The Protime Connector API client: token, paging, retries, rate limit, reference writes.

Everything the rest of idsync needs is re-exported here; the modules behind it are private.
"""

from __future__ import annotations

from sync.protime._client import (
    API_PATH,
    PEOPLE_READ_SCOPE,
    REFERENCES_READ_SCOPE,
    REFERENCES_WRITE_SCOPE,
    ChangesPage,
    ClientStats,
    PeoplePage,
    ProtimeClient,
    RequestEvent,
    RequestKind,
)
from sync.protime._parse import Change, MalformedAnswerError
from sync.protime._retry import Backoff, is_retriable, parse_retry_after

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
    "RequestEvent",
    "RequestKind",
    "is_retriable",
    "parse_retry_after",
]
