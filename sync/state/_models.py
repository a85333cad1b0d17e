"""The state schema: SQLAlchemy 2 typed models. Alembic's ``migrations/`` must match these exactly.

Every timestamp is timezone-aware UTC (:class:`UTCDateTime`). JSON-shaped run figures are kept as
text so SQLite and PostgreSQL store them alike. Constraint and index names follow one naming
convention, so batch migrations on SQLite and autogenerate on both dialects agree on them.

Every table of per-sync state has a ``sync`` column (migration 0009): the name of the sync
(:mod:`sync.names`) the row belongs to. What was unique per database before (an HR id, a person id,
the feed row) is unique per sync, so its key starts with ``sync``; so do the indexes the store's
queries filter through, since every query names its sync. Run, plan and event ids are global
(UUIDs, a sequence), and ``plan_actions`` is only ever reached through its plan.
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
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sync.names import DEFAULT_SYNC

KEY_LENGTH = 255  # HR ids, and the Protime values orphans are keyed by
SYNC_LENGTH = 63  # the longest sync name sync.names allows
LOCK_NAME_LENGTH = 128  # a lock name with a sync's name in it (migration 0009 widened it from 64)

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


def _sync_column(*, primary_key: bool = False) -> Mapped[str]:
    """The sync a row belongs to; rows from before migration 0009 belong to the default sync."""
    return mapped_column(String(SYNC_LENGTH), primary_key=primary_key, server_default=DEFAULT_SYNC)


class MappingRecord(Base):
    """One HR id and where it stands; or, for an orphan, the value Protime holds (``hr_id``)."""

    __tablename__ = "mappings"
    __table_args__ = (
        Index("ix_mappings_sync_protime_id", "sync", "protime_id"),
        Index("ix_mappings_sync_situation", "sync", "situation"),
        Index("ix_mappings_sync_previous_hr_id", "sync", "previous_hr_id"),
    )

    sync: Mapped[str] = _sync_column(primary_key=True)
    hr_id: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    protime_id: Mapped[int | None] = mapped_column(BigInteger)
    situation: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    ignored: Mapped[bool] = mapped_column(Boolean, default=False)
    last_written_value: Mapped[str | None] = mapped_column(Text)
    last_written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
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
    previous_hr_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH))


class RunRecord(Base):
    """One reconciliation run, from the moment it holds the lock to its summary."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_sync_started_at", "sync", "started_at"),
        Index("ix_runs_sync_status", "sync", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sync: Mapped[str] = _sync_column()
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
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
    plan_id: Mapped[str | None] = mapped_column(String(36))  # the plan an apply/rollback ran
    # The client-side rate "auto" reached (requests/s); NULL for a fixed rate or no limit.
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    # JSON: phase, done, total, rate, ETA and when; updated while the run runs (`idsync status`).
    progress: Mapped[str | None] = mapped_column(Text)
    # How the run read Protime: "full" or "incremental", and for a full read why (migration 0006).
    protime_read: Mapped[str | None] = mapped_column(String(16))
    protime_read_reason: Mapped[str | None] = mapped_column(Text)


class EventRecord(Base):
    """The audit trail: one row per planned write or delete, and one per admin action."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_sync_hr_id", "sync", "hr_id"),
        Index("ix_events_sync_protime_id", "sync", "protime_id"),
        # The last event of a sync (a settled run checks nothing happened since) in one seek.
        Index("ix_events_sync_id", "sync", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    sync: Mapped[str] = _sync_column()
    run_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("runs.id"), index=True)
    hr_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    protime_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    situation: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(Text)
    previous_value: Mapped[str | None] = mapped_column(Text)
    # Who held ``value`` before the call (a re-point moves it from there): what a rollback restores.
    previous_protime_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PlanRecord(Base):
    """A stored plan: what a reconcile (or a rollback) would do, for an operator to approve."""

    __tablename__ = "plans"
    __table_args__ = (Index("ix_plans_sync_created_at", "sync", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sync: Mapped[str] = _sync_column()
    kind: Mapped[str] = mapped_column(String(16))  # reconcile | rollback
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("runs.id"))  # made by
    rollback_of: Mapped[str | None] = mapped_column(String(36))  # the run a rollback undoes
    settings_digest: Mapped[str] = mapped_column(String(64))
    snapshot_fingerprint: Mapped[str | None] = mapped_column(String(64))
    counts_by_situation: Mapped[str | None] = mapped_column(Text)  # JSON object
    actions_by_kind: Mapped[str | None] = mapped_column(Text)  # JSON object
    would_block: Mapped[str | None] = mapped_column(Text)  # JSON list of lines
    action_count: Mapped[int] = mapped_column(Integer, default=0)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_by: Mapped[str | None] = mapped_column(String(36))  # the last apply run


class PlanActionRecord(Base):
    """One action of a stored plan, with the precondition it is applied under."""

    __tablename__ = "plan_actions"

    plan_id: Mapped[str] = mapped_column(String(36), ForeignKey("plans.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    hr_id: Mapped[str] = mapped_column(String(KEY_LENGTH))
    protime_id: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[str] = mapped_column(Text)
    situation: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    phase: Mapped[int] = mapped_column(Integer)
    depends_on: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    # The precondition: the person's value and the value's holder as the plan saw them, and the
    # fingerprint of the HR row (NULL: not checked, as for a rollback).
    expect_value: Mapped[str | None] = mapped_column(Text)
    expect_holder: Mapped[int | None] = mapped_column(BigInteger)
    hr_fingerprint: Mapped[str | None] = mapped_column(String(64))


class ProtimePersonRecord(Base):
    """One Protime person as the last run saw it (the snapshot an incremental read starts from).

    The fields of :class:`sync.domain.Person`; ``reference`` is our custom reference's value.
    """

    __tablename__ = "protime_people"

    sync: Mapped[str] = _sync_column(primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    employee_number: Mapped[str | None] = mapped_column(Text)
    badge_number: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    out_of_service: Mapped[bool] = mapped_column(Boolean, default=False)
    # Protime's changeVersion of the person as read (a string compared lexically; migration
    # 0008): a change older than the one the snapshot holds is ignored. NULL: not given.
    change_version: Mapped[str | None] = mapped_column(Text)


class ProtimeFeedRecord(Base):
    """Where the people delta feed stands: the link to call next and the last full read."""

    __tablename__ = "protime_feed"

    sync: Mapped[str] = _sync_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "people"
    delta_link: Mapped[str | None] = mapped_column(Text)
    # What the snapshot was read with (tenant, reference name, fields): another config reads
    # in full.
    fingerprint: Mapped[str] = mapped_column(String(64))
    full_read_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(String(36))  # the run that saved it
    # The last run that settled (an empty plan): a digest of its inputs, its id and the last
    # audit event id then (migration 0007; docs/protime-client.md, "Settled runs"). Cleared
    # whenever the snapshot is saved; set again by a run that settles.
    settled_key: Mapped[str | None] = mapped_column(String(64))
    settled_run_id: Mapped[str | None] = mapped_column(String(36))
    settled_event_id: Mapped[int | None] = mapped_column(BigInteger)
    # Writes Protime accepted without confirming them (202, or an empty answer): the next run
    # reads in full to see them. Runs in a row whose stored link was refused (410). Migration 0008.
    unconfirmed_writes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delta_refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RunLockRecord(Base):
    """The run lock on databases without advisory locks (SQLite): one row per held lock name.

    No ``sync`` column: a sync's lock carries the sync in its name (:func:`~sync.state._lock.
    sync_lock_name`)."""

    __tablename__ = "run_lock"

    name: Mapped[str] = mapped_column(String(LOCK_NAME_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Core handles on the tables, typed as Tables (``__table__`` is typed as a plain FromClause).
MAPPINGS = cast("Table", MappingRecord.__table__)
RUNS = cast("Table", RunRecord.__table__)
EVENTS = cast("Table", EventRecord.__table__)
RUN_LOCK = cast("Table", RunLockRecord.__table__)
PLANS = cast("Table", PlanRecord.__table__)
PLAN_ACTIONS = cast("Table", PlanActionRecord.__table__)
PROTIME_PEOPLE = cast("Table", ProtimePersonRecord.__table__)
PROTIME_FEED = cast("Table", ProtimeFeedRecord.__table__)
