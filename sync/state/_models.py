"""The state schema: SQLAlchemy 2 typed models. Alembic's ``migrations/`` must match these exactly.

Every timestamp is timezone-aware UTC (:class:`UTCDateTime`). JSON-shaped run figures are kept as
text so SQLite and PostgreSQL store them alike. Constraint and index names follow one naming
convention, so batch migrations on SQLite and autogenerate on both dialects agree on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KEY_LENGTH = 255  # HR ids, and the Protime values orphans are keyed by

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are converted to UTC
    before they are stored and read back as UTC. A naive datetime is refused: its zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database; use an aware UTC one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MappingRecord(Base):
    """One HR id and where it stands; or, for an orphan, the value Protime holds (``hr_id``)."""

    __tablename__ = "mappings"

    hr_id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    protime_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    situation: Mapped[str] = mapped_column(String(16), index=True)
    rule: Mapped[str | None] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    ignored: Mapped[bool] = mapped_column(Boolean, default=False)
    last_written_value: Mapped[str | None] = mapped_column(Text)
    protime_value: Mapped[str | None] = mapped_column(Text)
    candidates: Mapped[str | None] = mapped_column(Text)  # comma-separated Protime ids
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_fingerprint: Mapped[str | None] = mapped_column(Text)
    last_run_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("runs.id"))
    # Re-key history: the HR id the person held before this one was written over it.
    previous_hr_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)


class RunRecord(Base):
    """One reconciliation run, from the moment it holds the lock to its summary."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    only_ids: Mapped[str | None] = mapped_column(Text)  # JSON list, NULL for a full run
    hr_count: Mapped[int | None] = mapped_column(Integer)
    protime_count: Mapped[int | None] = mapped_column(Integer)
    counts_by_situation: Mapped[str | None] = mapped_column(Text)  # JSON object
    actions_by_outcome: Mapped[str | None] = mapped_column(Text)  # JSON object
    api_calls: Mapped[str | None] = mapped_column(Text)  # JSON object
    error: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)


class EventRecord(Base):
    """The audit trail: one row per planned write or delete, and one per admin action."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("runs.id"), index=True)
    hr_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)
    protime_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    action: Mapped[str] = mapped_column(String(16))
    situation: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(Text)
    previous_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunLockRecord(Base):
    """The run lock on databases without advisory locks (SQLite): one row per held lock name."""

    __tablename__ = "run_lock"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Core handles on the tables, typed as Tables (``__table__`` is typed as a plain FromClause).
MAPPINGS = cast("Table", MappingRecord.__table__)
RUNS = cast("Table", RunRecord.__table__)
EVENTS = cast("Table", EventRecord.__table__)
RUN_LOCK = cast("Table", RunLockRecord.__table__)
