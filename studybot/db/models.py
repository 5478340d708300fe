"""The tables. The database is the source of truth for schedules and deliveries:
the scheduler process only asks it what is due (see studybot/services/deliveries.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    LargeBinary,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Index,
    true,
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


class TeamScoped:
    """A row that belongs to one Slack workspace: every ORM query is filtered by the team in scope, and a
    new row gets that team (db/scoping.py). Ids are Slack's (T…, E…), or teams.LOCAL_TEAM_ID.

    Rows that hang off a cohort (organizers, memberships, deliveries) are the cohort's team's. Notebooks are
    content-addressed and only ever reached through a submission; grading jobs through their submission
    too (the worker's queue is across teams, so that fairness between learners holds across workspaces)."""

    team_id: Mapped[str] = mapped_column(String(32), index=True)
    enterprise_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # Enterprise Grid only


class Cohort(TeamScoped, Base):
    __tablename__ = "cohorts"
    # A name is unique within its workspace: two workspaces may both have a "fastai" cohort.
    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_cohorts_team_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
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
    # Weekly leaderboard post, in the cohort's timezone; None = not scheduled.
    leaderboard_weekday: Mapped[int | None] = mapped_column(Integer, nullable=True)
    leaderboard_time: Mapped[str | None] = mapped_column(String(5), nullable=True)

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
    leaderboard_mode: Mapped[str] = mapped_column(String(16), default="named")  # named | anonymous | hidden

    cohort: Mapped[Cohort] = relationship(back_populates="members")


class Delivery(Base):
    """One post that must go out exactly once: a lesson to the cohort channel, the reminder DMs before
    its deadline, a weekly board, a "new record" post.

    UNIQUE(cohort_id, lesson_key, kind) is what makes a post go out once: a DST double fire,
    a restart or a second scheduler can only ever find the same row, and only one of them
    can move it from pending to sending, or insert it as sending (services/posting.py)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("cohort_id", "lesson_key", "kind", name="uq_deliveries_cohort_lesson_kind"),
        Index("ix_deliveries_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    lesson_key: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)  # lesson order within the curriculum
    kind: Mapped[str] = mapped_column(String(16))  # lesson | reminder | leaderboard (weekly) | record
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


# ---- study buddies and accommodations (services/buddies.py, services/accommodations.py) ----------------
# Rows that hang off a cohort are scoped through it, like memberships; a learner's reminder pause spans
# their cohorts in one workspace, so it carries the team itself.


class BuddySetting(Base):
    """An organizer's switch for a cohort's study buddies; no row means on."""

    __tablename__ = "buddy_settings"

    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_by: Mapped[str] = mapped_column(String(40))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BuddyPreference(Base):
    """A member's choice to be paired each week (opted_in), and a snooze until a time."""

    __tablename__ = "buddy_preferences"
    __table_args__ = (UniqueConstraint("cohort_id", "user_id", name="uq_buddy_preferences_cohort_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    opted_in: Mapped[bool] = mapped_column(Boolean, default=False)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BuddyGroup(Base):
    """One group of a week's pairing (two members, or three when the count was odd; one when alone).

    Its group DM is the deliveries row ``delivery_id`` (kind 'buddy_group'), posted exactly once by
    services/posting.py; the week's pairing itself is the row of kind 'buddies' for the lesson."""

    __tablename__ = "buddy_groups"
    __table_args__ = (Index("ix_buddy_groups_cohort_lesson", "cohort_id", "lesson_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    lesson_key: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), unique=True)
    user_ids: Mapped[str] = mapped_column(Text)  # sorted, comma-separated
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeadlineExtension(Base):
    """An organizer moved one learner's deadline for one lesson to the end of ``until`` (cohort-local)."""

    __tablename__ = "deadline_extensions"
    __table_args__ = (UniqueConstraint("cohort_id", "user_id", "lesson_key", name="uq_deadline_extensions_cohort_user_lesson"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    lesson_key: Mapped[str] = mapped_column(String(16))
    until: Mapped[date] = mapped_column(Date)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the end of ``until`` in the cohort's timezone
    granted_by: Mapped[str] = mapped_column(String(40))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # claimed before the DM


class QuotaGrant(Base):
    """Extra ranked submissions for one learner on one UTC day (one exercise, or all when None)."""

    __tablename__ = "quota_grants"
    __table_args__ = (Index("ix_quota_grants_user_day", "user_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40))
    exercise_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    day: Mapped[date] = mapped_column(Date)
    extra: Mapped[int] = mapped_column(Integer)
    granted_by: Mapped[str] = mapped_column(String(40))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReminderPause(TeamScoped, Base):
    """A learner's vacation: no reminder DMs from any of their cohorts in this workspace until ``until``."""

    __tablename__ = "reminder_pauses"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notebook(Base):
    """An uploaded notebook, stored once by content hash and never changed: workers on other
    machines read it from here, and a leaderboard entry can always show the exact code."""

    __tablename__ = "notebooks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Submission(TeamScoped, Base):
    """A learner's notebook for an exercise, and what grading made of it.

    status: queued | running | one of the grader's result statuses (passed, below_target, too_slow,
    timeout, oom, crashed, bad_output, invalid_notebook, infra_error) | dead (infrastructure kept
    failing). The learner's DM message (dm_channel, dm_ts) is edited in place as it moves along."""

    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_user_exercise", "user_id", "exercise_id"),
        Index("ix_submissions_exercise_status", "exercise_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    exercise_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(24), default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohorts.id", ondelete="SET NULL"), nullable=True)
    notebook_sha256: Mapped[str | None] = mapped_column(ForeignKey("notebooks.sha256"), nullable=True)
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="slack")  # slack | shell | regrade | verify
    lane: Mapped[str] = mapped_column(String(16), default="ranked")  # ranked | check | verify
    slack_file_id: Mapped[str | None] = mapped_column(String(40), unique=True, nullable=True)  # retried events
    dm_channel: Mapped[str | None] = mapped_column(String(40), nullable=True)
    dm_ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    notified_state: Mapped[str | None] = mapped_column(String(64), nullable=True)  # last state shown in the DM
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # the grader's full result
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    speed_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    plot_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # the grader's picture of the runs
    regrade_of: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    disqualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # evidence is kept
    disqualified_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    disqualified_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The ranking time (README "How boards are ranked"): the median over runs of train + predict
    # seconds, and a distribution-free interval for it. Results without them: train + predict, then train.
    predict_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank_seconds_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank_seconds_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Review: None (nothing to review) | flagged (held off the boards) | approved (an organizer cleared it).
    # Rejecting is disqualifying. review_note holds why it was flagged (the grader's flags, or a re-run).
    review_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Verification (services/verification.py): None | pending | verified | disagreed. A re-run of the same
    # notebook is a submission in lane 'verify' whose ``verifies`` names the original.
    verification: Mapped[str | None] = mapped_column(String(16), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verified_by_submission: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    verifies: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    # The exercise's metric (the grader's grader/metrics.py: accuracy, error_rate, rmse, mae, pearson), its
    # direction, the mean score over runs and the spec's target, from the result. Rows from before metrics:
    # accuracy, higher is better, score = accuracy. ``accuracy`` stays filled for accuracy-type metrics.
    metric: Mapped[str] = mapped_column(String(24), default="accuracy", server_default="accuracy")
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    target: Mapped[float | None] = mapped_column(Float, nullable=True)


class SubmitIntent(TeamScoped, Base):
    """`/study submit EXERCISE` remembered until the learner uploads (one per learner per workspace)."""

    __tablename__ = "submit_intents"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    exercise_id: Mapped[str] = mapped_column(String(80))
    lane: Mapped[str] = mapped_column(String(16), default="ranked")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GradingJob(Base):
    """The queue. Claimed with a lease and a fencing token (lease_token): only the holder of the
    current token can report progress or a result, so a worker that froze past its lease and wakes
    up late cannot overwrite the work of the one that took over."""

    __tablename__ = "grading_jobs"
    __table_args__ = (Index("ix_grading_jobs_claim", "status", "lane", "virtual_time", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[str] = mapped_column(String(40))
    lane: Mapped[str] = mapped_column(String(16), default="ranked")
    virtual_time: Mapped[int] = mapped_column(Integer)  # fair order: a learner's burst interleaves with others
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)  # infrastructure retries back off
    progress: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: {"run": k, "runs": n, ...}
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A verification re-run should run on another machine than the original: the worker that graded the
    # original skips this job for a grace (studybot/queue.py, VERIFY_AVOID_GRACE).
    avoid_worker: Mapped[str | None] = mapped_column(String(120), nullable=True)


class ProcessedEvent(TeamScoped, Base):
    """Slack event ids already handled: Slack retries an event it thinks we missed."""

    __tablename__ = "processed_events"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StateVersion(Base):
    """One row whose counter goes up with every committed write (see db/engine.py).

    Readers that cache (the hot, read-only slash commands) compare it to decide whether a cached
    answer is still true: one primary-key read instead of rebuilding the answer, across processes."""

    __tablename__ = "state_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[int] = mapped_column(Integer, default=0)


class CohortDigest(Base):
    """The weekly progress digest of a cohort for its organizers (services/digests.py): when it goes out,
    in the cohort's timezone, and where: each named organizer's DM, or one private channel when named.

    One row per cohort (no row: no digest). The posts themselves are deliveries rows (kind 'digest')."""

    __tablename__ = "cohort_digests"

    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    post_time: Mapped[str] = mapped_column(String(5))  # "HH:MM", local to the cohort's timezone
    channel_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # None: a DM to each organizer
    channel_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    set_by: Mapped[str] = mapped_column(String(40))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LessonThreadReply(Base):
    """One reply in the thread of a lesson post (services/lesson_threads.py), so the digest can count
    replies and who took part. Keyed by the reply's own message id: Slack's retried events, or an event
    seen twice, cannot count one reply twice. Reached through its lesson post's delivery and cohort."""

    __tablename__ = "lesson_thread_replies"
    __table_args__ = (UniqueConstraint("delivery_id", "message_ts", name="uq_lesson_thread_replies_delivery_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))  # the lesson post
    user_id: Mapped[str] = mapped_column(String(40))
    message_ts: Mapped[str] = mapped_column(String(40))
    replied_at: Mapped[datetime] = mapped_column(UTCDateTime)
