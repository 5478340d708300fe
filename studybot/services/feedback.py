"""Results flow back: one DM message per submission, edited in place as it moves along
(queued → running run k of N → result), and a channel post when a record falls.

Workers never talk to Slack: they write progress and results to the database, and the clock
process (and the shell) call ``Feedback.tick()`` to show them. Editing is idempotent, so two
callers at once only cost an extra edit; the side effects of a result (the run plot, the record
post) happen once, for whichever caller wins the conditional UPDATE of notified_state.

A record post must also survive a crash or a Slack error after that UPDATE: it is a deliveries row
(kind 'record', lesson_key 'sub<submission id>') posted by the exactly-once poster (services/posting.py);
each tick retries the ones that failed, while they are still records.

A record is posted only once it is verified (services/verification.py): a record candidate first gets
a re-run on new seeds; each tick settles finished re-runs, and a verified candidate that is still a
record is posted then. A flagged result (review_state 'flagged') is never a candidate until approved."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import or_, select, true, update

from studybot.time_source import Clock
from studybot.db.engine import UNSEEN_BY_CACHED_ANSWERS, Database
from studybot.db.models import Cohort, Delivery, GradingJob, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.eta import Estimate, QueueEstimates
from studybot.services.posting import ExactlyOncePoster
from studybot.services.verification import DISAGREED, VERIFIED, Verification, flags_of
from studybot.services.workspaces import for_each_team

log = logging.getLogger(__name__)

BATCH = 100  # submissions looked at per tick
QUEUED_REFRESH_SECONDS = 30.0  # a queued message's "about N min" is looked at again this often (s) ...
QUEUED_REFRESH_BATCH = 20      # ... this many per tick at most, in a batch of their own (never crowding out results)
UPDATE_BACKOFF_SECONDS = 10.0  # after a failed edit, the first wait before the next try; doubles per failure
UPDATE_BACKOFF_MAX_SECONDS = 600.0  # the longest wait between tries of one message
FINAL_PREFIX = "done:"
RECORD_KIND = "record"  # deliveries.kind of a "new record" channel post


LOST_PREFIX = "running:lost:"  # notified_state of a running job whose worker's lease ran out (then: attempt)


def worker_lost(job: GradingJob | None, now) -> bool:
    """A running job whose lease has expired: its worker stopped heartbeating (died, froze, lost the network)."""
    return (job is not None and now is not None and job.status == "running" and job.lease_expires_at is not None
            and job.lease_expires_at < now)


def record_key(submission_id: int) -> str:
    """deliveries.lesson_key of the record post of one submission (16 characters at most)."""
    return f"sub{submission_id}"


def state_of(submission: Submission, job: GradingJob | None, estimate: Estimate | None = None,
             now=None) -> str:
    """What the learner's message shows, as a short key: a change of key means an edit. A queued
    message changes with its estimate's minutes; a running one when it turns "still working", and
    when its worker is lost (the lease ran out: another worker will take it over)."""
    if submission.status == "queued":
        return f"queued:{estimate.minutes}" if estimate is not None else "queued"
    if submission.status == "running":
        if worker_lost(job, now):
            return f"{LOST_PREFIX}{job.attempts}"
        progress = json.loads(job.progress) if job is not None and job.progress else {}
        late = ":late" if estimate is not None and QueueEstimates.still_working(estimate) else ""
        return f"running:{progress.get('run', 0)}/{progress.get('runs', '?')}{late}"
    return f"{FINAL_PREFIX}{submission.status}"


class Feedback:
    def __init__(self, db: Database, chat: Chat, clock: Clock, submissions, leaderboards=None,
                 poster: ExactlyOncePoster | None = None, verification: Verification | None = None) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.submissions, self.leaderboards = submissions, leaderboards
        self.poster = poster or ExactlyOncePoster(db, chat, clock)
        self.verification = verification or Verification(db, clock, submissions.queue)
        self.estimates = QueueEstimates(db, clock)
        self._queued_seen: dict[int, float] = {}  # queued submission id -> clock time its estimate was last looked at
        # submission id -> (clock time of the next try, failures so far); per process on purpose: a
        # restarted clock process simply tries every message once more
        self._backoff: dict[int, tuple[float, int]] = {}

    def tick(self) -> list[tuple[int, str]]:
        """Bring every open submission's message up to date; returns (submission id, new state).

        Record posts that failed (or whose process died) are tried again first, then finished
        verification re-runs are settled (a verified record candidate is posted then). For every workspace
        (services/workspaces.py)."""
        return [change for changes in for_each_team(self.db, self._tick, "feedback") for change in changes]

    def _tick(self) -> list[tuple[int, str]]:
        self._retry_records()
        self._settle_verifications()
        changed = []
        now = self.clock.now().timestamp()
        waiting = [sid for sid, (at, _) in self._backoff.items() if at > now]
        with self.db.session() as s:
            # Messages that may have to change: rows waiting out a failed edit sit out, and queued jobs
            # already shown as queued come in a small batch of their own (their estimate moves slowly),
            # looked at every QUEUED_REFRESH_SECONDS. So neither a long queue nor failing rows can keep
            # a finished result out of the batch.
            shown_queued = (Submission.status == "queued") & Submission.notified_state.startswith("queued")
            open_rows = (Submission.dm_channel.is_not(None),
                         or_(Submission.notified_state.is_(None), ~Submission.notified_state.startswith(FINAL_PREFIX)),
                         Submission.id.not_in(waiting) if waiting else true())
            rows = s.execute(select(Submission, GradingJob).outerjoin(
                GradingJob, GradingJob.submission_id == Submission.id).where(
                *open_rows, ~shown_queued).order_by(Submission.id).limit(BATCH)).all()
            recent = [sid for sid, at in self._queued_seen.items() if now - at < QUEUED_REFRESH_SECONDS]
            rows += s.execute(select(Submission, GradingJob).outerjoin(
                GradingJob, GradingJob.submission_id == Submission.id).where(
                *open_rows, shown_queued, Submission.id.not_in(recent) if recent else true(),
            ).order_by(Submission.id).limit(QUEUED_REFRESH_BATCH)).all()
            for submission, job in rows:
                s.expunge(submission)
                if job is not None:
                    s.expunge(job)
        for submission, job in rows:
            estimate = self.estimates.estimate(submission.id) if submission.status in ("queued", "running") else None
            if submission.status == "queued":
                self._queued_seen[submission.id] = now
            else:
                self._queued_seen.pop(submission.id, None)
            state = state_of(submission, job, estimate, self.clock.now())
            if state == submission.notified_state:
                continue
            try:
                self.chat.update(submission.dm_channel, submission.dm_ts, self.message(submission, job, estimate))
                self._backoff.pop(submission.id, None)
            except ChatError as error:
                if not error.permanent:  # Slack or the network will recover: back off, then try again
                    self._back_off(submission.id, now)
                    log.warning("could not update the message of submission %s: %s", submission.id,
                                error.message)
                    continue
                # The same edit will be refused forever (invalid_blocks, the DM gone): give this state
                # up, so it is never retried, and still do what the result needs (plot, record).
                log.error("gave up showing submission %s as %s: %s", submission.id, state, error.message)
            with self.db.session() as s:
                # which state a DM shows is in no cached answer (/study lesson, schedule, status)
                s.info[UNSEEN_BY_CACHED_ANSWERS] = True
                won = s.execute(update(Submission).where(
                    Submission.id == submission.id,
                    Submission.notified_state.is_(None) if submission.notified_state is None
                    else Submission.notified_state == submission.notified_state,
                ).values(notified_state=state)).rowcount == 1
            if won:
                changed.append((submission.id, state))
                if state.startswith(FINAL_PREFIX):
                    self._after_result(submission)
                elif state.startswith(LOST_PREFIX):
                    self._tell_organizers_of_lost_worker(submission, job)
        return changed

    def _back_off(self, submission_id: int, now: float) -> None:
        """This process waits before editing the message again: 10 s, doubling, at most 10 min."""
        _, failures = self._backoff.get(submission_id, (0.0, 0))
        wait = min(UPDATE_BACKOFF_SECONDS * 2 ** failures, UPDATE_BACKOFF_MAX_SECONDS)
        self._backoff[submission_id] = (now + wait, failures + 1)

    def message(self, submission: Submission, job: GradingJob | None, estimate: Estimate | None = None):
        return render("submission", **self.context(submission, job, estimate))

    def context(self, submission: Submission, job: GradingJob | None, estimate: Estimate | None = None) -> dict[str, Any]:
        """What submission.j2 needs; `estimate` is looked up when not given (queued or running)."""
        if estimate is None and submission.status in ("queued", "running"):
            estimate = self.estimates.estimate(submission.id)
        result = json.loads(submission.result_json) if submission.result_json else None
        progress = json.loads(job.progress) if job is not None and job.progress else {}
        rank = None
        if self.leaderboards is not None and submission.status == "passed" and submission.cohort_id:
            rank = self.leaderboards.rank_of(submission.id)
        return dict(
            submission=submission, result=result, progress=progress,
            position=self.submissions.queue.position(submission.id) if submission.status == "queued" else None,
            quota_left=self.submissions.quota_left(submission.user_id, submission.exercise_id, submission.lane),
            daily_quota=self.submissions.quota_of(submission.lane), rank=rank,
            last_error=job.last_error if job is not None else None,
            refunded=submission.status in self.submissions.REFUNDED_STATUSES,
            under_review=submission.review_state == "flagged", flags=flags_of(submission),
            eta=estimate, still_working=estimate is not None and QueueEstimates.still_working(estimate),
            worker_lost=worker_lost(job, self.clock.now()),
            took_seconds=((submission.finished_at - submission.created_at).total_seconds()
                          if submission.finished_at and submission.created_at else None),
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
        if submission.status == "passed":
            self.consider_record(submission.id)

    def consider_record(self, submission_id: int) -> str | None:
        """A submission that may be a new record (just graded, approved, or just verified): post it if it is a
        record and verified; ask for its verification if it is a record and not verified yet.
        Returns 'posted', 'verifying' or None (not a record, or it cannot be verified)."""
        record = self.leaderboards.record_broken(submission_id) if self.leaderboards is not None else None
        if record is None:
            return None
        state = self.verification.request(submission_id)
        if state != VERIFIED:
            return "verifying" if state == "pending" else None
        with self.db.session() as s:
            cohort_id = s.scalar(select(Submission.cohort_id).where(Submission.id == submission_id))
        row_id = self.poster.claim_new(cohort_id=cohort_id, kind=RECORD_KIND, key=record_key(submission_id),
                                       due_at=self.clock.now())
        if row_id is None:  # posted already, or another caller is posting it
            return None
        self._post_record(row_id, submission_id, record)
        return "posted"

    def _settle_verifications(self) -> None:
        for settled in self.verification.settle():
            if settled.outcome == VERIFIED:
                self.consider_record(settled.original_id)
            elif settled.outcome == DISAGREED:
                self._tell_organizers_of_review(settled.original_id, settled.note)

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
            pending = s.execute(select(Delivery.id, Delivery.lesson_key).join(Cohort).where(  # the team's only
                Delivery.kind == RECORD_KIND, Delivery.status == "pending").order_by(Delivery.id)).all()
        for row_id, key in pending:
            submission_id = int(key.removeprefix("sub"))
            record = self.leaderboards.record_broken(submission_id)
            if record is None:  # beaten or disqualified since: no longer news
                self.poster.skip(row_id, note="no longer a record")
            elif self.poster.claim(row_id):
                self._post_record(row_id, submission_id, record)

    def _tell_organizers_of_review(self, submission_id: int, note: str | None) -> None:
        """A verification re-run disagreed: the entry is held for review; the organizers hear it once."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            cohort = s.get(Cohort, submission.cohort_id) if submission.cohort_id else None
            organizers = [o.user_id for o in cohort.organizers] if cohort else []
            message = render("review_needed", submission_id=submission.id, user_id=submission.user_id,
                             exercise=submission.exercise_id, cohort_name=cohort.name if cohort else None, note=note)
        for organizer in organizers:
            try:
                self.chat.dm(organizer, message)
            except ChatError as error:
                log.warning("could not tell organizer %s about the review of submission %s: %s", organizer,
                            submission_id, error.message)

    def _tell_organizers_of_lost_worker(self, submission: Submission, job: GradingJob) -> None:
        """Once per lost attempt (the state key carries it): the organizers can look at that machine."""
        with self.db.session() as s:
            cohort = s.get(Cohort, submission.cohort_id) if submission.cohort_id else None
            organizers = [o.user_id for o in cohort.organizers] if cohort else []
            silent = self.clock.now() - (job.lease_expires_at - self.submissions.queue.lease)
            minutes, seconds = divmod(int(silent.total_seconds()), 60)
            message = render("worker_lost", submission=submission, cohort_name=cohort.name if cohort else None,
                             worker=job.lease_owner, attempts=job.attempts, max_attempts=job.max_attempts,
                             since=f"{minutes} min {seconds} s" if minutes else f"{seconds} s")
        for organizer in organizers:
            try:
                self.chat.dm(organizer, message)
            except ChatError as error:
                log.warning("could not tell organizer %s about the lost worker of submission %s: %s", organizer,
                            submission.id, error.message)

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
