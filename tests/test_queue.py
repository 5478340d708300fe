"""The grading queue on both databases: fair order, exactly-once claims under concurrency,
leases, fencing tokens, infrastructure retries with backoff, dead jobs, positions."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from studybot.db.engine import Database
from studybot.db.models import GradingJob, Notebook, Submission
from studybot.queue import JobQueue, exponential_backoff

NOTEBOOK = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}).encode()


@pytest.fixture
def queue(db, clock):
    return JobQueue(db, clock, lease=timedelta(seconds=30), backoff=exponential_backoff(timedelta(seconds=10)))


def submit(queue: JobQueue, user: str, exercise: str = "digits", lane: str = "ranked", content: bytes = NOTEBOOK) -> int:
    """A submission with its notebook, queued the way the bot does it: one transaction."""
    now = queue.clock.now()
    digest = hashlib.sha256(content).hexdigest()
    with queue.db.session() as s:
        if s.get(Notebook, digest) is None:
            s.add(Notebook(sha256=digest, content=content, size=len(content), created_at=now))
        submission = Submission(user_id=user, exercise_id=exercise, status="queued", created_at=now,
                                notebook_sha256=digest, lane=lane, source="shell")
        s.add(submission)
        s.flush()
        queue.enqueue(s, submission)
        return submission.id


def job_of(db, submission_id: int) -> GradingJob:
    with db.session() as s:
        return s.scalar(select(GradingJob).where(GradingJob.submission_id == submission_id))


def submission(db, submission_id: int) -> Submission:
    with db.session() as s:
        return s.get(Submission, submission_id)


def passed(accuracy=0.98):
    return {"status": "passed", "accuracy": accuracy, "train_seconds": 1.5, "speed_ratio": 2.0, "message": "ok"}


def test_a_burst_interleaves_with_a_later_learner(queue):
    burst = [submit(queue, "A") for _ in range(5)]
    later = submit(queue, "B")
    order = [queue.claim("w").submission_id for _ in range(6)]
    assert order[0] == burst[0]
    assert order[1] == later  # B waits for one of A's jobs, not five
    assert order[2:] == burst[1:]
    assert queue.claim("w") is None


def test_three_learners_round_robin_and_newcomers_do_not_bank_credit(queue):
    a = [submit(queue, "A") for _ in range(3)]
    b = [submit(queue, "B") for _ in range(3)]
    c = [submit(queue, "C") for _ in range(2)]
    order = [queue.claim("w").submission_id for _ in range(4)]
    assert order == [a[0], b[0], c[0], a[1]]
    # D arrives once the queue has moved on: D joins the current round, not the first one.
    d = submit(queue, "D")
    order = [queue.claim("w").submission_id for _ in range(5)]
    assert order == [b[1], c[1], d, a[2], b[2]]


def test_position_is_the_place_in_claim_order(queue):
    a1, a2 = submit(queue, "A"), submit(queue, "A")
    b1 = submit(queue, "B")
    check = submit(queue, "C", lane="check")
    assert [queue.position(s) for s in (a1, b1, a2)] == [1, 2, 3]
    assert queue.position(check) == 1  # lanes are separate queues
    assert queue.claim("w").submission_id == a1
    assert queue.position(a1) is None  # running
    assert [queue.position(s) for s in (b1, a2)] == [1, 2]
    assert queue.position(123456) is None
    assert queue.counts() == {"queued": 3, "running": 1, "done": 0, "dead": 0}
    assert queue.counts("check") == {"queued": 1, "running": 0, "done": 0, "dead": 0}


def test_a_worker_takes_its_lanes_in_the_order_given(queue):
    ranked = submit(queue, "A")
    check = submit(queue, "B", lane="check")
    assert queue.claim("w", lanes=("check", "ranked")).submission_id == check
    assert queue.claim("w", lanes=("check", "ranked")).submission_id == ranked
    submit(queue, "C", lane="check")
    assert queue.claim("w", lanes=("ranked",)) is None


def test_claim_and_finish_record_the_result_once(queue, db, clock):
    sid = submit(queue, "A", exercise="mnist1d")
    version = db.state_version()
    claim = queue.claim("gpu-1")
    assert (claim.submission_id, claim.attempt, claim.exercise_id, claim.user_id, claim.lane) == (
        sid, 1, "mnist1d", "A", "ranked")
    assert claim.notebook == NOTEBOOK
    assert "cells" not in repr(claim)  # logs never carry the notebook
    assert db.state_version() > version
    job = job_of(db, sid)
    assert (job.status, job.lease_owner, job.lease_token, job.attempts) == ("running", "gpu-1", claim.token, 1)
    assert job.lease_expires_at == clock.now() + timedelta(seconds=30)
    assert submission(db, sid).status == "running"

    clock.advance(timedelta(seconds=20))
    assert queue.heartbeat(claim.job_id, claim.token)
    assert job_of(db, sid).lease_expires_at == clock.now() + timedelta(seconds=30)
    assert queue.report_progress(claim.job_id, claim.token, {"run": 2, "runs": 5})
    assert json.loads(job_of(db, sid).progress) == {"run": 2, "runs": 5}

    assert queue.finish(claim.job_id, claim.token, passed(), plot_png=b"\x89PNG...")
    job, sub = job_of(db, sid), submission(db, sid)
    assert job.status == "done" and job.finished_at == clock.now()
    assert (sub.status, sub.accuracy, sub.train_seconds, sub.speed_ratio) == ("passed", 0.98, 1.5, 2.0)
    assert json.loads(sub.result_json)["message"] == "ok"
    assert sub.plot_png == b"\x89PNG..." and sub.finished_at == clock.now()
    # Once done, the token is worth nothing.
    assert not queue.finish(claim.job_id, claim.token, passed(0.5))
    assert not queue.heartbeat(claim.job_id, claim.token)
    assert submission(db, sid).accuracy == 0.98
    with pytest.raises(ValueError):
        queue.finish(claim.job_id, claim.token, {"status": "running"})


def test_exactly_once_claims_from_eight_threads_with_their_own_engines(db, clock):
    queue = JobQueue(db, clock)
    submissions = [submit(queue, f"U{i % 7}") for i in range(80)]
    claimed: list[list[int]] = [[] for _ in range(8)]
    errors = []
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        own = Database(db.url)
        try:
            mine = JobQueue(own, clock)
            start.wait()
            while (claim := mine.claim(f"w{index}")) is not None:
                claimed[index].append(claim.submission_id)
                assert mine.finish(claim.job_id, claim.token, passed())
        except Exception as error:  # reported below, with the thread's index
            errors.append((index, repr(error)))
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [sid for mine in claimed for sid in mine]
    assert sorted(everything) == sorted(submissions)  # each exactly once
    assert queue.counts() == {"queued": 0, "running": 0, "done": 80, "dead": 0}
    with db.session() as s:
        assert set(s.scalars(select(GradingJob.attempts))) == {1}


def test_an_expired_lease_is_claimed_again_as_attempt_two(queue, db, clock):
    sid = submit(queue, "A")
    first = queue.claim("lost-worker")
    clock.advance(timedelta(seconds=29))
    assert queue.claim("other") is None  # the lease still holds
    clock.advance(timedelta(seconds=2))
    second = queue.claim("other")
    assert (second.job_id, second.attempt) == (first.job_id, 2)
    assert second.token != first.token
    assert job_of(db, sid).lease_owner == "other"
    assert queue.finish(second.job_id, second.token, passed())


def test_a_stale_token_can_neither_heartbeat_nor_report_nor_finish(queue, db, clock):
    sid = submit(queue, "A")
    zombie = queue.claim("zombie")
    clock.advance(timedelta(seconds=31))
    owner = queue.claim("owner")
    assert queue.report_progress(owner.job_id, owner.token, {"run": 1, "runs": 5})
    before_job, before_sub, version = job_of(db, sid), submission(db, sid), db.state_version()

    assert not queue.heartbeat(zombie.job_id, zombie.token)
    assert not queue.report_progress(zombie.job_id, zombie.token, {"run": 5, "runs": 5})
    assert not queue.finish(zombie.job_id, zombie.token, passed(0.11))
    assert not queue.fail(zombie.job_id, zombie.token, "zombie says infra")
    assert not queue.release(zombie.job_id, zombie.token)

    after_job, after_sub = job_of(db, sid), submission(db, sid)
    columns = lambda row: {c: getattr(row, c) for c in row.__table__.columns.keys()}  # noqa: E731
    assert columns(after_job) == columns(before_job)
    assert columns(after_sub) == columns(before_sub)
    assert db.state_version() == version  # nothing was written at all

    assert queue.finish(owner.job_id, owner.token, passed(0.97))
    assert submission(db, sid).accuracy == 0.97
    assert not queue.finish(zombie.job_id, zombie.token, passed(0.11))
    assert submission(db, sid).accuracy == 0.97


def test_infrastructure_failures_back_off_then_the_job_is_dead(queue, db, clock):
    sid = submit(queue, "A")
    waits = []
    for attempt in (1, 2):
        claim = queue.claim("w")
        assert claim.attempt == attempt
        assert queue.fail(claim.job_id, claim.token, "CUDA driver went away")
        job = job_of(db, sid)
        assert (job.status, job.last_error, job.lease_token) == ("queued", "CUDA driver went away", None)
        assert submission(db, sid).status == "queued"
        waits.append(job.run_after - clock.now())
        clock.advance(waits[-1] - timedelta(seconds=1))
        assert queue.claim("w") is None  # still backing off
        clock.advance(timedelta(seconds=1))
    assert waits == [timedelta(seconds=10), timedelta(seconds=40)]
    claim = queue.claim("w")
    assert claim.attempt == 3
    assert queue.fail(claim.job_id, claim.token, "CUDA driver went away")
    job, sub = job_of(db, sid), submission(db, sid)
    assert job.status == "dead" and "attempt 3 of 3" in job.last_error
    assert sub.status == "dead" and sub.finished_at == clock.now()
    clock.advance(timedelta(hours=1))
    assert queue.claim("w") is None


def test_a_job_whose_workers_keep_dying_is_dead_after_max_attempts(queue, db, clock):
    sid = submit(queue, "A")
    for attempt in (1, 2, 3):
        assert queue.claim("w").attempt == attempt
        clock.advance(timedelta(seconds=31))  # the worker died: no heartbeat, no result
    assert queue.claim("w") is None
    job, sub = job_of(db, sid), submission(db, sid)
    assert (job.status, job.last_error) == ("dead", "lease expired 3 times: worker lost")
    assert sub.status == "dead"
    assert queue.counts()["dead"] == 1


def test_a_released_job_goes_back_at_once_without_using_an_attempt(queue, db, clock):
    sid = submit(queue, "A")
    claim = queue.claim("w")
    assert queue.release(claim.job_id, claim.token, "worker stopped")
    job = job_of(db, sid)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "worker stopped")
    assert queue.position(sid) == 1
    again = queue.claim("w2")
    assert again.attempt == 1 and again.token != claim.token


def test_backoff_is_exponential_and_capped():
    backoff = exponential_backoff(timedelta(seconds=10), cap=timedelta(minutes=30))
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 500)] == [10, 40, 160, 640, 1800, 1800]
