"""The Protime people as last seen, and the delta feed's position, for incremental reads.

``protime_people`` holds one row per person (the fields of ``sync.domain.Person``);
``protime_feed`` the delta link to call next, when the last full read finished and what it was
read with. ``runs`` say which read a run did (``protime_read``, ``protime_read_reason``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # sync.state._models.UTCDateTime stores through this type; migrations stay free of app imports.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "protime_people",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("employee_number", sa.Text(), nullable=True),
        sa.Column("badge_number", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("out_of_service", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protime_people")),
    )
    op.create_table(
        "protime_feed",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("full_read_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_protime_feed")),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("protime_read", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("protime_read_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("protime_read_reason")
        batch.drop_column("protime_read")
    op.drop_table("protime_feed")
    op.drop_table("protime_people")
