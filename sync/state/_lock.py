"""The run lock: one reconciliation at a time per sync, across processes and hosts.

Each sync has a lock of its own (:func:`sync_lock_name`): two syncs in one state database run at
once, while one sync never runs twice. The default sync's lock keeps the name the single run lock
always had (``reconcile``, what ``run_lock(db)`` takes); another sync's is ``reconcile:<sync>``.

**PostgreSQL** — a session-level advisory lock (``pg_try_advisory_lock``) taken on a connection
that is checked out for the whole block and released with ``pg_advisory_unlock`` at its end. The
key is a 64-bit hash of ``idsync:<current schema>:<name>``, so two deployments in two schemas of
one database do not block each other. If the process dies, PostgreSQL ends its session and the
lock goes with it: nothing to expire.

**SQLite (and any other database)** — a row in ``run_lock`` keyed by the lock name, holding an
owner token (``host:pid:random``), the time it was taken, a heartbeat and an expiry. Taking the lock
is one ``BEGIN IMMEDIATE`` transaction: insert the row, or take over a row whose ``expires_at`` is
in the past (its holder crashed or hung), or whose holder was a process of this host that no
longer exists (killed hard: no need to wait for the expiry). While the block runs a daemon thread
renews the expiry every ``ttl / 4`` seconds, so a live holder keeps its lock however long the run
takes; a holder that stops heartbeating loses it ``ttl`` seconds after the last beat. Leaving the
block deletes the row (only if we still own it). Should a heartbeat find the row owned by someone
else, the lock was lost (the process stalled for longer than ``ttl``): that is logged as an error.

A caller that cannot take the lock gets :class:`~sync.errors.LockHeldError` at once with
``timeout=0`` (the default), or after polling for up to ``timeout`` seconds.

**The lock is a fence.** The block gets a :class:`LockFence`; a run checks :attr:`LockFence.lost`
at every safe point (before each write) and stops writing once it is set. On PostgreSQL a watcher
asks the lock's own session every ``PG_CONFIRM_SECONDS`` whether it still holds the advisory
lock: a dropped session (connection cut, server restarted, backend terminated) or an answer that
does not come within ``PG_CONFIRM_BOUND_SECONDS`` (a half-open connection) loses the fence. The
session is never re-established: a lock is never reconnected into. On SQLite the fence holds until
``ttl * 3/4`` after the last renewal, a quarter of the ``ttl`` before anyone may take the lease
over; a heartbeat that finds another owner loses it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sync.errors import LockHeldError, StateError
from sync.names import DEFAULT_SYNC
from sync.state._database import describe_error
from sync.state._models import LOCK_NAME_LENGTH, RUN_LOCK, RunLockRecord
from sync.state._postgresql import advisory_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sync.state._database import Database

DEFAULT_LOCK_TTL_SECONDS = 60.0
PG_CONFIRM_SECONDS = 1.0
PG_CONFIRM_BOUND_SECONDS = 5.0
# A lease holder trusts its lease for this share of the ttl after a renewal: it stops writing a
# quarter ttl before anyone else may take the lease over.
_LEASE_SAFE_SHARE = 0.75
_POLL_FIRST = 0.05
_POLL_MAX = 1.0
_log = logging.getLogger(__name__)
RECONCILE_LOCK = "reconcile"


def sync_lock_name(sync: str) -> str:
    """The name of sync ``sync``'s run lock (the PostgreSQL advisory key is a hash of it)."""
    # The default sync keeps the bare name: run_lock(db) and the lock of a database holding one
    # sync stay the lock they always were.
    return RECONCILE_LOCK if sync == DEFAULT_SYNC else f"{RECONCILE_LOCK}:{sync}"


class LockFence:
    """Whether the run lock is still ours; read :attr:`lost` at each safe point."""

    def __init__(self, *, name: str, valid_for: float) -> None:
        self._name = name
        self._guard = threading.Lock()
        self._lost: str | None = None
        self._valid_until = time.monotonic() + valid_for
        self._valid_for = valid_for

    @property
    def lost(self) -> str | None:
        """None while the lock is held; else why it no longer is (one line, for the run record)."""
        with self._guard:
            if self._lost is None and time.monotonic() > self._valid_until:
                self._lost = (
                    f"the run lock {self._name!r} could not be confirmed for "
                    f"{self._valid_for:g} s (state database unreachable or not answering)"
                )
                _log.error("run lock lost: %s", self._lost)
            return self._lost

    def confirm(self, *, valid_for: float | None = None) -> None:
        """The lock was just seen held: the fence stands for ``valid_for`` seconds from now."""
        with self._guard:
            if self._lost is None:
                self._valid_until = time.monotonic() + (
                    valid_for if valid_for is not None else self._valid_for
                )

    def lose(self, reason: str) -> None:
        """The lock is gone (taken over, or its session dropped): stop writing."""
        with self._guard:
            if self._lost is None:
                self._lost = reason
                _log.error("run lock lost: %s", reason)


