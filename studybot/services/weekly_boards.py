"""The weekly board post: each cohort's leaderboards posted to its channel once per ISO week.

Organizers choose the slot (`/study cohort leaderboard NAME --weekday fri --time 17:00`, in the
cohort's timezone; ``set_schedule``); the clock process and the shell call ``tick``. The week's post
is a row of the deliveries table (kind 'leaderboard', lesson_key '2027-W03', position 0) made when it
falls due: ``ExactlyOncePoster.claim_new`` INSERTs it straight into 'sending', so the UNIQUE(cohort_id,
lesson_key, kind) constraint lets one ticker own the week; the poster (services/posting.py) then looks
up, posts and marks it like any other post. What this module decides:
- no post before an exercise has been posted, nor once the course is over (the week's row is skipped);
- a slot found later than the grace (the bot was down) is not posted late; a failed post is retried
  until the grace runs out, then failed.
- verified boards: at the slot, the top VERIFIED_TOP entries of each board that no re-run has verified get
  one (services/verification.py); the post waits, tick after tick, until none is pending, or until
  VERIFY_WAIT past the slot, then posts anyway with the still unverified top entries marked "unverified".
  A re-run that disagrees takes its entry off the board (flagged), so the next one moves up and is
  verified in turn, within the same bounded wait.
Lesson rows are never touched here; services/deliveries.py never touches these.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery
from studybot.messages import render
from studybot.services import validation, weekly_slots
from studybot.services.cohorts import Cohorts
from studybot.services.leaderboards import Board, Leaderboards
from studybot.services.posting import ExactlyOncePoster
from studybot.services.verification import PENDING, Verification
from studybot.time_source import Clock
from studybot.services.workspaces import for_each_team

log = logging.getLogger(__name__)

KIND = "leaderboard"  # deliveries.kind of the weekly post
AFTER_COURSE = timedelta(days=14)  # weekly posts stop this long after the last lesson was posted
WEEKLY_TOP = 10  # entries per exercise in the weekly channel post
VERIFIED_TOP = 3  # entries per board re-run on new seeds before the weekly post
VERIFY_WAIT = timedelta(hours=2)  # past the slot, the post stops waiting for verification re-runs


class WeeklyBoards:
    def __init__(self, db: Database, clock: Clock, cohorts: Cohorts, leaderboards: Leaderboards,
                 poster: ExactlyOncePoster, late_grace: timedelta = timedelta(hours=12),
                 verification: Verification | None = None, verify_wait: timedelta = VERIFY_WAIT) -> None:
        self.db, self.clock, self.cohorts, self.leaderboards, self.poster = db, clock, cohorts, leaderboards, poster
        self.late_grace = late_grace
        self.verification, self.verify_wait = verification, verify_wait

    def set_schedule(self, user_id: str, cohort_name: str, *, weekday: str | None = None, at: str | None = None,
                     off: bool = False) -> dict[str, Any]:
        """`/study cohort leaderboard NAME --weekday fri --time 17:00 | --off`: the weekly channel post."""
        day, when = validation.weekly_slot(weekday, at, off=off,
                                           usage="/study cohort leaderboard NAME --weekday fri --time 17:00")
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            self.cohorts.require_organizer(user_id, cohort, "schedule leaderboard posts")
            if off:
                cohort.leaderboard_weekday = cohort.leaderboard_time = None
            else:
                cohort.leaderboard_weekday = day
                cohort.leaderboard_time = when.strftime("%H:%M") if when else cohort.post_time
            s.flush()
            return self.schedule_view(cohort)

    def tick(self) -> list[str]:
        """Post each due weekly board once; returns "cohort:2027-W03" keys posted by this call.

        Safe to call at any time from any number of processes (the clock process, the shell)."""
        return [key for keys in for_each_team(self.db, self._tick, "weekly leaderboards") for key in keys]

    def _tick(self) -> list[str]:
        now = self.clock.now()
        self.poster.release_stuck((KIND,))
        with self.db.session() as s:
            cohort_ids = list(s.scalars(select(Cohort.id).where(
                Cohort.leaderboard_weekday.is_not(None), Cohort.leaderboard_time.is_not(None),
                Cohort.status == "active").order_by(Cohort.id)))
        posted = []
        for cohort_id in cohort_ids:
            try:
                key = self._tick_cohort(cohort_id, now)
            except Exception:  # one cohort's trouble must not stop the others; its row stays retryable
                log.exception("weekly leaderboard of cohort %s failed", cohort_id)
                continue
            if key:
                posted.append(key)
        return posted

    def _tick_cohort(self, cohort_id: int, now: datetime) -> str | None:
        with self.db.session() as s:  # reads only: the poster commits every state change on its own
            cohort = s.get(Cohort, cohort_id)
            zone = ZoneInfo(cohort.timezone)
            at = _hhmm(cohort.leaderboard_time)
            today = now.astimezone(zone).date()
            monday = today - timedelta(days=today.weekday())
            for week_start in (monday - weekly_slots.WEEK, monday):  # last week's slot may still be within grace
                day = week_start + timedelta(days=cohort.leaderboard_weekday)
                due = weekly_slots.local_to_utc(day, at, zone)
                if due > now:
                    continue
                key = _week_key(day)
                row = s.scalar(select(Delivery).where(
                    Delivery.cohort_id == cohort.id, Delivery.lesson_key == key, Delivery.kind == KIND))
                if row is None:
                    if now - due > self.late_grace:
                        continue  # missed (the bot was down past the grace): no late weekly board
                    why_not = self._nothing_to_post(s, cohort, due)
                    if why_not:
                        self.poster.skip_new(cohort_id=cohort.id, kind=KIND, key=key, due_at=due, note=why_not)
                        continue
                    if self._verifying(s, cohort) and now - due < self.verify_wait:
                        continue  # re-runs of the top entries are under way: ask again next tick
                    row_id = self.poster.claim_new(cohort_id=cohort.id, kind=KIND, key=key, due_at=due)
                    if row_id is None:
                        continue  # another ticker owns this week
                elif row.status == "pending":  # an earlier attempt failed
                    if now - row.due_at > self.late_grace:
                        self.poster.give_up(row.id, note="still not posted after the grace")
                        continue
                    if not self.poster.claim(row.id):
                        continue
                    row_id = row.id
                else:
                    continue
                return self._post_week(s, cohort, row_id, key)
        return None

    def _post_week(self, s: Session, cohort: Cohort, row_id: int, key: str) -> str | None:
        label = f"{cohort.name}:{key}"
        outcome = self.poster.post(row_id, cohort.channel_id, lambda: self._render_week(s, cohort, key))
        if outcome.status == "sent":
            return label
        log.warning("weekly leaderboard %s: %s (%s)", label, outcome.error, outcome.status)
        return None

    def _render_week(self, s: Session, cohort: Cohort, key: str):
        """The week's post. Learners are shown by display name, never @-mentioned: an unprompted
        post naming up to WEEKLY_TOP people per board must not ping each of them."""
        boards = self._posted_boards(s, cohort)
        shown = {entry.user_id for board in boards for entry in board.entries[:WEEKLY_TOP] if entry.user_id}
        names = {user_id: self.poster.chat.display_name(user_id) for user_id in sorted(shown)}
        return render("leaderboard_weekly", cohort=self.schedule_view(cohort), week=key, boards=boards,
                      top=WEEKLY_TOP, verified_top=VERIFIED_TOP, names=names)

    def _verifying(self, s: Session, cohort: Cohort) -> bool:
        """Ask for a re-run of every unverified top entry; True while any is still pending."""
        if self.verification is None:
            return False
        pending = False
        for board in self._posted_boards(s, cohort):
            for entry in board.entries[:VERIFIED_TOP]:
                if not entry.verified and self.verification.request(entry.submission_id) == PENDING:
                    pending = True
        s.expire_all()  # the requests committed in their own sessions: read the boards afresh
        return pending

    def _nothing_to_post(self, s: Session, cohort: Cohort, due: datetime) -> str | None:
        lessons = list(s.scalars(select(Delivery).where(Delivery.cohort_id == cohort.id, Delivery.kind == "lesson")))
        if not self._posted_exercises(s, cohort):
            return "no exercise posted yet"
        if lessons and all(d.status not in ("pending", "sending") for d in lessons):
            last = max((d.sent_at or d.due_at) for d in lessons)
            if due - last > AFTER_COURSE:
                return "the course is over"
        return None

    def _posted_exercises(self, s: Session, cohort: Cohort) -> list[tuple[str, str, str]]:
        """(exercise, lesson key, lesson title) of the lessons posted so far, in curriculum order."""
        sent = set(s.scalars(select(Delivery.lesson_key).where(
            Delivery.cohort_id == cohort.id, Delivery.kind == "lesson", Delivery.status == "sent")))
        seen, out = set(), []
        for lesson in self.leaderboards.curriculum(cohort).lessons:
            if lesson.key in sent and lesson.exercise and lesson.exercise not in seen:
                seen.add(lesson.exercise)
                out.append((lesson.exercise, lesson.key, lesson.title))
        return out

    def _posted_boards(self, s: Session, cohort: Cohort) -> list[Board]:
        """The boards as posted: with verification on, its top entries that no re-run verified are marked."""
        return [replace(self.leaderboards.public_board(s, cohort, exercise, key, title),
                        mark_unverified=self.verification is not None)
                for exercise, key, title in self._posted_exercises(s, cohort)]

    @staticmethod
    def schedule_view(cohort: Cohort) -> dict[str, Any]:
        return {"name": cohort.name, "channel_id": cohort.channel_id, "channel_name": cohort.channel_name,
                "timezone": cohort.timezone,
                "weekday": (validation.weekday_name(cohort.leaderboard_weekday)
                            if cohort.leaderboard_weekday is not None else None),
                "time": cohort.leaderboard_time}




def _week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
