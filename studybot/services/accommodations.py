"""Accommodations: an organizer extends one learner's deadline for a lesson or raises their quota for a
day; a learner pauses reminders for some weeks (a vacation) and comes back.

What the rest of the bot asks (reminders in services/deliveries.py, the quota in services/submissions.py,
statuses, the organizers' digest) is the small read API at the bottom: ``deadline_for``, ``is_paused``,
``paused_until``, ``extensions_of`` and ``extra_quota``. Extensions and quota grants hang off a cohort and
are scoped through it (db/scoping.py); a pause is the learner's across their cohorts in one workspace."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studybot.db.engine import Database
from studybot.db.models import Cohort, DeadlineExtension, Membership, QuotaGrant, ReminderPause
from studybot.errors import Conflict, FieldError
from studybot.ports import Chat
from studybot.services import weekly_slots
from studybot.services.cohorts import Cohorts, CohortView, LessonSlot
from studybot.time_source import Clock

MAX_PAUSE_WEEKS = 26  # a pause longer than half a year is leaving: `/study leave`
MAX_QUOTA_RAISE = 50  # extra ranked submissions one grant may add for a day
QUOTA_AMOUNT = re.compile(r"^\+?(\d{1,3})$")


@dataclass(frozen=True)
class Extension:
    cohort: CohortView
    user_id: str
    slot: LessonSlot
    until: date
    deadline_local: datetime  # the end of ``until`` in the cohort's timezone


@dataclass(frozen=True)
class QuotaRaise:
    cohort: CohortView
    user_id: str
    exercise: str | None  # None: every exercise
    extra: int  # this grant
    total_extra: int  # every grant of the day for this exercise
    day: date  # the UTC day it counts for
    quota_left: int | None  # for the exercise named, after the raise


def weeks(raw: str, field: str, most: int) -> int:
    """A whole number of weeks, 1..most; FieldError(field) otherwise."""
    text = (raw or "").strip().lower().removesuffix("w")
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise FieldError(field, f"{raw!r} is not a number of weeks: give a whole number from 1 to {most}.", value=raw)
    return int(text)


def extra_quota(s: Session, user_id: str, exercise_id: str, day: date) -> int:
    """Extra ranked submissions granted to the user for that exercise on that UTC day (this workspace)."""
    return s.scalar(select(func.coalesce(func.sum(QuotaGrant.extra), 0)).select_from(QuotaGrant).join(Cohort).where(
        QuotaGrant.user_id == user_id, QuotaGrant.day == day,
        (QuotaGrant.exercise_id == exercise_id) | QuotaGrant.exercise_id.is_(None))) or 0


class Accommodations:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, submissions=None,
                 curricula_dir: Path | None = None) -> None:
        self.db, self.chat, self.clock, self.cohorts = db, chat, clock, cohorts
        self.submissions = submissions  # services.submissions.Submissions: the quota left after a raise
        self.curricula_dir = curricula_dir

    # ---- organizers ------------------------------------------------------------------------

    def extend(self, user_id: str, target: str, lesson_raw: str, until_raw: str | None,
               cohort_name: str | None) -> Extension:
        if not until_raw:
            raise FieldError("until", "--until is missing: `/study extend @user LESSON --until YYYY-MM-DD [COHORT]`.")
        try:
            until = date.fromisoformat(until_raw.strip())
        except ValueError:
            raise FieldError("until", f"--until {until_raw!r} is not a date: use YYYY-MM-DD, e.g. 2027-02-01.",
                             value=until_raw) from None
        with self.db.session() as s:
            cohort, target = self._cohort_and_member(s, user_id, target, cohort_name, "extend deadlines")
            view = self.cohorts.view(target, cohort.name)
            key = (lesson_raw or "").strip().lower().removeprefix("lesson")
            slot = next((slot for slot in view.lessons if slot.key.lower() == key), None)
            if slot is None:
                raise FieldError("lesson", f"{cohort.name} has no lesson {lesson_raw!r}. Lessons: "
                                 + ", ".join(slot.key for slot in view.lessons) + ".", value=lesson_raw)
            zone = ZoneInfo(cohort.timezone)
            today = self.clock.now().astimezone(zone).date()
            if until < today:
                raise FieldError("until", f"--until {until.isoformat()} is in the past (today is {today.isoformat()} "
                                 f"in {cohort.timezone}).", value=until_raw)
            if until < slot.local.date():
                raise FieldError("until", f"--until {until.isoformat()} is before lesson {slot.key} posts "
                                 f"({slot.local:%a %d %b %Y}).", value=until_raw)
            deadline = weekly_slots.local_to_utc(until + timedelta(days=1), time(0, 0), zone)
            if deadline <= slot.deadline_local:
                raise FieldError("until", f"--until {until.isoformat()} does not extend anything: lesson {slot.key}'s "
                                 f"deadline is {slot.deadline_local:%a %d %b %Y, %H:%M %Z} already.", value=until_raw)
            row = s.scalar(select(DeadlineExtension).where(
                DeadlineExtension.cohort_id == cohort.id, DeadlineExtension.user_id == target,
                DeadlineExtension.lesson_key == slot.key))
            if row is None:
                row = DeadlineExtension(cohort_id=cohort.id, user_id=target, lesson_key=slot.key)
                s.add(row)
            row.until, row.deadline_at, row.granted_by, row.granted_at = until, deadline, user_id, self.clock.now()
            row.reminded_at = None  # a new deadline earns a new reminder before it
            return Extension(view, target, slot, until, deadline.astimezone(zone))

    def raise_quota(self, user_id: str, target: str, amount_raw: str, exercise_raw: str | None,
                    cohort_name: str | None) -> QuotaRaise:
        match = QUOTA_AMOUNT.match((amount_raw or "").strip())
        if not match or not 1 <= int(match.group(1)) <= MAX_QUOTA_RAISE:
            raise FieldError("amount", f"{amount_raw!r} is not a raise: give +N, N from 1 to {MAX_QUOTA_RAISE}, "
                             "e.g. `/study quota @ada +3 digits`.", value=amount_raw)
        extra = int(match.group(1))
        exercise = self.submissions.exercise(exercise_raw) if exercise_raw else None
        today = self.clock.now().date()  # the quota's day is the UTC day (services/submissions.py)
        with self.db.session() as s:
            cohort, target = self._cohort_and_member(s, user_id, target, cohort_name, "raise quotas")
            s.add(QuotaGrant(cohort_id=cohort.id, user_id=target, exercise_id=exercise, day=today, extra=extra,
                             granted_by=user_id, granted_at=self.clock.now()))
            s.flush()
            total = extra_quota(s, target, exercise or "", today) if exercise else extra
            name = cohort.name
        view = self.cohorts.view(target, name)
        left = self.submissions.quota_left(target, exercise) if exercise else None
        return QuotaRaise(view, target, exercise, extra, total, today, left)

    # ---- learners --------------------------------------------------------------------------

    def pause(self, user_id: str, weeks_raw: str | None) -> datetime:
        """No reminders until now + N weeks; returns that time (UTC). Lessons, buddies and grading go on."""
        count = weeks(weeks_raw or "", "weeks", MAX_PAUSE_WEEKS)
        until = self.clock.now() + timedelta(weeks=count)
        with self.db.session() as s:
            row = s.scalar(select(ReminderPause).where(ReminderPause.user_id == user_id))
            if row is None:
                row = ReminderPause(user_id=user_id)
                s.add(row)
            row.until, row.created_at = until, self.clock.now()
        return until

    def unpause(self, user_id: str) -> None:
        with self.db.session() as s:
            row = s.scalar(select(ReminderPause).where(ReminderPause.user_id == user_id))
            if row is None or row.until <= self.clock.now():
                raise Conflict("Your reminders are not paused. `/study pause N` pauses them for N weeks.")
            s.delete(row)

    # ---- what the rest of the bot asks ------------------------------------------------------

    def paused_until(self, user_id: str, at: datetime | None = None) -> datetime | None:
        """When the user's reminder pause ends, if one is running at ``at`` (default now)."""
        at = at or self.clock.now()
        with self.db.session() as s:
            until = s.scalar(select(ReminderPause.until).where(ReminderPause.user_id == user_id))
        return until if until is not None and until > at else None

    def is_paused(self, user_id: str, at: datetime | None = None) -> bool:
        return self.paused_until(user_id, at) is not None

    def deadline_for(self, user_id: str, cohort_id: int, lesson_key: str) -> datetime | None:
        """User U's deadline for lesson L of a cohort (UTC): their extension's, else the lesson's own
        (the next weekly slot after it posts); None when the cohort has no such lesson."""
        with self.db.session() as s:
            extended = s.scalar(select(DeadlineExtension.deadline_at).join(Cohort).where(
                DeadlineExtension.cohort_id == cohort_id, DeadlineExtension.user_id == user_id,
                DeadlineExtension.lesson_key == lesson_key))
            if extended is not None:
                return extended
            cohort = s.get(Cohort, cohort_id)
            name = cohort.name if cohort is not None else None
        if name is None:
            return None
        slot = next((slot for slot in self.cohorts.view(user_id, name).lessons if slot.key == lesson_key), None)
        return slot.deadline_local if slot else None

    def extensions_of(self, user_id: str) -> dict[tuple[int, str], datetime]:
        """(cohort id, lesson key) -> the extended deadline in the cohort's timezone, for every extension."""
        with self.db.session() as s:
            rows = s.execute(select(DeadlineExtension.cohort_id, DeadlineExtension.lesson_key,
                                    DeadlineExtension.deadline_at, Cohort.timezone).join(Cohort).where(
                DeadlineExtension.user_id == user_id)).all()
        return {(cohort_id, key): at.astimezone(ZoneInfo(tz)) for cohort_id, key, at, tz in rows}

    def extended_users(self, s: Session, cohort_id: int, lesson_key: str) -> set[str]:
        """Who has an extension for that lesson (inside the caller's session): the lesson's reminder is not theirs."""
        return set(s.scalars(select(DeadlineExtension.user_id).join(Cohort).where(
            DeadlineExtension.cohort_id == cohort_id, DeadlineExtension.lesson_key == lesson_key)))

    def paused_users(self, s: Session, at: datetime) -> set[str]:
        return set(s.scalars(select(ReminderPause.user_id).where(ReminderPause.until > at)))

    def extension_reminders_due(self, s: Session, now: datetime, lead: timedelta) -> list[DeadlineExtension]:
        """Extensions whose reminder time (lead before the new deadline) has come and that nobody claimed."""
        return list(s.scalars(select(DeadlineExtension).join(Cohort).where(
            Cohort.status == "active", DeadlineExtension.reminded_at.is_(None),
            DeadlineExtension.deadline_at <= now + lead).order_by(DeadlineExtension.deadline_at)))

    def next_extension_reminder(self, lead: timedelta) -> datetime | None:
        with self.db.session() as s:
            first = s.scalar(select(func.min(DeadlineExtension.deadline_at)).join(Cohort).where(
                Cohort.status == "active", DeadlineExtension.reminded_at.is_(None)))
        return first - lead if first is not None else None

    # ---- internals -------------------------------------------------------------------------

    def _cohort_and_member(self, s: Session, user_id: str, target_raw: str, cohort_name: str | None,
                           action: str) -> tuple[Cohort, str]:
        # ``target_raw`` is a user id already (commands.py reads mentions); shown back as a mention.
        """The cohort (named, else the learner's only one) after the organizer check, and the learner's id,
        who must be a current member; FieldError('user') naming who is not."""
        target = (target_raw or "").strip()
        if not target:
            raise FieldError("user", "Name the learner: `@user`.")
        cohort = self.cohorts.get(s, cohort_name) if cohort_name else None
        if cohort is None:
            mine = Cohorts.member_cohorts(s, target)
            if len(mine) != 1:
                raise FieldError("name", f"<@{target}> is in {len(mine) or 'no'} cohort{'s' if len(mine) != 1 else ''}"
                                 ": name the cohort at the end.", value=target_raw)
            cohort = mine[0]
        self.cohorts.require_organizer(user_id, cohort, action)
        members = set(s.scalars(select(Membership.user_id).where(
            Membership.cohort_id == cohort.id, Membership.left_at.is_(None))))
        if not members:
            raise FieldError("user", f"{cohort.name} has no members yet: learners join with `/study join {cohort.name}`.",
                             value=target_raw)
        if target not in members:
            raise FieldError("user", f"<@{target}> is not a member of {cohort.name}.", value=target_raw)
        return cohort, target

