"""Protime's people delta as published: change versions, accepted writes, refused links.

A set of changes may list one person several times, in no promised order; ``changeVersion``
(a string compared lexically) decides, also against the version the snapshot already holds, so
the snapshot keeps each person's version. The feed row counts writes Protime accepted without
confirming them (202, or an empty answer: the next run reads in full to confirm them) and the runs
in a row whose stored link was refused (410): two in a row suggest another consumer replaces the
collection's one active delta (docs/protime-client.md, "Incremental reads").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protime_people") as batch:
        batch.add_column(sa.Column("change_version", sa.Text(), nullable=True))
    with op.batch_alter_table("protime_feed") as batch:
        batch.add_column(
            sa.Column("unconfirmed_writes", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("delta_refusals", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("protime_feed") as batch:
        batch.drop_column("delta_refusals")
        batch.drop_column("unconfirmed_writes")
    with op.batch_alter_table("protime_people") as batch:
        batch.drop_column("change_version")