@contextmanager
def run_lock(
    db: Database,
    *,
    name: str = RECONCILE_LOCK,
    timeout: float = 0.0,
    ttl: float = DEFAULT_LOCK_TTL_SECONDS,
) -> Iterator[LockFence]:
    """Hold the run lock ``name`` for the block, or raise :class:`LockHeldError`.

    ``timeout`` is how long to keep trying (0: one try). ``ttl`` only matters for the table lock
    (SQLite): how long after its last heartbeat a silent holder's lock may be taken over.
    """
    if not 0 < len(name) <= LOCK_NAME_LENGTH:
        raise ValueError(f"lock name must be 1-{LOCK_NAME_LENGTH} characters")
    if db.dialect.advisory_locks:
        with _advisory_lock(db.engine, name=name, timeout=timeout) as fence:
            yield fence
    else:
        with _table_lock(db, name=name, timeout=timeout, ttl=ttl) as fence:
            yield fence


def _poll(timeout: float) -> Iterator[None]:
    """Yield once per attempt until ``timeout`` seconds have passed (once when it is 0)."""
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST
    while True:
        yield
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)


@contextmanager
def _advisory_lock(engine: Engine, *, name: str, timeout: float) -> Iterator[LockFence]:
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as exc:
        raise StateError(
            f"state database unreachable: {describe_error(exc, url=engine.url)}"
        ) from None
    try:
        key = advisory_key(conn, name)
        for _ in _poll(timeout):
            if conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one():
                break
        else:
            raise LockHeldError(
                f"another run holds the run lock {name!r} (PostgreSQL advisory lock {key})"
            )
        fence = LockFence(name=name, valid_for=PG_CONFIRM_BOUND_SECONDS)
        watch = _SessionWatch(conn, key=key, name=name, fence=fence)
        watch.start()
        try:
            yield fence
        finally:
            if watch.finish() and fence.lost is None:
                try:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                except SQLAlchemyError:
                    # The session is gone, and its lock with it; never reuse this connection.
                    conn.invalidate()
            else:
                # Lost, or the session stopped answering: never unlock through a new session.
                conn.invalidate()
    finally:
        conn.close()


class _SessionWatch(threading.Thread):
    """Asks the lock's own session, every ``PG_CONFIRM_SECONDS``, whether it still holds it."""

    def __init__(self, conn: Connection, *, key: int, name: str, fence: LockFence) -> None:
        super().__init__(name=f"idsync-lock-{name}", daemon=True)
        self._conn = conn
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks splits a bigint key into two oids
        self._params = {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}
        self._lock_name = name
        self._fence = fence
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(PG_CONFIRM_SECONDS):
            try:
                held = self._conn.execute(_HELD, self._params).scalar_one()
            except SQLAlchemyError as exc:
                self._fence.lose(
                    f"the PostgreSQL session holding the run lock {self._lock_name!r} "
                    f"dropped ({describe_error(exc)})"
                )
                return
            if not held:
                self._fence.lose(
                    f"the PostgreSQL session no longer holds the run lock {self._lock_name!r}"
                )
                return
            self._fence.confirm()

    def finish(self) -> bool:
        """Stop watching; False when the session did not answer in time (a half-open one)."""
        self._stop_event.set()
        self.join(PG_CONFIRM_BOUND_SECONDS)
        if not self.is_alive():
            return True
        _shut_socket(self._conn)
        self.join(PG_CONFIRM_BOUND_SECONDS)
        return False


_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid::bigint = :classid AND objid::bigint = :objid"
    " AND objsubid = 1"
)


