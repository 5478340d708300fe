"""Leaderboards: one per exercise per cohort, each learner's best passing submission ranked by training time.

Transport-neutral (no Slack here). What this module does:
- ``board``: the ranking a learner asks for with `/study leaderboard EXERCISE`;
- ``set_mode``: a learner is named, anonymous (a stable pseudonym) or hidden (left out);
- organizers ``export_csv`` every submission, ``disqualify``/``requalify`` an entry (the row and the
  grader's result stay as evidence) and ``regrade`` a submission (a new submission, queued);
- ``record_broken``: after a submission passes, what the "new record" channel post needs, if it is one;
- ``tick``: the weekly board post to each cohort channel, exactly once per cohort per ISO week.

Ranking: only submissions with status 'passed', lane 'ranked', not disqualified, made for that cohort
(Submission.cohort_id) by a current member; fastest ``train_seconds`` first; a tie goes to the earlier
submission (created_at, then id). One entry per learner: their best.

Weekly posts use the deliveries table (kind 'leaderboard', lesson_key '2027-W03', position 0) and its
UNIQUE(cohort_id, lesson_key, kind): the first tick to INSERT the week's row owns the post (claim), posts
with message metadata naming the row, then marks it sent. A row whose post failed waits in 'retry' and is
looked up in the channel by its metadata before posting again, so a crash between post and mark never
posts twice. These rows never use the 'pending'/'sending' states of lesson rows, so the lesson
scheduler (services/deliveries.py), which picks up every pending row, never sees them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from studybot.time_source import Clock
from studybot.curricula import Curriculum, get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, CohortOrganizer, Delivery, Membership, Submission
from studybot.errors import ChatError, Conflict, FieldError, NotFound, PermissionDenied
from studybot.messages import render
from studybot.ports import Chat
from studybot.queue import JobQueue
from studybot.services import validation, weekly_slots
from studybot.services.cohorts import Cohorts

log = logging.getLogger(__name__)

MODES = {"named": "named", "anonymous": "anonymous", "anon": "anonymous", "optout": "hidden", "hidden": "hidden",
         "optin": "named"}
KIND = "leaderboard"  # deliveries.kind of the weekly post
MAX_ATTEMPTS = 5  # weekly post attempts before the week's row is marked failed
STUCK_AFTER = timedelta(minutes=5)  # a 'posting' row older than this belongs to a process that died
AFTER_COURSE = timedelta(days=14)  # weekly posts stop this long after the last lesson was posted
WEEKLY_TOP = 10  # entries per exercise in the weekly channel post
MAX_REASON = 500
ANIMALS = ("otter", "heron", "lynx", "marten", "puffin", "ibex", "gecko", "quokka", "walrus", "okapi", "tapir",
           "badger", "falcon", "narwhal", "axolotl", "pangolin", "lemur", "bison", "condor", "dingo", "egret",
           "ferret", "gannet", "hare", "jackal", "kestrel", "llama", "magpie", "newt", "ocelot", "panda", "quail",
           "raven", "seal", "toucan", "urchin", "vole", "wombat", "yak", "zebra", "beaver", "crane", "dolphin",
           "eland", "fox", "gibbon", "hedgehog", "impala", "jay", "koala", "loris", "moose", "nightjar", "orca",
           "plover", "robin", "stoat", "tern", "viper", "wren", "alpaca", "caracal", "dormouse", "mole")
CSV_COLUMNS = (
    ("submission_id", "the submission's id (what /study disqualify and /study regrade take)"),
    ("cohort", "the cohort's name"),
    ("exercise", "the exercise id"),
    ("user_id", "the learner's Slack user id (also for anonymous and hidden learners: organizers only)"),
    ("leaderboard_mode", "named, anonymous or hidden; empty if the learner is no longer a member"),
    ("created_at", "when it was submitted, ISO 8601 UTC"),
    ("finished_at", "when grading finished, ISO 8601 UTC; empty while queued or running"),
    ("source", "slack, shell or regrade"),
    ("lane", "ranked or check"),
    ("status", "queued, running, passed, below_target, too_slow, timeout, oom, crashed, ..."),
    ("accuracy", "the grader's accuracy (0-1)"),
    ("train_seconds", "training time in seconds, as the grader measured it"),
    ("speed_ratio", "training time against the reference solution (x)"),
    ("board_rank", "its rank on the board now, if it is the learner's entry there"),
    ("disqualified_at", "ISO 8601 UTC, empty if not disqualified"),
    ("disqualified_by", "the organizer's user id"),
    ("disqualified_reason", "the reason the organizer gave"),
    ("regrade_of", "the submission this one re-grades"),
    ("notebook_sha256", "the stored notebook's hash"),
    ("filename", "the uploaded file's name"),
)


@dataclass(frozen=True)
class Entry:
    """One learner's place on a board. ``user_id`` is None unless the learner is shown by name."""

    rank: int
    submission_id: int
    label: str  # "anonymous otter" for anonymous learners; the user id otherwise (templates mention it)
    user_id: str | None
    seconds: float
    accuracy: float | None
    speed_ratio: float | None
    created_at: datetime
    is_you: bool = False


