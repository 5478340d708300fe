"""Taking in a learner's notebook: check it, store it once by hash, queue it fairly, within quota.

Transport-neutral: Slack (studybot/slack/events) downloads the upload and calls ``submit``; the
shell reads a file and calls the same. Nothing is stored unless every check passes."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from studybot.time_source import Clock
from studybot.curricula import load_curricula
from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, GradingJob, Membership, Notebook, Submission, SubmitIntent
from studybot.errors import Conflict, FieldError, InputError, NotFound
from studybot.queue import JobQueue
from studybot.services.accommodations import extra_quota

log = logging.getLogger(__name__)

MAX_NOTEBOOK_BYTES = 5 * 1024 * 1024  # larger uploads are refused before they are stored
INTENT_TTL = timedelta(minutes=30)  # `/study submit EXERCISE` waits this long for the upload
LANES = ("ranked", "check")
CHECK_QUOTA_FACTOR = 4  # a day's `/study check` runs per exercise, as a multiple of the daily (ranked) quota


@dataclass(frozen=True)
class Accepted:
    submission_id: int
    exercise_id: str
    position: int | None  # place in the queue, 1 = next
    quota_left: int
    duplicate: bool = False  # the same upload arrived twice (a retried Slack event)


@dataclass(frozen=True)
class Regraded:
    submission_id: int  # the new submission
    regrade_of: int
    position: int | None  # its place in the queue, when known


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def check_size(size: int, name: str, max_bytes: int = MAX_NOTEBOOK_BYTES) -> None:
    if size > max_bytes:
        raise InputError(f"{name} is {_size(size)}; the limit is {_size(max_bytes)}. "
                         "Clear the outputs (Edit → Clear all outputs) and send it again.")


def check_notebook(content: bytes, filename: str | None = None, content_type: str | None = None,
                   max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """The upload really is a Jupyter notebook; otherwise InputError saying what it is instead."""
    name = filename or "the file"
    if filename and not filename.lower().endswith(".ipynb"):
        raise InputError(f"{name} is not a notebook: send a .ipynb file (File → Download → .ipynb in Jupyter).")
    check_size(len(content), name, max_bytes)
    if (content_type or "").startswith("text/html") or content.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        raise InputError(f"Slack sent a web page instead of {name}: the bot may lack the files:read scope. "
                         "Tell your organizer.")
    try:
        notebook = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{name} is not valid notebook JSON ({error.__class__.__name__}: {str(error)[:80]}).") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list) \
            or not isinstance(notebook.get("nbformat"), int):
        raise InputError(f"{name} is JSON but not a Jupyter notebook (no nbformat and cells).")
    if notebook["nbformat"] < 4:
        raise InputError(f"{name} uses notebook format {notebook['nbformat']}; save it with a current Jupyter (format 4).")
    return notebook


def known_exercises(curricula_dir: Path | None = None) -> list[str]:
    ids = {lesson.exercise for c in load_curricula(curricula_dir).values() for lesson in c.lessons if lesson.exercise}
    return sorted(ids)


class Submissions:
    # Jobs that ended in the machine's fault, not the learner's: they give their quota back.
    REFUNDED_STATUSES = ("infra_error", "dead")

    def __init__(self, db: Database, clock: Clock, queue: JobQueue, daily_quota: int = 5,
                 curricula_dir: Path | None = None, max_bytes: int = MAX_NOTEBOOK_BYTES) -> None:
        self.db, self.clock, self.queue = db, clock, queue
        self.daily_quota, self.curricula_dir, self.max_bytes = daily_quota, curricula_dir, max_bytes

    def exercise(self, raw: str) -> str:
        exercise_id = (raw or "").strip().lower()
        known = known_exercises(self.curricula_dir)
        if exercise_id not in known:
            raise FieldError("exercise", f"There is no exercise {raw!r}. Exercises: {', '.join(known)}.", value=raw)
        return exercise_id

    def intend(self, user_id: str, raw_exercise: str, lane: str = "ranked") -> str:
        """`/study submit EXERCISE`: the next upload from this learner is for that exercise."""
        exercise_id = self.exercise(raw_exercise)
        self._check_quota(user_id, exercise_id, lane)
        with self.db.session() as s:
            intent = self._intent(s, user_id) or SubmitIntent(user_id=user_id)
            intent.exercise_id, intent.lane, intent.created_at = exercise_id, lane, self.clock.now()
            s.add(intent)
        return exercise_id

    def submit(self, user_id: str, content: bytes, *, filename: str | None, exercise: str | None = None,
               content_type: str | None = None, source: str = "slack", slack_file_id: str | None = None,
               lane: str | None = None) -> Accepted:
        if slack_file_id:
            existing = self._by_file(slack_file_id)
            if existing is not None:
                return existing
        check_notebook(content, filename, content_type, self.max_bytes)
        exercise_id, lane = self._choose_exercise(user_id, exercise, lane)
        quota_left = self._check_quota(user_id, exercise_id, lane)
        digest = hashlib.sha256(content).hexdigest()
        now = self.clock.now()
        try:
            with self.db.session() as s:
                if s.get(Notebook, digest) is None:
                    s.add(Notebook(sha256=digest, content=content, size=len(content), created_at=now))
                submission = Submission(
                    user_id=user_id, exercise_id=exercise_id, status="queued", created_at=now,
                    cohort_id=self._cohort_for(s, user_id, exercise_id, self.curricula_dir), notebook_sha256=digest,
                    filename=(filename or "notebook.ipynb")[:255], source=source, lane=lane,
                    slack_file_id=slack_file_id)
                s.add(submission)
                s.flush()
                job = self.queue.enqueue(s, submission)
                s.query(SubmitIntent).filter(SubmitIntent.user_id == user_id).delete()
                submission_id, job_id = submission.id, job.id
        except IntegrityError:
            # The same Slack file raced in twice (message + file_shared, or a retry): one wins.
            existing = self._by_file(slack_file_id) if slack_file_id else None
            if existing is None:
                raise
            return existing
        return Accepted(submission_id, exercise_id, self.queue.position(submission_id), quota_left - 1)

    def regrade(self, submission_id: int) -> Regraded:
        """A new submission of the same stored notebook (source 'regrade'), queued for grading.

        Re-grades do not count against the daily quota. Who may ask is the caller's to check
        (services/moderation.py); Conflict while the original, or a re-grade of it, is being graded."""
        with self.db.session() as s:
            original = s.get(Submission, submission_id)
            if original is None:
                raise NotFound(f"There is no submission {submission_id}.", submission=submission_id)
            if original.notebook_sha256 is None:
                raise Conflict(f"Submission {submission_id} has no stored notebook to grade again.")
            if original.status in ("queued", "running"):
                raise Conflict(f"Submission {submission_id} is still being graded ({original.status}).")
            pending = s.scalar(select(Submission.id).where(
                Submission.regrade_of == submission_id, Submission.status.in_(("queued", "running"))))
            if pending is not None:
                raise Conflict(f"Submission {submission_id} is already being re-graded as submission {pending}.")
            submission = Submission(
                user_id=original.user_id, exercise_id=original.exercise_id, status="queued",
                created_at=self.clock.now(), cohort_id=original.cohort_id, notebook_sha256=original.notebook_sha256,
                filename=original.filename, source="regrade", lane=original.lane, regrade_of=original.id)
            s.add(submission)
            s.flush()
            self.queue.enqueue(s, submission)
            new_id = submission.id
        position = None
        try:
            position = self.queue.position(new_id)
        except Exception:  # the queue position is a nicety in the reply
            log.debug("no queue position for %s", new_id, exc_info=True)
        return Regraded(new_id, submission_id, position)

    def attach_message(self, submission_id: int, channel_id: str, ts: str, state: str) -> None:
        """Remember the DM message to edit as the submission moves along (see services/feedback.py)."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            submission.dm_channel, submission.dm_ts, submission.notified_state = channel_id, ts, state

    def quota_left(self, user_id: str, exercise_id: str, lane: str = "ranked") -> int:
        with self.db.session() as s:
            used = s.scalar(select(func.count()).select_from(Submission).where(
                Submission.user_id == user_id, Submission.exercise_id == exercise_id, Submission.lane == lane,
                Submission.source.not_in(("regrade", "verify")), Submission.created_at >= self._day_start(),
                Submission.status.not_in(self.REFUNDED_STATUSES)))
            # An organizer's raise for today (`/study quota @user +N`) counts for ranked submissions.
            extra = extra_quota(s, user_id, exercise_id, self._day_start().date()) if lane == "ranked" else 0
        return max(0, self.quota_of(lane) + extra - (used or 0))

    def quota_of(self, lane: str) -> int:
        """A day's submissions per exercise in a lane: checks are quick and unranked, so they get more."""
        return self.daily_quota * CHECK_QUOTA_FACTOR if lane == "check" else self.daily_quota

    # ---- internals -------------------------------------------------------------------------

    @staticmethod
    def _intent(s: Session, user_id: str) -> SubmitIntent | None:
        """The learner's intent in this workspace (the team in scope: db/scoping.py)."""
        return s.scalar(select(SubmitIntent).where(SubmitIntent.user_id == user_id))

    def _day_start(self) -> datetime:
        now = self.clock.now()
        return now.replace(hour=0, minute=0, second=0, microsecond=0)

    def _check_quota(self, user_id: str, exercise_id: str, lane: str) -> int:
        left = self.quota_left(user_id, exercise_id, lane)
        if left <= 0:
            reopens = self._day_start() + timedelta(days=1) - self.clock.now()
            hours, minutes = divmod(int(reopens.total_seconds() // 60), 60)
            what = "checks" if lane == "check" else "submissions"
            raise InputError(f"You have used all {self.quota_of(lane)} {exercise_id} {what} for today. "
                             f"The next one opens at 00:00 UTC, in {hours} h {minutes} min.",
                             exercise=exercise_id)
        return left

    def _choose_exercise(self, user_id: str, exercise: str | None, lane: str | None) -> tuple[str, str]:
        """Named in the message; else the learner's `/study submit` intent; else this week's exercise."""
        with self.db.session() as s:
            intent = self._intent(s, user_id)
            if exercise and exercise.strip():
                named = self.exercise(exercise.split()[0])
                # `/study check digits`, then the upload's text says "digits": still the check
                fresh = (intent is not None and intent.exercise_id == named
                         and self.clock.now() - intent.created_at <= INTENT_TTL)
                return named, lane or (intent.lane if fresh else "ranked")
            if intent is not None and self.clock.now() - intent.created_at <= INTENT_TTL:
                return intent.exercise_id, lane or intent.lane
            current = self._current_exercises(s, user_id)
        if len(current) == 1:
            return current[0], lane or "ranked"
        known = ", ".join(known_exercises(self.curricula_dir))
        raise FieldError("exercise", "Which exercise is this notebook for? Send it again with the exercise id as "
                         f"the message (one of: {known}), or run `/study submit EXERCISE` first.")

    def _current_exercises(self, s, user_id: str) -> list[str]:
        """The exercise of the latest posted lesson that has one, in each of the learner's cohorts."""
        found = []
        cohorts = s.scalars(select(Cohort).join(Membership).where(
            Membership.user_id == user_id, Membership.left_at.is_(None)))
        curricula = load_curricula(self.curricula_dir)
        for cohort in cohorts:
            posted = {d.lesson_key for d in s.scalars(select(Delivery).where(
                Delivery.cohort_id == cohort.id, Delivery.kind == "lesson", Delivery.status == "sent"))}
            lessons = [l for l in curricula[cohort.curriculum_id].lessons if l.key in posted and l.exercise]
            if lessons:
                found.append(lessons[-1].exercise)
        return sorted(set(found))

    @staticmethod
    def _cohort_for(s, user_id: str, exercise_id: str, curricula_dir: Path | None) -> int | None:
        """The learner's cohort whose curriculum has this exercise (the first, if several)."""
        for cohort in s.scalars(select(Cohort).join(Membership).where(
                Membership.user_id == user_id, Membership.left_at.is_(None)).order_by(Cohort.id)):
            curriculum = load_curricula(curricula_dir).get(cohort.curriculum_id)
            if curriculum and any(lesson.exercise == exercise_id for lesson in curriculum.lessons):
                return cohort.id
        return None

    def _by_file(self, slack_file_id: str) -> Accepted | None:
        with self.db.session() as s:
            submission = s.scalar(select(Submission).where(Submission.slack_file_id == slack_file_id))
            if submission is None:
                return None
            return Accepted(submission.id, submission.exercise_id, self.queue.position(submission.id),
                            self.quota_left(submission.user_id, submission.exercise_id, submission.lane),
                            duplicate=True)

    def history(self, user_id: str, limit: int = 5) -> list[Submission]:
        """The learner's latest submissions, newest first."""
        with self.db.session() as s:
            rows = list(s.scalars(select(Submission).where(Submission.user_id == user_id)
                                  .order_by(Submission.id.desc()).limit(limit)))
            for row in rows:
                s.expunge(row)
            return rows

    def best(self, user_id: str) -> list[Submission]:
        """Per exercise, the learner's fastest passing submission (not disqualified), by exercise id."""
        with self.db.session() as s:
            passing = s.scalars(select(Submission).where(
                Submission.user_id == user_id, Submission.status == "passed", Submission.disqualified_at.is_(None),
                Submission.lane != "verify", Submission.rank_seconds.is_not(None))
                .order_by(Submission.exercise_id, Submission.rank_seconds, Submission.id))
            best: dict[str, Submission] = {}
            for row in passing:
                best.setdefault(row.exercise_id, row)
            for row in best.values():
                s.expunge(row)
            return list(best.values())

    def get(self, submission_id: int) -> Submission:
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            if submission is None:
                raise NotFound(f"There is no submission {submission_id}.")
            s.expunge(submission)
            return submission

    def job(self, submission_id: int) -> GradingJob | None:
        with self.db.session() as s:
            job = s.scalar(select(GradingJob).where(GradingJob.submission_id == submission_id))
            if job is not None:
                s.expunge(job)
            return job
