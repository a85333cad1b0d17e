"""The run's stop signal with the run lock as a fence.

A run stops writing at its next safe point when its caller asks (SIGTERM, Ctrl-C) *or* when it
no longer holds the run lock (:class:`~sync.state.LockFence`: the PostgreSQL session behind the
advisory lock dropped, the SQLite lease not renewed in time). Both reach the apply step through the
one stop event it already checks before every call, so the lock needs no path of its own there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
