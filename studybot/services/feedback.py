"""Results flow back: one DM message per submission, edited in place as it moves along
(queued → running run k of N → result), and a channel post when a record falls.

Workers never talk to Slack: they write progress and results to the database, and the clock
process (and the shell) call ``Feedback.tick()`` to show them. Editing is idempotent, so two
callers at once only cost an extra edit; the side effects of a result (the run plot, the record
post) happen once, for whichever caller wins the conditional UPDATE of notified_state.

A record post must also survive a crash or a Slack error after that UPDATE: it is a deliveries row
(kind 'record', lesson_key 'sub<submission id>') posted by the exactly-once poster (services/posting.py);
each tick retries the ones that failed, while they are still records."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import or_, select, update

from studybot.time_source import Clock
from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, GradingJob, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.posting import ExactlyOncePoster

log = logging.getLogger(__name__)

BATCH = 100  # submissions looked at per tick
FINAL_PREFIX = "done:"
RECORD_KIND = "record"  # deliveries.kind of a "new record" channel post


def record_key(submission_id: int) -> str:
    """deliveries.lesson_key of the record post of one submission (16 characters at most)."""
    return f"sub{submission_id}"


def state_of(submission: Submission, job: GradingJob | None) -> str:
    """What the learner's message shows, as a short key: a change of key means an edit."""
    if submission.status == "queued":
        return "queued"
    if submission.status == "running":
        progress = json.loads(job.progress) if job is not None and job.progress else {}
        return f"running:{progress.get('run', 0)}/{progress.get('runs', '?')}"
    return f"{FINAL_PREFIX}{submission.status}"


class Feedback:
    def __init__(self, db: Database, chat: Chat, clock: Clock, submissions, leaderboards=None,
                 poster: ExactlyOncePoster | None = None) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.submissions, self.leaderboards = submissions, leaderboards
        self.poster = poster or ExactlyOncePoster(db, chat, clock)

    def tick(self) -> list[tuple[int, str]]:
        """Bring every open submission's message up to date; returns (submission id, new state).

        Record posts that failed (or whose process died) are tried again first."""
        self._retry_records()
        changed = []
        with self.db.session() as s:
            rows = s.execute(select(Submission, GradingJob).outerjoin(
                GradingJob, GradingJob.submission_id == Submission.id).where(
                Submission.dm_channel.is_not(None),
                or_(Submission.notified_state.is_(None), ~Submission.notified_state.startswith(FINAL_PREFIX)),
            ).order_by(Submission.id).limit(BATCH)).all()
            for submission, job in rows:
                s.expunge(submission)
                if job is not None:
                    s.expunge(job)
        for submission, job in rows:
            state = state_of(submission, job)
            if state == submission.notified_state:
                continue
            try:
                self.chat.update(submission.dm_channel, submission.dm_ts, self.message(submission, job))
            except ChatError as error:  # try again next tick; nothing is marked
                log.warning("could not update the message of submission %s: %s", submission.id, error.message)
                continue
            with self.db.session() as s:
                won = s.execute(update(Submission).where(
                    Submission.id == submission.id,
                    Submission.notified_state.is_(None) if submission.notified_state is None
                    else Submission.notified_state == submission.notified_state,
                ).values(notified_state=state)).rowcount == 1
            if won:
                changed.append((submission.id, state))
                if state.startswith(FINAL_PREFIX):
                    self._after_result(submission)
        return changed

    def message(self, submission: Submission, job: GradingJob | None):
        return render("submission", **self.context(submission, job))

    def context(self, submission: Submission, job: GradingJob | None) -> dict[str, Any]:
        result = json.loads(submission.result_json) if submission.result_json else None
        progress = json.loads(job.progress) if job is not None and job.progress else {}
        rank = None
        if self.leaderboards is not None and submission.status == "passed" and submission.cohort_id:
            rank = self.leaderboards.rank_of(submission.id)
        return dict(
            submission=submission, result=result, progress=progress,
            position=self.submissions.queue.position(submission.id) if submission.status == "queued" else None,
            quota_left=self.submissions.quota_left(submission.user_id, submission.exercise_id, submission.lane),
            daily_quota=self.submissions.daily_quota, rank=rank,
            last_error=job.last_error if job is not None else None,
        )

    def _after_result(self, submission: Submission) -> None:
        if submission.status == "dead":
            self._tell_organizers(submission)
            return
        with self.db.session() as s:
            plot = s.scalar(select(Submission.plot_png).where(Submission.id == submission.id))
        if plot:
            try:
                self.chat.upload_file(submission.user_id, f"submission-{submission.id}.png", plot,
                                      f"Your {submission.exercise_id} runs")
            except ChatError as error:
                log.warning("could not send the plot of submission %s: %s", submission.id, error.message)
        if submission.status == "passed" and self.leaderboards is not None:
            record = self.leaderboards.record_broken(submission.id)
            if record:
                row_id = self.poster.claim_new(cohort_id=submission.cohort_id, kind=RECORD_KIND,
                                               key=record_key(submission.id), due_at=self.clock.now())
                if row_id is not None:  # None: posted already, or another caller is posting it
                    self._post_record(row_id, submission.id, record)

    def _post_record(self, row_id: int, submission_id: int, record: dict[str, Any]) -> None:
        outcome = self.poster.post(row_id, record["channel_id"], lambda: render("leaderboard_record", **record))
        if outcome.status != "sent":
            log.warning("could not post the record of submission %s: %s (%s)", submission_id, outcome.error,
                        outcome.status)

    def _retry_records(self) -> None:
        """Record posts left pending by a failure, or stuck by a process that died, while still records."""
        if self.leaderboards is None:
            return
        self.poster.release_stuck((RECORD_KIND,))
        with self.db.session() as s:
            pending = s.execute(select(Delivery.id, Delivery.lesson_key).where(
                Delivery.kind == RECORD_KIND, Delivery.status == "pending").order_by(Delivery.id)).all()
        for row_id, key in pending:
            submission_id = int(key.removeprefix("sub"))
            record = self.leaderboards.record_broken(submission_id)
            if record is None:  # beaten or disqualified since: no longer news
                self.poster.skip(row_id, note="no longer a record")
            elif self.poster.claim(row_id):
                self._post_record(row_id, submission_id, record)

    def _tell_organizers(self, submission: Submission) -> None:
        """Infrastructure kept failing on this job: the people who can act on it hear about it once."""
        with self.db.session() as s:
            job = s.scalar(select(GradingJob).where(GradingJob.submission_id == submission.id))
            cohort = s.get(Cohort, submission.cohort_id) if submission.cohort_id else None
            organizers = [o.user_id for o in cohort.organizers] if cohort else []
            context = dict(submission=submission, cohort_name=cohort.name if cohort else None,
                           attempts=job.attempts if job else None, last_error=job.last_error if job else None)
        message = render("grading_dead", **context)
        for organizer in organizers:
            try:
                self.chat.dm(organizer, message)
            except ChatError as error:
                log.warning("could not tell organizer %s about dead job of submission %s: %s", organizer,
                            submission.id, error.message)