def _shut_socket(conn: Connection) -> None:
    """Shut the socket of a connection stuck on a silent peer, so its blocked call returns."""
    try:
        raw = conn.connection.dbapi_connection
        fd = raw.pgconn.socket if raw is not None else -1  # psycopg 3
    except Exception:  # another driver, or already closed: nothing to shut
        return
    if fd < 0:
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _holder_died_here(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:random``) was a process of this host that no longer exists.

    A reconcile killed hard (SIGKILL, OOM) leaves its row behind; on the same host its death is
    certain at once, so the next run need not wait ``ttl``. Our own pid is never called dead (a
    row of another thread of this process, or of a former process under a reused pid: wait).
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or sys.platform == "win32":
        return False
    pid = int(pid_text)
    if pid in (0, os.getpid()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, but not ours to signal
    return False


def _try_take(db: Database, *, name: str, owner: str, ttl: float) -> str | None:
    """Take the lock row; ``None`` on success, else a description of the current holder."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl)
    table = RUN_LOCK
    try:
        with db.write() as conn:
            row = conn.execute(
                select(RunLockRecord.owner, RunLockRecord.expires_at).where(
                    RunLockRecord.name == name
                )
            ).one_or_none()
            values = {
                "owner": owner,
                "acquired_at": now,
                "heartbeat_at": now,
                "expires_at": expires,
            }
            if row is None:
                conn.execute(insert(table).values(name=name, **values))
                return None
            if row.expires_at <= now or _holder_died_here(row.owner):
                taken = conn.execute(
                    update(table)
                    .where(table.c.name == name, table.c.owner == row.owner)
                    .values(**values)
                ).rowcount
                if taken == 1:
                    _log.warning(
                        "run lock %r taken over from %s, whose lock expired at %s"
                        " or whose process on this host is gone",
                        name,
                        row.owner,
                        row.expires_at.isoformat(),
                    )
                    return None
            return f"{row.owner}, expires {row.expires_at.isoformat()}"
    except IntegrityError:
        # A concurrent insert won (databases without BEGIN IMMEDIATE serialise here instead).
        return "another process"


class _Heartbeat(threading.Thread):
    def __init__(
        self, db: Database, *, name: str, owner: str, ttl: float, fence: LockFence
    ) -> None:
        super().__init__(name=f"idsync-lock-{name}", daemon=True)
        self._db = db
        self._lock_name = name
        self._owner = owner
        self._ttl = ttl
        self._fence = fence
        self._stop_event = threading.Event()

    @property
    def lost(self) -> bool:
        return self._fence.lost is not None

    def run(self) -> None:
        table = RUN_LOCK
        while not self._stop_event.wait(self._ttl / 4):
            now = datetime.now(UTC)
            try:
                with self._db.write() as conn:
                    renewed = conn.execute(
                        update(table)
                        .where(table.c.name == self._lock_name, table.c.owner == self._owner)
                        .values(heartbeat_at=now, expires_at=now + timedelta(seconds=self._ttl))
                    ).rowcount
            except SQLAlchemyError as exc:
                # The fence runs out on its own if this lasts (a quarter ttl before expiry).
                _log.warning("run lock heartbeat failed, will retry: %s", describe_error(exc))
                continue
            if renewed != 1:
                self._fence.lose(
                    f"the run lock {self._lock_name!r} was taken over by another process "
                    "while this run held it"
                )
                return
            self._fence.confirm(valid_for=self._ttl * _LEASE_SAFE_SHARE)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextmanager
def _table_lock(db: Database, *, name: str, timeout: float, ttl: float) -> Iterator[LockFence]:
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    owner = _owner_token()
    holder = "unknown"
    try:
        for _ in _poll(timeout):
            found = _try_take(db, name=name, owner=owner, ttl=ttl)
            if found is None:
                break
            holder = found
        else:
            raise LockHeldError(f"another run holds the run lock {name!r} ({holder})")
    except SQLAlchemyError as exc:
        raise StateError(f"state database unreachable: {describe_error(exc, url=db.url)}") from None
    fence = LockFence(name=name, valid_for=ttl * _LEASE_SAFE_SHARE)
    heartbeat = _Heartbeat(db, name=name, owner=owner, ttl=ttl, fence=fence)
    heartbeat.start()
    try:
        yield fence
    finally:
        heartbeat.stop()
        table = RUN_LOCK
        try:
            with db.write() as conn:
                conn.execute(delete(table).where(table.c.name == name, table.c.owner == owner))
        except SQLAlchemyError as exc:
            # The row expires on its own; the next run takes it over after ``ttl``.
            _log.warning("could not release run lock %r: %s", name, describe_error(exc))