@dataclass(frozen=True)
class Board:
    cohort_name: str
    channel_id: str
    channel_name: str
    exercise: str
    lesson_key: str
    lesson_title: str
    entries: tuple[Entry, ...]
    show_ids: bool = False  # organizers see submission ids (to disqualify or re-grade)
    public: bool = False  # shown in the channel: no "(you)", no ids
    your_mode: str | None = None  # the viewer's leaderboard_mode in this cohort, when a member
    your_best: float | None = None  # the viewer's best passing time, also when hidden

    @property
    def you(self) -> Entry | None:
        return next((e for e in self.entries if e.is_you), None)


@dataclass(frozen=True)
class Export:
    filename: str
    content: bytes
    rows: int
    cohort_name: str
    exercise: str
    where: str  # what chat.upload_file answered: a Slack file id, or a path in the shell


@dataclass(frozen=True)
class SubmissionInfo:
    """What the organizer replies (disqualify, requalify, regrade) show about a submission."""

    id: int
    user_id: str
    exercise: str
    cohort_name: str | None
    status: str
    seconds: float | None
    reason: str | None = None
    was_on_board: bool = False
    new_id: int | None = None  # regrade: the new submission
    position: int | None = None  # regrade: its place in the queue, when known


class Leaderboards:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, curricula_dir: Path | None = None,
                 late_grace: timedelta = timedelta(hours=12), worker_id: str | None = None) -> None:
        self.db, self.chat, self.clock, self.cohorts = db, chat, clock, cohorts
        self.curricula_dir = curricula_dir if curricula_dir is not None else cohorts.curricula_dir
        self.late_grace = late_grace
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

    # ---- learners ----------------------------------------------------------------------------

    def board(self, user_id: str, exercise_id: str, cohort_name: str | None = None, *, public: bool = False) -> Board:
        """The board of one exercise in the named cohort, or in the caller's only cohort."""
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name)
            exercise, lesson = self._exercise(cohort, exercise_id)
            show_ids = not public and self.cohorts.is_organizer(user_id, cohort)
            return self._board(s, cohort, exercise, lesson.key, lesson.title, viewer=user_id, show_ids=show_ids,
                               public=public)

    def set_mode(self, user_id: str, mode: str, cohort_name: str | None = None) -> dict[str, Any]:
        """`/study leaderboard optout|anonymous|named [COHORT]`: how the caller appears on the cohort's boards."""
        stored = MODES.get((mode or "").strip().lower())
        if stored is None:
            raise FieldError("mode", f"Leaderboard mode {mode!r} is not one of named, anonymous, optout.", value=mode)
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name)
            membership = self._membership(s, cohort, user_id)
            if membership is None:
                raise NotFound(f"You are not in {cohort.name}. `/study join {cohort.name}` joins it.")
            membership.leaderboard_mode = stored
            s.flush()
            pseudonym = self._pseudonyms(s, cohort).get(membership.id) if stored == "anonymous" else None
            return {"cohort_name": cohort.name, "mode": stored, "pseudonym": pseudonym}

    # ---- organizers --------------------------------------------------------------------------

    def export_csv(self, user_id: str, exercise_id: str, cohort_name: str | None = None) -> tuple[str, bytes]:
        """Every submission of the cohort for the exercise, failed and disqualified ones included (CSV_COLUMNS)."""
        export = self._export(user_id, exercise_id, cohort_name)
        return export.filename, export.content

    def send_export(self, user_id: str, exercise_id: str, cohort_name: str | None = None) -> Export:
        """`/study export`: build the CSV and upload it to the organizer's DM (chat.upload_file)."""
        export = self._export(user_id, exercise_id, cohort_name)
        where = self.chat.upload_file(user_id, export.filename, export.content,
                                      f"{export.cohort_name} {export.exercise} submissions")
        return Export(**{**asdict(export), "where": where})

    def _export(self, user_id: str, exercise_id: str, cohort_name: str | None) -> Export:
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name, organizer_fallback=True)
            self._require_organizer(user_id, cohort, "export a leaderboard")
            exercise, _ = self._exercise(cohort, exercise_id)
            filename, content, rows = self._csv(s, cohort, exercise)
            return Export(filename=filename, content=content, rows=rows, cohort_name=cohort.name, exercise=exercise,
                          where="")

    def disqualify(self, user_id: str, submission_id: Any, reason: str) -> SubmissionInfo:
        """Take an entry off the board; the row and the grader's result stay, as evidence."""
        reason = (reason or "").strip()
        if not reason:
            raise FieldError("reason", 'Give a reason: `/study disqualify SUBMISSION_ID --reason "..."`. '
                             "The learner and the export see it.")
        if len(reason) > MAX_REASON:
            raise FieldError("reason", f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.")
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self._organizer_submission(s, user_id, number, "disqualify submissions")
            if submission.disqualified_at is not None:
                raise Conflict(f"Submission {number} is already disqualified "
                               f"(by {submission.disqualified_by}: {submission.disqualified_reason}).")
            was_on_board = cohort is not None and any(
                e.submission_id == number for e in self._ranked(s, cohort, submission.exercise_id))
            submission.disqualified_at = self.clock.now()
            submission.disqualified_by = user_id
            submission.disqualified_reason = reason
            info = self._info(submission, cohort, reason=reason, was_on_board=was_on_board)
        self._tell_learner(info, "disqualified")
        return info

    def requalify(self, user_id: str, submission_id: Any) -> SubmissionInfo:
        """Undo a disqualification: the entry competes again."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self._organizer_submission(s, user_id, number, "requalify submissions")
            if submission.disqualified_at is None:
                raise Conflict(f"Submission {number} is not disqualified.")
            reason = submission.disqualified_reason
            submission.disqualified_at = submission.disqualified_by = submission.disqualified_reason = None
            s.flush()
            on_board = cohort is not None and any(
                e.submission_id == number for e in self._ranked(s, cohort, submission.exercise_id))
            info = self._info(submission, cohort, reason=reason, was_on_board=on_board)
        self._tell_learner(info, "requalified")
        return info

    def regrade(self, user_id: str, submission_id: Any) -> SubmissionInfo:
        """A new submission of the same stored notebook (source 'regrade'), queued for grading."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            original, cohort = self._organizer_submission(s, user_id, number, "re-grade submissions")
            if original.notebook_sha256 is None:
                raise Conflict(f"Submission {number} has no stored notebook to grade again.")
            if original.status in ("queued", "running"):
                raise Conflict(f"Submission {number} is still being graded ({original.status}).")
            pending = s.scalar(select(Submission.id).where(
                Submission.regrade_of == number, Submission.status.in_(("queued", "running"))))
            if pending is not None:
                raise Conflict(f"Submission {number} is already being re-graded as submission {pending}.")
            submission = Submission(
                user_id=original.user_id, exercise_id=original.exercise_id, status="queued",
                created_at=self.clock.now(), cohort_id=original.cohort_id, notebook_sha256=original.notebook_sha256,
                filename=original.filename, source="regrade", lane=original.lane, regrade_of=original.id)
            s.add(submission)
            s.flush()
            queue = JobQueue(self.db, self.clock)
            queue.enqueue(s, submission)
            info = self._info(original, cohort, new_id=submission.id)
        position = None
        try:
            position = queue.position(info.new_id)
        except Exception:  # the queue position is a nicety in the reply
            log.debug("no queue position for %s", info.new_id, exc_info=True)
        return SubmissionInfo(**{**asdict(info), "position": position})

    def set_schedule(self, user_id: str, cohort_name: str, *, weekday: str | None = None, at: str | None = None,
                     off: bool = False) -> dict[str, Any]:
        """`/study cohort leaderboard NAME --weekday fri --time 17:00 | --off`: the weekly channel post."""
        if off and (weekday or at):
            raise FieldError("off", "Give either --off, or --weekday and --time, not both.")
        if not off:
            if not weekday:
                raise FieldError("weekday", "--weekday is missing: `/study cohort leaderboard NAME --weekday fri "
                                 "--time 17:00` (or `--off`).")
            day = validation.weekday(weekday)
            when = validation.post_time(at) if at else None
        with self.db.session() as s:
            cohort = self.cohorts._get(s, cohort_name)
            self._require_organizer(user_id, cohort, "schedule leaderboard posts")
            if off:
                cohort.leaderboard_weekday = cohort.leaderboard_time = None
            else:
                cohort.leaderboard_weekday = day
                cohort.leaderboard_time = when.strftime("%H:%M") if when else cohort.post_time
            s.flush()
            return self._schedule_view(cohort)

    # ---- records -----------------------------------------------------------------------------

    def record_broken(self, submission_id: int) -> dict[str, Any] | None:
        """After a submission passed: the facts for the channel post if it is the new #1 of its cohort's
        board for its exercise (strictly faster than the previous #1, or the first passing entry); else None.

        Post it with ``chat.post(record["channel_id"], render("leaderboard_record", **record))``.
        Pure: calling it twice answers the same, so the caller posts it once (e.g. with its notified state).
        Hidden learners are never on a board, so never in a record; anonymous ones appear by pseudonym."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            if (submission is None or submission.status != "passed" or submission.disqualified_at is not None
                    or submission.lane != "ranked" or submission.cohort_id is None or submission.train_seconds is None):
                return None
            cohort = s.get(Cohort, submission.cohort_id)
            now_board = self._ranked(s, cohort, submission.exercise_id)
            if not now_board or now_board[0].submission_id != submission.id:
                return None
            before = self._ranked(s, cohort, submission.exercise_id, exclude=submission.id)
            previous = before[0] if before else None
            if previous is not None and not submission.train_seconds < previous.seconds:
                return None  # a tie that won on the earlier submission time is not a new record
            if previous is not None and submission.regrade_of == previous.submission_id:
                return None  # a re-grade confirming its own record is not news
            lesson = self._lesson_of(cohort, submission.exercise_id)
            holder = now_board[0]
            return {
                "cohort_name": cohort.name, "channel_id": cohort.channel_id, "channel_name": cohort.channel_name,
                "exercise": submission.exercise_id, "lesson_key": lesson.key if lesson else None,
                "lesson_title": lesson.title if lesson else None, "submission_id": submission.id,
                "holder": _public_entry(holder), "previous": _public_entry(previous) if previous else None,
                "seconds": holder.seconds, "accuracy": holder.accuracy, "speed_ratio": holder.speed_ratio,
                "previous_seconds": previous.seconds if previous else None,
                "speedup": previous.seconds / holder.seconds if previous and holder.seconds > 0 else None,
                "same_holder": previous is not None and previous.label == holder.label,
                "entries": len(now_board),
            }

    def rank_of(self, submission_id: int) -> dict[str, Any] | None:
        """The learner's place on the board once this submission counts: {"rank", "of", "previous"}
        (previous: their rank without it, None if it made them a new entry). None when the submission
        does not count or the learner is hidden. For the result DM (services/feedback.py)."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            if (submission is None or submission.status != "passed" or submission.disqualified_at is not None
                    or submission.lane != "ranked" or submission.cohort_id is None or submission.train_seconds is None):
                return None
            cohort = s.get(Cohort, submission.cohort_id)
            now = [sub.user_id for sub, _ in self._best(s, cohort, submission.exercise_id)]
            if submission.user_id not in now:
                return None
            before = [sub.user_id for sub, _ in self._best(s, cohort, submission.exercise_id, exclude=submission.id)]
            previous = before.index(submission.user_id) + 1 if submission.user_id in before else None
            return {"rank": now.index(submission.user_id) + 1, "of": len(now), "previous": previous}

    # ---- the weekly post ---------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Post each due weekly board once; returns "cohort:2027-W03" keys posted by this call.

        Safe to call at any time from any number of processes (the clock process, the shell)."""
        now = self.clock.now()
        self._release_stuck(now)
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
        with self.db.session() as s:
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
                if row is None and now - due > self.late_grace:
                    continue  # missed (the bot was down past the grace): no late weekly board
                if row is None:
                    if not self._claim_new(s, cohort, key, due, now):
                        continue
                elif row.status == "retry":
                    if now - row.due_at > self.late_grace:
                        self._transition(s, row.id, "retry", "failed", note="still not posted after the grace")
                        s.commit()
                        continue
                    if not self._claim_retry(s, row.id, now):
                        continue
                    s.commit()
                else:
                    continue
                return self._post_week(s, cohort, key, now)
        return None

    def _claim_new(self, s: Session, cohort: Cohort, key: str, due: datetime, now: datetime) -> bool:
        """The INSERT is the claim: UNIQUE(cohort_id, lesson_key, kind) lets one process win the week."""
        status, note = "posting", None
        why_not = self._nothing_to_post(s, cohort, due)
        if why_not:
            status, note = "skipped", why_not
        row = Delivery(cohort_id=cohort.id, lesson_key=key, position=0, kind=KIND, due_at=due, status=status,
                       attempts=0 if why_not else 1, claimed_at=now, claimed_by=self.worker_id, note=note)
        try:
            s.add(row)
            s.commit()
        except IntegrityError:
            s.rollback()
            return False  # another tick owns this week
        return not why_not

    def _post_week(self, s: Session, cohort: Cohort, key: str, now: datetime) -> str | None:
        row = s.scalar(select(Delivery).where(
            Delivery.cohort_id == cohort.id, Delivery.lesson_key == key, Delivery.kind == KIND)
            .execution_options(populate_existing=True))
        label = f"{cohort.name}:{key}"
        try:
            ts = None
            if row.attempts > 1:  # an earlier attempt may have posted before it died
                ts = self.chat.find_post(cohort.channel_id, since=row.due_at - timedelta(minutes=1),
                                         tag=f"delivery:{row.id}")
            if ts is None:
                message = render("leaderboard_weekly", cohort=self._schedule_view(cohort), week=key,
                                 boards=self._posted_boards(s, cohort), top=WEEKLY_TOP)
                ts = self.chat.post(cohort.channel_id, message, tag=f"delivery:{row.id}")
        except ChatError as error:
            new = "failed" if row.attempts >= MAX_ATTEMPTS else "retry"
            self._transition(s, row.id, "posting", new, note=str(error))
            log.warning("weekly leaderboard %s: %s (%s)", label, error, new)
            return None
        s.execute(update(Delivery).where(Delivery.id == row.id, Delivery.status == "posting")
                  .values(status="sent", sent_at=self.clock.now(), message_ts=ts))
        return label

    def _nothing_to_post(self, s: Session, cohort: Cohort, due: datetime) -> str | None:
        lessons = list(s.scalars(select(Delivery).where(Delivery.cohort_id == cohort.id, Delivery.kind == "lesson")))
        if not self._posted_exercises(s, cohort):
            return "no exercise posted yet"
        if lessons and all(d.status not in ("pending", "sending") for d in lessons):
            last = max((d.sent_at or d.due_at) for d in lessons)
            if due - last > AFTER_COURSE:
                return "the course is over"
        return None

    def _claim_retry(self, s: Session, row_id: int, now: datetime) -> bool:
        result = s.execute(update(Delivery).where(Delivery.id == row_id, Delivery.status == "retry")
                           .values(status="posting", claimed_at=now, claimed_by=self.worker_id,
                                   attempts=Delivery.attempts + 1))
        return result.rowcount == 1

    @staticmethod
    def _transition(s: Session, row_id: int, old: str, new: str, note: str | None = None) -> bool:
        result = s.execute(update(Delivery).where(Delivery.id == row_id, Delivery.status == old)
                           .values(status=new, note=note))
        return result.rowcount == 1

    def _release_stuck(self, now: datetime) -> None:
        with self.db.session() as s:
            s.execute(update(Delivery).where(Delivery.kind == KIND, Delivery.status == "posting",
                                             Delivery.claimed_at < now - STUCK_AFTER)
                      .values(status="retry", note="released: its ticker stopped mid-post"))

    def _posted_exercises(self, s: Session, cohort: Cohort) -> list[tuple[str, str, str]]:
        """(exercise, lesson key, lesson title) of the lessons posted so far, in curriculum order."""
        sent = set(s.scalars(select(Delivery.lesson_key).where(
            Delivery.cohort_id == cohort.id, Delivery.kind == "lesson", Delivery.status == "sent")))
        seen, out = set(), []
        for lesson in self._curriculum(cohort).lessons:
            if lesson.key in sent and lesson.exercise and lesson.exercise not in seen:
                seen.add(lesson.exercise)
                out.append((lesson.exercise, lesson.key, lesson.title))
        return out

    def _posted_boards(self, s: Session, cohort: Cohort) -> list[Board]:
        return [self._board(s, cohort, exercise, key, title, public=True)
                for exercise, key, title in self._posted_exercises(s, cohort)]

    # ---- internals ---------------------------------------------------------------------------

    def _board(self, s: Session, cohort: Cohort, exercise: str, lesson_key: str, lesson_title: str, *,
               viewer: str | None = None, show_ids: bool = False, public: bool = False) -> Board:
        entries = self._ranked(s, cohort, exercise, viewer=None if public else viewer)
        mine = self._membership(s, cohort, viewer) if viewer else None
        your_best = None
        if viewer:
            your_best = s.scalar(select(Submission.train_seconds).where(
                *self._counting(cohort, exercise), Submission.user_id == viewer).order_by(
                Submission.train_seconds, Submission.created_at, Submission.id).limit(1))
        return Board(cohort_name=cohort.name, channel_id=cohort.channel_id, channel_name=cohort.channel_name,
                     exercise=exercise, lesson_key=lesson_key, lesson_title=lesson_title, entries=tuple(entries),
                     show_ids=show_ids and not public, public=public,
                     your_mode=mine.leaderboard_mode if mine is not None and mine.left_at is None else None,
                     your_best=your_best)

    @staticmethod
    def _counting(cohort: Cohort, exercise: str) -> tuple:
        return (Submission.cohort_id == cohort.id, Submission.exercise_id == exercise, Submission.status == "passed",
                Submission.lane == "ranked", Submission.disqualified_at.is_(None),
                Submission.train_seconds.is_not(None))

    def _ranked(self, s: Session, cohort: Cohort, exercise: str, *, viewer: str | None = None,
                exclude: int | None = None) -> list[Entry]:
        """Each current, non-hidden member's best counting submission; fastest first, ties to the earlier."""
        best = self._best(s, cohort, exercise, exclude=exclude)
        labels = self._pseudonyms(s, cohort) if any(m.leaderboard_mode == "anonymous" for _, m in best) else {}
        entries = []
        for rank, (submission, membership) in enumerate(best, start=1):
            named = membership.leaderboard_mode == "named"
            entries.append(Entry(
                rank=rank, submission_id=submission.id,
                label=submission.user_id if named else labels[membership.id], user_id=submission.user_id if named else None,
                seconds=submission.train_seconds, accuracy=submission.accuracy, speed_ratio=submission.speed_ratio,
                created_at=submission.created_at, is_you=viewer is not None and submission.user_id == viewer))
        return entries

    def _best(self, s: Session, cohort: Cohort, exercise: str,
              exclude: int | None = None) -> list[tuple[Submission, Membership]]:
        rows = s.execute(select(Submission, Membership).join(Membership, (Membership.cohort_id == Submission.cohort_id)
                                                             & (Membership.user_id == Submission.user_id)).where(
            *self._counting(cohort, exercise), Membership.left_at.is_(None), Membership.leaderboard_mode != "hidden",
        ).order_by(Submission.train_seconds, Submission.created_at, Submission.id)).all()
        best: dict[str, tuple[Submission, Membership]] = {}
        for submission, membership in rows:  # already in board order: the first per learner is their best
            if submission.id != exclude and submission.user_id not in best:
                best[submission.user_id] = (submission, membership)
        return list(best.values())

    def _csv(self, s: Session, cohort: Cohort, exercise: str) -> tuple[str, bytes, int]:
        modes = {m.user_id: m.leaderboard_mode for m in s.scalars(select(Membership).where(
            Membership.cohort_id == cohort.id, Membership.left_at.is_(None)))}
        ranks = {e.submission_id: e.rank for e in self._ranked(s, cohort, exercise)}
        submissions = s.scalars(select(Submission).where(
            Submission.cohort_id == cohort.id, Submission.exercise_id == exercise).order_by(Submission.created_at,
                                                                                             Submission.id))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([name for name, _ in CSV_COLUMNS])
        rows = 0
        for sub in submissions:
            rows += 1
            writer.writerow([_cell(v) for v in (
                sub.id, cohort.name, sub.exercise_id, sub.user_id, modes.get(sub.user_id, ""), _iso(sub.created_at),
                _iso(sub.finished_at), sub.source, sub.lane, sub.status, sub.accuracy, sub.train_seconds,
                sub.speed_ratio, ranks.get(sub.id, ""), _iso(sub.disqualified_at), sub.disqualified_by,
                sub.disqualified_reason, sub.regrade_of, sub.notebook_sha256, sub.filename)])
        stamp = self.clock.now().strftime("%Y%m%d-%H%M")
        return f"{cohort.name}-{exercise}-submissions-{stamp}.csv", buffer.getvalue().encode("utf-8"), rows

    def _cohort(self, s: Session, user_id: str, name: str | None, organizer_fallback: bool = False) -> Cohort:
        if name:
            return self.cohorts._get(s, name)
        if organizer_fallback and not self.cohorts._member_cohorts(s, user_id):
            organized = list(s.scalars(select(Cohort).join(CohortOrganizer).where(
                CohortOrganizer.user_id == user_id).order_by(Cohort.name)))
            if len(organized) == 1:
                return organized[0]
            if organized:
                raise FieldError("name", "You organize several cohorts: name one, e.g. "
                                 f"`{organized[0].name}`. Yours: {', '.join(c.name for c in organized)}.")
            raise FieldError("name", "Name the cohort: `/study export EXERCISE COHORT`.")
        return self.cohorts._only_cohort_of(s, user_id)

    @staticmethod
    def _pseudonyms(s: Session, cohort: Cohort) -> dict[int, str]:
        return _pseudonyms(cohort.id, list(s.scalars(select(Membership).where(
            Membership.cohort_id == cohort.id, Membership.leaderboard_mode == "anonymous").order_by(Membership.id))))

    @staticmethod
    def _membership(s: Session, cohort: Cohort, user_id: str) -> Membership | None:
        return s.scalar(select(Membership).where(Membership.cohort_id == cohort.id, Membership.user_id == user_id,
                                                 Membership.left_at.is_(None)))

    def _curriculum(self, cohort: Cohort) -> Curriculum:
        return get_curriculum(cohort.curriculum_id, self.curricula_dir)

    def _lesson_of(self, cohort: Cohort, exercise: str):
        return next((lesson for lesson in self._curriculum(cohort).lessons if lesson.exercise == exercise), None)

    def _exercise(self, cohort: Cohort, raw: str):
        wanted = (raw or "").strip().lower()
        lesson = self._lesson_of(cohort, wanted) if wanted else None
        if lesson is None:
            known = [l.exercise for l in self._curriculum(cohort).lessons if l.exercise]
            raise FieldError("exercise", f"{cohort.name} has no exercise {raw!r}. Its exercises: "
                             f"{', '.join(known) or 'none'}.", value=raw)
        return wanted, lesson

    def _require_organizer(self, user_id: str, cohort: Cohort | None, action: str) -> None:
        if cohort is None:
            if not self.chat.is_workspace_admin(user_id):
                raise PermissionDenied(f"Only workspace admins can {action} outside a cohort.", action=action)
            return
        self.cohorts._require_organizer(user_id, cohort, action)

    def _organizer_submission(self, s: Session, user_id: str, number: int, action: str):
        submission = s.get(Submission, number)
        if submission is None:
            if not self.cohorts.is_any_organizer(user_id):  # learners learn nothing about which ids exist
                raise PermissionDenied(f"Only organizers can {action}.", action=action)
            raise NotFound(f"There is no submission {number}.", submission=number)
        cohort = s.get(Cohort, submission.cohort_id) if submission.cohort_id is not None else None
        self._require_organizer(user_id, cohort, action)
        return submission, cohort

    @staticmethod
    def _info(submission: Submission, cohort: Cohort | None, **extra) -> SubmissionInfo:
        return SubmissionInfo(id=submission.id, user_id=submission.user_id, exercise=submission.exercise_id,
                              cohort_name=cohort.name if cohort else None, status=submission.status,
                              seconds=submission.train_seconds, **extra)

    def _tell_learner(self, info: SubmissionInfo, action: str) -> None:
        try:
            self.chat.dm(info.user_id, render("disqualified", info=info, action=action, to_learner=True))
        except ChatError:
            log.warning("could not tell %s that submission %s was %s", info.user_id, info.id, action)

    def _schedule_view(self, cohort: Cohort) -> dict[str, Any]:
        return {"name": cohort.name, "channel_id": cohort.channel_id, "channel_name": cohort.channel_name,
                "timezone": cohort.timezone,
                "weekday": (validation.weekday_name(cohort.leaderboard_weekday)
                            if cohort.leaderboard_weekday is not None else None),
                "time": cohort.leaderboard_time}


