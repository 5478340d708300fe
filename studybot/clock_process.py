"""The clock process: one APScheduler interval job that asks the database what is due.

APScheduler is only the ticker. Nothing is pickled into a job store; the truth is the deliveries
table (see services/posting.py). A second clock process started by mistake waits on a lock
(a PostgreSQL advisory lock keyed by the schema, or a file lock beside the SQLite database file:
one lock per database and schema, so clocks of two deployments never wait on each other) and takes over if the first
one dies; even without the lock, the conditional claim keeps every post single."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import Iterator

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.engine import make_url

from studybot.db.engine import Database

log = logging.getLogger(__name__)

CLOCK_LOCK_ID = 0x5709C10C  # PostgreSQL advisory lock key for "the clock process"
STANDBY_RETRY_SECONDS = 15  # how often a standby clock retries the lock


LOCK_SUFFIX = ".clock.lock"  # the SQLite standby lock: studybot.sqlite3 -> studybot.sqlite3.clock.lock


def sqlite_lock_path(db: Database) -> Path | None:
    """The lock file of a SQLite database: beside the database file, so it is per database (a lock in
    the data directory would make the clocks of two databases there block each other). None for an
    in-memory database, which no other process can share."""
    database = make_url(db.url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    path = Path(database)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def clock_lock(db: Database, stop: threading.Event, retry_seconds: float = STANDBY_RETRY_SECONDS) -> Iterator[bool]:
    """Hold the singleton lock for as long as the block runs; wait for it while another holds it.

    Yields False when ``stop`` was set while standing by (the block should then return at once)."""
    if db.is_postgres:
        connection = db.engine.connect()  # the lock lives as long as this session
        try:
            # Keyed by the schema too: deployments that share a database in separate schemas (and the
            # tests, one schema each) each have their own clock.
            while not connection.execute(text("SELECT pg_try_advisory_lock(:id, hashtext(current_schema()))"),
                                         {"id": CLOCK_LOCK_ID}).scalar():
                log.warning("another clock process holds the lock; standing by")
                if stop.wait(retry_seconds):
                    yield False
                    return
            connection.commit()
            yield True
        finally:
            connection.close()
        return
    lock_path = sqlite_lock_path(db)
    if lock_path is None:
        yield True
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                log.warning("another clock process holds %s; standing by", lock_path)
                if stop.wait(retry_seconds):
                    yield False
                    return
        yield True


FEEDBACK_SECONDS = 2  # how often grading progress and results are brought to learners' DMs


def run_clock(services, tick_seconds: int, stop: threading.Event | None = None) -> None:
    """Tick lesson deliveries and weekly boards every ``tick_seconds``, feedback (and record posts) every 2 s."""
    deliveries, db = services.deliveries, services.db
    stop = stop or threading.Event()
    with clock_lock(db, stop, retry_seconds=min(tick_seconds, STANDBY_RETRY_SECONDS)) as held:
        if not held:
            return
        log.info("clock started: checking for due lessons every %ss", tick_seconds)
        scheduler = BlockingScheduler(timezone="UTC")

        def tick() -> None:
            report = deliveries.tick()
            if report.posted or report.reminded or report.skipped or report.failed:
                log.info("tick: posted %s, reminded %d, skipped %s, failed %s",
                         report.posted, len(report.reminded), report.skipped, report.failed)

        def weekly_boards() -> None:
            posted = services.weekly_boards.tick()
            if posted:
                log.info("weekly leaderboards posted: %s", posted)

        def feedback() -> None:
            services.feedback.tick()

        def lesson_threads() -> None:  # a lesson post's question thread opens right after it
            services.lesson_threads.tick()

        def digests() -> None:
            posted = services.digests.tick()
            if posted:
                log.info("organizer digests posted: %s", posted)

        # coalesce + max_instances=1: a slow tick is never run twice at once or replayed in a burst.
        for job, seconds in ((tick, tick_seconds), (weekly_boards, tick_seconds), (feedback, FEEDBACK_SECONDS),
                             (lesson_threads, tick_seconds), (digests, tick_seconds)):
            scheduler.add_job(job, IntervalTrigger(seconds=seconds), id=job.__name__, coalesce=True,
                              max_instances=1, next_run_time=deliveries.clock.now(), misfire_grace_time=None)
        # On stop, shutdown(wait=True) lets the job in hand (a tick, a feedback pass) finish. The
        # scheduler's loop may return before that wait is over, so the lock is held (this with
        # block) until the watcher's shutdown has returned: a standby never starts mid-tick.
        def stop_when_asked() -> None:
            stop.wait()
            while True:
                try:
                    scheduler.shutdown(wait=True)
                    return
                except SchedulerNotRunningError:  # stop came before start(): shut it down once it runs
                    time.sleep(0.05)

        watcher = threading.Thread(target=stop_when_asked, name="clock-stop", daemon=True)
        watcher.start()
        scheduler.start()
        watcher.join()
        log.info("clock stopped: the tick in hand finished; releasing the lock")
