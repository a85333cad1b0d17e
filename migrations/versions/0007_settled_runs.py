"""The feed row remembers the last run that settled: what it read, and the state it left.

A run whose plan was empty stores a digest of its inputs (HR, the state's prior, the settings)
with its run id and the last audit event id. The next run that finds the same digest, no Protime
change in the delta, no run and no admin change since, reports that run's figures instead of
planning again (docs/protime-client.md, "Settled runs").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protime_feed") as batch:
        batch.add_column(sa.Column("settled_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("settled_run_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("settled_event_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("protime_feed") as batch:
        batch.drop_column("settled_event_id")
        batch.drop_column("settled_run_id")
        batch.drop_column("settled_key")
