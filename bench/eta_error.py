"""How wrong is the queued message's "about N min"? The ETA's error over a burst of queued jobs,
with 1 and 2 workers, on the real queue and the real estimator (studybot/services/eta.py).

    python bench/eta_error.py [--jobs 20] [--history 20] [--median 60] [--spread 0.25] [--seed 0]

A discrete-event run on a ManualClock over a real SQLite database (migrated as in production):
first `--history` grades of one exercise finish (the estimator learns their median), then
`--jobs` submissions arrive at once and each is given its estimate the moment it is queued,
as the learner's DM shows it. Workers claim and finish them through the real JobQueue; each
grade lasts a duration drawn from a log-normal with the given median (s) and sigma (the
spread of real grade times: sandbox start, data, training noise). The error of each job is
its estimate minus the time it really took to its result. Nothing sleeps: time is simulated.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T0 = datetime(2027, 1, 4, 12, 0, tzinfo=timezone.utc)


def notebook(tag: int) -> bytes:
    return b'{"cells": [], "metadata": {"tag": %d}, "nbformat": 4, "nbformat_minor": 5}' % tag


def enqueue(db, queue, clock, tag: int) -> int:
    from studybot.db.models import Notebook, Submission

    content = notebook(tag)
    digest = hashlib.sha256(content).hexdigest()
    with db.session() as s:
        s.add(Notebook(sha256=digest, content=content, size=len(content), created_at=clock.now()))
        submission = Submission(user_id=f"U{tag % 7}", exercise_id="digits", status="queued", created_at=clock.now(),
                                notebook_sha256=digest, source="shell")
        s.add(submission)
        s.flush()
        queue.enqueue(s, submission)
        return submission.id


def simulate(workers: int, args) -> list[tuple[float, float]]:
    """[(estimated seconds, actual seconds)] per burst job."""
    from studybot.db.engine import Database
    from studybot.queue import JobQueue
    from studybot.services.eta import QueueEstimates
    from studybot.time_source import ManualClock

    rng = random.Random(args.seed + workers)
    duration = lambda: args.median * math.exp(rng.gauss(0.0, args.spread))  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'eta.db'}")
        db.migrate()
        clock = ManualClock(T0)
        queue = JobQueue(db, clock)
        estimates = QueueEstimates(db, clock)
        result = {"status": "below_target", "message": "", "runs": []}
        for i in range(args.history):  # the history the estimator learns from, by every worker
            enqueue(db, queue, clock, i)
            claim = queue.claim(f"worker-{i % workers + 1}")
            clock.set(clock.now() + timedelta(seconds=duration()))
            queue.finish(claim.job_id, claim.token, result)
        burst = [enqueue(db, queue, clock, 1000 + i) for i in range(args.jobs)]
        queued_at = clock.now()
        estimated = {sid: estimates.estimate(sid).seconds for sid in burst}
        busy: dict[str, tuple[datetime, object]] = {}  # worker -> (finishes at, claim)
        done: dict[int, float] = {}
        while len(done) < len(burst):
            for w in range(1, workers + 1):
                name = f"worker-{w}"
                if name not in busy:
                    claim = queue.claim(name)
                    if claim is not None:
                        busy[name] = (clock.now() + timedelta(seconds=duration()), claim)
            name, (at, claim) = min(busy.items(), key=lambda item: item[1][0])
            clock.set(at)
            queue.finish(claim.job_id, claim.token, result)
            done[claim.submission_id] = (at - queued_at).total_seconds()
            del busy[name]
        db.dispose()
    return [(estimated[sid], done[sid]) for sid in burst]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--median", type=float, default=60.0, help="median grade duration (s)")
    parser.add_argument("--spread", type=float, default=0.25, help="log-normal sigma of grade durations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.jobs} jobs queued at once after {args.history} finished grades; grade durations log-normal, "
          f"median {args.median:g} s, sigma {args.spread:g}")
    print(f"{'workers':>7}  {'mean |error|':>12}  {'median |error|':>14}  {'max |error|':>11}  "
          f"{'mean error/actual':>17}  {'minutes shown right':>19}")
    for workers in (1, 2):
        pairs = simulate(workers, args)
        errors = [abs(e - a) for e, a in pairs]
        relative = [abs(e - a) / a for e, a in pairs]
        same_minute = sum(math.ceil(e / 60) == math.ceil(a / 60) for e, a in pairs)
        print(f"{workers:>7}  {statistics.mean(errors):>10.1f} s  {statistics.median(errors):>12.1f} s  "
              f"{max(errors):>9.1f} s  {statistics.mean(relative):>16.1%}  {same_minute:>12} of {len(pairs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
