"""`grader work`: claim grading jobs from the database, grade them in the sandbox, record results.

    grader work [--lanes ranked,check] [--worker-id ID] [--poll SECONDS] [--lease SECONDS]
                [--once | --drain] [--stop-grace SECONDS] [--exercises-dir DIR] [--data-dir DIR]
                [--unsafe-no-sandbox-dev-only] [--noop-jobs]

The database is DATABASE_URL, read the way the bot reads it (studybot.config; the same SQLite
default under STUDYBOT_DATA_DIR). That is the only configuration the worker takes from the bot:
it never reads the Slack variables, and removes them (and DATABASE_URL, once read) from its
environment before it grades anything. Results flow through the database; the bot posts them.

One job:

    claim (a lease of --lease seconds and a fresh fencing token; see studybot/queue.py)
      -> the notebook goes to a private temporary directory
      -> a child process, `python -m grader.work --child`, in its own process group, runs
         grader.api.grade_submission(); it sends progress and then the result back over a pipe
      -> meanwhile a heartbeat thread extends the lease every lease/3, and progress goes to
         the database as "run k of N" at most once a second (fenced by the token)
      -> result: status infra_error -> queue.fail() (retried with backoff, then dead);
         any other status (the learner's: passed, crashed, timeout…) -> queue.finish()

Self-fencing. The worker stops grading a job it may no longer own: when a heartbeat or a progress
write is refused (another worker took the job over), or when no heartbeat has succeeded for
0.75 x lease (the database is unreachable, or this process was frozen), it SIGKILLs the child's
process group; the sandbox goes with it (bwrap --die-with-parent), and the child itself dies with
the worker (PR_SET_PDEATHSIG), so a SIGKILLed worker leaves nothing running either. It then
reports nothing: the lease runs out and another worker re-runs the job. A result that was already
complete is still offered to finish(), which the fencing token refuses if the job has moved on,
so a worker that froze and woke up late can never overwrite the new owner's result.

SIGTERM or SIGINT: stop claiming; let the job in hand finish for up to --stop-grace seconds, then
kill it and give it back to the queue at once (queue.release: that attempt does not count). A
second signal gives it back immediately.

Logs (stderr): one line per job claimed and per job finished, with job, submission, exercise,
attempt, status and seconds; never the notebook's content, the database URL's password or a
secret.
"""

import argparse
import ctypes
import importlib
import json
import logging
import os
import pathlib
import queue as queue_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

log = logging.getLogger("grader.work")

DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_POLL_SECONDS = 3.0
DEFAULT_STOP_GRACE_SECONDS = 25.0  # below the 30 s most process managers allow after SIGTERM
FENCE_AFTER = 0.75                 # x lease without a successful heartbeat: stop grading
PROGRESS_INTERVAL = 1.0            # seconds: at most one progress write per job per second
CHECK_LANE_RUNS = 1                # the `check` lane is a quick one-run check, never ranked
SCRUBBED_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL")
NOOP_STATUS = "noop"               # --noop-jobs results: benchmarks and tests only
PR_SET_PDEATHSIG = 1
MAX_NOTES = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `grader work` options (grader/cli.py adds the subcommand)."""
    parser.add_argument("--lanes", default="ranked", help="comma-separated lanes, in order of preference "
                                                          "(default: ranked; e.g. check,ranked)")
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
    parser.add_argument("--unsafe-no-sandbox-dev-only", dest="unsafe", action="store_true",
                        help="run notebooks WITHOUT the sandbox: trusted code on a development machine only")
    parser.add_argument("--noop-jobs", dest="noop", action="store_true",
                        help=f"BENCHMARKS AND TESTS ONLY: claim and finish jobs without grading them "
                             f"(status {NOOP_STATUS!r}), to measure the queue itself")


# ---- the worker ---------------------------------------------------------------------------------

class Progress:
    """The grader's progress events, folded into what the bot shows: {"stage", "run", "runs",
    "phase", …}. Updated by the supervising thread, written by the LeaseKeeper."""

    def __init__(self, runs: int, attempt: int):
        self._lock = threading.Lock()
        self._state = {"stage": "starting", "run": 0, "runs": runs, "attempt": attempt}
        self._version = 1

    def event(self, kind: str, fields: dict) -> None:
        with self._lock:
            state = self._state
            if fields.get("reference"):
                state["stage"] = "measuring the reference"
                if kind == "run":
                    state["reference_run"], state["reference_runs"] = fields["run"] + 1, fields["total"]
            elif kind == "run":
                state.update(stage="grading", run=fields["run"] + 1, runs=fields["total"],
                             phase="starting the sandbox")
            elif kind == "phase":
                if "run" in fields:
                    state["phase"] = str(fields.get("text", ""))[:80]
                else:
                    state["stage"] = "grading"
            elif kind == "run_done":
                state.update(runs_done=fields["run"] + 1, last_accuracy=fields.get("accuracy"), phase="done")
            elif kind == "failed":
                state.update(phase=f"failed: {fields.get('status')}")
            else:
                return
            self._version += 1

    def expect_runs(self, runs: int) -> None:
        with self._lock:
            self._state["runs"] = runs
            self._version += 1

    def snapshot(self) -> tuple[int, dict]:
        with self._lock:
            return self._version, dict(self._state)


class LeaseKeeper(threading.Thread):
    """The only thread that talks to the database while a job is graded: it extends the lease
    every lease/3 and stores progress at most once per PROGRESS_INTERVAL, both fenced by the
    token. So a slow or locked database never stalls the thread that decides to self-fence.

    `lost` is set when either write is refused (another worker holds the job now); `last_ok`
    is the monotonic time the last successful heartbeat was *sent*."""

    def __init__(self, queue, job_id: int, token: str, lease_seconds: float, claimed_at: float, progress: Progress):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.queue, self.job_id, self.token, self.progress = queue, job_id, token, progress
        self.interval = lease_seconds / 3
        self.last_ok = claimed_at
        self.lost = threading.Event()
        self._stop_event = threading.Event()
        self._written_version = 0

    def run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop_event.is_set() and not self.lost.is_set():
            self._store_progress()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.interval
                self._beat(now)
            self._stop_event.wait(min(PROGRESS_INTERVAL, max(0.0, next_beat - time.monotonic())))

    def _beat(self, sent: float) -> None:
        try:
            ok = self.queue.heartbeat(self.job_id, self.token)
        except Exception as error:  # the database is unreachable: keep trying until fenced
            log.warning("job %s: heartbeat failed: %s", self.job_id, _short(error))
            return
        if ok:
            self.last_ok = sent
        else:
            self.lost.set()

    def _store_progress(self) -> None:
        version, state = self.progress.snapshot()
        if version == self._written_version:
            return
        try:
            ok = self.queue.report_progress(self.job_id, self.token, state)
        except Exception as error:
            log.warning("job %s: progress not stored: %s", self.job_id, _short(error))
            return
        self._written_version = version
        if not ok:
            self.lost.set()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


class Worker:
    def __init__(self, queue, *, worker_id: str, lanes=("ranked",), poll: float = DEFAULT_POLL_SECONDS,
                 exercises_dir=None, data_dir=None, unsafe: bool = False, noop: bool = False,
                 once: bool = False, drain: bool = False, stop_grace: float = DEFAULT_STOP_GRACE_SECONDS,
                 load_dataset=None):
        self.queue = queue
        self.worker_id = worker_id
        self.lanes = tuple(lanes)
        self.poll = poll
        self.lease_seconds = queue.lease.total_seconds()
        self.exercises_dir = exercises_dir
        self.data_dir = pathlib.Path(data_dir) if data_dir is not None else None
        self.unsafe, self.noop, self.once, self.drain = unsafe, noop, once, drain
        self.stop_grace = stop_grace
        self.load_dataset_ref = _reference_to(load_dataset)
        self.stop_requested_at = None  # monotonic time of the first SIGTERM/SIGINT
        self.abandon = False           # a second signal: give the job back now
        self._wake = threading.Event()
        self.jobs_done = 0

    # signals ------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        else:
            self.abandon = True
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming, as SIGTERM does (for a worker running in a thread, e.g. the shell's)."""
        self._on_signal(signal.SIGTERM, None)

    @property
    def stopping(self) -> bool:
        return self.stop_requested_at is not None

    # the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        log.info("worker %s: lanes %s, lease %gs, poll %gs%s", self.worker_id, ",".join(self.lanes),
                 self.lease_seconds, self.poll, " (NO-OP JOBS: nothing is graded)" if self.noop else "")
        failures = 0
        while not self.stopping:
            try:
                claim = self.queue.claim(self.worker_id, self.lanes)
                failures = 0
            except Exception as error:  # the database is down: wait and try again
                failures += 1
                log.warning("claim failed (%d in a row): %s", failures, _short(error))
                self._sleep(min(self.poll * 2 ** min(failures, 5), 60))
                continue
            if claim is None:
                if self.once or self.drain:
                    break
                self._sleep(self.poll)
                continue
            self.handle(claim)
            self.jobs_done += 1
            if self.once:
                break
        log.info("worker %s: stopped after %d job(s)", self.worker_id, self.jobs_done)
        return 0

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def handle(self, claim) -> str:
        """Grade one claimed job and record the outcome; returns what happened, for tests."""
        started = time.monotonic()
        log.info("claimed job %s (submission %s, exercise %s, lane %s, attempt %s)", claim.job_id,
                 claim.submission_id, claim.exercise_id, claim.lane, claim.attempt)
        if self.noop:
            return self._finish(claim, {"status": NOOP_STATUS, "message": "not graded (--noop-jobs)",
                                        "worker": self.worker_id, "attempt": claim.attempt}, None, started)
        progress = Progress(runs=0, attempt=claim.attempt)
        keeper = LeaseKeeper(self.queue, claim.job_id, claim.token, self.lease_seconds, started, progress)
        keeper.start()
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"studybot-job{claim.job_id}-"))
        try:
            outcome = self._grade(claim, keeper, progress, workdir, started)
        except Exception as error:  # our own bug or the database: never let one job stop the worker
            log.exception("job %s: the worker failed", claim.job_id)
            outcome = self._fail(claim, f"worker error: {_short(error)}", started)
        finally:
            keeper.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        return outcome

    def _grade(self, claim, keeper: LeaseKeeper, progress: Progress, workdir: pathlib.Path, started: float) -> str:
        from grader.errors import GraderError
        from grader.spec import list_exercises

        try:
            known = {spec.id: spec for spec in list_exercises(self.exercises_dir)}
        except GraderError as error:
            return self._fail(claim, f"the exercises cannot be read: {error}", started)
        spec = known.get(claim.exercise_id)
        if spec is None:
            return self._finish(claim, {
                "exercise": claim.exercise_id, "status": "invalid_notebook",
                "message": f"there is no exercise {claim.exercise_id!r} on this grader; known exercises: "
                           f"{', '.join(sorted(known)) or 'none'}",
            }, None, started)

        runs = CHECK_LANE_RUNS if claim.lane == "check" else spec.runs
        notebook = workdir / "submission.ipynb"
        notebook.write_bytes(claim.notebook)
        plot = workdir / "plot.png"
        job = {"notebook": str(notebook), "exercise_id": claim.exercise_id,
               "exercises_dir": str(self.exercises_dir) if self.exercises_dir else None,
               "data_dir": str(self.data_dir) if self.data_dir else None,
               "runs": runs if claim.lane == "check" else None, "unsafe": self.unsafe, "plot": str(plot),
               "load_dataset": self.load_dataset_ref, "sys_path": sys.path, "parent": os.getpid()}
        progress.expect_runs(runs)  # "run 0 of N" until the first run starts
        child = GradingChild(job)
        fence_after = FENCE_AFTER * self.lease_seconds
        try:
            while True:
                message = child.next_message(timeout=0.2)
                if message is not None:
                    kind = message.get("type")
                    if kind == "progress":
                        progress.event(message["kind"], message.get("fields", {}))
                    elif kind == "result":
                        return self._record(claim, message["result"], plot, started)
                    elif kind == "error":
                        return self._fail(claim, f"the grader failed: {message.get('message', '')}", started)
                    continue  # drain what is waiting before deciding anything else
                if child.exited:
                    if self.stopping:
                        return self._release(claim, "worker stopped", started)
                    return self._fail(claim, f"the grading process died ({child.exit_description()})", started)
                why = None
                if keeper.lost.is_set():
                    why = "another worker holds the job now"
                elif time.monotonic() - keeper.last_ok > fence_after:
                    why = f"no successful heartbeat for {time.monotonic() - keeper.last_ok:.0f} s"
                if why:
                    child.kill()
                    # A result the child had already completed (say this process was frozen
                    # meanwhile) is still offered: finish() takes it only if the token holds.
                    late = child.drain_result(timeout=2.0)
                    if late is not None:
                        return self._record(claim, late, plot, started)
                    log.warning("job %s: lost the lease (%s): grading killed, nothing reported", claim.job_id, why)
                    return "fenced"
                if self.stopping and (self.abandon or time.monotonic() - self.stop_requested_at > self.stop_grace):
                    child.kill()
                    return self._release(claim, "worker stopped", started)
        finally:
            child.kill()
            child.wait()

    # outcomes -----------------------------------------------------------------------------------
    def _record(self, claim, result: dict, plot: pathlib.Path, started: float) -> str:
        if result.get("status") == "infra_error":
            return self._fail(claim, result.get("message") or "infra_error", started)
        plot_png = None
        if result.get("plot"):
            try:
                plot_png = plot.read_bytes()
            except OSError:
                pass
        result["plot"] = None  # a path on this machine means nothing to the bot: the PNG goes in plot_png
        result.setdefault("notes", [])
        return self._finish(claim, result, plot_png, started)

    def _finish(self, claim, result: dict, plot_png, started: float) -> str:
        result.setdefault("worker", self.worker_id)
        result.setdefault("attempt", claim.attempt)
        ok = self._with_retries(lambda: self.queue.finish(claim.job_id, claim.token, result, plot_png=plot_png),
                                claim, "record the result")
        seconds = time.monotonic() - started
        if ok:
            log.info("finished job %s (submission %s): %s in %.1f s (attempt %s)", claim.job_id,
                     claim.submission_id, result["status"], seconds, claim.attempt)
            return "finished"
        if ok is False:
            log.warning("job %s: result refused: the lease was lost to another worker; %s after %.1f s discarded",
                        claim.job_id, result["status"], seconds)
            return "refused"
        return "unrecorded"

    def _fail(self, claim, error: str, started: float) -> str:
        ok = self._with_retries(lambda: self.queue.fail(claim.job_id, claim.token, error), claim, "report a failure")
        log.warning("job %s (submission %s): infrastructure failure after %.1f s%s: %s", claim.job_id,
                    claim.submission_id, time.monotonic() - started,
                    "" if ok else " (not recorded: lease lost)", _first_line(error))
        return "failed" if ok else "refused"

    def _release(self, claim, reason: str, started: float) -> str:
        ok = self._with_retries(lambda: self.queue.release(claim.job_id, claim.token, reason), claim, "give back")
        log.info("job %s (submission %s): given back to the queue after %.1f s (%s)%s", claim.job_id,
                 claim.submission_id, time.monotonic() - started, reason, "" if ok else "; lease already lost")
        return "released"

    def _with_retries(self, call, claim, what: str):
        """The database may blip: retry for up to 0.75 x lease (the token makes retries safe).
        True/False from the call, or None when the database never answered."""
        deadline = time.monotonic() + FENCE_AFTER * self.lease_seconds
        delay = 0.5
        while True:
            try:
                return call()
            except Exception as error:
                if time.monotonic() + delay > deadline:
                    log.error("job %s: could not %s: %s; the lease will expire and the job run again",
                              claim.job_id, what, _short(error))
                    return None
                log.warning("job %s: could not %s (retrying): %s", claim.job_id, what, _short(error))
                time.sleep(delay)
                delay = min(delay * 2, 5)


