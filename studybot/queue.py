"""The grading queue: jobs in the database, claimed by `studybot work` processes with a lease.

Database only: no Slack, no grader. The bot enqueues (in the same transaction as the submission)
and reads positions; workers on any number of machines claim, heartbeat, report progress and
finish. Results flow back through the database; the bot posts them.

Guarantees (see ../shared/reference/infra.md, section 3):

- **Claimed by one worker at a time.** PostgreSQL: one ``UPDATE … WHERE id = (SELECT … ORDER BY
  virtual_time, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING …``. SQLite (one machine only: WAL
  does not work across hosts): the same statement inside ``BEGIN IMMEDIATE``, which takes the
  write lock before anything is read, so two claimers serialize instead of failing to upgrade.
- **A dead worker's job is re-run.** A claim sets a lease (``lease_expires_at``); the worker's
  heartbeat extends it. A running job whose lease has expired is claimable again, as the next
  attempt, up to ``max_attempts``; after that it is marked dead (the bot tells the organizers).
- **A late worker cannot overwrite the result.** Every claim mints a new ``lease_token`` (the
  fencing token). ``heartbeat``, ``report_progress``, ``finish``, ``fail`` and ``release`` act only
  ``WHERE id = ? AND lease_token = ? AND status = 'running'``: a worker that froze past its lease
  and wakes up after another took the job over gets False and writes nothing. Execution is
  at-least-once (a worker can die mid-job); the *result* is recorded exactly once.
- **Infrastructure failures retry with backoff** (``fail``); learner failures (crash, timeout,
  OOM, below target…) are results, passed to ``finish``.

Clocks and drift. All times come from the injected clock of the process doing the write
(``SystemClock`` in production), not from the database server, so the same statements run on
SQLite and PostgreSQL. A lease written by worker A (``A.now + lease``) is judged expired by
worker B against ``B.now``: if B's clock runs d seconds ahead, B may take the job over d seconds
early. Workers therefore self-fence (stop the grading) after 0.75 x lease without a successful
heartbeat, measured on their own monotonic clock from the moment the last successful heartbeat
was *sent*; that leaves 0.25 x lease (30 s with the default 120 s lease) of slack for clock
skew and for the kill to land. Keep every worker's clock NTP-synced (skew of milliseconds, far
below that slack); a machine whose clock is off by more than lease/4 can run a job twice
(never record two results: the token still fences that).
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterator, Sequence

from sqlalchemy import Boolean, Float, LargeBinary, String, Text, and_, bindparam, cast, func, literal, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from studybot.time_source import Clock, SystemClock
from studybot.db.engine import BUMP_STATE_VERSION, Database
from studybot.db.models import GradingJob, Notebook, Submission, UTCDateTime

JOBS = GradingJob.__table__
SUBMISSIONS = Submission.__table__
NOTEBOOKS = Notebook.__table__

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"
JOB_STATUSES = (QUEUED, RUNNING, DONE, DEAD)
DEFAULT_LEASE = timedelta(seconds=120)
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_SWEEP_INTERVAL = timedelta(seconds=5)  # how often a claim also buries lost jobs (see claim)
# A verification re-run carries avoid_worker (the worker that graded the original): that worker passes
# the job over for this long after it was queued, so another worker, if any is alive, takes it first.
# After the grace anyone may take it, so a lone worker still verifies (late, never never).
VERIFY_AVOID_GRACE = timedelta(seconds=120)
MAX_ERROR_CHARS = 2000


def exponential_backoff(base: timedelta = timedelta(seconds=10), factor: float = 4.0,
                        cap: timedelta = timedelta(minutes=30)) -> Callable[[int], timedelta]:
    """Delay before retry after the `attempts`-th failure: base, base*factor, base*factor**2…
    capped. The default gives 10 s, 40 s, 160 s, 640 s, then 30 min."""

    def backoff(attempts: int) -> timedelta:
        exponent = min(max(attempts - 1, 0), 64)
        seconds = base.total_seconds() * factor ** exponent
        return timedelta(seconds=min(seconds, cap.total_seconds()) if math.isfinite(seconds) else cap.total_seconds())

    return backoff


@dataclass(frozen=True)
class Claim:
    """A job this worker now holds. `token` must accompany every later call about it."""

    job_id: int
    submission_id: int
    token: str
    attempt: int  # 1 for the first claim; a re-run after a lost worker or a retry counts up
    exercise_id: str
    user_id: str
    notebook: bytes
    lane: str

    def __repr__(self) -> str:  # logs never carry the notebook's content
        return (f"Claim(job_id={self.job_id}, submission_id={self.submission_id}, attempt={self.attempt}, "
                f"exercise_id={self.exercise_id!r}, lane={self.lane!r}, notebook=<{len(self.notebook)} bytes>)")


class JobQueue:
    """The queue over one Database. Thread-safe: every call uses its own connection."""

    def __init__(self, db: Database, clock: Clock | None = None, lease: timedelta = DEFAULT_LEASE,
                 backoff: Callable[[int], timedelta] | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL,
                 avoid_grace: timedelta = VERIFY_AVOID_GRACE) -> None:
        if lease <= timedelta(0):
            raise ValueError("the lease must be positive")
        self.db = db
        self.clock = clock or SystemClock()
        self.lease = lease
        self.backoff = backoff or exponential_backoff()
        self.max_attempts = max_attempts
        self.sweep_interval = sweep_interval
        self.avoid_grace = avoid_grace
        self._last_sweep: datetime | None = None

    # ---- the bot's side ------------------------------------------------------------------------

    def enqueue(self, session: Session, submission: Submission, *, avoid_worker: str | None = None) -> GradingJob:
        """Queue a grading job for `submission` (already flushed) in the caller's transaction.

        Fair order by virtual time (start-time fair queuing). Jobs are claimed in
        (virtual_time, id) order within a lane, and a new job gets

            virtual_time = max(floor, this learner's latest job's virtual_time + 1)

        where `floor` is the smallest virtual_time among the lane's queued jobs that are ready
        to run (jobs waiting out a retry backoff do not count), or, when none is, the largest
        virtual_time ever claimed in the lane (where the queue has got to), or 0; and the
        learner's latest job is the latest of their queued or running jobs in the lane.

        So a learner who sends 5 notebooks at once gets 5 consecutive virtual times, and a
        learner who sends one a moment later gets the floor: that job is claimed right after
        the burst's first, and the bursts of several learners interleave round-robin. Nobody
        banks credit by waiting, since the floor moves on as jobs are claimed.
        """
        now = self.clock.now()
        lane = submission.lane or "ranked"
        # One round trip; each part is an index range of ix_grading_jobs_claim (status, lane,
        # virtual_time), so the cost does not grow with the history of finished jobs.
        vt = GradingJob.virtual_time

        def among(*conditions, aggregate=func.max):
            return select(aggregate(vt)).where(GradingJob.lane == lane, *conditions).scalar_subquery()

        ready, running, done, dead, latest = session.execute(select(
            among(GradingJob.status == QUEUED, GradingJob.run_after <= now, aggregate=func.min),
            among(GradingJob.status == RUNNING), among(GradingJob.status == DONE), among(GradingJob.status == DEAD),
            among(GradingJob.status.in_((QUEUED, RUNNING)), GradingJob.user_id == submission.user_id),
        )).one()
        if ready is not None:
            floor = ready
        else:
            floor = max((v for v in (running, done, dead) if v is not None), default=0)
        # The learner's finished jobs are left out: they were claimed, so they lie at or behind
        # where the queue has got to, and cannot push a new job further back.
        virtual_time = floor if latest is None else max(floor, latest + 1)
        submission.status = QUEUED
        job = GradingJob(submission_id=submission.id, user_id=submission.user_id, lane=lane,
                         virtual_time=virtual_time, status=QUEUED, attempts=0, max_attempts=self.max_attempts,
                         run_after=now, created_at=now, avoid_worker=avoid_worker)
        session.add(job)
        session.flush()
        return job

    def position(self, submission_id: int) -> int | None:
        """1-based place of the submission's job among the queued jobs of its lane, in claim
        order; None when it is not queued (running, finished, dead or unknown)."""
        with self.db.engine.connect() as conn:
            job = conn.execute(select(JOBS.c.id, JOBS.c.lane, JOBS.c.virtual_time, JOBS.c.status).where(
                JOBS.c.submission_id == submission_id)).first()
            if job is None or job.status != QUEUED:
                return None
            ahead = conn.execute(select(func.count()).select_from(JOBS).where(
                JOBS.c.lane == job.lane, JOBS.c.status == QUEUED,
                or_(JOBS.c.virtual_time < job.virtual_time,
                    and_(JOBS.c.virtual_time == job.virtual_time, JOBS.c.id < job.id)))).scalar_one()
        return ahead + 1

    def counts(self, lane: str | None = None) -> dict[str, int]:
        """Jobs per status (queued, running, done, dead), in one lane or all."""
        query = select(JOBS.c.status, func.count()).group_by(JOBS.c.status)
        if lane is not None:
            query = query.where(JOBS.c.lane == lane)
        with self.db.engine.connect() as conn:
            found = dict(conn.execute(query).all())
        return {status: int(found.get(status, 0)) for status in JOB_STATUSES} | {
            status: int(n) for status, n in found.items() if status not in JOB_STATUSES}

    # ---- the workers' side ---------------------------------------------------------------------

    def claim(self, worker_id: str, lanes: Sequence[str] = ("ranked",)) -> Claim | None:
        """Take the next job: the first lane in `lanes` with a claimable job wins, and within a
        lane the smallest (virtual_time, id).

        Claimable: queued with run_after <= now, or running with an expired lease and attempts
        left (its worker is presumed dead). Expired leases with no attempts left are first
        marked dead, with their submissions (a sweep done at most every `sweep_interval` per
        queue object, and whenever the queue looks empty: such jobs are not claimable anyway,
        so this only delays their "dead" by seconds, and saves a statement on busy claims).
        The claim sets status running, attempts + 1, a new lease token, lease_owner,
        lease_expires_at = now + lease, and the submission's status to running, all in one
        transaction. A job whose avoid_worker is this worker is passed over until avoid_grace after
        it was queued (verification re-runs go to another machine when there is one)."""
        now = self.clock.now()
        token = str(uuid.uuid4())
        with self._transaction() as conn:
            swept = self._last_sweep is None or now - self._last_sweep >= self.sweep_interval
            wrote = self._bury_lost(conn, now) if swept else False
            claim = None
            for lane in lanes:
                claim = self._claim_in_lane(conn, lane, worker_id[:120], token, now)
                if claim is not None:
                    break
            if claim is None and not swept:
                swept, wrote = True, self._bury_lost(conn, now)
            if swept:
                self._last_sweep = now
            if wrote or claim is not None:
                conn.execute(BUMP_STATE_VERSION)
        return claim

    def heartbeat(self, job_id: int, token: str) -> bool:
        """Extend the lease to now + lease. False: the job is no longer ours (stop working on it)."""
        now = self.clock.now()
        with self._transaction() as conn:
            # Not a visible change, so state_version is not bumped (cached answers stay valid).
            return conn.execute(_HEARTBEAT, {"p_job": job_id, "p_token": token,
                                             "p_expires": now + self.lease}).rowcount == 1

    def report_progress(self, job_id: int, token: str, progress: dict) -> bool:
        """Store `progress` (JSON; e.g. {"run": 2, "runs": 5}) for the bot to show. Fenced.
        Not bumping state_version: progress is shown only in the learner's DM, which the feedback
        loop reads afresh, never in a cached answer; a bump per run would keep the cache cold."""
        payload = json.dumps(progress, allow_nan=False)
        with self._transaction() as conn:
            return conn.execute(update(JOBS).where(*self._fence(job_id, token)).values(progress=payload)).rowcount == 1

    def finish(self, job_id: int, token: str, result: dict, plot_png: bytes | None = None) -> bool:
        """Record the grader's result, once: the job becomes done, and the submission gets the
        result's status, accuracy, metric, direction and score (metric_of), target, train_seconds, predict_seconds, the ranking time and its interval
        (``rank_times``), speed_ratio, the whole result as JSON, the plot and finished_at, in one
        transaction; a passing result with any ``flags`` makes the submission review_state 'flagged' (held off
        the boards until an organizer approves it). False, writing nothing, for a stale token."""
        status = result.get("status")
        if not isinstance(status, str) or not status or status in (QUEUED, RUNNING) or len(status) > 24:
            raise ValueError(f"a result needs a final status, not {status!r}")
        payload = json.dumps(result, allow_nan=False)
        now = self.clock.now()
        with self._transaction() as conn:
            row = conn.execute(_FINISH_JOB, {"p_job": job_id, "p_token": token, "p_now": now}).first()
            if row is None:
                return False
            conn.execute(_FINISH_SUBMISSION, {
                "p_id": row.submission_id, "p_status": status, "p_accuracy": _number(result.get("accuracy")),
                **dict(zip(("p_metric", "p_higher", "p_score"), metric_of(result))),
                "p_target": _number(result.get("target")),
                "p_train": _number(result.get("train_seconds")), "p_speed": _number(result.get("speed_ratio")),
                "p_predict": _number(result.get("predict_seconds")), **dict(zip(
                    ("p_rank", "p_low", "p_high"), rank_times(result))),
                "p_review": "flagged" if result.get("flags") and status == "passed" else None, "p_note": _flag_note(result),
                "p_json": payload, "p_plot": plot_png, "p_now": now})
            conn.execute(BUMP_STATE_VERSION)
        return True

    def fail(self, job_id: int, token: str, error: str) -> bool:
        """An infrastructure failure (not the learner's): retry after backoff(attempts), or, with
        no attempts left, mark the job and its submission dead. False for a stale token."""
        now = self.clock.now()
        error = error[:MAX_ERROR_CHARS]
        with self._transaction() as conn:
            row = conn.execute(select(JOBS.c.attempts, JOBS.c.max_attempts, JOBS.c.submission_id).where(
                *self._fence(job_id, token)).with_for_update()).first()
            if row is None:
                return False
            if row.attempts < row.max_attempts:
                conn.execute(update(JOBS).where(*self._fence(job_id, token)).values(
                    status=QUEUED, run_after=now + self.backoff(row.attempts), last_error=error,
                    lease_token=None, lease_owner=None, lease_expires_at=None))
                conn.execute(update(SUBMISSIONS).where(SUBMISSIONS.c.id == row.submission_id).values(status=QUEUED))
            else:
                conn.execute(update(JOBS).where(*self._fence(job_id, token)).values(
                    status=DEAD, last_error=f"{error} (attempt {row.attempts} of {row.max_attempts})",
                    finished_at=now, lease_expires_at=None))
                conn.execute(update(SUBMISSIONS).where(SUBMISSIONS.c.id == row.submission_id).values(
                    status=DEAD, finished_at=now))
            conn.execute(BUMP_STATE_VERSION)
        return True

    def release(self, job_id: int, token: str, reason: str = "worker stopped") -> bool:
        """Give a job back untouched (a worker shutting down): queued again at once, and the
        interrupted attempt is not counted. False for a stale token."""
        now = self.clock.now()
        with self._transaction() as conn:
            row = conn.execute(update(JOBS).where(*self._fence(job_id, token)).values(
                status=QUEUED, run_after=now, attempts=JOBS.c.attempts - 1, last_error=reason[:MAX_ERROR_CHARS],
                lease_token=None, lease_owner=None, lease_expires_at=None, progress=None,
            ).returning(JOBS.c.submission_id)).first()
            if row is None:
                return False
            conn.execute(update(SUBMISSIONS).where(SUBMISSIONS.c.id == row.submission_id).values(status=QUEUED))
            conn.execute(BUMP_STATE_VERSION)
        return True

    # ---- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction. SQLite: BEGIN IMMEDIATE takes the write lock up front, so the
        reads in it cannot go stale and the writes never need a (deadlock-prone) lock upgrade;
        busy_timeout (set by make_engine) makes other writers wait for it."""
        with self.db.engine.connect() as conn:
            if not self.db.is_postgres:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @staticmethod
    def _fence(job_id: int, token: str):
        return JOBS.c.id == job_id, JOBS.c.lease_token == token, JOBS.c.status == RUNNING

    def _bury_lost(self, conn: Connection, now: datetime) -> bool:
        """Expired leases with no attempts left: the job and its submission become dead."""
        rows = conn.execute(_BURY, {"p_now": now}).all()
        if rows:
            conn.execute(update(SUBMISSIONS).where(SUBMISSIONS.c.id.in_([r.submission_id for r in rows])).values(
                status=DEAD, finished_at=now))
        return bool(rows)

    def _claim_in_lane(self, conn: Connection, lane: str, worker_id: str, token: str, now: datetime) -> Claim | None:
        row = conn.execute(_CLAIM, {"p_lane": lane, "p_now": now, "p_expires": now + self.lease,
                                    "p_token": token, "p_owner": worker_id,
                                    "p_avoided_before": now - self.avoid_grace}).first()
        if row is None:
            return None
        found = conn.execute(_MARK_RUNNING, {"p_id": row.submission_id}).one()
        return Claim(job_id=row.id, submission_id=row.submission_id, token=token, attempt=row.attempts,
                     exercise_id=found.exercise_id, user_id=row.user_id, notebook=found.content or b"",
                     lane=row.lane)


# The hot statements, built once (workers run them for every job; building them each time cost
# more CPU than running them). Times are bound as UTCDateTime, like the ORM columns.
def _at(name: str):
    return bindparam(name, type_=UTCDateTime())


def _build_bury():
    now, lost = _at("p_now"), JOBS.alias("lost")
    doomed = select(lost.c.id).where(
        lost.c.status == RUNNING, lost.c.lease_expires_at < now, lost.c.attempts >= lost.c.max_attempts,
    ).with_for_update(skip_locked=True)
    return update(JOBS).where(JOBS.c.id.in_(doomed)).values(
        status=DEAD, finished_at=now, lease_expires_at=None,
        last_error=literal("lease expired ") + cast(JOBS.c.attempts, String) + literal(" times: worker lost"),
    ).returning(JOBS.c.submission_id)


def _build_claim():
    """UPDATE grading_jobs SET … WHERE id = (SELECT id … ORDER BY virtual_time, id LIMIT 1
    FOR UPDATE SKIP LOCKED) RETURNING …; SQLite leaves out the FOR UPDATE (BEGIN IMMEDIATE
    already holds the write lock)."""
    now, candidate = _at("p_now"), JOBS.alias("candidate")
    claimable = or_(
        and_(candidate.c.status == QUEUED, candidate.c.run_after <= now),
        and_(candidate.c.status == RUNNING, candidate.c.lease_expires_at < now,
             candidate.c.attempts < candidate.c.max_attempts),
    )
    not_avoided = or_(candidate.c.avoid_worker.is_(None), candidate.c.avoid_worker != bindparam("p_owner"),
                      candidate.c.created_at < _at("p_avoided_before"))
    pick = (select(candidate.c.id).where(candidate.c.lane == bindparam("p_lane"), claimable, not_avoided)
            .order_by(candidate.c.virtual_time, candidate.c.id).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery())
    return update(JOBS).where(JOBS.c.id == pick).values(
        status=RUNNING, attempts=JOBS.c.attempts + 1, lease_token=bindparam("p_token"),
        lease_owner=bindparam("p_owner"), lease_expires_at=_at("p_expires"), started_at=now, progress=None,
    ).returning(JOBS.c.id, JOBS.c.submission_id, JOBS.c.attempts, JOBS.c.user_id, JOBS.c.lane)


def _fenced():
    return (JOBS.c.id == bindparam("p_job"), JOBS.c.lease_token == bindparam("p_token"), JOBS.c.status == RUNNING)


def _build_finish():
    now = _at("p_now")
    job = update(JOBS).where(*_fenced()).values(status=DONE, finished_at=now, lease_expires_at=None).returning(
        JOBS.c.submission_id)
    submission = update(SUBMISSIONS).where(SUBMISSIONS.c.id == bindparam("p_id")).values(
        status=bindparam("p_status"), accuracy=bindparam("p_accuracy", type_=Float()),
        metric=bindparam("p_metric", type_=String()), higher_is_better=bindparam("p_higher", type_=Boolean()),
        score=bindparam("p_score", type_=Float()), target=bindparam("p_target", type_=Float()),
        train_seconds=bindparam("p_train", type_=Float()), speed_ratio=bindparam("p_speed", type_=Float()),
        predict_seconds=bindparam("p_predict", type_=Float()), rank_seconds=bindparam("p_rank", type_=Float()),
        rank_seconds_low=bindparam("p_low", type_=Float()), rank_seconds_high=bindparam("p_high", type_=Float()),
        review_state=bindparam("p_review", type_=String()), review_note=bindparam("p_note", type_=Text()),
        result_json=bindparam("p_json", type_=Text()), plot_png=bindparam("p_plot", type_=LargeBinary()),
        finished_at=now)
    return job, submission


def _build_mark_running():
    """The claimed submission becomes running; hands back its exercise and notebook."""
    content = (select(NOTEBOOKS.c.content).where(NOTEBOOKS.c.sha256 == SUBMISSIONS.c.notebook_sha256)
               .scalar_subquery().label("content"))
    return update(SUBMISSIONS).where(SUBMISSIONS.c.id == bindparam("p_id")).values(status=RUNNING).returning(
        SUBMISSIONS.c.exercise_id, content)


_BURY, _CLAIM, _MARK_RUNNING = _build_bury(), _build_claim(), _build_mark_running()
_HEARTBEAT = update(JOBS).where(*_fenced()).values(lease_expires_at=_at("p_expires"))
_FINISH_JOB, _FINISH_SUBMISSION = _build_finish()


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metric_of(result: dict) -> tuple[str, bool, float | None]:
    """(metric, higher_is_better, score) of a result. Results from graders before metrics carry only
    accuracy: that is the metric, higher is better, and the score is the accuracy."""
    metric = result.get("metric")
    if not isinstance(metric, str) or not metric or len(metric) > 24:
        metric = "accuracy"
    higher = result.get("higher_is_better")
    higher = higher if isinstance(higher, bool) else True
    score = _number(result.get("score"))
    if score is None and metric == "accuracy":
        score = _number(result.get("accuracy"))
    return metric, higher, score


def rank_times(result: dict) -> tuple[float | None, float | None, float | None]:
    """(rank_seconds, low, high) of a result. The grader's own when it gives them; a result without them
    (older graders, --noop-jobs) ranks by train + predict seconds, else train seconds, with [x, x]."""
    rank = _number(result.get("rank_seconds"))
    if rank is None:
        train, predict = _number(result.get("train_seconds")), _number(result.get("predict_seconds"))
        rank = train + predict if train is not None and predict is not None else train
    if rank is None:
        return None, None, None
    low, high = _number(result.get("rank_seconds_low")), _number(result.get("rank_seconds_high"))
    return rank, min(rank, low) if low is not None else rank, max(rank, high) if high is not None else rank


def _flag_note(result: dict) -> str | None:
    """The grader's flags as one line for review_note (the evidence itself stays in result_json)."""
    flags = result.get("flags") or []
    if not isinstance(flags, list) or not flags:
        return None
    return "; ".join(f"{f.get('code', '?')}: {f.get('message', '')}" if isinstance(f, dict) else str(f)
                     for f in flags)[:MAX_ERROR_CHARS]
