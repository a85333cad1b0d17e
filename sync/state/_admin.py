"""Admins' changes to the map: link, unlink, ignore, unignore, clear failures; each an event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Row,
    insert,
    select,
    update,
)

from sync.domain import Situation
from sync.errors import UsageError
from sync.state._engine import write_transaction
from sync.state._models import KEY_LENGTH
from sync.state._rows import (
    EventAction,
)
from sync.values import value_problem

if TYPE_CHECKING:
    from collections.abc import Sequence

from sync.state._base import (
    _EVENTS,
    _M,
    _MAPPINGS,
    StoreBase,
    _admin_event,
    _admin_key,
    _chunks,
    _new_mapping,
    _now,
)


class AdminStore(StoreBase):
    """An admin's changes to the map, each with its audit event."""

    # --------------------------------------------------------------- admin actions

    def link(self, *, hr_id: str, protime_id: int) -> None:
        """Pin an HR id to a Protime person by hand; the next run writes the reference.

        A manual link wins over every matching rule. Refused (:class:`UsageError`) when the id cannot
        be a reference value, or when another HR id is already linked by hand to that person.
        """
        problem = value_problem(hr_id, max_length=KEY_LENGTH)
        if problem:
            raise UsageError(f"HR id {hr_id!r} cannot be linked: {problem}")
        if protime_id <= 0:
            raise UsageError(f"Protime id must be a positive number, got {protime_id}")
        now = _now()
        with write_transaction(self._engine) as conn:
            other = conn.execute(
                select(_M.hr_id).where(
                    _M.protime_id == protime_id, _M.manual.is_(True), _M.hr_id != hr_id
                )
            ).scalar()
            if other is not None:
                raise UsageError(
                    f"Protime person {protime_id} is already linked by hand to HR id {other!r}; "
                    f"unlink it first (idsync unlink {other})"
                )
            row = conn.execute(select(_M.protime_id, _M.manual).where(_M.hr_id == hr_id)).first()
            values = {
                "protime_id": protime_id,
                "manual": True,
                "rule": "manual",
                "evidence": f"linked by an admin to {protime_id}",
                "reason": "manual link; the next run writes the reference",
                "last_changed_at": now,
            }
            if row is None:
                new = _new_mapping(hr_id, now=now, situation=Situation.UNLINKED, reason="")
                conn.execute(insert(_MAPPINGS).values({**new, **values}))
                previous = None
            else:
                conn.execute(update(_MAPPINGS).where(_M.hr_id == hr_id).values(values))
                previous = str(row.protime_id) if row.manual and row.protime_id else None
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.LINK,
                        hr_id=hr_id,
                        protime_id=protime_id,
                        value=str(protime_id),
                        previous_value=previous,
                        reason="linked by an admin",
                        now=now,
                    )
                )
            )

    def unlink(self, *, hr_id: str) -> None:
        """Remove an admin's link; the next run matches the HR id by the rules again."""
        now = _now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_M.protime_id, _M.manual).where(_M.hr_id == hr_id)).first()
            if row is None or not row.manual:
                raise UsageError(f"HR id {hr_id!r} has no manual link")
            conn.execute(
                update(_MAPPINGS)
                .where(_M.hr_id == hr_id)
                .values(
                    manual=False,
                    reason="manual link removed; the next run matches it again",
                    last_changed_at=now,
                )
            )
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.UNLINK,
                        hr_id=hr_id,
                        protime_id=row.protime_id,
                        previous_value=str(row.protime_id) if row.protime_id else None,
                        reason="unlinked by an admin",
                        now=now,
                    )
                )
            )

    def ignore(self, *, hr_id: str) -> None:
        """Exclude an HR id (or an orphaned value) from every run until :meth:`unignore`."""
        _admin_key(hr_id)
        now = _now()
        with write_transaction(self._engine) as conn:
            exists = conn.execute(select(_M.hr_id).where(_M.hr_id == hr_id)).first() is not None
            values = {
                "ignored": True,
                "situation": Situation.IGNORED.value,
                "reason": "ignored by an admin",
                "last_changed_at": now,
            }
            if exists:
                conn.execute(update(_MAPPINGS).where(_M.hr_id == hr_id).values(values))
            else:
                new = _new_mapping(hr_id, now=now, situation=Situation.IGNORED, reason="")
                conn.execute(insert(_MAPPINGS).values({**new, **values}))
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.IGNORE,
                        hr_id=hr_id,
                        reason="ignored by an admin",
                        now=now,
                    )
                )
            )

    def unignore(self, *, hr_id: str) -> None:
        """Undo :meth:`ignore`; the row keeps its situation until the next run classifies it."""
        now = _now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_M.ignored).where(_M.hr_id == hr_id)).first()
            if row is None or not row.ignored:
                raise UsageError(f"HR id {hr_id!r} is not ignored")
            conn.execute(
                update(_MAPPINGS)
                .where(_M.hr_id == hr_id)
                .values(
                    ignored=False,
                    reason="no longer ignored; the next run classifies it",
                    last_changed_at=now,
                )
            )
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        action=EventAction.UNIGNORE,
                        hr_id=hr_id,
                        reason="unignored by an admin",
                        now=now,
                    )
                )
            )

    def clear_failed(self, *, hr_ids: Sequence[str] | None = None) -> int:
        """Forget permanent failures (all, or of ``hr_ids``) so the next run retries them.

        Clears ``failed_fingerprint``, ``last_error`` and ``attempts``; one audit event per row.
        Returns how many rows had a failure to clear.
        """
        now = _now()
        with write_transaction(self._engine) as conn:
            query = select(_M.hr_id, _M.protime_id, _M.failed_fingerprint).where(
                _M.failed_fingerprint.is_not(None)
            )
            found: list[Row[Any]] = []
            if hr_ids is None:
                found = list(conn.execute(query))
            else:
                for chunk in _chunks(sorted(set(hr_ids))):
                    found.extend(conn.execute(query.where(_M.hr_id.in_(chunk))))
            keys = [r.hr_id for r in found]
            for chunk in _chunks(keys):
                conn.execute(
                    update(_MAPPINGS)
                    .where(_M.hr_id.in_(chunk))
                    .values(failed_fingerprint=None, last_error=None, attempts=0)
                )
            if found:
                conn.execute(
                    insert(_EVENTS),
                    [
                        _admin_event(
                            action=EventAction.CLEAR_FAILED,
                            hr_id=r.hr_id,
                            protime_id=r.protime_id,
                            previous_value=r.failed_fingerprint,
                            reason="failure cleared by an admin; the next run retries",
                            now=now,
                        )
                        for r in found
                    ],
                )
        return len(found)
