"""Re-key history: mappings.previous_hr_id, the HR id the person held before this one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mappings") as batch:
        batch.add_column(sa.Column("previous_hr_id", sa.String(length=255), nullable=True))
        batch.create_index(
            batch.f("ix_mappings_previous_hr_id"), ["previous_hr_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mappings") as batch:
        batch.drop_index(batch.f("ix_mappings_previous_hr_id"))
        batch.drop_column("previous_hr_id")
