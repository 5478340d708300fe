"""Cohorts: create, list, pause, resume, skip a week, reschedule; members join and leave.

Every change that moves lessons in time re-plans the cohort's pending deliveries here, so the
scheduler only ever reads due times from the database. The lookups other services need (a cohort by
name, the caller's only cohort, who organizes what) are public methods here, used inside the
caller's session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studybot.time_source import Clock
from studybot.curricula import Curriculum, Lesson, get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, CohortOrganizer, Delivery, Membership, Submission
from studybot.errors import Conflict, FieldError, NotFound, PermissionDenied, StudybotError
from studybot.ports import Channel, Chat
from studybot.services import validation, weekly_slots

DEFAULT_CURRICULUM = "fastai-part1-2022"


@dataclass(frozen=True)
class LessonSlot:
    """A lesson of a cohort with when it posts (UTC and the cohort's local time) and how it went."""

    key: str
    title: str
    lesson: Lesson
    due_at: datetime
    local: datetime
    status: str
    exercise: str | None
    deadline_local: datetime


@dataclass(frozen=True)
class CohortView:
    id: int
    name: str
    channel_id: str
    channel_name: str
    curriculum: Curriculum
    start_date: date
    weekday: str
    post_time: str
    timezone: str
    status: str
    organizers: tuple[str, ...]
    member_count: int
    lessons: tuple[LessonSlot, ...] = field(repr=False)

    @property
    def current(self) -> LessonSlot | None:
        """This week's lesson: the latest one posted, else None before the first post."""
        posted = [slot for slot in self.lessons if slot.status == "sent"]
        return posted[-1] if posted else None

    @property
    def upcoming(self) -> LessonSlot | None:
        pending = [slot for slot in self.lessons if slot.status in ("pending", "sending")]
        return pending[0] if pending else None

    @property
    def posted_count(self) -> int:
        return sum(slot.status == "sent" for slot in self.lessons)


class Cohorts:
    def __init__(self, db: Database, chat: Chat, clock: Clock, curricula_dir: Path | None = None,
                 reminder_lead: timedelta = timedelta(hours=24)) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.curricula_dir = curricula_dir
        self.reminder_lead = reminder_lead

    # ---- who may do what -------------------------------------------------------------------

    def is_organizer(self, user_id: str, cohort: Cohort | None = None) -> bool:
        if cohort is not None and any(o.user_id == user_id for o in cohort.organizers):
            return True
        return self.chat.is_workspace_admin(user_id)

    def is_any_organizer(self, user_id: str) -> bool:
        with self.db.session() as s:
            # Through the cohort, so that only this workspace's cohorts count (db/scoping.py).
            named = s.scalar(select(func.count()).select_from(CohortOrganizer).join(Cohort).where(
                CohortOrganizer.user_id == user_id))
        return bool(named) or self.chat.is_workspace_admin(user_id)

    def require_organizer(self, user_id: str, cohort: Cohort | None, action: str) -> None:
        """PermissionDenied unless the user organizes ``cohort`` (None: any cohort, i.e. a workspace admin)."""
        if not self.is_organizer(user_id, cohort):
            where = f" of {cohort.name}" if cohort is not None else ""
            raise PermissionDenied(
                f"Only organizers{where} can {action}: workspace admins and owners, and the cohort's named organizers.",
                action=action,
            )

    # ---- organizer commands ----------------------------------------------------------------

    def create(self, user_id: str, *, name: str, channel: str, start: str, at: str, tz: str,
               weekday: str | None = None, curriculum: str | None = None,
               organizers: Iterable[str] = ()) -> CohortView:
        """Validate every field first, then write: bad input never leaves a half-made cohort."""
        self.require_organizer(user_id, None, "create cohorts")
        name = validation.cohort_name(name)
        start_day = validation.start_date(start)
        post_time = validation.post_time(at)
        zone = validation.timezone_name(tz)
        day_index = validation.weekday(weekday) if weekday else start_day.weekday()
        chosen = self._curriculum(curriculum or DEFAULT_CURRICULUM)
        target = self.chat.resolve_channel(channel)
        if start_day < self.clock.now().astimezone(zone).date() - timedelta(days=1):
            raise FieldError("start", f"Start date {start_day.isoformat()} is in the past.", value=start)
        self.require_postable(target, raw=channel)
        now = self.clock.now()
        with self.db.session() as s:
            if self._find(s, name) is not None:
                raise Conflict(f"A cohort named {name} already exists. Pick another name.", name=name)
            cohort = Cohort(
                name=name, channel_id=target.id, channel_name=target.name, curriculum_id=chosen.id,
                start_date=start_day, weekday=day_index, post_time=post_time.strftime("%H:%M"),
                timezone=zone.key, status="active", created_by=user_id, created_at=now,
            )
            for organizer in dict.fromkeys([user_id, *organizers]):
                cohort.organizers.append(CohortOrganizer(user_id=organizer))
            s.add(cohort)
            s.flush()
            for position, lesson in enumerate(chosen.lessons):
                s.add(Delivery(cohort_id=cohort.id, lesson_key=lesson.key, position=position, kind="lesson",
                               due_at=now, status="pending", attempts=0))
                if lesson.exercise:
                    s.add(Delivery(cohort_id=cohort.id, lesson_key=lesson.key, position=position, kind="reminder",
                                   due_at=now, status="pending", attempts=0))
            s.flush()
            first_day = weekly_slots.first_slot_on_or_after(start_day, day_index)
            first_day = max(first_day, weekly_slots.first_slot_after(now, day_index, post_time, zone, first_day))
            self._plan(s, cohort, first_day)
            return self._view(s, cohort)

    def list(self, user_id: str) -> list[CohortView]:
        if not self.is_any_organizer(user_id):
            raise PermissionDenied("Only organizers can list all cohorts. Try `/study status` for your own.",
                                   action="list cohorts")
        with self.db.session() as s:
            return [self._view(s, c) for c in s.scalars(select(Cohort).order_by(Cohort.name))]

    def pause(self, user_id: str, name: str) -> CohortView:
        with self.db.session() as s:
            cohort = self.get(s, name)
            self.require_organizer(user_id, cohort, "pause a cohort")
            if cohort.status == "paused":
                raise Conflict(f"{cohort.name} is already paused. `/study cohort resume {cohort.name}` restarts it.")
            cohort.status = "paused"
            return self._view(s, cohort)

    def resume(self, user_id: str, name: str) -> CohortView:
        """Lessons pick up at the next weekly slot: a paused week is not lost, it is moved."""
        with self.db.session() as s:
            cohort = self.get(s, name)
            self.require_organizer(user_id, cohort, "resume a cohort")
            if cohort.status != "paused":
                raise Conflict(f"{cohort.name} is not paused.")
            cohort.status = "active"
            self._plan(s, cohort, self._next_free_slot(cohort))
            return self._view(s, cohort)

    def skip_week(self, user_id: str, name: str) -> CohortView:
        """The next pending lesson, and every one after it, moves one week later."""
        with self.db.session() as s:
            cohort = self.get(s, name)
            self.require_organizer(user_id, cohort, "skip a week")
            nxt = self._pending_lessons(s, cohort)
            if not nxt:
                raise Conflict(f"{cohort.name} has no lessons left to move.")
            zone = ZoneInfo(cohort.timezone)
            self._plan(s, cohort, nxt[0].due_at.astimezone(zone).date() + weekly_slots.WEEK)
            return self._view(s, cohort)

    def reschedule(self, user_id: str, name: str, *, weekday: str | None = None, at: str | None = None,
                   tz: str | None = None, start: str | None = None) -> CohortView:
        if not any([weekday, at, tz, start]):
            raise FieldError("weekday", "Nothing to change: give --weekday, --time, --tz or --start.")
        with self.db.session() as s:
            cohort = self.get(s, name)
            self.require_organizer(user_id, cohort, "reschedule a cohort")  # before any Slack call
            channel_id = cohort.channel_id
        # Lessons moved to a channel they cannot reach would only fail later, one by one: say so now.
        self.require_postable(self.chat.resolve_channel(channel_id), raw=channel_id)
        with self.db.session() as s:
            cohort = self.get(s, name)
            self.require_organizer(user_id, cohort, "reschedule a cohort")
            new_weekday = validation.weekday(weekday) if weekday else cohort.weekday
            new_time = validation.post_time(at) if at else _parse_hhmm(cohort.post_time)
            new_zone = validation.timezone_name(tz) if tz else ZoneInfo(cohort.timezone)
            new_start = validation.start_date(start) if start else None
            cohort.weekday, cohort.post_time, cohort.timezone = new_weekday, new_time.strftime("%H:%M"), new_zone.key
            if new_start is not None:
                cohort.start_date = new_start
            not_before = max(cohort.start_date, self.clock.now().astimezone(new_zone).date())
            self._plan(s, cohort, weekly_slots.first_slot_after(self.clock.now(), new_weekday, new_time, new_zone, not_before))
            return self._view(s, cohort)

    def require_postable(self, channel: Channel, raw: str) -> None:
        """FieldError('channel') unless lessons can be posted there and their delivery checked.

        An archived channel takes no posts. A channel the bot is not in takes posts (a public one, through
        chat:write.public) but cannot be read, so a retried post could not be checked: the bot joins a
        public channel itself, and asks to be invited to a private one (or when it may not join)."""
        if channel.is_archived:
            raise FieldError("channel", f"#{channel.name} is archived: no lesson could be posted there. "
                             "Pick another channel, or unarchive it first.", value=raw)
        if channel.is_member:
            return
        if channel.is_private or not self.chat.join_channel(channel.id):
            raise FieldError("channel", f"I am not in #{channel.name}: `/invite @studybot` there, then try again.",
                             value=raw)

    # ---- learner commands ------------------------------------------------------------------

    def join(self, user_id: str, name: str) -> CohortView:
        with self.db.session() as s:
            cohort = self.get(s, name)
            membership = s.scalar(select(Membership).where(Membership.cohort_id == cohort.id, Membership.user_id == user_id))
            if membership is not None and membership.left_at is None:
                raise Conflict(f"You are already in {cohort.name}.")
            if membership is None:
                s.add(Membership(cohort_id=cohort.id, user_id=user_id, joined_at=self.clock.now()))
            else:
                membership.left_at, membership.joined_at = None, self.clock.now()
            s.flush()
            return self._view(s, cohort)

    def leave(self, user_id: str, name: str | None) -> CohortView:
        with self.db.session() as s:
            cohort = self.get(s, name) if name else self.only_cohort_of(s, user_id)
            membership = s.scalar(select(Membership).where(
                Membership.cohort_id == cohort.id, Membership.user_id == user_id, Membership.left_at.is_(None)))
            if membership is None:
                raise NotFound(f"You are not in {cohort.name}.")
            membership.left_at = self.clock.now()
            s.flush()
            return self._view(s, cohort)

    def view(self, user_id: str, name: str | None) -> CohortView:
        """The named cohort, or the caller's own when they are in exactly one."""
        with self.db.session() as s:
            cohort = self.get(s, name) if name else self.only_cohort_of(s, user_id)
            return self._view(s, cohort)

    def cohorts_of(self, user_id: str) -> list[CohortView]:
        with self.db.session() as s:
            return [self._view(s, c) for c in self.member_cohorts(s, user_id)]

    def organized_by(self, user_id: str) -> list[CohortView]:
        with self.db.session() as s:
            if self.chat.is_workspace_admin(user_id):
                cohorts = s.scalars(select(Cohort).order_by(Cohort.name))
            else:
                cohorts = self.named_organizer_of(s, user_id)
            return [self._view(s, c) for c in cohorts]

    def submitted_exercises(self, user_id: str) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(Submission.exercise_id).where(Submission.user_id == user_id)))

    # ---- lookups other services share (inside their own session) ----------------------------

    def get(self, s: Session, name: str) -> Cohort:
        """The cohort of that name (any case); NotFound listing the cohorts there are."""
        cohort = self._find(s, name or "")
        if cohort is None:
            known = ", ".join(s.scalars(select(Cohort.name).order_by(Cohort.name))) or "none yet"
            raise NotFound(f"There is no cohort named {name!r}. Cohorts: {known}.", name=name)
        return cohort

    @staticmethod
    def member_cohorts(s: Session, user_id: str) -> list[Cohort]:
        """The cohorts the user is a current member of, by name."""
        return list(s.scalars(select(Cohort).join(Membership).where(
            Membership.user_id == user_id, Membership.left_at.is_(None)).order_by(Cohort.name)))

    @staticmethod
    def named_organizer_of(s: Session, user_id: str) -> list[Cohort]:
        """The cohorts that name the user as an organizer (workspace admins organize all, unnamed), by name."""
        return list(s.scalars(select(Cohort).join(CohortOrganizer).where(
            CohortOrganizer.user_id == user_id).order_by(Cohort.name)))

    def only_cohort_of(self, s: Session, user_id: str) -> Cohort:
        """The user's cohort when they are in exactly one; else NotFound or FieldError('name') saying so."""
        mine = self.member_cohorts(s, user_id)
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise NotFound("You are not in any cohort yet. `/study join NAME` joins one; name a cohort to look at it.")
        raise FieldError("name", "You are in several cohorts: name one, e.g. "
                         f"`{mine[0].name}`. Yours: {', '.join(c.name for c in mine)}.")

    # ---- internals -------------------------------------------------------------------------

    def _curriculum(self, curriculum_id: str) -> Curriculum:
        try:
            return get_curriculum(curriculum_id, self.curricula_dir)
        except NotFound as error:
            raise FieldError("curriculum", error.message, value=curriculum_id) from None
        except StudybotError as error:
            raise FieldError("curriculum", f"Curriculum {curriculum_id!r} cannot be loaded: {error.message}") from None

    @staticmethod
    def _find(s: Session, name: str) -> Cohort | None:
        return s.scalar(select(Cohort).where(func.lower(Cohort.name) == name.strip().lower()))

    # ---- planning ----------------------------------------------------------------------------

    @staticmethod
    def _pending_lessons(s: Session, cohort: Cohort) -> list[Delivery]:
        return list(s.scalars(select(Delivery).where(
            Delivery.cohort_id == cohort.id, Delivery.kind == "lesson", Delivery.status == "pending",
        ).order_by(Delivery.position)))

    def _next_free_slot(self, cohort: Cohort) -> date:
        zone = ZoneInfo(cohort.timezone)
        return weekly_slots.first_slot_after(self.clock.now(), cohort.weekday, _parse_hhmm(cohort.post_time), zone,
                                         cohort.start_date)

    def _plan(self, s: Session, cohort: Cohort, first_day: date) -> None:
        """Give the pending lessons consecutive weekly slots from ``first_day``; reminders follow their lesson."""
        lessons = self._pending_lessons(s, cohort)
        zone, at = ZoneInfo(cohort.timezone), _parse_hhmm(cohort.post_time)
        slots = weekly_slots.weekly_slots(first_day, at, zone, len(lessons))
        due_by_key = {}
        for delivery, due in zip(lessons, slots):
            delivery.due_at = due
            due_by_key[delivery.lesson_key] = due
        reminders = s.scalars(select(Delivery).where(
            Delivery.cohort_id == cohort.id, Delivery.kind == "reminder", Delivery.status == "pending"))
        for reminder in reminders:
            if reminder.lesson_key in due_by_key:
                deadline = weekly_slots.local_to_utc(
                    due_by_key[reminder.lesson_key].astimezone(zone).date() + weekly_slots.WEEK, at, zone)
                reminder.due_at = deadline - self.reminder_lead
        s.flush()

    def _view(self, s: Session, cohort: Cohort) -> CohortView:
        curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
        zone = ZoneInfo(cohort.timezone)
        deliveries = {d.lesson_key: d for d in s.scalars(select(Delivery).where(
            Delivery.cohort_id == cohort.id, Delivery.kind == "lesson"))}
        slots = []
        for lesson in curriculum.lessons:
            delivery = deliveries.get(lesson.key)
            if delivery is None:
                continue
            local = delivery.due_at.astimezone(zone)
            slots.append(LessonSlot(
                key=lesson.key, title=lesson.title, lesson=lesson, due_at=delivery.due_at, local=local,
                status=delivery.status, exercise=lesson.exercise,
                deadline_local=weekly_slots.local_to_utc(local.date() + weekly_slots.WEEK, _parse_hhmm(cohort.post_time), zone)
                .astimezone(zone),
            ))
        members = s.scalar(select(func.count()).select_from(Membership).where(
            Membership.cohort_id == cohort.id, Membership.left_at.is_(None)))
        return CohortView(
            id=cohort.id, name=cohort.name, channel_id=cohort.channel_id, channel_name=cohort.channel_name,
            curriculum=curriculum, start_date=cohort.start_date, weekday=validation.weekday_name(cohort.weekday),
            post_time=cohort.post_time, timezone=cohort.timezone, status=cohort.status,
            organizers=tuple(o.user_id for o in cohort.organizers), member_count=members or 0, lessons=tuple(slots),
        )

    # ---- asked by transports ---------------------------------------------------------------

    def cohort_in_channel(self, channel_id: str) -> CohortView | None:
        """The cohort that studies in this channel (the oldest, if several share it), or None."""
        with self.db.session() as s:
            cohort = s.scalar(select(Cohort).where(Cohort.channel_id == channel_id).order_by(Cohort.id).limit(1))
            return self._view(s, cohort) if cohort is not None else None

    def require_can_create(self, user_id: str) -> None:
        """PermissionDenied unless the user may create cohorts (checked before a form is even opened)."""
        self.require_organizer(user_id, None, "create cohorts")


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
