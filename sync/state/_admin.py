"""Admins' changes to the map: link, unlink, ignore, unignore, clear failures; each an event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Row,
    insert,
    select,
    update,
)

from sync.domain import Situation
from sync.errors import UsageError
from sync.state._models import KEY_LENGTH
from sync.state._rows import (
    EventAction,
)
from sync.values import value_problem

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

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

_NOT_EMPLOYEES = (Situation.INVALID.value, Situation.ORPHANED.value)


def _link_problems(
    conn: Connection,
    sync: str,
    pairs: Sequence[tuple[str, int]],
    *,
    force: bool,
    require_known: bool = False,
) -> list[tuple[int, str]]:
    """``(index, problem)`` for every pair that must not be linked; one function for every link.

    Checks, in order: the HR id can be a reference value; the Protime id is positive; the same HR
    id or person twice among ``pairs`` (an identical pair twice is one link); with
    ``require_known``, the HR id is an employee the map knows; the person is linked by hand to
    another HR id; unless ``force``, the map has the person under another HR id (any situation:
    linking would re-point the person's reference on the next reconcile).
    """
    problems = _pair_problems(pairs)
    valid = [(i, pair) for i, pair in enumerate(pairs) if i not in problems]
    rows: dict[str, str] = {}
    for chunk in _chunks(sorted({hr_id for _, (hr_id, _p) in valid})):
        rows.update(
            (found, situation)
            for found, situation in conn.execute(
                select(_M.hr_id, _M.situation).where(_M.sync == sync, _M.hr_id.in_(chunk))
            )
        )
    holders: dict[int, list[tuple[str, bool, str]]] = {}
    for chunk in _chunks(sorted({p for _, (_h, p) in valid})):
        for found, pid, manual, situation in conn.execute(
            select(_M.hr_id, _M.protime_id, _M.manual, _M.situation).where(
                _M.sync == sync, _M.protime_id.in_(chunk)
            )
        ):
            holders.setdefault(pid, []).append((found, bool(manual), situation))
    for index, (hr_id, protime_id) in valid:
        problem = _map_problem(
            hr_id,
            protime_id,
            situation=rows.get(hr_id),
            holders=[h for h in holders.get(protime_id, []) if h[0] != hr_id],
            force=force,
            require_known=require_known,
        )
        if problem:
            problems[index] = problem
    return sorted(problems.items())


def _pair_problems(pairs: Sequence[tuple[str, int]]) -> dict[int, str]:
    """The checks a pair fails on its own, or together with the other pairs."""
    hr_count: dict[str, set[int]] = {}
    person_count: dict[int, set[str]] = {}
    for hr_id, protime_id in pairs:
        hr_count.setdefault(hr_id, set()).add(protime_id)
        person_count.setdefault(protime_id, set()).add(hr_id)
    problems: dict[int, str] = {}
    for index, (hr_id, protime_id) in enumerate(pairs):
        problem = value_problem(hr_id, max_length=KEY_LENGTH)
        if problem:
            problems[index] = f"HR id {hr_id!r} cannot be linked: {problem}"
        elif protime_id <= 0:
            problems[index] = f"Protime id must be a positive number, got {protime_id}"
        elif len(hr_count[hr_id]) > 1:
            persons = ", ".join(str(p) for p in sorted(hr_count[hr_id]))
            problems[index] = f"HR id {hr_id!r} is given more than one person: {persons}"
        elif len(person_count[protime_id]) > 1:
            ids = ", ".join(sorted(person_count[protime_id]))
            problems[index] = f"Protime person {protime_id} is given more than one HR id: {ids}"
    return problems


def _map_problem(
    hr_id: str,
    protime_id: int,
    *,
    situation: str | None,
    holders: list[tuple[str, bool, str]],
    force: bool,
    require_known: bool,
) -> str | None:
    """What the map says against one link; ``holders`` are the other rows on that person."""
    if require_known and situation in (None, *_NOT_EMPLOYEES):
        seen = f" (it is {situation})" if situation else " (no run has seen it)"
        return f"HR id {hr_id!r} is no HR employee idsync knows{seen}"
    by_hand = [h for h in holders if h[1]]
    if by_hand:
        other = by_hand[0][0]
        return (
            f"Protime person {protime_id} is already linked by hand to HR id {other!r}; "
            f"unlink it first (idsync unlink {other})"
        )
    if holders and not force:
        named = ", ".join(f"{other} ({situation})" for other, _, situation in holders)
        return (
            f"Protime person {protime_id} is mapped to HR id {named}; linking {hr_id} to it"
            " would re-point the person's reference on the next reconcile. Add --force to do that"
        )
    return None


def _write_link(conn: Connection, *, sync: str, hr_id: str, protime_id: int, now: datetime) -> None:
    mine = (_M.sync == sync, _M.hr_id == hr_id)
    row = conn.execute(select(_M.protime_id, _M.manual).where(*mine)).first()
    values = {
        "protime_id": protime_id,
        "manual": True,
        "rule": "manual",
        "evidence": f"linked by an admin to {protime_id}",
        "reason": "manual link; the next run writes the reference",
        "last_changed_at": now,
    }
    if row is None:
        new = _new_mapping(hr_id, sync=sync, now=now, situation=Situation.UNLINKED, reason="")
        conn.execute(insert(_MAPPINGS).values({**new, **values}))
        previous = None
    else:
        conn.execute(update(_MAPPINGS).where(*mine).values(values))
        previous = str(row.protime_id) if row.manual and row.protime_id else None
    conn.execute(
        insert(_EVENTS).values(
            _admin_event(
                sync=sync,
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


class AdminStore(StoreBase):
    """An admin's changes to the map, each with its audit event."""

    # --------------------------------------------------------------- admin actions

    def link(self, *, hr_id: str, protime_id: int, force: bool = False) -> None:
        """Pin an HR id to a Protime person by hand; the next run writes the reference.

        A manual link wins over every matching rule. Refused (:class:`UsageError`) for any problem
        :func:`_link_problems` finds (``force`` links a person the map has under another HR id).
        """
        with self._db.write() as conn:
            problems = _link_problems(conn, self._sync, [(hr_id, protime_id)], force=force)
            if problems:
                raise UsageError(problems[0][1])
            _write_link(conn, sync=self._sync, hr_id=hr_id, protime_id=protime_id, now=_now())

    def link_many(
        self,
        pairs: Sequence[tuple[str, int]],
        *,
        force: bool = False,
        skip_bad: bool = False,
        check_only: bool = False,
    ) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
        """Link many pairs in one transaction after checking all of them (``idsync link --from``).

        Every check of :meth:`link`, plus: the HR id must be an employee the map knows. Returns the
        pairs linked and ``(index, problem)`` for each refused pair; with a problem and without
        ``skip_bad`` nothing is linked. ``check_only`` checks and links nothing.
        """
        with self._db.write() as conn:
            problems = _link_problems(conn, self._sync, pairs, force=force, require_known=True)
            if check_only or (problems and not skip_bad):
                return [], problems
            bad = {index for index, _ in problems}
            good = [pair for index, pair in enumerate(pairs) if index not in bad]
            now = _now()
            for hr_id, protime_id in good:
                _write_link(conn, sync=self._sync, hr_id=hr_id, protime_id=protime_id, now=now)
        return good, problems

    def unlink(self, *, hr_id: str) -> None:
        """Remove an admin's link; the next run matches the HR id by the rules again."""
        self._undo_admin_flag(
            hr_id=hr_id,
            flag=_M.manual,
            refusal=f"HR id {hr_id!r} has no manual link",
            reason="manual link removed; the next run matches it again",
            action=EventAction.UNLINK,
            event_reason="unlinked by an admin",
            names_person=True,
        )

    def ignore(self, *, hr_id: str) -> None:
        """Exclude an HR id (or an orphaned value) from every run until :meth:`unignore`."""
        _admin_key(hr_id)
        now = _now()
        mine = (_M.sync == self._sync, _M.hr_id == hr_id)
        with self._db.write() as conn:
            exists = conn.execute(select(_M.hr_id).where(*mine)).first() is not None
            values = {
                "ignored": True,
                "situation": Situation.IGNORED.value,
                "reason": "ignored by an admin",
                "last_changed_at": now,
            }
            if exists:
                conn.execute(update(_MAPPINGS).where(*mine).values(values))
            else:
                new = _new_mapping(
                    hr_id, sync=self._sync, now=now, situation=Situation.IGNORED, reason=""
                )
                conn.execute(insert(_MAPPINGS).values({**new, **values}))
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        sync=self._sync,
                        action=EventAction.IGNORE,
                        hr_id=hr_id,
                        reason="ignored by an admin",
                        now=now,
                    )
                )
            )

    def unignore(self, *, hr_id: str) -> None:
        """Undo :meth:`ignore`; the row keeps its situation until the next run classifies it."""
        self._undo_admin_flag(
            hr_id=hr_id,
            flag=_M.ignored,
            refusal=f"HR id {hr_id!r} is not ignored",
            reason="no longer ignored; the next run classifies it",
            action=EventAction.UNIGNORE,
            event_reason="unignored by an admin",
            names_person=False,
        )

    def _undo_admin_flag(
        self,
        *,
        hr_id: str,
        flag: Column[Any],
        refusal: str,
        reason: str,
        action: EventAction,
        event_reason: str,
        names_person: bool,
    ) -> None:
        """Clear ``manual`` or ``ignored`` on a row that has it set, with an admin event.

        ``names_person``: the event carries the person the row pointed at (an unlink does; an
        unignore is about the HR id alone).
        """
        now = _now()
        mine = (_M.sync == self._sync, _M.hr_id == hr_id)
        with self._db.write() as conn:
            row = conn.execute(select(_M.protime_id, flag).where(*mine)).first()
            if row is None or not row[1]:
                raise UsageError(refusal)
            conn.execute(
                update(_MAPPINGS)
                .where(*mine)
                .values({flag.key: False, "reason": reason, "last_changed_at": now})
            )
            protime_id = row.protime_id if names_person else None
            conn.execute(
                insert(_EVENTS).values(
                    _admin_event(
                        sync=self._sync,
                        action=action,
                        hr_id=hr_id,
                        protime_id=protime_id,
                        previous_value=str(protime_id) if protime_id else None,
                        reason=event_reason,
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
        with self._db.write() as conn:
            query = select(_M.hr_id, _M.protime_id, _M.failed_fingerprint).where(
                _M.sync == self._sync, _M.failed_fingerprint.is_not(None)
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
                    .where(_M.sync == self._sync, _M.hr_id.in_(chunk))
                    .values(failed_fingerprint=None, last_error=None, attempts=0)
                )
            if found:
                conn.execute(
                    insert(_EVENTS),
                    [
                        _admin_event(
                            sync=self._sync,
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
