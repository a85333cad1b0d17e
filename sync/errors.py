"""The one exception hierarchy of idsync.

Every error a user can meet derives from :class:`IdsyncError` and carries the CLI exit code it maps
to, so the entry point never guesses. Messages never contain secrets: callers build them from
names and redacted values only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from datetime import datetime


class IdsyncError(Exception):
    """Base of every error idsync raises on purpose. Exit code 1 unless a subclass says otherwise."""

    exit_code: ClassVar[int] = 1


class ConfigError(IdsyncError):
    """A setting is missing or wrong. The message names the variable (``IDSYNC_...``)."""

    exit_code = 2


class UsageError(IdsyncError):
    """A CLI argument is wrong (unknown id, bad format...)."""

    exit_code = 2


class BlockedError(IdsyncError):
    """The run was stopped before any write: lock held, input gate or safety threshold."""

    exit_code = 3


class LockHeldError(BlockedError):
    """Another run holds the run lock for this target."""


class InputGateError(BlockedError):
    """The HR or Protime snapshot is empty or shrank sharply against the last good run."""


class ThresholdError(BlockedError):
    """Planned deletes, re-points or writes exceed the configured safety limits."""


class StateError(IdsyncError):
    """The state database is unreachable, or its schema is not at head (run ``idsync db upgrade``)."""


class SchemaNotCurrentError(StateError):
    """The state database schema is behind the code: ``idsync db upgrade`` is needed."""

    exit_code = 2


class HRSourceError(IdsyncError):
    """The HR database could not be read (unreachable, unknown table or column, bad query)."""


class HRConfigError(ConfigError, HRSourceError):
    """The HR settings name something the HR database does not have (a table, a column), or a
    column of the wrong type: a configuration error (exit 2) naming the variable."""


class ProtimeError(IdsyncError):
    """Talking to Protime failed. ``retriable`` tells whether the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retriable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retriable = retriable
        self.retry_after = retry_after


class ProtimeBackoffError(ProtimeError):
    """Protime asked to be called again later than ``IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS``
    allows (a ``Retry-After`` of hours): the run stops at once, ``interrupted``, and says when;
    ``idsync serve`` starts the sync's next run no earlier. ``retry_at``: that moment (UTC)."""

    def __init__(
        self, message: str, *, status: int | None, retry_after: float, retry_at: datetime
    ) -> None:
        super().__init__(message, status=status, retriable=True, retry_after=retry_after)
        self.retry_at = retry_at


class ProtimeAuthError(ProtimeError):
    """The token endpoint refused our credentials, or a scope is missing (401/403 after refresh)."""


class ProtimeConnectError(ProtimeError):
    """Protime could not be reached (DNS, refused, timeout, dropped connection) after retries."""


class ReferenceValueError(ProtimeError):
    """A reference value or name breaks the API assumptions (docs/simulator.md); checked before any call."""
