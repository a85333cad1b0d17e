"""What ``idsync suggest`` reads: HR (with names), Protime (with names), the state's prior, then
the same classification a run would make. Reads only; nothing is written anywhere."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from sync.hr import read_hr, read_hr_details
from sync.logging import get_logger
from sync.protime import ProtimeClient
from sync.reconcile import classify
from sync.suggest._engine import Report, suggest

log = get_logger(__name__)

if TYPE_CHECKING:
    import httpx

    from sync.config import Settings
    from sync.domain import HRDetails, HRSnapshot, Person
    from sync.state import StateStore


async def _read(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> tuple[HRSnapshot, dict[str, HRDetails], list[Person]]:
    async with ProtimeClient(settings.protime, transport=transport, read_names=True) as client:
        # HR is read on worker threads while the event loop pages through Protime, as in a run.
        hr_read = asyncio.create_task(
            asyncio.to_thread(
                read_hr,
                settings=settings.hr,
                url=settings.hr_url,
                max_value_length=settings.protime.max_value_length,
            )
        )
        details_read = asyncio.create_task(
            asyncio.to_thread(read_hr_details, settings=settings.hr, url=settings.hr_url)
        )
        try:
            people = await client.read_people()
        finally:
            hr, details = await asyncio.gather(hr_read, details_read)
    return hr, details, people


def build_report(
    *,
    settings: Settings,
    store: StateStore,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """Read both sides, classify as a run would (same rules, normalizers, links), and suggest."""
    settings.hr.require()
    started = time.perf_counter()
    prior = store.map.load_prior()
    hr, details, people = asyncio.run(_read(settings, transport))
    read = time.perf_counter()
    log.info(
        "suggest.read",
        employees=len(hr.employees),
        with_details=len(details),
        people=len(people),
        seconds=round(read - started, 3),
    )
    normalize = settings.match.normalizers()
    classifications = classify(
        hr=hr,
        people=people,
        prior=prior,
        rules=settings.match.rules,
        reference_name=settings.protime.reference_name,
        normalize=normalize,
    )
    classified = time.perf_counter()
    report = suggest(
        hr=hr,
        people=people,
        classifications=classifications,
        details=details,
        rules=settings.match.rules,  # the configured keys rank the candidates
        normalize=normalize,
    )
    log.info(
        "suggest.scored",
        suggestions=len(report.suggestions),
        unreached=len(report.unreached),
        classify_seconds=round(classified - read, 3),
        suggest_seconds=round(time.perf_counter() - classified, 3),
    )
    return report


async def _exists(
    settings: Settings, transport: httpx.AsyncBaseTransport | None, ids: list[int]
) -> set[int]:
    async with ProtimeClient(settings.protime, transport=transport, read_email=False) as client:
        # The client bounds the calls in flight (IDSYNC_PROTIME__CONCURRENCY) and paces them.
        found = await asyncio.gather(*(client.person_exists(pid) for pid in ids))
    return {pid for pid, ok in zip(ids, found, strict=True) if ok}


def existing_persons(
    *, settings: Settings, ids: list[int], transport: httpx.AsyncBaseTransport | None = None
) -> set[int]:
    """The ids among ``ids`` that Protime has (one ``GET people/{id}`` each)."""
    if not ids:
        return set()
    return asyncio.run(_exists(settings, transport, sorted(set(ids))))
