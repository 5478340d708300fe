"""A thread per lesson: the lesson post opens a thread for questions, and its replies are counted.

After a lesson is posted, ``tick`` answers the post in its own thread with a prompt (messages/
lesson_thread.j2): one deliveries row per lesson (kind 'thread', lesson_key the lesson's), posted
through the one exactly-once poster as a reply in the post's thread, looked up there by its tag when an
earlier attempt's fate is unknown. A lesson post found more than PROMPT_GRACE after it went out gets no
prompt (a thread opened days late, or on posts from before this feature, would only be noise).

Replies are recorded one row each (``LessonThreadReply``, unique per lesson post and reply ts), so a
retried Slack event or a message seen twice cannot count twice. Slack: the message events of the cohort
channel whose thread_ts is the lesson post's ts (slack/events). The shell: `:reply LESSON TEXT`.
The digest (services/digests.py) counts replies and the members who took part, per lesson."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from studybot.curricula import get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, LessonThreadReply
from studybot.errors import FieldError
from studybot.messages import render
from studybot.services.cohorts import Cohorts
from studybot.services.posting import ExactlyOncePoster
from studybot.services.workspaces import for_each_team
from studybot.time_source import Clock

log = logging.getLogger(__name__)

KIND = "thread"  # deliveries.kind of a lesson's thread prompt
PROMPT_GRACE = timedelta(hours=12)  # a lesson post older than this when first seen gets no prompt
GIVE_UP_AFTER = timedelta(hours=24)  # a prompt still failing this long after its lesson post is given up


@dataclass(frozen=True)
class ThreadCounts:
    replies: int
    participants: frozenset[str]


@dataclass(frozen=True)
class RecordedReply:
    cohort: str
    lesson_key: str
    counted: bool  # False: this reply was already counted (a retried event)


class LessonThreads:
    def __init__(self, db: Database, clock: Clock, cohorts: Cohorts, poster: ExactlyOncePoster,
                 curricula_dir: Path | None = None, prompt_grace: timedelta = PROMPT_GRACE) -> None:
        self.db, self.clock, self.cohorts, self.poster = db, clock, cohorts, poster
        self.curricula_dir, self.prompt_grace = curricula_dir, prompt_grace

    # ---- the prompt -------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Open the thread of every lesson posted lately that has none yet; "cohort:lesson" keys posted."""
        return [key for keys in for_each_team(self.db, self._tick, "lesson threads") for key in keys]

    def _tick(self) -> list[str]:
        now = self.clock.now()
        self.poster.release_stuck((KIND,))
        with self.db.session() as s:
            lessons = s.execute(select(Delivery.id, Delivery.cohort_id, Delivery.lesson_key, Delivery.position,
                                       Delivery.sent_at, Delivery.message_ts).join(Cohort).where(
                Delivery.kind == "lesson", Delivery.status == "sent", Delivery.message_ts.is_not(None),
                Delivery.sent_at >= now - GIVE_UP_AFTER).order_by(Delivery.sent_at, Delivery.id)).all()
            prompts = {(row.cohort_id, row.lesson_key): row for row in s.scalars(select(Delivery).join(Cohort).where(
                Delivery.kind == KIND, Delivery.due_at >= now - GIVE_UP_AFTER - PROMPT_GRACE))}
        posted = []
        for _, cohort_id, lesson_key, position, sent_at, lesson_ts in lessons:
            try:
                if self._open(cohort_id, lesson_key, position, sent_at, lesson_ts, prompts.get((cohort_id, lesson_key)),
                              now):
                    posted.append(f"{self._cohort_name(cohort_id)}:{lesson_key}")
            except Exception:  # one lesson's trouble must not stop the others; its row stays retryable
                log.exception("thread prompt of cohort %s lesson %s failed", cohort_id, lesson_key)
        return posted

    def _open(self, cohort_id: int, lesson_key: str, position: int, sent_at: datetime, lesson_ts: str,
              row: Delivery | None, now: datetime) -> bool:
        if row is None:
            if now - sent_at > self.prompt_grace:
                return False  # seen too late (the clock was down, or the post predates threads): no prompt
            row_id = self.poster.claim_new(cohort_id=cohort_id, kind=KIND, key=lesson_key, due_at=sent_at,
                                           position=position)
            if row_id is None:
                return False  # another ticker has it
        elif row.status == "pending":
            if now - row.due_at > GIVE_UP_AFTER:
                self.poster.give_up(row.id, note="the prompt still failed a day after its lesson")
                return False
            if not self.poster.claim(row.id):
                return False
            row_id = row.id
        else:
            return False
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            channel_id, name = cohort.channel_id, cohort.name
            lesson = get_curriculum(cohort.curriculum_id, self.curricula_dir).lesson(lesson_key)
        outcome = self.poster.post(row_id, channel_id, lambda: render("lesson_thread", cohort_name=name, lesson=lesson),
                                   thread_id=lesson_ts)
        if outcome.status != "sent":
            log.warning("thread prompt %s:%s: %s (%s)", name, lesson_key, outcome.error, outcome.status)
        return outcome.status == "sent"

    def _cohort_name(self, cohort_id: int) -> str:
        with self.db.session() as s:
            return s.get(Cohort, cohort_id).name

    # ---- replies ----------------------------------------------------------------------------

    def record_reply(self, channel_id: str, thread_ts: str, user_id: str, message_ts: str) -> RecordedReply | None:
        """A message in a thread of a channel: counted when the thread is a lesson post's; None otherwise."""
        with self.db.session() as s:
            # Through the cohort: only this workspace's lesson posts (db/scoping.py).
            found = s.execute(select(Delivery.id, Delivery.lesson_key, Cohort.name).join(Cohort).where(
                Cohort.channel_id == channel_id, Delivery.kind == "lesson", Delivery.message_ts == thread_ts)).first()
        if found is None:
            return None
        delivery_id, lesson_key, cohort_name = found
        try:
            with self.db.session() as s:
                s.add(LessonThreadReply(delivery_id=delivery_id, user_id=user_id, message_ts=message_ts,
                                        replied_at=self.clock.now()))
        except IntegrityError:  # UNIQUE(delivery_id, message_ts): this reply is counted already
            return RecordedReply(cohort_name, lesson_key, counted=False)
        return RecordedReply(cohort_name, lesson_key, counted=True)

    def lesson_thread(self, cohort_name: str, lesson_key: str) -> tuple[str, str]:
        """(channel id, the lesson post's id) of a posted lesson of the cohort: where its thread is.

        FieldError('lesson') for a lesson that does not exist or was not posted yet."""
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            post = s.scalar(select(Delivery).where(Delivery.cohort_id == cohort.id, Delivery.kind == "lesson",
                                                   Delivery.lesson_key == lesson_key))
            if post is None:
                keys = ", ".join(s.scalars(select(Delivery.lesson_key).where(
                    Delivery.cohort_id == cohort.id, Delivery.kind == "lesson").order_by(Delivery.position)))
                raise FieldError("lesson", f"{cohort.name} has no lesson {lesson_key!r}. Lessons: {keys}.",
                                 value=lesson_key)
            if post.status != "sent" or not post.message_ts:
                raise FieldError("lesson", f"Lesson {lesson_key} of {cohort.name} is not posted yet: its thread "
                                 "opens with the post.", value=lesson_key)
            return cohort.channel_id, post.message_ts

    def counts(self, cohort_id: int, since: datetime | None = None, until: datetime | None = None
               ) -> dict[str, ThreadCounts]:
        """Per lesson key: replies in its thread and who wrote them (optionally within [since, until))."""
        query = (select(Delivery.lesson_key, LessonThreadReply.user_id, func.count())
                 .select_from(LessonThreadReply).join(Delivery).join(Cohort)
                 .where(Delivery.cohort_id == cohort_id)
                 .group_by(Delivery.lesson_key, LessonThreadReply.user_id))
        if since is not None:
            query = query.where(LessonThreadReply.replied_at >= since)
        if until is not None:
            query = query.where(LessonThreadReply.replied_at < until)
        replies: dict[str, int] = {}
        people: dict[str, set[str]] = {}
        with self.db.session() as s:
            for lesson_key, user_id, n in s.execute(query):
                replies[lesson_key] = replies.get(lesson_key, 0) + n
                people.setdefault(lesson_key, set()).add(user_id)
        return {key: ThreadCounts(replies[key], frozenset(people[key])) for key in replies}

    def last_replies(self, cohort_id: int) -> dict[str, datetime]:
        """Each member's latest reply in any of the cohort's lesson threads (for who went quiet, since when)."""
        with self.db.session() as s:
            rows = s.execute(select(LessonThreadReply.user_id, func.max(LessonThreadReply.replied_at))
                             .select_from(LessonThreadReply).join(Delivery).join(Cohort)
                             .where(Delivery.cohort_id == cohort_id).group_by(LessonThreadReply.user_id)).all()
        return {user_id: _aware(at) for user_id, at in rows}

    def reply_times(self, cohort_id: int, since: datetime) -> list[tuple[str, datetime]]:
        with self.db.session() as s:
            rows = s.execute(select(LessonThreadReply.user_id, LessonThreadReply.replied_at)
                             .select_from(LessonThreadReply).join(Delivery).join(Cohort)
                             .where(Delivery.cohort_id == cohort_id, LessonThreadReply.replied_at >= since)).all()
        return [(user_id, _aware(at)) for user_id, at in rows]


def _aware(value: datetime) -> datetime:
    # func.max over a UTCDateTime column comes back without the type's conversion on SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

