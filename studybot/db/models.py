"""The tables. The database is the source of truth for schedules and deliveries:
the scheduler process only asks it what is due (see studybot/services/deliveries.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Index,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, hands back aware UTC: SQLite keeps no offsets, and mixing the two is a classic bug."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Cohort(Base):
    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    channel_id: Mapped[str] = mapped_column(String(40))
    channel_name: Mapped[str] = mapped_column(String(80))
    curriculum_id: Mapped[str] = mapped_column(String(80))
    start_date: Mapped[date] = mapped_column(Date)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday, as datetime.weekday()
    post_time: Mapped[str] = mapped_column(String(5))  # "HH:MM", local to `timezone`
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    organizers: Mapped[list[CohortOrganizer]] = relationship(
        back_populates="cohort", cascade="all, delete-orphan", lazy="selectin"
    )
    members: Mapped[list[Membership]] = relationship(back_populates="cohort", cascade="all, delete-orphan")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="cohort", cascade="all, delete-orphan")


class CohortOrganizer(Base):
    __tablename__ = "cohort_organizers"
    __table_args__ = (UniqueConstraint("cohort_id", "user_id", name="uq_cohort_organizers_cohort_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))

    cohort: Mapped[Cohort] = relationship(back_populates="organizers")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("cohort_id", "user_id", name="uq_memberships_cohort_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # a leaver keeps their history

    cohort: Mapped[Cohort] = relationship(back_populates="members")


class Delivery(Base):
    """One scheduled post: a lesson to the cohort channel, or the reminder DMs before its deadline.

    UNIQUE(cohort_id, lesson_key, kind) is what makes a post go out once: a DST double fire,
    a restart or a second scheduler can only ever find the same row, and only one of them
    can move it from pending to sending (claim -> post -> mark)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("cohort_id", "lesson_key", "kind", name="uq_deliveries_cohort_lesson_kind"),
        Index("ix_deliveries_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    lesson_key: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)  # lesson order within the curriculum
    kind: Mapped[str] = mapped_column(String(16))  # lesson | reminder
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|sent|skipped|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message_ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)

    cohort: Mapped[Cohort] = relationship(back_populates="deliveries")


class ReminderRecipient(Base):
    """Who a reminder delivery has DMed, claimed before sending so a retry never DMs anyone twice."""

    __tablename__ = "reminder_recipients"
    __table_args__ = (UniqueConstraint("delivery_id", "user_id", name="uq_reminder_recipients_delivery_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Submission(Base):
    """A learner's notebook for an exercise. Issue 4 grows this into the grading queue; reminders
    already use it to find who still has work to hand in."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_user_exercise", "user_id", "exercise_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    exercise_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(24), default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessedEvent(Base):
    """Slack event ids already handled: Slack retries an event it thinks we missed."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StateVersion(Base):
    """One row whose counter goes up with every committed write (see db/engine.py).

    Readers that cache (the hot, read-only slash commands) compare it to decide whether a cached
    answer is still true: one primary-key read instead of rebuilding the answer, across processes."""

    __tablename__ = "state_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[int] = mapped_column(Integer, default=0)
