"""The map: one row per HR id (or orphaned value); classifications, outcomes' effects, reads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    delete,
    func,
    or_,
    select,
    update,
)

from sync.domain import Classification, PriorState, Rule, Situation
from sync.state._models import KEY_LENGTH

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from sync.state._rows import (
        MappingRow,
    )

from sync.state._base import (
    _CHUNK,
    _CLASSIFIED,
    _GOOD_RUN,
    _M,
    _MAPPING_COLUMNS,
    _MAPPINGS,
    _R,
    _STREAM_ROWS,
    _WRITE_BATCH,
    StoreBase,
    _candidates_text,
    _chunks,
    _json_or_empty,
    _mapping_row,
)

_log = logging.getLogger(__name__)

_CLASSIFIED_COLUMNS = [_M[name] for name in _CLASSIFIED]
# The columns a new mapping row is inserted with (see save_classifications); the others start
# NULL, as _new_mapping has them.
_NEW_COLUMNS = [
    _M.sync,
    _M.hr_id,
    *_CLASSIFIED_COLUMNS,
    _M.manual,
    _M.ignored,
    _M.attempts,
    _M.first_seen_at,
    _M.last_verified_at,
    _M.last_changed_at,
    _M.last_run_id,
]


# Enum member -> its stored text: an Enum's ``.value`` is a descriptor call, and a save reads
# two per classification (0.09 s of a 100,000-row compare).
_TEXT: dict[Any, str | None] = {
    None: None,
    **{s: s.value for s in Situation},
    **{r: r.value for r in Rule},
}


def _values(c: Classification) -> tuple[Any, ...]:
    """The ``_CLASSIFIED`` column values of one classification, in that order."""
    return (
        c.protime_id,
        _TEXT[c.situation],
        _TEXT[c.rule],
        c.evidence,
        c.reason,
        c.protime_value,
        _candidates_text(c.candidates) if c.candidates else None,
    )


def _keyed(classifications: Sequence[Classification]) -> dict[str, Classification]:
    """HR id -> its first classification, unkeyable ones left out (logged)."""
    incoming: dict[str, Classification] = {}
    unkeyable = 0
    for c in classifications:
        if not c.hr_id or len(c.hr_id) > KEY_LENGTH:
            unkeyable += 1
        elif c.hr_id not in incoming:
            incoming[c.hr_id] = c
    if unkeyable:
        _log.warning(
            "%d classification(s) have no usable HR id to key a row; not stored", unkeyable
        )
    return incoming


def _compare(
    loaded: Iterable[tuple[Any, ...]], incoming: dict[str, Classification]
) -> tuple[list[str], list[str], list[str], set[str]]:
    """Stored rows ``(hr_id, *_CLASSIFIED, manual, ignored)`` against this run's classifications.

    Returns the ids whose classified values changed, the ids that have a row, the ids with a row
    but no classification, and those of them an admin linked or ignored. Unchanged ones are taken
    out of ``incoming``: what is left is written, the changed rows and the new ones. (A set of the
    ids with a row, of the rows' own copies of the ids, was 8 MB of table and 16 MB of strings at
    250,000, at the peak of a no-change run.)
    """
    width = 1 + len(_CLASSIFIED)
    changed: list[str] = []
    known: list[str] = []
    unseen: list[str] = []
    pinned: set[str] = set()
    for row in loaded:
        c = incoming.get(row[0])
        if c is None:
            unseen.append(row[0])
            if row[width] or row[width + 1]:
                pinned.add(row[0])
            continue
        hr_id = c.hr_id  # the classification's string, not the row's equal copy
        known.append(hr_id)
        if _values(c) != row[1:width]:
            changed.append(hr_id)
        else:
            del incoming[hr_id]
    return changed, known, unseen, pinned


class MapStore(StoreBase):
    """The mapping rows: what the planner needs, what a run classified, lookups."""

    def load_prior(self) -> PriorState:
        """What the planner needs from earlier runs and from admins.

        The "last good run" is the latest full (no ``--only``), real (not dry-run) run that ended
        ``succeeded`` or ``partial``: a dry run never sets the baseline the input gate compares with.
        """
        manual: dict[str, int] = {}
        ignored: set[str] = set()
        failed: dict[str, str] = {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_M.hr_id, _M.protime_id, _M.manual, _M.ignored, _M.failed_fingerprint).where(
                    _M.sync == self._sync,
                    or_(
                        _M.manual.is_(True),
                        _M.ignored.is_(True),
                        _M.failed_fingerprint.is_not(None),
                    ),
                )
            )
            for hr_id, protime_id, is_manual, is_ignored, fingerprint in rows:
                if is_manual and protime_id is not None:
                    manual[hr_id] = protime_id
                if is_ignored:
                    ignored.add(hr_id)
                if fingerprint is not None:
                    failed[hr_id] = fingerprint
            last = conn.execute(
                select(_R.hr_count, _R.protime_count, _R.actions_by_outcome)
                .where(
                    _R.sync == self._sync,
                    _R.status.in_(_GOOD_RUN),
                    _R.dry_run.is_(False),
                    _R.only_ids.is_(None),
                    _R.hr_count.is_not(None),
                )
                .order_by(_R.started_at.desc())
                .limit(1)
            ).first()
        return PriorState(
            manual_links=manual,
            ignored_hr_ids=frozenset(ignored),
            failed=failed,
            last_good_hr_count=last.hr_count if last else None,
            last_good_protime_count=last.protime_count if last else None,
            last_good_action_count=_action_count(last.actions_by_outcome) if last else None,
        )

    # ---------------------------------------------------------------------- the map

    def save_classifications(
        self,
        *,
        run_id: str,
        classifications: Sequence[Classification],
        now: datetime,
        prune: bool = False,
        verified: bool = True,
    ) -> bool:
        """Upsert one mapping row per classification, in one transaction; whether each
        classification got a row of its own (then the map's rows are exactly the records).

        Existing rows are loaded once and compared in Python; only rows whose classified fields
        changed are updated (``last_changed_at = now``), new ones inserted (``first_seen_at = now``),
        and every classified row gets ``last_verified_at = now`` and ``last_run_id`` in (usually) one
        statement. ``manual``, ``ignored``, ``last_written_value`` and failure fields are never
        touched here.

        ``verified=False`` (a run that read Protime incrementally: the people came from the
        snapshot and the delta, not from Protime itself) writes only the rows that changed or are
        new, with ``last_run_id``; ``last_verified_at`` stays the time of the last full read that
        classified the row (``None`` for a row no full read has classified yet). An unchanged row
        is not written at all: a no-change run of 250,000 then updates nothing.

        ``prune=True`` (a full run, not ``--only``) deletes rows this run did not classify, unless an
        admin linked or ignored them: an HR id that left the source and holds nothing in Protime
        is gone. Their history stays in the events.

        A classification whose ``hr_id`` is empty or longer than 255 characters cannot key a row
        and is left out (logged); when ``hr_id`` repeats, the first classification wins.
        """
        incoming = _keyed(classifications)
        own_rows = len(incoming) == len(classifications)  # before _compare takes the unchanged out
        sync = self._sync
        mine = _M.sync == sync
        with self._db.write() as conn:
            # Stored rows are streamed and compared one by one against the classification of
            # their id: at 100,000 rows, holding them all (and a values tuple per
            # classification) cost tens of MB at the run's memory peak, and most of the time
            # went to the garbage collector walking those tuples. ``yield_per`` makes PostgreSQL
            # stream them too (a server-side cursor) instead of buffering all in the driver.
            loaded = conn.execute(
                select(_M.hr_id, *(_M[name] for name in _CLASSIFIED), _M.manual, _M.ignored)
                .where(mine)
                .execution_options(yield_per=_STREAM_ROWS)
            ).tuples()
            changed, known, unseen, pinned = _compare(loaded, incoming)
            changing = set(changed)
            new = [k for k in incoming if k not in changing]  # _compare left changed and new
            if prune:
                doomed = [k for k in unseen if k not in pinned]
                for chunk in _chunks(doomed):
                    conn.execute(delete(_MAPPINGS).where(mine, _M.hr_id.in_(chunk)))
                unseen = [k for k in unseen if k in pinned]

            stamp = {"last_verified_at": now, "last_run_id": run_id}
            if not verified:
                stamp = {"last_run_id": run_id}
            elif len(unseen) <= _CHUNK:
                # The usual case: (nearly) every row was classified, one statement marks them all.
                conn.execute(update(_MAPPINGS).where(mine, _M.hr_id.not_in(unseen)).values(stamp))
            else:
                for chunk in _chunks(known):
                    conn.execute(update(_MAPPINGS).where(mine, _M.hr_id.in_(chunk)).values(stamp))
            # Parameters go in batches: one list of 100,000 row dicts (a first run over a tenant
            # that is already linked) cost 100 MB at the run's memory peak.
            for chunk in _chunks(changed, _WRITE_BATCH):
                self._db.dialect.update_rows(
                    conn,
                    _MAPPINGS,
                    _M.hr_id,
                    _CLASSIFIED_COLUMNS,
                    [(k, *_values(incoming[k])) for k in chunk],
                    constants={"last_changed_at": now, "last_run_id": run_id},
                    scope={"sync": sync},
                )
            # New rows as plain tuples through insert_rows (COPY on PostgreSQL): a first run
            # over 1,000,000 employees spent most of its saving compiling a dict per row.
            fresh = (False, False, 0, now, now if verified else None, now, run_id)
            for chunk in _chunks(new, _WRITE_BATCH):
                self._db.dialect.insert_rows(
                    conn,
                    _MAPPINGS,
                    _NEW_COLUMNS,
                    [(sync, k, *_values(incoming[k]), *fresh) for k in chunk],
                )
        return own_rows

    def mapping(self, hr_id: str) -> MappingRow | None:
        """The row of an HR id (or of an orphaned Protime value), ``None`` when unknown."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_MAPPING_COLUMNS).where(_M.sync == self._sync, _M.hr_id == hr_id)
            ).first()
        return _mapping_row(row) if row is not None else None

    def mapping_by_protime_id(self, protime_id: int) -> list[MappingRow]:
        """Every row pointing at a Protime person (more than one only for a conflict)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*_MAPPING_COLUMNS)
                .where(_M.sync == self._sync, _M.protime_id == protime_id)
                .order_by(_M.hr_id)
            ).all()
        return [_mapping_row(r) for r in rows]

    def attention(self) -> Iterator[tuple[str, str | None, str]]:
        """``(situation, rule, reason)`` of every unmatched and disputed row, streamed."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_STREAM_ROWS).execute(
                select(_M.situation, _M.rule, _M.reason).where(
                    _M.sync == self._sync,
                    _M.situation.in_((Situation.UNMATCHED.value, Situation.DISPUTED.value)),
                )
            )
            yield from ((situation, rule, reason) for situation, rule, reason in result)

    def written(self, hr_ids: Sequence[str]) -> dict[str, tuple[int | None, str, datetime | None]]:
        """HR id -> (Protime id, value, when) of what idsync last wrote, for the rows that have it."""
        found: dict[str, tuple[int | None, str, datetime | None]] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(sorted(set(hr_ids))):
                query = select(
                    _M.hr_id, _M.protime_id, _M.last_written_value, _M.last_written_at
                ).where(
                    _M.sync == self._sync,
                    _M.hr_id.in_(chunk),
                    _M.last_written_value.is_not(None),
                )
                for hr_id, protime_id, value, at in conn.execute(query):
                    found[hr_id] = (protime_id, value, at)
        return found

    def linked_pairs(self) -> dict[str, int]:
        """HR id -> Protime id of every linked row: what the write-back stores in HR."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_STREAM_ROWS).execute(
                select(_M.hr_id, _M.protime_id).where(
                    _M.sync == self._sync,
                    _M.situation == Situation.LINKED.value,
                    _M.protime_id.is_not(None),
                )
            )
            return dict(result.tuples().all())

    def unlinked_records(self) -> list[Classification]:
        """Every row of the map that is not linked, as the classification that stored it
        (ordered by HR id): what a settled run reports instead of classifying again."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_STREAM_ROWS).execute(
                select(*_MAPPING_COLUMNS)
                .where(_M.sync == self._sync, _M.situation != Situation.LINKED.value)
                .order_by(_M.hr_id)
            )
            return [_classification(_mapping_row(r)) for r in result]

    def counts_by_situation(self) -> dict[str, int]:
        """Rows of the map per situation, as stored now."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_M.situation, func.count())
                .where(_M.sync == self._sync)
                .group_by(_M.situation)
            )
            return {situation: int(count) for situation, count in rows}

    def iter_mappings(self) -> Iterator[MappingRow]:
        """Every row of the map ordered by HR id, streamed (for ``idsync export``)."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(
                select(*_MAPPING_COLUMNS).where(_M.sync == self._sync).order_by(_M.hr_id)
            )
            for row in result:
                yield _mapping_row(row)


def _classification(row: MappingRow) -> Classification:
    return Classification(
        hr_id=row.hr_id,
        situation=Situation(row.situation),
        protime_id=row.protime_id,
        rule=Rule(row.rule) if row.rule else None,
        evidence=row.evidence,
        reason=row.reason,
        protime_value=row.protime_value,
        candidates=row.candidates,
    )


def _action_count(actions_by_outcome: str | None) -> int:
    """All actions of a run's ``{"write": {"succeeded": 3}, ...}``, whatever their outcome."""
    by_kind = _json_or_empty(actions_by_outcome)
    return sum(int(n) for outcomes in by_kind.values() for n in outcomes.values())
