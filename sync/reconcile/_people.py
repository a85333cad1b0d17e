"""How a run reads Protime: in full, or only the people changed since the last run (the delta).

A full read is the people delta feed's first round (every person, then a ``deltaLink``), so one
read gives both the snapshot and the position to read changes from. Between full reads a run loads
the snapshot the state database kept, calls the stored ``deltaLink`` and applies what changed.
Custom-reference changes never show in the delta, so a full read still happens every
``IDSYNC_SCHEDULE__FULL_READ_EVERY`` (docs/protime-client.md, "Incremental reads").

Our own writes do not show in the delta either: after the apply step :func:`save_snapshot` applies
each succeeded write and delete to the snapshot and stores it with the new link, in one
transaction, only once every outcome is recorded. A crash before that leaves the old link and the
old snapshot: the next run reads the same changes again and plans the same writes again (a PUT and a
DELETE are idempotent), so it converges. The calls are applied as the references they leave (person
id -> value), stored in the same rows as the read or the delta: each row is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, NoReturn

from sync.domain import Rule
from sync.errors import InputGateError, ProtimeError
from sync.logging import get_logger
from sync.reconcile._gates import protime_read_limit, read_limit_error
from sync.reconcile._versions import Versions, fold_changes, newest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from sync.config import Settings
    from sync.domain import Person, PriorState
    from sync.protime import Change
    from sync.reconcile._ports import ProtimeAPI, RunState
    from sync.state import PeopleFeed
    from sync.strings import StringPool

log = get_logger(__name__)

FULL = "full"
INCREMENTAL = "incremental"
# Answers to the stored deltaLink that mean "start over": expired (410, documented), and a link
# the server no longer understands (400, 404). Anything else fails the run as any read would.
_RESTART = frozenset({400, 404, 410})
# Runs in a row whose stored link was refused before the run warns that another consumer may be
# replacing the collection's one active delta.
_REFUSALS_TO_WARN = 2


@dataclass(slots=True)
class ProtimeRead:
    """Which read a run did, and what it needs to store the snapshot afterwards."""

    kind: str  # FULL or INCREMENTAL
    reason: str | None  # why a full read
    fingerprint: str
    full_read_at: datetime  # of the full read the snapshot descends from
    delta_link: str | None = None  # the link to call next time (None: a read that started none)
    # An incremental read: the persons the delta inserted or updated, and the ids it deleted,
    # each by its newest change.
    changed: dict[int, Person] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    # The changeVersion of each person read (a full read: all of them; an incremental one: the
    # changed), for the snapshot.
    versions: Mapping[int, str | None] = field(default_factory=dict)
    # Changed persons whose item carried no externalReferences map: they keep the snapshot's.
    unknown_references: set[int] = field(default_factory=set)
    # Runs in a row whose stored link was refused (410), this one included.
    refusals: int = 0
    # The delta brought no change and the snapshot was not loaded yet: the run may be settled
    # (_settled.py); otherwise :func:`load_deferred` loads it.
    deferred: bool = False


def read_fingerprint(settings: Settings) -> str:
    """What a snapshot depends on: another tenant, reference name or set of fields reads in full."""
    p = settings.protime
    email = Rule.EMAIL in settings.match.rules
    text = "\n".join((p.base_url or "", p.tenant or "", p.reference_name, f"email={email}"))
    return hashlib.sha256(text.encode()).hexdigest()


ASKED_FOR_FULL = "asked for (--full)"


def full_read_reason(
    settings: Settings, feed: PeopleFeed | None, *, full: bool | str, now: datetime
) -> str | None:
    """Why this run must read in full, or None when the delta is enough. ``full``: True for
    ``--full``, or the reason a caller always reads in full (``apply``)."""
    if full:
        return full if isinstance(full, str) else ASKED_FOR_FULL
    if not settings.protime.delta_on:
        return "IDSYNC_PROTIME__DELTA=off"
    if feed is None:
        return "no snapshot of Protime yet"
    if feed.delta_link is None:
        return "no delta token"
    if feed.fingerprint != read_fingerprint(settings):
        return "the settings that shape the snapshot changed (tenant, reference name, e-mail rule)"
    if feed.unconfirmed_writes:
        return (
            f"{feed.unconfirmed_writes} write(s) of the last run were accepted by Protime "
            "without confirmation (202): a full read confirms them"
        )
    every = settings.schedule.full_read_every
    if every.total_seconds() <= 0:
        return "IDSYNC_SCHEDULE__FULL_READ_EVERY=0"
    age = now - feed.full_read_at
    if age >= every:
        hours = age.total_seconds() / 3600
        return f"the last full read is {hours:.1f} h old (IDSYNC_SCHEDULE__FULL_READ_EVERY)"
    return None


async def read_protime(
    *,
    settings: Settings,
    store: RunState,
    client: ProtimeAPI,
    people: list[Person],
    full: bool | str,
    keep_link: bool,
    prior: Awaitable[PriorState],
    strings: StringPool | None = None,
    defer: bool = False,
) -> ProtimeRead:
    """Fill ``people`` with every Protime person, read in full or as snapshot + delta; their keys
    and references are the objects of ``strings`` (the run's pool, :mod:`sync.strings`).

    ``keep_link``: the run will store the read and its ``deltaLink`` (a real run). Only such a
    read starts a new delta round: Protime keeps one active delta per collection, so a new round
    makes the stored link of the real runs invalid. Any other read (a dry run, a plan) reads in
    full with a plain ``GET /people``, or through the stored link, whose answer it does not keep.
    ``prior``: the state's prior (the run loads it once, beside this read); its last good
    Protime count bounds the read.
    ``defer``: when a run settled on this snapshot and the delta brings no change, leave
    ``people`` empty and the read ``deferred`` (the caller may not need the snapshot at all).
    """
    now = datetime.now(UTC)
    # The prior is the caller's task, shared with the rest of the run: shielded, so that a
    # stop cancelling this read does not cancel it.
    feed, last = await asyncio.gather(
        asyncio.to_thread(store.snapshot.people_feed), asyncio.shield(prior)
    )
    # Endless pages of new people must not be read for ever (issue 22): a read that grows past
    # what the input gate would take stops there and blocks the run like the gate.
    limit = protime_read_limit(
        last_protime_count=last.last_good_protime_count,
        safety=settings.safety,
        max_people=settings.protime.max_people,
    )
    del last
    try:
        return await _read(
            settings=settings,
            store=store,
            client=client,
            people=people,
            feed=feed,
            reason=full_read_reason(settings, feed, full=full, now=now),
            now=now,
            keep_link=keep_link,
            strings=strings,
            defer=defer,
            limit=limit,
        )
    except InputGateError:
        await _stopped(store, keep_link=keep_link)
        raise


async def _read(
    *,
    settings: Settings,
    store: RunState,
    client: ProtimeAPI,
    people: list[Person],
    feed: PeopleFeed | None,
    reason: str | None,
    now: datetime,
    keep_link: bool,
    strings: StringPool | None,
    defer: bool,
    limit: tuple[int, str],
) -> ProtimeRead:
    """The read itself: incremental when ``reason`` is None and a link is stored, else in full
    (also when Protime refuses the stored link: the read starts over)."""
    fingerprint = read_fingerprint(settings)
    refusals = 0
    if reason is None and feed is not None and feed.delta_link is not None:
        try:
            return await _incremental(
                store=store,
                client=client,
                people=people,
                feed=feed,
                fingerprint=fingerprint,
                strings=strings,
                defer=defer and feed.settled_key is not None,
                limit=limit,
            )
        except ProtimeError as exc:
            if exc.status not in _RESTART:
                raise
            reason, refusals = _refused(exc, feed)
            people.clear()
    start = keep_link and settings.protime.delta_on
    log.info("protime.read", read=FULL, reason=reason, starts_delta=start)
    delta_link, versions = await _full(client, people, start=start, strings=strings, limit=limit)
    return ProtimeRead(
        kind=FULL,
        reason=reason,
        fingerprint=fingerprint,
        full_read_at=now,
        delta_link=delta_link,
        versions=versions,
        refusals=refusals,
    )


def _refused(exc: ProtimeError, feed: PeopleFeed) -> tuple[str, int]:
    """Why a refused delta link makes this read a full one, and how many runs in a row it was
    refused (warned about from the second: another consumer may be replacing the delta)."""
    log.warning("protime.delta_refused", status=exc.status, error=str(exc))
    reason = (
        "the delta link is gone (410: expired, or replaced by a newer round)"
        if exc.status == 410  # noqa: PLR2004 - HTTP 410 Gone
        else f"the delta link was refused ({exc.status})"
    )
    refusals = feed.delta_refusals + 1
    if refusals >= _REFUSALS_TO_WARN:
        log.warning(
            "protime.delta_replaced",
            runs_in_a_row=refusals,
            advice=(
                "the stored delta link was refused on consecutive runs: another "
                "consumer may be replacing this tenant's people delta (Protime keeps "
                "one per collection); if another integration holds it, set "
                "IDSYNC_PROTIME__DELTA=off to read in full every run"
            ),
        )
    return reason, refusals


async def _full(
    client: ProtimeAPI,
    people: list[Person],
    *,
    start: bool,
    strings: StringPool | None,
    limit: tuple[int, str],
) -> tuple[str | None, Versions]:
    """A full read, starting a delta round when ``start``; a round refused with 409 after every
    retry reads again without one."""
    versions = Versions()
    try:
        link = await _read_all(
            client, people, versions, start_delta=start, strings=strings, limit=limit
        )
    except ProtimeError as exc:
        if not (start and exc.status == 409):  # noqa: PLR2004 - HTTP 409 Conflict
            raise
        # Protime may refuse a new round while another holds the collection's delta (the
        # other reading of "one active delta per collection"): read without one.
        log.warning(
            "protime.delta_conflict",
            error=str(exc),
            advice=(
                "starting a people delta answered 409 after every retry: another consumer may "
                "hold this tenant's people delta; this run reads in full without one (set "
                "IDSYNC_PROTIME__DELTA=off to stop trying)"
            ),
        )
        people.clear()
        versions = Versions()
        link = await _read_all(
            client, people, versions, start_delta=False, strings=strings, limit=limit
        )
    return link, versions


async def _stopped(store: RunState, *, keep_link: bool) -> None:
    """A read stopped at its limit keeps nothing: a real run forgets the stored link (a new round
    it started replaced it), so the next run reads in full, as after the input gate."""
    if keep_link:
        await asyncio.to_thread(store.snapshot.forget_people_feed)
        log.info("protime.read_not_kept", reason="the read was stopped at its limit")


def _past_limit(read: int, limit: tuple[int, str], *, what: str) -> NoReturn:
    most, why = limit
    log.warning("protime.read_stopped", what=what, read=read, limit=most, why=why)
    raise read_limit_error(limit=most, why=why, read=read, what=what)


async def _read_all(
    client: ProtimeAPI,
    people: list[Person],
    versions: Versions,
    *,
    start_delta: bool,
    strings: StringPool | None,
    limit: tuple[int, str],
) -> str | None:
    """Every person into ``people`` and their versions into ``versions``; the deltaLink, if any.

    Past ``limit`` people (the most, and why) the read stops: :class:`InputGateError`.
    """
    delta_link = None
    most = limit[0]
    pages = client.iter_full(start_delta=start_delta, strings=strings)
    try:
        async for page in pages:
            people.extend(page.people)
            versions.add(page.people, page.versions)
            delta_link = page.delta_link or delta_link
            if len(people) > most:
                _past_limit(len(people), limit, what="read")
    finally:
        close = getattr(pages, "aclose", None)
        if close is not None:
            await close()
    return delta_link


async def _incremental(
    *,
    store: RunState,
    client: ProtimeAPI,
    people: list[Person],
    feed: PeopleFeed,
    fingerprint: str,
    strings: StringPool | None,
    defer: bool,
    limit: tuple[int, str],
) -> ProtimeRead:
    assert feed.delta_link is not None  # the caller checked
    # The delta's first page goes out while the snapshot loads from the state database; a run
    # that may be settled loads it only once the delta shows a change.
    loading = (
        None
        if defer
        else asyncio.create_task(asyncio.to_thread(store.snapshot.load_people, strings=strings))
    )
    best: dict[int, Change] = {}
    items = 0
    delta_link = feed.delta_link
    try:
        most = limit[0]
        async for page in client.iter_changes(feed.delta_link, strings=strings):
            items += len(page.changes)
            newest(page.changes, best)
            delta_link = page.delta_link or delta_link
            if items > most:
                # More changes than people the gate would take: endless pages, stopped here.
                _past_limit(items, limit, what="delta")
        held = (
            await asyncio.to_thread(partial(store.snapshot.people_versions, ids=sorted(best)))
            if best
            else {}
        )
    except BaseException:
        # The load's thread must end before the run goes on, but its snapshot is not needed
        # (a 410 reads in full next): dropping the task frees it before the full read, which
        # the traceback holding this frame would otherwise keep alive.
        if loading is not None:
            with contextlib.suppress(Exception):
                await loading
            loading = None
        raise
    snapshot = await loading if loading is not None else None
    loading = None
    folded = fold_changes(best, held=held)
    del best
    read = ProtimeRead(
        kind=INCREMENTAL,
        reason=None,
        fingerprint=fingerprint,
        full_read_at=feed.full_read_at,
        delta_link=delta_link,
        changed=folded.changed,
        removed=folded.removed,
        versions=folded.versions,
        unknown_references=folded.unknown_references,
    )
    if items > len(folded.versions):
        log.info("protime.delta_folded", items=items, kept=len(folded.versions))
    if snapshot is None and not (folded.changed or folded.removed):
        log.info("protime.read", read=INCREMENTAL, changed=0, removed=0, snapshot="deferred")
        read.deferred = True
        return read
    if snapshot is None:
        snapshot = await asyncio.to_thread(store.snapshot.load_people, strings=strings)
    people.extend(snapshot)
    del snapshot
    if folded.changed or folded.removed:
        _merge(people, folded.changed, folded.removed, folded.unknown_references)
    log.info(
        "protime.read",
        read=INCREMENTAL,
        changed=len(folded.changed),
        removed=len(folded.removed),
        ignored_as_older=folded.ignored,
    )
    return read


async def load_deferred(
    *, store: RunState, read: ProtimeRead, people: list[Person], strings: StringPool | None
) -> None:
    """Load the snapshot a deferred read left out (the delta changed nothing: it is the read)."""
    assert read.deferred
    assert not people
    people.extend(await asyncio.to_thread(store.snapshot.load_people, strings=strings))
    read.deferred = False


def _merge(
    people: list[Person], changed: dict[int, Person], removed: set[int], unknown: set[int]
) -> None:
    """Apply the delta to the snapshot in place (ordered by id, as a full read gives them).

    A changed person whose item carried no reference map keeps the reference the snapshot
    knew (custom references do not travel through the delta); ``changed`` takes the merged
    person, which is what the snapshot stores.
    """
    seen: set[int] = set()
    kept = 0
    for p in people:
        if p.id in removed:
            continue
        new = changed.get(p.id)
        if new is not None:
            seen.add(p.id)
            if p.id in unknown and new.reference != p.reference:
                new = changed[p.id] = replace(new, reference=p.reference)
            p = new  # noqa: PLW2901 - the person as the delta has it now
        people[kept] = p
        kept += 1
    del people[kept:]
    inserted = [p for pid, p in changed.items() if pid not in seen]
    if inserted:
        people.extend(inserted)
        people.sort(key=_id)


def _id(p: Person) -> int:
    return p.id
