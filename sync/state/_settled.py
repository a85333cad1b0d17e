"""Settled runs: a run whose plan was empty remembers its inputs' digest, so the next run on the
same inputs can take its plan without loading the snapshot (``sync.reconcile``'s ``_settled``).

What a run settles on is the digest with its run id and the last audit event id, kept on the
feed row; saving the snapshot or forgetting the delta link clears it
(:data:`~sync.state._snapshot.UNSETTLED`). Whether a settlement still holds is a question about
runs and events, not about the snapshot, hence a part of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from sync.state._base import _E, _R, _RUN_COLUMNS, StoreBase, _run_row
from sync.state._models import PROTIME_FEED
from sync.state._snapshot import FEED
from sync.status import RunStatus

if TYPE_CHECKING:
    from sync.state._rows import RunRow

_F = PROTIME_FEED.c


class SettledStore(StoreBase):
    """The settled run: stored by :meth:`settle`, found again by :meth:`settled_run`."""

    def settle(self, *, run_id: str, key: str) -> None:
        """Remember that run ``run_id`` settled (its plan was empty) on inputs digested as ``key``,
        with the last audit event there is now. Called after its snapshot was saved."""
        with self._db.write() as conn:
            last_event = conn.execute(select(func.max(_E.id)).where(_E.sync == self._sync)).scalar()
            conn.execute(
                update(PROTIME_FEED)
                .where(_F.sync == self._sync, _F.name == FEED)
                .values(settled_key=key, settled_run_id=run_id, settled_event_id=last_event)
            )

    def settled_run(self, *, key: str, run_id: str) -> RunRow | None:
        """The run that settled on inputs ``key``, if nothing happened to the state since.

        Nothing happened: that run is the latest real (not dry) run before ``run_id`` and it
        succeeded, no audit event came after it (every call and every admin change writes one),
        and the snapshot was not saved since (saving it clears what :meth:`settle` stored).
        """
        with self._engine.connect() as conn:
            feed = conn.execute(
                select(_F.settled_key, _F.settled_run_id, _F.settled_event_id).where(
                    _F.sync == self._sync, _F.name == FEED
                )
            ).first()
            if feed is None or feed.settled_key != key or feed.settled_run_id is None:
                return None
            latest = conn.execute(
                select(*_RUN_COLUMNS)
                .where(_R.sync == self._sync, _R.dry_run.is_(False), _R.id != run_id)
                .order_by(_R.started_at.desc())
                .limit(1)
            ).first()
            if (
                latest is None
                or latest.id != feed.settled_run_id
                or latest.status != RunStatus.SUCCEEDED.value
            ):
                return None
            # This sync's events only: another sync's calls and admin changes leave it settled.
            last_event = conn.execute(select(func.max(_E.id)).where(_E.sync == self._sync)).scalar()
            if last_event != feed.settled_event_id:
                return None
        return _run_row(latest)
