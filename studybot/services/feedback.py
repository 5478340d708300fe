"""Results flow back: one DM message per submission, edited in place as it moves along
(queued → running run k of N → result), and a channel post when a record falls.

Workers never talk to Slack: they write progress and results to the database, and the clock
process (and the shell) call ``Feedback.tick()`` to show them. Editing is idempotent, so two
callers at once only cost an extra edit; the side effects of a result (the run plot, the record
post) happen once, for whichever caller wins the conditional UPDATE of notified_state."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import or_, select, update

from studybot.time_source import Clock
from studybot.db.engine import Database
from studybot.db.models import Cohort, GradingJob, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.ports import Chat

log = logging.getLogger(__name__)

BATCH = 100  # submissions looked at per tick
FINAL_PREFIX = "done:"


def state_of(submission: Submission, job: GradingJob | None) -> str:
    """What the learner's message shows, as a short key: a change of key means an edit."""
    if submission.status == "queued":
        return "queued"
    if submission.status == "running":
        progress = json.loads(job.progress) if job is not None and job.progress else {}
        return f"running:{progress.get('run', 0)}/{progress.get('runs', '?')}"
    return f"{FINAL_PREFIX}{submission.status}"


class Feedback:
    def __init__(self, db: Database, chat: Chat, clock: Clock, submissions, leaderboards=None) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.submissions, self.leaderboards = submissions, leaderboards

    def tick(self) -> list[tuple[int, str]]:
        """Bring every open submission's message up to date; returns (submission id, new state)."""
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
                try:
                    self.chat.post(record["channel_id"], render("leaderboard_record", **record))
                except ChatError as error:
                    log.warning("could not post the record of submission %s: %s", submission.id, error.message)

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