def parse_submission_id(raw: Any) -> int:
    text = str(raw if raw is not None else "").strip().lstrip("#")
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise FieldError("submission", f"{raw!r} is not a submission id: give the number, e.g. `42` "
                         "(organizers see ids on `/study leaderboard` and in `/study export`).", value=raw)
    return int(text)


def _pseudonyms(cohort_id: int, memberships: list[Membership]) -> dict[int, str]:
    """A stable name per anonymous membership (the same on every board of the cohort), no user id in it."""
    names: dict[int, str] = {}
    for membership in memberships:
        digest = hashlib.sha256(f"studybot-anonymous:{cohort_id}:{membership.id}".encode()).hexdigest()
        names[membership.id] = f"anonymous {ANIMALS[int(digest[:8], 16) % len(ANIMALS)]}"
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    for membership_id, name in names.items():
        if counts[name] > 1:  # two learners drew the same animal: tell them apart, still stably
            digest = hashlib.sha256(f"studybot-anonymous:{cohort_id}:{membership_id}".encode()).hexdigest()
            names[membership_id] = f"{name} {digest[8:12]}"
    return names


def _public_entry(entry: Entry) -> dict[str, Any]:
    return {"label": entry.label, "user_id": entry.user_id, "seconds": entry.seconds, "accuracy": entry.accuracy,
            "speed_ratio": entry.speed_ratio, "submission_id": entry.submission_id}


def _week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def _cell(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ as formulas: quote user-typed text that does."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
