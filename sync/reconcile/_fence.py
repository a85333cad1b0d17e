"""The run's stop signal with the run lock as a fence, and a state database that goes away.

A run stops writing at its next safe point when its caller asks (SIGTERM, Ctrl-C) *or* when it
no longer holds the run lock (:class:`~sync.state.LockFence`: the PostgreSQL session behind the
advisory lock dropped, the SQLite lease not renewed in time). Both reach the apply step through the
one stop event it already checks before every call, so the lock needs no path of its own there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from sync.errors import StateError
from sync.state import describe_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.state import LockFence


class FencedStop(threading.Event):
    """Set when the caller's ``requested`` event is, or when ``fence`` reports the lock lost.

    Only :meth:`is_set` looks at both (the run never waits on its stop event, it polls it).
    """

    def __init__(self, requested: threading.Event | None, fence: LockFence | None) -> None:
        super().__init__()
        self._requested = requested
        self._fence = fence

    def is_set(self) -> bool:
        if super().is_set() or self.lock_lost is not None:
            return True
        return self._requested is not None and self._requested.is_set()

    @property
    def lock_lost(self) -> str | None:
        """Why the run lock is no longer held; None while it is."""
        return self._fence.lost if self._fence is not None else None


def lock_lost(stop: threading.Event | None) -> str | None:
    """The lock-lost reason carried by a run's stop event, if any."""
    return stop.lock_lost if isinstance(stop, FencedStop) else None


def state_failure(exc: BaseException) -> str | None:
    """One line when ``exc`` is the state database failing (also inside an exception group, as
    the apply step's task group raises it); None for anything else."""
    if isinstance(exc, SQLAlchemyError):
        return f"state database unreachable mid-run: {describe_error(exc)}"
    if isinstance(exc, StateError):
        return str(exc)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = state_failure(inner)
            if found is not None:
                return found
    return None


def record_or_raise(record: Callable[[], None]) -> None:
    """Record the run's end; when the state database is gone, say so in one line (exit 1).

    The run then stays ``running`` in the run table; the next run marks it interrupted.
    """
    try:
        record()
    except SQLAlchemyError as exc:
        raise StateError(
            f"state database unreachable, the run could not be recorded (the next run marks it "
            f"interrupted and converges): {describe_error(exc)}"
        ) from None