# ---- the grading child -------------------------------------------------------------------------

class GradingChild:
    """`python -m grader.work --child` in its own process group, talking JSON lines on a pipe."""

    def __init__(self, job: dict):
        read_fd, write_fd = os.pipe()
        try:
            self.process = self._spawn(write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.messages = queue_module.Queue()
        self._eof = False
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()
        try:
            self.process.stdin.write(json.dumps(job).encode())
            self.process.stdin.close()
        except OSError:
            pass  # it died at once: noticed as an exit without a result

    @staticmethod
    def _spawn(write_fd: int) -> subprocess.Popen:
        # Its own session and process group, so a kill takes everything it started; the messages
        # go on their own pipe, so nothing printed by libraries can be mistaken for one.
        # Never a Slack secret or the database URL, even for a worker embedded in another process
        # (the shell's); the sandbox clears the environment again for the learner's code.
        environment = {name: value for name, value in os.environ.items()
                       if name not in SCRUBBED_VARIABLES and not name.startswith("SLACK_")}
        return subprocess.Popen([sys.executable, "-m", "grader.work", "--child", str(write_fd)],
                                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=environment,
                                start_new_session=True, close_fds=True)

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                try:
                    self.messages.put(json.loads(line))
                except ValueError:
                    self.messages.put({"type": "error", "message": "unreadable message from the grading process"})
        self.messages.put(None)  # end of stream

    def next_message(self, timeout: float) -> dict | None:
        if self._eof:
            time.sleep(min(timeout, 0.05))
            return None
        try:
            message = self.messages.get(timeout=timeout)
        except queue_module.Empty:
            return None
        if message is None:
            self._eof = True
        return message

    def drain_result(self, timeout: float) -> dict | None:
        """After a kill: read what is left until the end of the stream; the result, if any."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            message = self.next_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is not None and message.get("type") == "result":
                return message["result"]
        return None

    @property
    def exited(self) -> bool:
        """The child is gone and everything it said has been read."""
        return self._eof and self.process.poll() is not None

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self) -> None:
        self.process.wait()
        self._reader.join(timeout=5)


def child_main(message_fd: int) -> int:
    """Inside the grading child: read the job from stdin, grade, send JSON lines on message_fd."""
    job = json.loads(sys.stdin.read())
    # Die with the worker, whatever kills it: the sandbox in turn dies with us (--die-with-parent).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != job["parent"]:
        return 1  # the worker is already gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    for entry in reversed(job["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    out = os.fdopen(message_fd, "w", buffering=1)

    def send(message: dict) -> None:
        out.write(json.dumps(message, default=str) + "\n")
        out.flush()

    try:
        from grader import api
        from grader.paths import resolve_data_dir
        from grader.spec import find_exercise

        spec = find_exercise(job["exercise_id"], job["exercises_dir"])
        data_dir = resolve_data_dir(job["data_dir"])
        load_dataset = _resolve(job["load_dataset"])

        def progress(kind: str, **fields) -> None:
            if kind in ("run", "phase", "run_done", "failed"):
                send({"type": "progress", "kind": kind, "fields": fields})

        result = api.grade_submission(pathlib.Path(job["notebook"]), spec, data_dir=data_dir,
                                      load_dataset=load_dataset, runs=job["runs"], unsafe_no_sandbox=job["unsafe"],
                                      progress=progress, plot_path=pathlib.Path(job["plot"]))
        send({"type": "result", "result": result.as_dict()})
    except Exception as error:
        import traceback

        traceback.print_exc()
        send({"type": "error", "message": _short(error)})
    finally:
        out.close()
    return 0


# ---- entry point --------------------------------------------------------------------------------

def main(args, load_dataset=None) -> int:
    """`grader work`, from grader/cli.py. `load_dataset` replaces grader.datasets.load (tests): it
    must be a module-level function, since the grading child imports it by name."""
    from datetime import timedelta

    from grader import sandbox
    from grader.paths import UNSAFE_WARNING, resolve_data_dir
    from studybot.config import load_settings, redact_url
    from studybot.db.engine import Database
    from studybot.errors import ConfigError
    from studybot.queue import JobQueue

    early_signals = []  # a SIGTERM while starting up: stop before claiming anything
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: early_signals.append(number))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s grader-work[%(process)d] %(levelname)s %(message)s")
    lanes = tuple(lane.strip() for lane in args.lanes.split(",") if lane.strip())
    if not lanes or args.lease <= 0 or args.poll <= 0 or args.stop_grace < 0:
        print("grader work: --lanes must name a lane; --lease and --poll must be positive", file=sys.stderr)
        return 2
    # Only the database settings are read; the Slack variables are never looked at, only removed.
    try:
        settings = load_settings({name: os.environ[name] for name in ("DATABASE_URL", "STUDYBOT_DATA_DIR")
                                  if name in os.environ})
    except ConfigError as error:
        print(f"grader work: {error.message}", file=sys.stderr)
        return 3
    for name in SCRUBBED_VARIABLES:
        os.environ.pop(name, None)

    if args.unsafe and not args.noop:
        print(UNSAFE_WARNING, file=sys.stderr)
    if not args.unsafe and not args.noop:
        sandbox.check_available()  # SandboxUnavailable: cli.main says why, exit status 3
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    database = Database(settings.database_url)
    if database.is_postgres:
        _abort_stuck_transactions(database, max(1.0, args.lease / 4))
    queue = JobQueue(database, lease=timedelta(seconds=args.lease))
    try:
        queue.counts()
    except Exception as error:
        print(f"grader work: cannot read the queue at {redact_url(settings.database_url)} ({_short(error)}); "
              "is the database up and migrated (`studybot migrate`)?", file=sys.stderr)
        return 3
    worker = Worker(queue, worker_id=worker_id, lanes=lanes, poll=args.poll, exercises_dir=args.exercises_dir,
                    data_dir=resolve_data_dir(args.data_dir), unsafe=args.unsafe, noop=args.noop, once=args.once,
                    drain=args.drain, stop_grace=args.stop_grace, load_dataset=load_dataset)
    worker.install_signal_handlers()
    if early_signals:
        worker._on_signal(early_signals[0], None)
    try:
        return worker.run()
    finally:
        database.dispose()


# ---- helpers ------------------------------------------------------------------------------------

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


def _reference_to(function) -> str | None:
    if function is None:
        return None
    reference = f"{function.__module__}:{function.__qualname__}"
    if _resolve(reference) is not function:
        raise ValueError(f"load_dataset must be a module-level function, not {function!r}")
    return reference


def _resolve(reference: str | None):
    if reference is None:
        return None
    module, _, name = reference.partition(":")
    target = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {_first_line(str(error))}"


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(child_main(int(sys.argv[2])))
