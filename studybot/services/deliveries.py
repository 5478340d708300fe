"""Posting lessons and reminders exactly once: claim -> post -> mark, with the database as the truth.

The scheduler (studybot/clock_process.py) calls ``Deliveries.tick()`` every few seconds; so does the
shell when it fast-forwards. A tick is safe to run at any time, from any number of processes:
- a row moves pending -> sending with a conditional UPDATE; only one process can win it;
- a row whose previous attempt may have posted (attempts > 0) is first looked up in the channel
  by its metadata, so a crash between post and mark never posts twice;
- a row found too late (past the grace) is marked skipped and the organizers are told, once.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from studybot.time_source import Clock
from studybot.curricula import get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, Membership, ReminderRecipient, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.cohorts import Cohorts

log = logging.getLogger(__name__)

KINDS = ("lesson", "reminder")  # the rows this module delivers; weekly leaderboards have their own
MAX_ATTEMPTS = 5  # post attempts before a delivery is marked failed and organizers are told
STUCK_AFTER = timedelta(minutes=5)  # a 'sending' row older than this belongs to a process that died


@dataclass
class TickReport:
    posted: list[str] = field(default_factory=list)  # "cohort:lesson" keys
    reminded: list[str] = field(default_factory=list)  # "cohort:lesson:user"
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Deliveries:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts,
                 late_grace: timedelta = timedelta(hours=12), curricula_dir: Path | None = None,
                 worker_id: str | None = None) -> None:
        self.db, self.chat, self.clock, self.cohorts = db, chat, clock, cohorts
        self.late_grace = late_grace
        self.curricula_dir = curricula_dir
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

    def next_due(self) -> datetime | None:
        with self.db.session() as s:
            return s.scalar(select(Delivery.due_at).join(Cohort).where(
                Delivery.status == "pending", Delivery.kind.in_(KINDS), Cohort.status == "active",
            ).order_by(Delivery.due_at).limit(1))

    def tick(self) -> TickReport:
        now = self.clock.now()
        report = TickReport()
        self._release_stuck(now)
        with self.db.session() as s:
            due = s.execute(select(Delivery.id, Delivery.kind).join(Cohort).where(
                Delivery.status == "pending", Delivery.kind.in_(KINDS), Delivery.due_at <= now,
                Cohort.status == "active",
            ).order_by(Delivery.due_at, Delivery.position, Delivery.kind)).all()
        for delivery_id, kind in due:
            try:
                if kind == "lesson":
                    self._deliver_lesson(delivery_id, now, report)
                else:
                    self._deliver_reminder(delivery_id, now, report)
            except Exception:  # one bad row must not stop the others; the row stays retryable
                log.exception("delivery %s failed", delivery_id)
        return report

    # ---- lessons ---------------------------------------------------------------------------

    def _deliver_lesson(self, delivery_id: int, now: datetime, report: TickReport) -> None:
        with self.db.session() as s:
            delivery = s.get(Delivery, delivery_id)
            cohort = delivery.cohort
            key = f"{cohort.name}:{delivery.lesson_key}"
            if now - delivery.due_at > self.late_grace:
                if self._transition(s, delivery_id, "pending", "skipped",
                                    note=f"found {now - delivery.due_at} late, over the grace of {self.late_grace}"):
                    s.commit()
                    report.skipped.append(key)
                    self._tell_organizers(cohort, "delivery_skipped", delivery=delivery, lateness=now - delivery.due_at,
                                          grace=self.late_grace)
                return
            attempts_before = delivery.attempts
            if not self._claim(s, delivery_id, now):
                return  # another scheduler won it
            s.commit()
            curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
            lesson = curriculum.lesson(delivery.lesson_key)
            view = self.cohorts.view(cohort.created_by, cohort.name)
            slot = next(slot for slot in view.lessons if slot.key == lesson.key)
            try:
                ts = None
                if attempts_before > 0:  # an earlier attempt may have posted before it died
                    ts = self.chat.find_post(cohort.channel_id, since=delivery.due_at - timedelta(minutes=1),
                                             tag=f"delivery:{delivery_id}")
                if ts is None:
                    message = render("lesson_post", cohort=view, lesson=lesson, slot=slot,
                                     number=delivery.position + 1, total=len(curriculum.lessons), late=now - delivery.due_at)
                    ts = self.chat.post(cohort.channel_id, message, tag=f"delivery:{delivery_id}")
            except ChatError as error:
                self._after_failure(s, delivery, cohort, str(error), report, key)
                return
            s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "sending")
                      .values(status="sent", sent_at=self.clock.now(), message_ts=ts))
            report.posted.append(key)

    # ---- reminders -------------------------------------------------------------------------

    def _deliver_reminder(self, delivery_id: int, now: datetime, report: TickReport) -> None:
        with self.db.session() as s:
            delivery = s.get(Delivery, delivery_id)
            cohort = delivery.cohort
            lesson_post = s.scalar(select(Delivery).where(
                Delivery.cohort_id == cohort.id, Delivery.lesson_key == delivery.lesson_key, Delivery.kind == "lesson"))
            if lesson_post is None or lesson_post.status != "sent" or now - delivery.due_at > self.late_grace:
                reason = "its lesson was not posted" if lesson_post is None or lesson_post.status != "sent" else "too late"
                self._transition(s, delivery_id, "pending", "skipped", note=f"reminder not sent: {reason}")
                return
            if not self._claim(s, delivery_id, now):
                return
            s.commit()
            curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
            lesson = curriculum.lesson(delivery.lesson_key)
            submitted = set(s.scalars(select(Submission.user_id).where(Submission.exercise_id == lesson.exercise)))
            members = list(s.scalars(select(Membership.user_id).where(
                Membership.cohort_id == cohort.id, Membership.left_at.is_(None)).order_by(Membership.user_id)))
            view = self.cohorts.view(cohort.created_by, cohort.name)
            slot = next(slot for slot in view.lessons if slot.key == lesson.key)
            for user_id in members:
                if user_id in submitted:
                    continue
                # Claim the recipient first: a retried reminder may miss someone, never DM them twice.
                if s.scalar(select(ReminderRecipient.id).where(
                        ReminderRecipient.delivery_id == delivery_id, ReminderRecipient.user_id == user_id)):
                    continue
                s.add(ReminderRecipient(delivery_id=delivery_id, user_id=user_id, sent_at=self.clock.now()))
                s.commit()
                try:
                    self.chat.dm(user_id, render("reminder", cohort=view, lesson=lesson, slot=slot, user_id=user_id))
                    report.reminded.append(f"{cohort.name}:{lesson.key}:{user_id}")
                except ChatError:
                    log.warning("reminder DM to %s for %s lesson %s failed", user_id, cohort.name, lesson.key)
            s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "sending")
                      .values(status="sent", sent_at=self.clock.now()))

    # ---- state transitions -----------------------------------------------------------------

    def _claim(self, s, delivery_id: int, now: datetime) -> bool:
        result = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending")
                           .values(status="sending", claimed_at=now, claimed_by=self.worker_id,
                                   attempts=Delivery.attempts + 1))
        return result.rowcount == 1

    @staticmethod
    def _transition(s, delivery_id: int, old: str, new: str, note: str | None = None) -> bool:
        result = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == old)
                           .values(status=new, note=note))
        return result.rowcount == 1

    def _after_failure(self, s, delivery: Delivery, cohort: Cohort, error: str, report: TickReport, key: str) -> None:
        if delivery.attempts >= MAX_ATTEMPTS:
            if self._transition(s, delivery.id, "sending", "failed", note=error):
                s.commit()
                report.failed.append(key)
                self._tell_organizers(cohort, "delivery_failed", delivery=delivery, error=error)
        else:  # try again on a later tick; the metadata lookup guards against a post that did land
            self._transition(s, delivery.id, "sending", "pending", note=error)

    def _release_stuck(self, now: datetime) -> None:
        with self.db.session() as s:
            s.execute(update(Delivery).where(Delivery.status == "sending", Delivery.kind.in_(KINDS),
                                             Delivery.claimed_at < now - STUCK_AFTER)
                      .values(status="pending", note="released: its scheduler stopped mid-post"))

    def _tell_organizers(self, cohort: Cohort, template: str, **context) -> None:
        curriculum = get_curriculum(cohort.curriculum_id, self.curricula_dir)
        lesson = curriculum.lesson(context["delivery"].lesson_key)
        message = render(template, cohort=cohort, lesson=lesson, **context)
        for organizer in cohort.organizers:
            try:
                self.chat.dm(organizer.user_id, message)
            except ChatError:
                log.warning("could not tell organizer %s about %s", organizer.user_id, template)
