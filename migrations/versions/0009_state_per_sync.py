"""State per sync: every row of per-sync state names its sync; existing rows become ``default``.

One state database holds many syncs (issue 21). ``mappings``, ``runs``, ``events``, ``plans``,
``protime_people`` and ``protime_feed`` get a ``sync`` column (server default ``'default'``, so the
rows already there belong to the default sync). What was unique per database is unique per sync:
the keys of ``mappings`` (HR id), ``protime_people`` (person id) and ``protime_feed`` (the feed's
one row) start with ``sync``, and so do the indexes the store's queries filter through.
``plan_actions`` is reached only through its plan, and run, plan and event ids stay global.
``run_lock.name`` widens to 128 characters: a sync's lock carries the sync's name.

Downgrading is possible while every row belongs to the default sync; otherwise it is refused (it
would merge the syncs' rows, or fail on their keys half-way).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT = "default"  # sync.names.DEFAULT_SYNC, spelled here: migrations stay free of app imports
_TABLES = ("mappings", "runs", "events", "plans", "protime_people", "protime_feed")
# Tables whose primary key gains the sync: (table, the key's columns before).
_KEYS = (("mappings", ("hr_id",)), ("protime_people", ("id",)), ("protime_feed", ("name",)))
# Indexes that become per sync: (table, (index column before, ...), (new index columns, ...)).
_INDEXES: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]], ...] = (
    (
        "mappings",
        ("protime_id", "situation", "previous_hr_id"),
        (("sync", "protime_id"), ("sync", "situation"), ("sync", "previous_hr_id")),
    ),
    ("runs", ("started_at", "status"), (("sync", "started_at"), ("sync", "status"))),
    (
        "events",
        ("hr_id", "protime_id"),
        (("sync", "hr_id"), ("sync", "protime_id"), ("sync", "id")),
    ),
    ("plans", ("created_at",), (("sync", "created_at"),)),
)


def _index_name(table: str, columns: Sequence[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    keys = dict(_KEYS)
    indexes = {table: (old, new) for table, old, new in _INDEXES}
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "sync", sa.String(length=63), nullable=False, server_default=sa.text("'default'")
                )
            )
            if table in keys:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", ["sync", *keys[table]])
            old, new = indexes.get(table, ((), ()))
            for column in old:
                batch.drop_index(_index_name(table, [column]))
            for columns in new:
                batch.create_index(_index_name(table, columns), list(columns))
    with op.batch_alter_table("run_lock") as batch:
        batch.alter_column(
            "name", existing_type=sa.String(length=64), type_=sa.String(length=128), nullable=False
        )


def downgrade() -> None:
    bind = op.get_bind()
    others = {
        table: bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE sync <> :default"),  # noqa: S608 - ours
            {"default": DEFAULT},
        ).scalar_one()
        for table in _TABLES
    }
    kept = {table: n for table, n in others.items() if n}
    if kept:
        listed = ", ".join(f"{table}: {n}" for table, n in kept.items())
        raise RuntimeError(
            f"cannot downgrade below 0009: rows of syncs other than {DEFAULT!r} exist ({listed});"
            " one state database per sync needs them moved or deleted first"
        )
    with op.batch_alter_table("run_lock") as batch:
        batch.alter_column(
            "name", existing_type=sa.String(length=128), type_=sa.String(length=64), nullable=False
        )
    keys = dict(_KEYS)
    indexes = {table: (old, new) for table, old, new in _INDEXES}
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            old, new = indexes.get(table, ((), ()))
            for columns in new:
                batch.drop_index(_index_name(table, columns))
            for column in old:
                batch.create_index(_index_name(table, [column]), [column])
            if table in keys:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", list(keys[table]))
            batch.drop_column("sync")
