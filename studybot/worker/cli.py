"""`studybot work`: the options, the database set-up and the signals of a grading worker.

    studybot work [--lanes ranked,verify] [--worker-id ID] [--poll SECONDS] [--lease SECONDS]
                  [--once | --drain] [--stop-grace SECONDS] [--exercises-dir DIR] [--data-dir DIR]
                  [--unsafe-no-sandbox-dev-only] [--noop-jobs [--noop-result JSON]]

The database is DATABASE_URL, read the way the bot reads it (studybot.config; the same SQLite
default under STUDYBOT_DATA_DIR). That is the only configuration the worker takes from the bot:
it never reads the Slack variables, and removes them (and DATABASE_URL, once read) from its
environment before it grades anything. Results flow through the database; the bot posts them.
--exercises-dir and --data-dir are the grader's (grader/README.md).

Lanes: ``ranked`` (learners' submissions), ``verify`` (re-runs of record candidates and weekly top
entries on new seeds, services/verification.py) and ``check`` (quick one-run checks). By default a worker
takes ranked and verify jobs; a verify job avoids the worker that graded the original for
studybot.queue.VERIFY_AVOID_GRACE, so another machine re-runs it when one is alive.
"""

import argparse
import json
import logging
import os
import pathlib
import signal
import socket
import sys
from datetime import timedelta

from studybot.config import load_settings, redact_url
from studybot.db.engine import Database
from studybot.errors import ConfigError
from studybot.queue import JobQueue
from studybot.worker.child import SCRUBBED_VARIABLES
from studybot.worker.describe import short
from studybot.worker.loop import (DEFAULT_POLL_SECONDS, DEFAULT_STOP_GRACE_SECONDS, FENCE_AFTER, NOOP_STATUS,
                                  Worker)

DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_LANES = "check,ranked,verify"  # a quick check first: it takes one short run
UNSAFE_FLAG = "--unsafe-no-sandbox-dev-only"  # the grader's flag (grader/paths.py), spelled the same
EXIT_USAGE, EXIT_INFRA = 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `studybot work` options (studybot/cli.py adds the subcommand)."""
    parser.add_argument("--lanes", default=DEFAULT_LANES, help="comma-separated lanes, in order of preference "
                                                               f"(default: {DEFAULT_LANES}; e.g. check,ranked)")
    parser.add_argument("--worker-id", default=None, help="name in the queue and the logs (default: HOST-PID)")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_SECONDS,
                        help=f"seconds between claims when the queue is empty (default {DEFAULT_POLL_SECONDS:g})")
    parser.add_argument("--lease", type=float, default=DEFAULT_LEASE_SECONDS,
                        help=f"lease in seconds; heartbeats every lease/3, self-fence after "
                             f"{FENCE_AFTER:g} x lease without one (default {DEFAULT_LEASE_SECONDS:g})")
    once = parser.add_mutually_exclusive_group()
    once.add_argument("--once", action="store_true", help="grade at most one job, then exit")
    once.add_argument("--drain", action="store_true", help="exit as soon as no job is claimable")
    parser.add_argument("--stop-grace", type=float, default=DEFAULT_STOP_GRACE_SECONDS,
                        help="after SIGTERM, seconds the job in hand may take before it is given back "
                             f"(default {DEFAULT_STOP_GRACE_SECONDS:g})")
    parser.add_argument("--exercises-dir", type=pathlib.Path, default=None,
                        help="where exercises/<id>/spec.toml live (default: the repository's exercises/)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                        help="datasets, cached references and plots (default: $GRADER_DATA_DIR or "
                             "~/.cache/studybot-grader)")
    parser.add_argument(UNSAFE_FLAG, dest="unsafe", action="store_true",
                        help="run notebooks WITHOUT the sandbox: trusted code on a development machine only")
    parser.add_argument("--noop-jobs", dest="noop", action="store_true",
                        help=f"BENCHMARKS AND TESTS ONLY: claim and finish jobs without grading them "
                             f"(status {NOOP_STATUS!r}), to measure the queue itself")
    parser.add_argument("--noop-result", dest="noop_result", type=_json_object, default=None,
                        help="TESTS ONLY, with --noop-jobs: a JSON object merged into every no-op result "
                             "(e.g. a passing status and ranking times), to test what the bot makes of results")


def main(argv=None, *, load_dataset=None) -> int:
    """`studybot work` on its own (`argv` without the word `work`). `load_dataset` replaces
    grader.datasets.load (tests): it must be a module-level function, since the grading process
    imports it by name."""
    parser = argparse.ArgumentParser(prog="studybot work", description="Grade queued submissions.")
    add_arguments(parser)
    return run(parser.parse_args(argv), load_dataset=load_dataset)


def run(args, load_dataset=None) -> int:
    """Run a worker with parsed `studybot work` options until it stops; the exit status."""
    early_signals = []  # a SIGTERM while starting up: stop before claiming anything
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: early_signals.append(number))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s studybot-work[%(process)d] %(levelname)s %(message)s")
    lanes = tuple(lane.strip() for lane in args.lanes.split(",") if lane.strip())
    if not lanes or args.lease <= 0 or args.poll <= 0 or args.stop_grace < 0:
        print("studybot work: --lanes must name a lane; --lease and --poll must be positive", file=sys.stderr)
        return EXIT_USAGE
    # Only the database settings are read; the Slack variables are never looked at, only removed.
    try:
        settings = load_settings({name: os.environ[name] for name in ("DATABASE_URL", "STUDYBOT_DATA_DIR")
                                  if name in os.environ})
    except ConfigError as error:
        print(f"studybot work: {error.message}", file=sys.stderr)
        return EXIT_INFRA
    for name in SCRUBBED_VARIABLES:
        os.environ.pop(name, None)

    if not args.noop:
        problem = _grader_problem(args.unsafe)
        if problem:
            print(f"studybot work: {problem}", file=sys.stderr)
            return EXIT_INFRA
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    database = Database(settings.database_url)
    if database.is_postgres:
        _abort_stuck_transactions(database, max(1.0, args.lease / 4))
    queue = JobQueue(database, lease=timedelta(seconds=args.lease))
    try:
        queue.counts()
    except Exception as error:
        print(f"studybot work: cannot read the queue at {redact_url(settings.database_url)} ({short(error)}); "
              "is the database up and migrated (`studybot migrate`)?", file=sys.stderr)
        return EXIT_INFRA
    from grader.paths import resolve_data_dir  # the grader's rule for its data directory (no torch)

    worker = Worker(queue, worker_id=worker_id, lanes=lanes, poll=args.poll, exercises_dir=args.exercises_dir,
                    data_dir=resolve_data_dir(args.data_dir), unsafe=args.unsafe, noop=args.noop,
                    noop_result=args.noop_result,
                    once=args.once, drain=args.drain, stop_grace=args.stop_grace, load_dataset=load_dataset)
    worker.install_signal_handlers()
    if early_signals:
        worker._on_signal(early_signals[0], None)
    try:
        return worker.run()
    finally:
        database.dispose()


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"status\": \"passed\"}'")
    return value


def _grader_problem(unsafe: bool) -> str | None:
    """Why this machine cannot grade (no sandbox), or None; with --unsafe-no-sandbox-dev-only,
    the grader's warning box instead. Checked before the first claim, so a broken host takes no job."""
    from grader import sandbox
    from grader.errors import SandboxUnavailable
    from grader.paths import UNSAFE_WARNING

    if unsafe:
        print(UNSAFE_WARNING, file=sys.stderr)
        return None
    try:
        sandbox.check_available()
    except SandboxUnavailable as error:
        return str(error)
    return None


def _abort_stuck_transactions(database, seconds: float) -> None:
    """PostgreSQL ends this worker's sessions that sit idle inside a transaction for `seconds`.

    Our transactions last milliseconds; one left open means this process froze in the middle of
    one (SIGSTOP, a VM paused, a stuck disk). Its row lock on the job would otherwise make the
    claim's SKIP LOCKED pass the job over until the process resumes, so nobody could take it
    over. (SQLite has no such remedy: a process frozen inside a write transaction holds the
    database's write lock until it resumes or dies. That is one more reason SQLite is for one
    machine, and PostgreSQL for a fleet.)"""
    from sqlalchemy import event

    @event.listens_for(database.engine, "connect")
    def _set_timeout(dbapi_connection, _record):
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}")
        dbapi_connection.autocommit = autocommit
