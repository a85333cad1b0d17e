"""The pipeline's seams: what a run needs from HR, from the state database and from Protime.

:func:`sync.reconcile.run` (and ``plan``, ``apply_plan``, ``rollback``) take each of these as a
port, built from the settings when the caller passes none. Tests drive the whole pipeline with an
in-memory HR source, a store on a throw-away database and a client on the simulator's transport,
without files or environment variables. The defaults are the real things:
:class:`SettingsHRSource`, :meth:`sync.state.StateStore.open` (the store's parts: runs, map, events, plans, snapshot, settled) and :class:`sync.protime.ProtimeClient`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from sync.hr import preflight_hr, read_hr, write_back

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Collection,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )
    from contextlib import AbstractContextManager
    from datetime import datetime
    from types import TracebackType

    from sync.config import Settings
    from sync.domain import (
        Action,
        Classification,
        HRSnapshot,
        Person,
        Precondition,
        PriorState,
    )
    from sync.hr import Check
    from sync.protime import ChangesPage, ClientStats, PeoplePage, RateMemory
    from sync.state import ActionOutcome, LockFence, PeopleFeed, PlanRow, RunRow, RunSummary
    from sync.strings import StringPool


class HRSource(Protocol):
    """Where the employees come from, and where Protime ids go back to (write-back)."""

    @property
    def writeback_enabled(self) -> bool:
        """Whether :meth:`write_back` is configured."""

    def check(self) -> Sequence[Check]:
        """The configuration check every run makes before its read (`config check`'s HR lines):
        raises :class:`~sync.errors.HRConfigError` naming the setting at fault (exit 2), or
        :class:`~sync.errors.HRSourceError` when the database cannot be reached; returns the
        warnings (passing checks with a log event, such as ``hr.no_active_column``)."""

    def read(self, *, strings: StringPool | None = None) -> HRSnapshot:
        """One read of every employee, each row validated; its ids and keys are the objects of
        ``strings`` (the run's pool, shared with the Protime read: :mod:`sync.strings`)."""

    def write_back(self, pairs: Mapping[str, int]) -> int:
        """Store HR id -> Protime id; returns how many rows changed."""


class ProtimeAPI(Protocol):
    """The calls a run makes to Protime (one instance per run: it is closed at the end)."""

    @property
    def stats(self) -> ClientStats:
        """Requests by kind and status, and retries, for the run's figures."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def rate_per_second(self) -> float | None:
        """The client-side request rate now (``auto``: as learned so far); None: no limit."""

    def keep_rate_in(self, memory: RateMemory) -> None:
        """With ``auto``, start from the rate ``memory`` recalls when the client opens, and
        leave the rate it ended at there when it closes (a fixed rate: neither)."""

    async def read_people(self) -> list[Person]:
        """Every person with the references idsync reads."""

    def iter_people(self) -> AsyncIterator[list[Person]]:
        """The same persons a page at a time (a failed read still tells how far it got)."""

    def iter_full(
        self, *, start_delta: bool, strings: StringPool | None = None
    ) -> AsyncIterator[PeoplePage]:
        """Every person with its ``changeVersion``: as a new delta's first round (its last page
        carries the ``deltaLink``) or a plain read that starts nothing; the persons' keys and
        references are the objects of ``strings`` (the run's pool)."""

    def iter_changes(
        self, link: str, *, strings: StringPool | None = None
    ) -> AsyncIterator[ChangesPage]:
        """The changes since the call that gave ``link``; the last page has the next link."""

    async def put_reference(self, *, value: str, protime_id: int) -> bool | None:
        """Point ``value`` at the person; True when it was created, False when updated, None when
        Protime accepted it without confirming (the next full read confirms it)."""

    async def delete_reference(self, *, value: str) -> bool:
        """Remove ``value``; True when it existed."""


class Runs(Protocol):
    """The run table, as a run uses it."""

    def mark_interrupted_runs(self, *, except_run_id: str | None = None) -> int: ...

    def start_run(
        self,
        *,
        trigger: str,
        dry_run: bool,
        forced: bool,
        only: Sequence[str] = (),
        plan_id: str | None = None,
    ) -> str: ...

    def finish_run(self, *, run_id: str, status: str, summary: RunSummary) -> None: ...
    def set_progress(self, *, run_id: str, progress: Mapping[str, Any]) -> None: ...
    def rate_memory(self, run_id: str) -> RateMemory: ...
    def last_work_started(self) -> datetime | None: ...


class Map(Protocol):
    """The two-way map: the prior state a plan starts from, and the classifications a run saves."""

    def load_prior(self) -> PriorState: ...

    def save_classifications(
        self,
        *,
        run_id: str,
        classifications: Sequence[Classification],
        now: datetime,
        prune: bool = False,
        verified: bool = True,
    ) -> bool: ...

    def linked_pairs(self) -> dict[str, int]: ...

    def written(
        self, hr_ids: Sequence[str]
    ) -> dict[str, tuple[int | None, str, datetime | None]]: ...

    def unlinked_records(self) -> list[Classification]: ...


class Events(Protocol):
    """The audit events: each write recorded ``pending`` before its call, its outcome after."""

    def record_pending(
        self,
        *,
        run_id: str,
        actions: Sequence[Action],
        preconditions: Iterable[Precondition] | None = None,
    ) -> list[int]: ...

    def record_outcomes(self, outcomes: Sequence[ActionOutcome]) -> None: ...


class Plans(Protocol):
    """Stored plans, with every action's precondition."""

    def save_plan(
        self, header: PlanRow, actions: Iterable[tuple[Action, Precondition]]
    ) -> None: ...

    def plan(self, plan_id: str) -> PlanRow | None: ...

    def iter_plan_actions(self, plan_id: str) -> Iterator[tuple[Action, Precondition]]: ...

    def mark_plan_applied(self, *, plan_id: str, run_id: str) -> None: ...


class Snapshot(Protocol):
    """The snapshot of Protime and the people delta's link."""

    def people_feed(self) -> PeopleFeed | None: ...

    def load_people(self, *, strings: StringPool | None = None) -> list[Person]: ...

    def people_versions(self, *, ids: Sequence[int]) -> dict[int, str | None]: ...

    def forget_people_feed(self) -> None: ...

    def save_people(
        self,
        *,
        full: Sequence[Person] | None = None,
        upserts: Iterable[Person] = (),
        removed: Collection[int] = (),
        references: Mapping[int, str | None] = ...,
        versions: Mapping[int, str | None] = ...,
        delta_link: str | None,
        fingerprint: str,
        full_read_at: datetime,
        now: datetime,
        run_id: str | None,
        unconfirmed_writes: int = 0,
        delta_refusals: int = 0,
    ) -> None: ...


class Settled(Protocol):
    """Settled runs: the digest of a run whose plan was empty (``_settled.py``)."""

    def settle(self, *, run_id: str, key: str) -> None: ...

    def settled_run(self, *, key: str, run_id: str) -> RunRow | None: ...


class RunState(Protocol):
    """The state database as a run uses it, part by part (:class:`sync.state.StateStore` is
    the real one)."""

    @property
    def runs(self) -> Runs: ...
    @property
    def map(self) -> Map: ...
    @property
    def events(self) -> Events: ...
    @property
    def plans(self) -> Plans: ...
    @property
    def snapshot(self) -> Snapshot: ...
    @property
    def settled(self) -> Settled: ...

    def lock(self, *, timeout: float = 0.0) -> AbstractContextManager[LockFence | None]:
        """The run lock; raises :class:`~sync.errors.LockHeldError` when another run holds it.

        Yields its fence (:attr:`~sync.state.LockFence.lost` is checked before every write), or
        None for a lock that cannot be lost."""

    def close(self) -> None:
        """Release what the store opened itself."""


class SettingsHRSource:
    """The HR database the settings name (``IDSYNC_HR__*``)."""

    def __init__(self, settings: Settings) -> None:
        settings.hr.require()
        self._settings = settings

    @property
    def writeback_enabled(self) -> bool:
        return self._settings.hr.writeback_enabled

    def check(self) -> Sequence[Check]:
        return preflight_hr(settings=self._settings.hr, url=self._settings.hr_url)

    def read(self, *, strings: StringPool | None = None) -> HRSnapshot:
        s = self._settings
        return read_hr(
            settings=s.hr,
            url=s.hr_url,
            max_value_length=s.protime.max_value_length,
            strings=strings,
        )

    def write_back(self, pairs: Mapping[str, int]) -> int:
        s = self._settings
        return write_back(settings=s.hr, url=s.hr_url, pairs=pairs)
