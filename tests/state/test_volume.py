"""save_classifications at 100,000 rows: correct, and its no-change time printed (never asserted)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import event

from sync.domain import Classification, Rule, Situation

if TYPE_CHECKING:
    from sync.state import Database, StateStore

ROWS = 100_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _classifications(changed_every: int = 0) -> list[Classification]:
    out = []
    for i in range(ROWS):
        reason = "changed" if changed_every and i % changed_every == 0 else "carries our reference"
        out.append(
            Classification(
                hr_id=f"E{i:06d}",
                situation=Situation.LINKED,
                protime_id=i + 1,
                rule=Rule.REFERENCE,
                evidence=f"HRMID=E{i:06d}",
                reason=reason,
                protime_value=f"E{i:06d}",
            )
        )
    return out


def test_100k_unchanged_rows_are_verified_without_rewriting_them(
    store: StateStore, migrated: Database
) -> None:
    """A second save of 100,000 identical classifications only bumps last_verified_at, in few statements."""
    first = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    started = time.perf_counter()
    store.map.save_classifications(run_id=first, classifications=_classifications(), now=T0)
    insert_seconds = time.perf_counter() - started

    statements: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _executemany) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(migrated.engine, "before_cursor_execute", count)
    second = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
    later = T0 + timedelta(hours=1)
    data = _classifications()
    started = time.perf_counter()
    store.map.save_classifications(run_id=second, classifications=data, now=later)
    unchanged_seconds = time.perf_counter() - started
    event.remove(migrated.engine, "before_cursor_execute", count)

    # No INSERT, and exactly one UPDATE (the bulk last_verified_at) besides the run bookkeeping.
    body = [s for s in statements if s not in {"BEGIN", "COMMIT"}]
    assert body.count("INSERT") == 1  # start_run's
    assert body.count("UPDATE") == 1
    rows = list(store.map.iter_mappings())
    assert len(rows) == ROWS
    assert all(r.last_verified_at == later and r.last_changed_at == T0 for r in rows)

    changed = _classifications(changed_every=100)
    started = time.perf_counter()
    store.map.save_classifications(run_id=second, classifications=changed, now=later)
    one_percent_seconds = time.perf_counter() - started
    assert store.map.mapping("E000100").reason == "changed"  # type: ignore[union-attr]

    dialect = migrated.dialect.name
    print(  # noqa: T201 - the figure the brief asks for; read it with `pytest -s`
        f"\n[{dialect}] save_classifications {ROWS:,} rows: first insert {insert_seconds:.2f}s, "
        f"nothing changed {unchanged_seconds:.2f}s, 1% changed {one_percent_seconds:.2f}s"
    )
