"""Verified records: before a record post or a weekly board, the top entries are graded again.

A verification re-run is a submission in lane 'verify' (source 'verify', ``verifies`` = the original):
the same stored notebook, queued like any job, graded by a worker with new seeds. It never counts
against the quota (the quota counts the learner's own lane), is never on a board (boards rank lane
'ranked' only) and is never DM'd to the learner (it has no DM message). Its job carries
``avoid_worker``, the worker that graded the original, so another worker re-runs it when one is alive
(studybot/queue.py, VERIFY_AVOID_GRACE).

The original's ``verification`` moves: None -> pending (``request``) -> verified | disagreed
(``settle``), each step a conditional UPDATE so two callers at once (the clock process, the shell) act
once. The re-run agrees when it passed, raised no flags (unless an organizer approved the original, flags and
all), and it is not slower beyond noise: its interval's low end is within RERUN_SLOWDOWN_ALLOWANCE of the
original's high end. Anything else (below target, a crash, a re-run slower by multiples) is a disagreement: the
original is flagged for review with the re-run's evidence in review_note, and no record is posted.
A re-run that dies of infrastructure sends the original back to unverified, so it may be asked again,
up to MAX_INFRA_RERUNS times.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from studybot.db.engine import Database
from studybot.db.models import GradingJob, Submission
from studybot.queue import JobQueue
from studybot.services.leaderboards import interval_of
from studybot.services.ranking_statistics import Interval, overlaps
from studybot.time_source import Clock

log = logging.getLogger(__name__)

VERIFY_LANE = "verify"
PENDING, VERIFIED, DISAGREED = "pending", "verified", "disagreed"
INFRA_STATUSES = ("infra_error", "dead")  # the machine's fault, not the notebook's
MAX_INFRA_RERUNS = 2  # re-runs lost to infrastructure before an entry stays unverified
# A re-run checks that a record is not luck or a trick, which shows as a re-run that is slower by
# multiples. A re-run may be this fraction slower than the top of the original's interval before it
# disagrees: on a shared CPU machine the load moves whole grades by tens of percent (the end-to-end test
# saw a re-run 1.66x the original's median while other test suites ran), and a 2-run interval is narrow.
# A re-run that is faster never disagrees: it cannot make the record less true.
RERUN_SLOWDOWN_ALLOWANCE = 0.5


@dataclass(frozen=True)
class Settled:
    original_id: int
    rerun_id: int
    outcome: str  # verified | disagreed | lost (infrastructure: unverified again)
    note: str | None = None


class Verification:
    def __init__(self, db: Database, clock: Clock, queue: JobQueue) -> None:
        self.db, self.clock, self.queue = db, clock, queue

    def state(self, submission_id: int) -> str | None:
        with self.db.session() as s:
            return s.scalar(select(Submission.verification).where(Submission.id == submission_id))

    def request(self, submission_id: int) -> str | None:
        """Ask for a re-run of a ranked submission unless one is verified or under way.

        Returns the state afterwards: 'verified', 'pending' (a re-run is queued or running), 'disagreed',
        or None when it cannot be verified (no stored notebook, or infrastructure lost it too often)."""
        with self.db.session() as s:
            original = s.get(Submission, submission_id)
            if original is None or original.notebook_sha256 is None or original.lane != "ranked":
                return None
            if original.verification is not None:
                return original.verification
            lost = s.scalar(select(func.count()).select_from(Submission).where(
                Submission.verifies == submission_id, Submission.status.in_(INFRA_STATUSES)))
            if lost >= MAX_INFRA_RERUNS:
                return None
            won = s.execute(update(Submission).where(
                Submission.id == submission_id, Submission.verification.is_(None)).values(
                verification=PENDING)).rowcount == 1
            if not won:  # another caller asked at the same moment: theirs is the re-run
                return PENDING
            graded_by = s.scalar(select(GradingJob.lease_owner).where(GradingJob.submission_id == submission_id))
            rerun = Submission(user_id=original.user_id, exercise_id=original.exercise_id, status="queued",
                               created_at=self.clock.now(), cohort_id=original.cohort_id,
                               notebook_sha256=original.notebook_sha256, filename=original.filename,
                               source="verify", lane=VERIFY_LANE, verifies=original.id)
            s.add(rerun)
            s.flush()
            self.queue.enqueue(s, rerun, avoid_worker=graded_by)
            log.info("verification of submission %s queued as submission %s (avoiding %s)", submission_id,
                     rerun.id, graded_by)
            return PENDING

    def settle(self) -> list[Settled]:
        """Apply every finished re-run to its pending original, once; returns what this call settled."""
        original = aliased(Submission)
        with self.db.session() as s:
            pairs = s.execute(select(Submission, original).join(original, original.id == Submission.verifies).where(
                Submission.lane == VERIFY_LANE, Submission.status.not_in(("queued", "running")),
                original.verification == PENDING).order_by(Submission.id)).all()
            for rerun, first in pairs:
                s.expunge(rerun)
                s.expunge(first)
        settled = []
        for rerun, first in pairs:
            outcome, note = judge(first, rerun)
            values = {"verification": None} if outcome == "lost" else {"verification": outcome}
            if outcome == VERIFIED:
                values.update(verified_at=self.clock.now(), verified_by_submission=rerun.id)
            elif outcome == DISAGREED:
                values.update(review_state="flagged", review_note=note, reviewed_by=None, reviewed_at=None)
            with self.db.session() as s:
                won = s.execute(update(Submission).where(
                    Submission.id == first.id, Submission.verification == PENDING).values(**values)).rowcount == 1
            if won:
                log.info("verification of submission %s by re-run %s: %s", first.id, rerun.id, outcome)
                settled.append(Settled(first.id, rerun.id, outcome, note))
        return settled


def judge(original: Submission, rerun: Submission) -> tuple[str, str | None]:
    """('verified' | 'disagreed' | 'lost', the evidence for review_note)."""
    if rerun.status in INFRA_STATUSES:
        return "lost", None
    first, again = interval_of(original), (interval_of(rerun) if rerun.rank_seconds is not None else None)
    evidence = (f"verification re-run #{rerun.id}: {rerun.status}"
                + (f", {again.median:.2f} s ({again.low:.2f}–{again.high:.2f})" if again else "")
                + (f", accuracy {100 * rerun.accuracy:.2f}%" if rerun.accuracy is not None else "")
                + f"; the original: {first.median:.2f} s ({first.low:.2f}–{first.high:.2f})"
                + (f", accuracy {100 * original.accuracy:.2f}%" if original.accuracy is not None else ""))
    if rerun.status != "passed":
        return DISAGREED, evidence + " (the re-run did not pass)"
    if rerun.review_state == "flagged" and original.review_state != "approved":  # an organizer accepted those
        return DISAGREED, evidence + f" (the re-run was flagged: {rerun.review_note})"
    if again.low > first.high * (1 + RERUN_SLOWDOWN_ALLOWANCE):
        return DISAGREED, evidence + (f" (the re-run is slower beyond noise: its fastest {again.low:.2f} s is over "
                                      f"{1 + RERUN_SLOWDOWN_ALLOWANCE:g}x the original's slowest {first.high:.2f} s)")
    return VERIFIED, evidence


def flags_of(submission: Submission) -> list[dict]:
    """The grader's flags of a submission's result ([] for none or an old result)."""
    try:
        flags = json.loads(submission.result_json or "{}").get("flags") or []
    except (ValueError, AttributeError):
        return []
    return [f for f in flags if isinstance(f, dict)]
