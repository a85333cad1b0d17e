"""A client-side bound on every PostgreSQL state statement: no call waits for ever.

PostgreSQL's ``statement_timeout`` ends a statement the *server* runs too long, and TCP keepalives
(and ``tcp_user_timeout``) end a connection whose peer stopped acknowledging. Neither helps when
the path between idsync and the server silently stops forwarding while something in between
(a proxy, a NAT, a load balancer) still acknowledges: libpq then waits for an answer for ever,
and psycopg has no client-side read timeout. So the engine factory registers every statement
(and every pool pre-ping) here with its deadline, and one daemon thread shuts the socket of a
call still waiting past it: the blocked call returns at once with a connection error, which the
run reports in one line. Written by hand: no library offers this for a synchronous libpq client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

_log = logging.getLogger(__name__)
_SCAN_SECONDS = 0.5


class _Watchdog:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        # id(dbapi connection) -> (deadline, a duplicate of its socket's fd). The duplicate keeps
        # the socket itself: should the driver close its own fd meanwhile and the number be
        # reused, the watchdog still shuts the right socket, never another one.
        self._calls: dict[int, tuple[float, int]] = {}
        self._thread: threading.Thread | None = None

    def begin(self, dbapi_connection: Any, bound: float) -> None:
        fd = _socket_of(dbapi_connection)
        if fd < 0:
            return
        try:
            held = os.dup(fd)
        except OSError:
            return
        with self._guard:
            previous = self._calls.pop(id(dbapi_connection), None)
            self._calls[id(dbapi_connection)] = (time.monotonic() + bound, held)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._scan, name="idsync-state-watchdog", daemon=True
                )
                self._thread.start()
        if previous is not None:
            _close(previous[1])

    def end(self, dbapi_connection: Any) -> None:
        with self._guard:
            entry = self._calls.pop(id(dbapi_connection), None)
        if entry is not None:
            _close(entry[1])

    def _scan(self) -> None:
        while True:
            time.sleep(_SCAN_SECONDS)
            now = time.monotonic()
            with self._guard:
                overdue = [key for key, (deadline, _) in self._calls.items() if deadline < now]
                held = [self._calls.pop(key)[1] for key in overdue]
            for fd in held:
                _shut(fd)
            if held:
                _log.warning(
                    "state database: %d call(s) got no answer within their bound; "
                    "their connections are closed",
                    len(held),
                )


def _socket_of(dbapi_connection: Any) -> int:
    try:
        return int(dbapi_connection.pgconn.socket)  # psycopg 3
    except Exception:  # closed, or another driver: nothing to watch
        return -1


def _shut(fd: int) -> None:
    """Shut the socket behind ``fd`` (our duplicate) both ways, then close the duplicate."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        _close(fd)
        return
    with contextlib.suppress(OSError), sock:
        sock.shutdown(socket.SHUT_RDWR)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


WATCHDOG = _Watchdog()
