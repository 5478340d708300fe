"""Grading-queue throughput: jobs per second claimed and completed by N workers with no-op jobs,
on PostgreSQL and on SQLite.

    python bench/queue_throughput.py [--jobs 2000] [--workers 8] [--databases postgresql,sqlite]

Workers are separate processes (multiprocessing, spawn), each with its own engine, running the
real worker loop (studybot.worker.loop.Worker with --noop-jobs semantics and --drain): claim -> finish
with status "noop", nothing graded, no heartbeat thread (a no-op job ends long before lease/3).
So the figure is the queue's own ceiling: claim (dead-lease sweep + the SKIP LOCKED / BEGIN
IMMEDIATE claim + the submission update + the notebook read) and the fenced finish, two
transactions per job. Real jobs take seconds to minutes of GPU time; this is headroom.

Jobs are enqueued first, one transaction per submission as the bot does (the enqueue rate is
printed too), for 50 learners (the fair order interleaves them). The clock starts when all
workers have passed a barrier and stops when the last one finds the queue empty. Afterwards
every job must be done with attempts == 1 (claimed once), or the run fails.

PostgreSQL: STUDYBOT_TEST_POSTGRES_URL, else 127.0.0.1:5432/test, else a private pgserver, in
a fresh schema dropped afterwards. SQLite: a file in a temporary directory (WAL, as in
production)."""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
LEARNERS = 50


class TimedQueue:
    """The JobQueue with each claim and finish timed (the worker loop is unchanged)."""

    def __init__(self, queue):
        self._queue = queue
        self.lease = queue.lease
        self.claims, self.finishes, self.empty_claims = [], [], 0

    def claim(self, *args, **kwargs):
        started = time.perf_counter()
        claim = self._queue.claim(*args, **kwargs)
        if claim is None:
            self.empty_claims += 1
        else:
            self.claims.append(time.perf_counter() - started)
        return claim

    def finish(self, *args, **kwargs):
        started = time.perf_counter()
        ok = self._queue.finish(*args, **kwargs)
        self.finishes.append(time.perf_counter() - started)
        return ok

    def __getattr__(self, name):
        return getattr(self._queue, name)


def worker_process(url: str, index: int, barrier, results) -> None:
    from studybot.worker.loop import Worker
    from studybot.db.engine import Database
    from studybot.queue import JobQueue

    logging.basicConfig(level=logging.WARNING)
    db = Database(url)
    queue = TimedQueue(JobQueue(db))
    queue.counts()  # connect before the clock starts
    worker = Worker(queue, worker_id=f"bench-{index}", noop=True, drain=True, poll=0.01)
    barrier.wait()
    started = time.time()
    worker.run()
    ended = time.time()
    db.dispose()
    results.put({"index": index, "started": started, "ended": ended, "jobs": len(queue.claims),
                 "claims": queue.claims, "finishes": queue.finishes, "empty": queue.empty_claims})


def enqueue(db, count: int) -> float:
    from studybot.db.models import Notebook, Submission
    from studybot.queue import JobQueue

    queue = JobQueue(db)
    now = datetime.now(timezone.utc)
    digest = hashlib.sha256(NOTEBOOK).hexdigest()
    with db.session() as s:
        s.add(Notebook(sha256=digest, content=NOTEBOOK, size=len(NOTEBOOK), created_at=now))
    started = time.perf_counter()
    for i in range(count):
        with db.session() as s:
            submission = Submission(user_id=f"U{i % LEARNERS}", exercise_id="digits", status="queued",
                                    created_at=now, notebook_sha256=digest, source="shell")
            s.add(submission)
            s.flush()
            queue.enqueue(s, submission)
    return count / (time.perf_counter() - started)


def run(kind: str, url: str, jobs: int, workers: int) -> dict:
    from sqlalchemy import func, select

    from studybot.db.engine import Database
    from studybot.db.models import GradingJob

    db = Database(url)
    db.migrate()
    enqueue_rate = enqueue(db, jobs)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=worker_process, args=(url, i, barrier, results)) for i in range(workers)]
    for p in processes:
        p.start()
    reports = [results.get(timeout=600) for _ in processes]
    for p in processes:
        p.join()
    with db.session() as s:
        done = s.scalar(select(func.count()).where(GradingJob.status == "done"))
        attempts = set(s.scalars(select(GradingJob.attempts).distinct()))
    db.dispose()
    if done != jobs or attempts != {1}:
        raise SystemExit(f"{kind}: {done} of {jobs} done, attempts {attempts}: the queue lost or repeated work")
    wall = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    claims = [t for r in reports for t in r["claims"]]
    finishes = [t for r in reports for t in r["finishes"]]
    return {"kind": kind, "jobs": jobs, "workers": workers, "wall": wall, "rate": jobs / wall,
            "enqueue_rate": enqueue_rate, "claim": percentiles(claims), "finish": percentiles(finishes),
            "per_worker": sorted(r["jobs"] for r in reports)}


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50": statistics.median(ordered) * 1000, "p99": pick(0.99), "max": ordered[-1] * 1000}


def machine() -> str:
    import sqlite3

    import sqlalchemy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            memory = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM, "
    except (OSError, ValueError, IndexError):
        pass
    load = ", load average %.1f %.1f %.1f" % os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} CPUs, {memory}{platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, SQLite {sqlite3.sqlite_version}{load}")


def postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--databases", default="postgresql,sqlite")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"{args.workers} worker processes, {args.jobs} no-op jobs from {LEARNERS} learners, per database\n")
    for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
        if kind == "sqlite":
            directory = tempfile.mkdtemp(prefix="queue-bench-")
            url, drop, label = f"sqlite:///{directory}/bench.sqlite3", (lambda: None), "SQLite (file, WAL)"
        elif kind == "postgresql":
            from tests.support.databases import fresh_postgres_schema

            url, drop = fresh_postgres_schema()
            label = f"PostgreSQL {postgres_version(url)}"
        else:
            parser.error(f"unknown database {kind!r}")
        try:
            r = run(kind, url, args.jobs, args.workers)
        finally:
            drop()
        print(f"{label}:")
        print(f"  claimed and completed: {r['rate']:,.0f} jobs/s ({r['jobs']} jobs in {r['wall']:.2f} s), "
              f"each claimed exactly once")
        print(f"  claim  p50 {r['claim']['p50']:.2f} ms, p99 {r['claim']['p99']:.2f} ms, max {r['claim']['max']:.1f} ms")
        print(f"  finish p50 {r['finish']['p50']:.2f} ms, p99 {r['finish']['p99']:.2f} ms, max {r['finish']['max']:.1f} ms")
        print(f"  jobs per worker: {r['per_worker']}")
        print(f"  enqueue (one transaction per submission, one client): {r['enqueue_rate']:,.0f} jobs/s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
