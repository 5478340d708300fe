"""Lesson posts and reminder DMs: what is due, what each says, and who hears when one cannot go out.

The scheduler (studybot/clock_process.py) calls ``Deliveries.tick()`` every few seconds; so does the
shell when it fast-forwards. A tick is safe to run at any time, from any number of processes: the
claim -> look up -> post -> mark machine that makes each post go out once is services/posting.py
(``ExactlyOncePoster``); this module decides what is due and what it means:
- a lesson found too late (past the grace) is skipped and the organizers are told, once;
- a lesson that still fails after MAX_ATTEMPTS is failed and the organizers are told, once;
- a lesson Slack refuses for good (bot removed, channel archived: ChatError.permanent) is failed at
  its first such answer, and the organizers are told what to fix, once;
- a lesson whose earlier attempt cannot be checked (the bot cannot read the channel) waits, and the
  organizers are told, once, that `/invite @studybot` lets it go out;
- a row that failed waits its backoff (services/posting.py ``next_attempt_at``) and rows are tried in
  the order they became due again, so failing rows cannot starve the others;
- a reminder claims each recipient before its DM, so a retried reminder never DMs anyone twice;
- a reminder skips learners who paused reminders and those whose deadline for the lesson an organizer
  extended: they get their own, before the new deadline, claimed once (services/accommodations.py);
- after the lessons, the week's study buddies are paired and their group DMs go out (services/buddies.py).
Other kinds of rows in the same table (weekly boards, records) are never picked up here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from studybot.time_source import Clock
from studybot.curricula import get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, DeadlineExtension, Delivery, Membership, ReminderRecipient, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.cohorts import Cohorts
from studybot.services.posting import ExactlyOncePoster, next_attempt_at
from studybot.services.workspaces import for_each_team

log = logging.getLogger(__name__)

KINDS = ("lesson", "reminder")  # the rows this module delivers; weekly boards and records have their own


@dataclass
class TickReport:
    posted: list[str] = field(default_factory=list)  # "cohort:lesson" keys
    reminded: list[str] = field(default_factory=list)  # "cohort:lesson:user"
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    paired: list[str] = field(default_factory=list)  # "cohort:lesson:user,user": buddy group DMs sent


class Deliveries:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, poster: ExactlyOncePoster,
                 late_grace: timedelta = timedelta(hours=12), curricula_dir: Path | None = None,
                 accommodations=None, buddies=None) -> None:
        self.db, self.chat, self.clock, self.cohorts, self.poster = db, chat, clock, cohorts, poster
        self.late_grace = late_grace
        self.curricula_dir = curricula_dir
        self.accommodations = accommodations  # services.accommodations.Accommodations: pauses, extensions
        self.buddies = buddies  # services.buddies.Buddies: paired right after the lesson posts

    def next_due(self) -> datetime | None:
        return min(filter(None, for_each_team(self.db, self._next_due, "next due delivery")), default=None)

    def _next_due(self) -> datetime | None:
        with self.db.session() as s:
            rows = s.execute(select(Delivery.due_at, Delivery.claimed_at, Delivery.attempts).join(Cohort).where(
                Delivery.status == "pending", Delivery.kind.in_(KINDS), Cohort.status == "active")).all()
        times = [next_attempt_at(*row) for row in rows]
        if self.buddies is not None:
            times.append(self.buddies.next_due())
        if self.accommodations is not None:
            times.append(self.accommodations.next_extension_reminder(self.cohorts.reminder_lead))
        return min(filter(None, times), default=None)

    def _due(self, now: datetime) -> list[tuple[int, str]]:
        """Pending rows whose time (due, or due again after a failure's backoff) has come, earliest first."""
        with self.db.session() as s:
            rows = s.execute(select(Delivery.id, Delivery.kind, Delivery.due_at, Delivery.claimed_at,
                                    Delivery.attempts, Delivery.position).join(Cohort).where(
                Delivery.status == "pending", Delivery.kind.in_(KINDS), Delivery.due_at <= now,
                Cohort.status == "active")).all()
        timed = [(next_attempt_at(due_at, claimed_at, attempts), position, kind, row_id)
                 for row_id, kind, due_at, claimed_at, attempts, position in rows]
        return [(row_id, kind) for at, _, kind, row_id in sorted(timed) if at <= now]

    def tick(self) -> TickReport:
        """Deliver what is due, for every workspace (services/workspaces.py)."""
        report = TickReport()
        for part in for_each_team(self.db, self._tick, "lesson delivery"):
            for name in ("posted", "reminded", "skipped", "failed", "paired"):
                getattr(report, name).extend(getattr(part, name))
        return report

    def _tick(self) -> TickReport:
        now = self.clock.now()
        report = TickReport()
        self.poster.release_stuck(KINDS)
        for delivery_id, kind in self._due(now):
            try:
                if kind == "lesson":
                    self._deliver_lesson(delivery_id, now, report)
                else:
                    self._deliver_reminder(delivery_id, now, report)
            except Exception:  # one bad row must not stop the others; the row stays retryable
                log.exception("delivery %s failed", delivery_id)
        if self.accommodations is not None:
            self._remind_extended(now, report)
        if self.buddies is not None:
            try:
                report.paired.extend(self.buddies.tick(now))
            except Exception:  # the lessons went out; the pairing is retried next tick
                log.exception("study buddies failed")
        return report

    # ---- lessons ---------------------------------------------------------------------------

    def _deliver_lesson(self, delivery_id: int, now: datetime, report: TickReport) -> None:
        with self.db.session() as s:  # reads only: the poster commits every state change on its own
            delivery = s.get(Delivery, delivery_id)
            cohort = delivery.cohort
            key = f"{cohort.name}:{delivery.lesson_key}"
            if now - delivery.due_at > self.late_grace:
                if self.poster.skip(delivery_id, note=f"found {now - delivery.due_at} late, "
                                                      f"over the grace of {self.late_grace}"):
                    report.skipped.append(key)
                    self._tell_organizers(cohort, "delivery_skipped", delivery=delivery, lateness=now - delivery.due_at,
                                          grace=self.late_grace)
                return
            if not self.poster.claim(delivery_id):
                return  # another scheduler won it
            curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
            lesson = curriculum.lesson(delivery.lesson_key)
            view = self.cohorts.view(cohort.created_by, cohort.name)
            slot = next(slot for slot in view.lessons if slot.key == lesson.key)
            outcome = self.poster.post(delivery_id, cohort.channel_id, lambda: render(
                "lesson_post", cohort=view, lesson=lesson, slot=slot, number=delivery.position + 1,
                total=len(curriculum.lessons), late=now - delivery.due_at))
            if outcome.status == "sent":
                report.posted.append(key)
            elif outcome.status == "failed":
                report.failed.append(key)
                s.refresh(delivery)  # the message says how many attempts were made
                self._tell_organizers(cohort, "delivery_failed", delivery=delivery, error=outcome.error,
                                      permanent=outcome.permanent, code=outcome.code)
            elif outcome.first_unknown:
                self._tell_organizers(cohort, "delivery_unverifiable", delivery=delivery, error=outcome.error)

    # ---- reminders -------------------------------------------------------------------------

    def _deliver_reminder(self, delivery_id: int, now: datetime, report: TickReport) -> None:
        with self.db.session() as s:
            delivery = s.get(Delivery, delivery_id)
            cohort = delivery.cohort
            lesson_post = s.scalar(select(Delivery).where(
                Delivery.cohort_id == cohort.id, Delivery.lesson_key == delivery.lesson_key, Delivery.kind == "lesson"))
            if lesson_post is None or lesson_post.status != "sent" or now - delivery.due_at > self.late_grace:
                reason = "its lesson was not posted" if lesson_post is None or lesson_post.status != "sent" else "too late"
                self.poster.skip(delivery_id, note=f"reminder not sent: {reason}")
                return
            if not self.poster.claim(delivery_id):
                return
            curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
            lesson = curriculum.lesson(delivery.lesson_key)
            submitted = set(s.scalars(select(Submission.user_id).where(Submission.exercise_id == lesson.exercise)))
            members = list(s.scalars(select(Membership.user_id).where(
                Membership.cohort_id == cohort.id, Membership.left_at.is_(None)).order_by(Membership.user_id)))
            view = self.cohorts.view(cohort.created_by, cohort.name)
            slot = next(slot for slot in view.lessons if slot.key == lesson.key)
            excused = set()
            if self.accommodations is not None:  # on vacation, or given until later (their own reminder)
                excused = (self.accommodations.paused_users(s, now)
                           | self.accommodations.extended_users(s, cohort.id, lesson.key))
            for user_id in members:
                if user_id in submitted or user_id in excused:
                    continue
                # Claim the recipient first: a retried reminder may miss someone, never DM them twice.
                if s.scalar(select(ReminderRecipient.id).where(
                        ReminderRecipient.delivery_id == delivery_id, ReminderRecipient.user_id == user_id)):
                    continue
                s.add(ReminderRecipient(delivery_id=delivery_id, user_id=user_id, sent_at=self.clock.now()))
                s.commit()
                try:
                    self.chat.dm(user_id, render("reminder", cohort=view, lesson=lesson, slot=slot, user_id=user_id,
                                                 deadline=slot.deadline_local, extended=False))
                    report.reminded.append(f"{cohort.name}:{lesson.key}:{user_id}")
                except ChatError as error:  # that member is not reminded; the claim keeps it from repeating
                    log.warning("reminder DM to %s for %s lesson %s failed: %s", user_id, cohort.name, lesson.key,
                                error.message)
            s.commit()
        self.poster.mark_sent(delivery_id)

    def _remind_extended(self, now: datetime, report: TickReport) -> None:
        """The reminder of a learner whose deadline was extended: the lead before their own deadline, once."""
        lead = self.cohorts.reminder_lead
        with self.db.session() as s:
            for extension in self.accommodations.extension_reminders_due(s, now, lead):
                # Claimed first, like the lesson's reminder: a retry may miss this one, never DM it twice.
                claimed = s.execute(update(DeadlineExtension).where(
                    DeadlineExtension.id == extension.id, DeadlineExtension.reminded_at.is_(None)
                ).values(reminded_at=now)).rowcount
                s.commit()
                if not claimed or extension.deadline_at <= now:
                    continue
                cohort = s.get(Cohort, extension.cohort_id)
                user_id = extension.user_id
                curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
                lesson = curriculum.lesson(extension.lesson_key)
                member = s.scalar(select(Membership.id).where(
                    Membership.cohort_id == cohort.id, Membership.user_id == user_id, Membership.left_at.is_(None)))
                submitted = s.scalar(select(Submission.id).where(
                    Submission.user_id == user_id, Submission.exercise_id == lesson.exercise).limit(1))
                if not lesson.exercise or member is None or submitted is not None \
                        or self.accommodations.is_paused(user_id, now):
                    continue
                view = self.cohorts.view(user_id, cohort.name)
                slot = next(slot for slot in view.lessons if slot.key == lesson.key)
                if slot.status != "sent":
                    continue
                try:
                    self.chat.dm(user_id, render("reminder", cohort=view, lesson=lesson, slot=slot, user_id=user_id,
                                                 deadline=extension.deadline_at.astimezone(slot.local.tzinfo),
                                                 extended=True))
                    report.reminded.append(f"{cohort.name}:{lesson.key}:{user_id}")
                except ChatError as error:
                    log.warning("extended reminder DM to %s for %s lesson %s failed: %s", user_id, cohort.name,
                                lesson.key, error.message)

    # ---- telling organizers ----------------------------------------------------------------

    def _tell_organizers(self, cohort: Cohort, template: str, **context) -> None:
        curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
        lesson = curriculum.lesson(context["delivery"].lesson_key)
        message = render(template, cohort=cohort, lesson=lesson, **context)
        for organizer in cohort.organizers:
            try:
                self.chat.dm(organizer.user_id, message)
            except ChatError as error:
                log.warning("could not tell organizer %s about %s: %s", organizer.user_id, template, error.message)
