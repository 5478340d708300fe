"""How long until a submission's result: the "about N min" of the queued message.

Learners see a time, not only a queue position (the most common complaint about autograders is
"my submission is stuck and nobody tells me"; ../shared/reference/autograders.md). The estimate
comes from what the queue table already holds:

- **how long a grade of each exercise takes**: the median (started_at → finished_at) of the last
  HISTORY finished jobs of that exercise in the lane; an exercise never graded here yet counts
  FIRST_GRADE_SECONDS (its first grade also measures the reference);
- **the work ahead**: every queued job ahead in claim order (virtual_time, id), each at its
  exercise's median, plus what is left of the running jobs of the lane (median − elapsed, at
  least zero);
- **the workers alive**: distinct lease owners that held a lease within WORKER_SEEN_WINDOW (a
  running job with a live lease, or a job started or finished that recently).

    seconds = (left of running + Σ ahead) / workers + this job's own median

An idle worker holds no lease, so a quiet queue may show none: the estimate then assumes one
(a deployment keeps at least one running). A running job past STILL_WORKING_FACTOR x its
exercise's median gets a "still working" note instead of a silent wait.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select

from studybot.db.engine import Database
from studybot.db.models import GradingJob, Submission
from studybot.teams import across_teams
from studybot.time_source import Clock

HISTORY = 20                          # finished jobs per exercise whose durations make the median
FIRST_GRADE_SECONDS = 180.0           # an exercise with no finished job yet (s): it also measures the reference
WORKER_SEEN_WINDOW = timedelta(minutes=15)  # a worker counts as alive if it held a lease this recently
STILL_WORKING_FACTOR = 2.0            # a running job past this many times its expected duration is "still working"


@dataclass(frozen=True)
class Estimate:
    position: int | None        # 1-based among the queued jobs of the lane; None once running
    seconds: float              # until the result, from now
    workers: int                # workers seen within WORKER_SEEN_WINDOW (the estimate assumes at least one)
    expected_seconds: float     # this job's own expected grade duration
    elapsed_seconds: float = 0.0  # running: since the claim

    @property
    def minutes(self) -> int:
        """Whole minutes, rounded up, at least 1: what "about N min" says."""
        return max(1, math.ceil(self.seconds / 60.0))


class QueueEstimates:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def estimate(self, submission_id: int) -> Estimate | None:
        """The estimate for one queued or running submission; None for any other."""
        now = self.clock.now()
        # The queue is shared by every workspace (fair across teams), so the jobs ahead, the running
        # ones and the grade times are counted across teams; only counts and durations leave here.
        with across_teams(), self.db.session() as s:
            row = s.execute(select(GradingJob, Submission.exercise_id).join(
                Submission, Submission.id == GradingJob.submission_id).where(
                GradingJob.submission_id == submission_id)).first()
            if row is None or row[0].status not in ("queued", "running"):
                return None
            job, exercise = row
            lane = job.lane
            running = s.execute(select(GradingJob.started_at, Submission.exercise_id).join(
                Submission, Submission.id == GradingJob.submission_id).where(
                GradingJob.lane == lane, GradingJob.status == "running", GradingJob.id != job.id)).all()
            ahead = []
            if job.status == "queued":
                ahead = s.scalars(select(Submission.exercise_id).join(
                    GradingJob, GradingJob.submission_id == Submission.id).where(
                    GradingJob.lane == lane, GradingJob.status == "queued",
                    or_(GradingJob.virtual_time < job.virtual_time,
                        and_(GradingJob.virtual_time == job.virtual_time, GradingJob.id < job.id)))).all()
            exercises = {exercise, *(e for _, e in running), *ahead}
            medians = {e: self._median_duration(s, lane, e) for e in exercises}
            workers = self._workers_alive(s, now)
        expected = medians[exercise]
        if job.status == "running":
            elapsed = _elapsed(now, job.started_at)
            return Estimate(None, max(expected - elapsed, 0.0), workers, expected, elapsed)
        running_left = sum(max(medians[e] - _elapsed(now, started), 0.0) for started, e in running)
        waiting = (running_left + sum(medians[e] for e in ahead)) / max(workers, 1)
        return Estimate(len(ahead) + 1, waiting + expected, workers, expected)

    @staticmethod
    def still_working(estimate: Estimate) -> bool:
        """A running job whose elapsed time is past STILL_WORKING_FACTOR x its expected duration
        (its estimate has run out long ago): the DM says it is still working, not stuck."""
        return estimate.position is None and estimate.elapsed_seconds > STILL_WORKING_FACTOR * estimate.expected_seconds

    @staticmethod
    def _median_duration(s, lane: str, exercise: str) -> float:
        rows = s.execute(select(GradingJob.started_at, GradingJob.finished_at).join(
            Submission, Submission.id == GradingJob.submission_id).where(
            GradingJob.lane == lane, GradingJob.status == "done", Submission.exercise_id == exercise,
            GradingJob.started_at.is_not(None), GradingJob.finished_at.is_not(None),
        ).order_by(GradingJob.finished_at.desc()).limit(HISTORY)).all()
        durations = [(finished - started).total_seconds() for started, finished in rows]
        return statistics.median(durations) if durations else FIRST_GRADE_SECONDS

    @staticmethod
    def _workers_alive(s, now: datetime) -> int:
        since = now - WORKER_SEEN_WINDOW
        owners = s.scalars(select(GradingJob.lease_owner).where(
            GradingJob.lease_owner.is_not(None),
            or_(and_(GradingJob.status == "running", GradingJob.lease_expires_at > now),
                GradingJob.started_at >= since, GradingJob.finished_at >= since)).distinct()).all()
        return len(set(owners))


def _elapsed(now: datetime, started: datetime | None) -> float:
    return (now - started).total_seconds() if started is not None else 0.0
