"""The Protime Connector API client: token, paging, retries, rate limit, reference writes.

Everything the rest of idsync needs is re-exported here; the modules behind it are private.
The API contract (:mod:`sync.protime._contract`) loads eagerly and alone; the client loads on
first use, because :mod:`sync.config` and :mod:`sync.values` import the contract and the client
imports them: loading the client here would make that a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sync.protime._contract import (
    API_PATH,
    PEOPLE_READ_SCOPE,
    REFERENCES_READ_SCOPE,
    REFERENCES_WRITE_SCOPE,
)

if TYPE_CHECKING:
    from sync.protime._client import ChangesPage, PeoplePage, ProtimeClient
    from sync.protime._parse import Change, MalformedAnswerError
    from sync.protime._rate import RateMemory
    from sync.protime._retry import Backoff, is_retriable, parse_retry_after
    from sync.protime._stats import ClientStats, RequestEvent, RequestKind

_LAZY = {
    "Backoff": "sync.protime._retry",
    "Change": "sync.protime._parse",
    "ChangesPage": "sync.protime._client",
    "ClientStats": "sync.protime._stats",
    "MalformedAnswerError": "sync.protime._parse",
    "PeoplePage": "sync.protime._client",
    "ProtimeClient": "sync.protime._client",
    "RateMemory": "sync.protime._rate",
    "RequestEvent": "sync.protime._stats",
    "RequestKind": "sync.protime._stats",
    "is_retriable": "sync.protime._retry",
    "parse_retry_after": "sync.protime._retry",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


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
