"""The Worker: claim a job, grade it in a child process, and finish, fail or release it.

    claim -> grade (child.py; lease.py keeps the lease) -> finish / fail / release

The grading process (child.py) is started with the worker, before the first claim, so torch is
imported while the queue is still being polled, and it grades job after job: the warm sandbox it
keeps for an exercise serves that exercise's next job. A job stopped early takes its grading
process with it (the next job starts a fresh one), and so does a process that died.

Outcomes. Status infra_error (the grader's problem) -> queue.fail(): retried with backoff,
then dead (the organizers are told). Any other status (the learner's: passed, crashed,
timeout…) -> queue.finish(). An unknown exercise is the learner's invalid_notebook.

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

import logging
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import threading
import time

from studybot.worker.child import GradingChild, name_of_function
from studybot.worker.describe import first_line, short
from studybot.worker.lease import LeaseKeeper
from studybot.worker.progress import Progress

log = logging.getLogger("studybot.worker")

DEFAULT_POLL_SECONDS = 3.0
DEFAULT_STOP_GRACE_SECONDS = 25.0  # below the 30 s most process managers allow after SIGTERM
FENCE_AFTER = 0.75                 # x lease without a successful heartbeat: stop grading
CHECK_LANE_RUNS = 1                # the `check` lane is a quick one-run check, never ranked
NOOP_STATUS = "noop"               # --noop-jobs results: benchmarks and tests only


class Worker:
    """Claims jobs from `queue` (a studybot.queue.JobQueue) in `lanes`, one at a time, until
    stopped (or, with once/drain, until the queue is empty). noop: finish jobs without grading
    them (benchmarks and tests of the queue itself)."""

    def __init__(self, queue, *, worker_id: str, lanes=("ranked", "verify"), poll: float = DEFAULT_POLL_SECONDS,
                 exercises_dir=None, data_dir=None, unsafe: bool = False, noop: bool = False,
                 once: bool = False, drain: bool = False, stop_grace: float = DEFAULT_STOP_GRACE_SECONDS,
                 load_dataset=None, noop_result: dict | None = None):
        self.queue = queue
        self.worker_id = worker_id
        self.lanes = tuple(lanes)
        self.poll = poll
        self.lease_seconds = queue.lease.total_seconds()
        self.exercises_dir = exercises_dir
        self.data_dir = pathlib.Path(data_dir) if data_dir is not None else None
        self.unsafe, self.noop, self.once, self.drain = unsafe, noop, once, drain
        self.noop_result = dict(noop_result or {})  # tests: what a no-op job's result says besides its status
        self.stop_grace = stop_grace
        self.load_dataset_name = name_of_function(load_dataset)
        self.stop_requested_at = None  # monotonic time of the first SIGTERM/SIGINT
        self.abandon = False           # a second signal: give the job back now
        self._wake = threading.Event()
        self.jobs_done = 0
        self._grading = None           # the grading process (child.py), once started

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
        if not self.noop:
            self._grading_process()  # torch loads while the first claim is made
        try:
            self._claim_until_stopped()
        finally:
            self._close_grading_process()
        log.info("worker %s: stopped after %d job(s)", self.worker_id, self.jobs_done)
        return 0

    def _claim_until_stopped(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                claim = self.queue.claim(self.worker_id, self.lanes)
                failures = 0
            except Exception as error:  # the database is down: wait and try again
                failures += 1
                log.warning("claim failed (%d in a row): %s", failures, short(error))
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

    # the grading process ----------------------------------------------------------------------
    def _grading_process(self) -> GradingChild:
        """The live grading process, started (or replaced: dead, or worn out) when needed."""
        child = self._grading
        if child is not None and (child.process.poll() is not None or child.worn_out):
            self._close_grading_process()
            child = None
        if child is None:
            setup = {"exercises_dir": str(self.exercises_dir) if self.exercises_dir else None,
                     "data_dir": str(self.data_dir) if self.data_dir else None, "unsafe": self.unsafe,
                     "load_dataset": self.load_dataset_name, "sys_path": sys.path, "parent": os.getpid(),
                     "keep_warm": not self.once, "jobs": 1 if self.once else None}
            child = self._grading = GradingChild(setup)
            log.info("grading process %s started", child.process.pid)
        return child

    def _discard_grading_process(self) -> None:
        """Kill it now (a job stopped early, or it misbehaved): the next job starts a fresh one."""
        child, self._grading = self._grading, None
        if child is not None:
            child.kill()
            child.wait()

    def _close_grading_process(self) -> None:
        child, self._grading = self._grading, None
        if child is not None:
            child.close()

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
                                        **self.noop_result, "worker": self.worker_id, "attempt": claim.attempt},
                                None, started)
        progress = Progress(runs=0, attempt=claim.attempt)
        keeper = LeaseKeeper(self.queue, claim.job_id, claim.token, self.lease_seconds, started, progress)
        keeper.start()
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"studybot-job{claim.job_id}-"))
        try:
            outcome = self._grade(claim, keeper, progress, workdir, started)
        except Exception as error:  # our own bug or the database: never let one job stop the worker
            log.exception("job %s: the worker failed", claim.job_id)
            outcome = self._fail(claim, f"worker error: {short(error)}", started)
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
        progress.expect_runs(runs)  # "run 0 of N" until the first run starts
        job = {"id": claim.job_id, "notebook": str(notebook), "exercise_id": claim.exercise_id,
               "runs": runs if claim.lane == "check" else None, "check": claim.lane == "check", "plot": str(plot)}
        child = self._grading_process()
        child.grade(job)
        log.info("job %s: handed to grading process %s", claim.job_id, child.process.pid)
        fence_after = FENCE_AFTER * self.lease_seconds
        completed = False  # the process answered this job and may take the next one
        try:
            while True:
                message = child.next_message(timeout=0.2)
                if message is not None:
                    if message.get("id") not in (claim.job_id, None):
                        continue  # not this job's (never expected: jobs go one at a time)
                    kind = message.get("type")
                    if kind == "progress":
                        progress.event(message["kind"], message.get("fields", {}))
                    elif kind == "result":
                        completed = True
                        return self._record(claim, message["result"], plot, started)
                    elif kind == "error":
                        completed = message.get("id") is not None  # a job's error; None: the process cannot start
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
                    late = child.drain_result(claim.job_id, timeout=2.0)
                    if late is not None:
                        return self._record(claim, late, plot, started)
                    log.warning("job %s: lost the lease (%s): grading killed, nothing reported", claim.job_id, why)
                    return "fenced"
                if self.stopping and (self.abandon or time.monotonic() - self.stop_requested_at > self.stop_grace):
                    child.kill()
                    return self._release(claim, "worker stopped", started)
        finally:
            if not completed:
                self._discard_grading_process()

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
                    "" if ok else " (not recorded: lease lost)", first_line(error))
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
                              claim.job_id, what, short(error))
                    return None
                log.warning("job %s: could not %s (retrying): %s", claim.job_id, what, short(error))
                time.sleep(delay)
                delay = min(delay * 2, 5)
