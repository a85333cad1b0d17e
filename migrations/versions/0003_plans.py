"""Stored plans (review, approve, apply exactly, roll back) and the three-way view of the map.

Adds the ``plans`` and ``plan_actions`` tables, ``runs.plan_id`` (the plan an apply ran),
``events.previous_protime_id`` (who held a value before a call: what a rollback points it back to)
and ``mappings.last_written_at`` (when idsync last wrote the row's value).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # sync.state._models.UTCDateTime stores through this type; migrations stay free of app imports.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("rollback_of", sa.String(length=36), nullable=True),
        sa.Column("settings_digest", sa.String(length=64), nullable=False),
        sa.Column("snapshot_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("counts_by_situation", sa.Text(), nullable=True),
        sa.Column("actions_by_kind", sa.Text(), nullable=True),
        sa.Column("would_block", sa.Text(), nullable=True),
        sa.Column("action_count", sa.Integer(), nullable=False),
        sa.Column("applied_at", _utc(), nullable=True),
        sa.Column("applied_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_plans_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.create_index(op.f("ix_plans_created_at"), "plans", ["created_at"])
    op.create_table(
        "plan_actions",
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hr_id", sa.String(length=255), nullable=False),
        sa.Column("protime_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("situation", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("depends_on", sa.String(length=255), nullable=True),
        sa.Column("expect_value", sa.Text(), nullable=True),
        sa.Column("expect_holder", sa.BigInteger(), nullable=True),
        sa.Column("hr_fingerprint", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_plan_actions_plan_id_plans")
        ),
        sa.PrimaryKeyConstraint("plan_id", "seq", name=op.f("pk_plan_actions")),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("plan_id", sa.String(length=36), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("previous_protime_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("mappings") as batch:
        batch.add_column(sa.Column("last_written_at", _utc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mappings") as batch:
        batch.drop_column("last_written_at")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("previous_protime_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("plan_id")
    op.drop_table("plan_actions")
    op.drop_index(op.f("ix_plans_created_at"), table_name="plans")
    op.drop_table("plans")
