"""SIGTERM and SIGINT for ``idsync serve``, never lost whatever the process is doing.

Why not a plain ``signal.signal`` handler (docs/operations.md, "Why a signal could be lost"):
CPython runs a Python signal handler in the main thread, between two bytecodes. A signal that
reaches the main thread just after it last looked for pending handlers and just before it blocks
in an untimed wait (``threading.Event.wait()`` with no timeout ends in ``sem_wait``) only sets a
flag; the wait is not interrupted, and the handler runs whenever something else next wakes the
main thread, possibly never. The same holds for a signal the kernel hands to another thread.

So the handler here does nothing itself. ``signal.set_wakeup_fd`` makes CPython's C-level handler
write the signal number into a socket pair the moment the signal arrives, in whichever thread; a
watcher thread blocked on the other end reads it and calls back (``stop.set()``). No lock is
taken in a signal handler and no wait depends on the main thread waking up.

:func:`catch_early` arms this as the very first statement of ``idsync serve`` (before the CLI and
the settings are even imported): a signal that arrives before the service opens anything ends the
process at once with 0; from the moment :func:`stop_signals` adopts the relay, it sets the stop
event instead and the service stops gracefully.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

# At run time on purpose: this module loads before anything else of ``idsync serve``, and
# ``typing`` alone (for TYPE_CHECKING) costs more start-up time than the rest of it.
from collections.abc import Callable, Iterator  # noqa: TC003

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STOP_NUMBERS = frozenset(int(sig) for sig in STOP_SIGNALS)


def _noop(_signum: int, _frame: object) -> None:
    # The C-level handler has already written the signal number to the wake-up socket; taking
    # any lock here could deadlock against the very code the signal interrupted.
    return


def _noop_callback(_name: str) -> None:
    return


def _exit_before_start(name: str) -> None:
    # Nothing is open yet (no database, no run, no listener): there is nothing to stop cleanly.
    sys.stderr.write(f"idsync serve: {name} while starting, before anything was opened: exit 0\n")
    sys.stderr.flush()
    os._exit(0)


class StopSignals:
    """SIGTERM/SIGINT relayed through a socket pair to a callback on a watcher thread.

    Create it in the main thread. Signals that arrive before :meth:`watch` wait in the socket.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # noqa: FBT003 - the C handler must never block
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        # The wake-up socket first, the handlers second: a signal in between is never lost.
        self._previous = {sig: signal.signal(sig, _noop) for sig in STOP_SIGNALS}
        self._watcher: threading.Thread | None = None
        self._callback: Callable[[str], None] = _noop_callback
        self._handing = threading.Lock()  # a callback runs to its end before another replaces it
        self._closed = False

    def watch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(signal name)`` for each SIGTERM/SIGINT, queued ones first.

        A second call replaces the callback; a signal being handled finishes with the old one.
        """
        with self._handing:
            self._callback = callback
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._relay, name="idsync-signals", daemon=True)
            self._watcher.start()

    def _relay(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return  # the writer was closed: :meth:`close`
            for number in data:
                if number in _STOP_NUMBERS:
                    with self._handing:
                        self._callback(signal.Signals(number).name)

    def close(self) -> list[int]:
        """Put the previous handlers back; return the stop signals nobody has watched yet."""
        if self._closed:
            return []
        self._closed = True
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()  # the watcher reads the end of the stream and returns
        unread: list[int] = []
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        else:
            self._reader.setblocking(False)  # noqa: FBT003 - the stdlib's signature
            with contextlib.suppress(OSError):
                while data := self._reader.recv(64):
                    unread.extend(n for n in data if n in _STOP_NUMBERS)
        self._reader.close()
        return unread


_early: list[StopSignals] = []


def catch_early() -> None:
    """Arm the relay now (main thread, first thing of ``idsync serve``).

    Until :func:`stop_signals` adopts it, a SIGTERM/SIGINT ends the process at once with 0:
    loading the CLI and the settings opens nothing, and on a starved host it can take seconds
    that a stop request should not have to wait for.
    """
    if threading.current_thread() is threading.main_thread() and not _early:
        relay = StopSignals()
        relay.watch(_exit_before_start)
        _early.append(relay)


def release_early() -> None:
    """Undo :func:`catch_early` when nothing adopted it (the command ended before serving).

    A signal it queued is dropped: the process is exiting anyway, with the code of the error
    that ended it (a configuration error: 2), which says more than the signal would.
    """
    if _early:
        _early.pop().close()


@contextlib.contextmanager
def stop_signals(callback: Callable[[str], None]) -> Iterator[None]:
    """Within the block SIGTERM/SIGINT call ``callback`` (from a watcher thread).

    Adopts the relay :func:`catch_early` armed, with whatever signal it holds. Outside the main
    thread (a test, an embedding) nothing is installed: the caller owns stopping.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    relay = _early.pop() if _early else StopSignals()
    relay.watch(callback)
    try:
        yield
    finally:
        relay.close()
