"""Settled runs: nothing changed since the last run that had nothing to do, so nothing is planned.

The planner is pure: the same HR employees, the same Protime people, the same prior state (admins'
links and ignores, failed records) and the same settings give the same plan. A run *settles* when
its plan is empty and nothing blocked it: it stores a digest of its inputs (:func:`settled_key`)
with its run id and the last audit event id (``store.settled.settle``).

The next run reads HR and the Protime delta as any incremental run does. When the delta brings no
change, the snapshot is the one the settled run classified; when in addition its own inputs digest
to the same key and nothing happened to the state since (no other real run, no audit event, no
snapshot saved: ``store.settled.settled_run``), its plan would be empty again and its records the
ones the map holds. It then neither loads the snapshot nor classifies, plans or compares the map:
it reports the settled run's figures, the map's unlinked records, saves the delta's new link and
settles in turn. Anything else is an ordinary run. docs/protime-client.md, "Settled runs".

Only plain runs settle or are settled: not a dry run, ``--only``, ``--force`` or
``--retry-failed`` (each asks for a plan of its own).
"""

from __future__ import annotations

import hashlib
import json
from itertools import islice
from typing import TYPE_CHECKING

from sync import __version__
from sync.reconcile._preconditions import settings_digest

if TYPE_CHECKING:
    from sync.config import Settings
    from sync.domain import HRSnapshot, PriorState

# Employees digested per joined string: bounds the text made at once.
_DIGEST_BATCH = 100_000


def settled_key(
    *, settings: Settings, hr: HRSnapshot, prior: PriorState, snapshot_fingerprint: str
) -> str:
    """One digest of what a plan depends on besides the Protime snapshot: the idsync version,
    the settings that shape a plan or judge it, the snapshot's own fingerprint (tenant, reference
    name, fields read), every HR employee, invalid and out-of-scope row, and the prior state.

    The last good run's counts are left out: they change with every run, and a plan that was
    empty with the same snapshots passes the same gates again.
    """
    h = hashlib.blake2b(digest_size=32)
    shape = {
        "version": __version__,
        "plan": settings_digest(settings),
        "safety": settings.safety.model_dump(mode="json"),
        "snapshot": snapshot_fingerprint,
    }
    h.update(json.dumps(shape, sort_keys=True).encode())
    employees = iter(hr.employees)
    while batch := list(islice(employees, _DIGEST_BATCH)):
        h.update(
            "".join(
                [
                    f"\x1e{e.hr_id}\x1f{e.employee_number}\x1f{e.badge_number}\x1f{e.email}"
                    for e in batch
                ]
            ).encode()
        )
    h.update(b"\x1dinvalid")
    for row in hr.invalid:
        h.update(f"\x1e{row.row_number}\x1f{row.hr_id}\x1f{row.reason}".encode())
    h.update(b"\x1dout of scope")
    for hr_id in sorted(hr.out_of_scope_ids):
        h.update(f"\x1e{hr_id}".encode())
    prior_shape = {
        "manual": sorted(prior.manual_links.items()),
        "ignored": sorted(prior.ignored_hr_ids),
        "failed": sorted(prior.failed.items()),
    }
    h.update(b"\x1dprior")
    h.update(json.dumps(prior_shape).encode())
    return h.hexdigest()
