"""The grading process: both ends of the pipes between a worker and the process that grades its jobs.

The worker (loop.py) starts `python -m studybot.worker.child FD` through GradingChild, in its
own session and process group, sends it one setup line and then one job per line on stdin, and
reads JSON lines from the pipe FD: for each job, progress messages, then one result (or an
error), every one tagged with the job's id. child_main() is the other end: it calls the grader
library (grader.api.grade_submission), and is the only place in studybot that imports the
grader, so only this process ever loads torch.

The process lives as long as the worker, not one job: torch is imported once, before the first
claim, and the grader's warm sandbox pool (grader/pool.py) survives from one job to the next, so
a job's first run finds a sandbox already started when it is the same exercise as the last ones
(grader/pool.py GRADES_BEFORE_KEEPING_WARM; the sandbox itself still serves one run only, and holds no code and no data while it waits).
The worker kills the whole process group whenever a job must stop early (lost lease, stop), and
a process that died, or has graded MAX_JOBS_PER_PROCESS jobs, is replaced before the next job.

The child never sees the bot's secrets: SCRUBBED_VARIABLES and every SLACK_* variable are left
out of its environment, even for a worker embedded in another process (the shell's); the
sandbox clears the environment again for the learner's code. It dies with the worker's thread
that started it (PR_SET_PDEATHSIG), and the sandboxes die with it (bwrap --die-with-parent), so a
SIGKILLed worker leaves nothing running; end of stdin or SIGTERM drains the pools and exits.
"""

import ctypes
import importlib
import json
import os
import pathlib
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time

from studybot.worker.describe import short

# The bot's secrets and where its database is: never in a grading process's environment.
SCRUBBED_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL")
SCRUBBED_PREFIX = "SLACK_"
PR_SET_PDEATHSIG = 1
MAX_JOBS_PER_PROCESS = 50     # jobs one grading process grades before the worker replaces it (count):
                              # bounds what a leak in a library (or the grader) can grow to
CLOSE_TIMEOUT_SECONDS = 10.0  # an idle grading process told to stop gets this long to drain its pool (s)


def scrubbed_environment(environment) -> dict:
    """`environment` without the bot's secrets or its database URL."""
    return {name: value for name, value in environment.items()
            if name not in SCRUBBED_VARIABLES and not name.startswith(SCRUBBED_PREFIX)}


class GradingChild:
    """The worker's end: the grading process in its own process group, talking JSON lines.

    setup: what every job of this worker shares (exercises_dir, data_dir, unsafe, load_dataset,
    sys_path, parent, keep_warm, jobs: how many it takes, None for
    no limit); grade(job), whose messages carry its "id"."""

    def __init__(self, setup: dict):
        read_fd, write_fd = os.pipe()
        try:
            self.process = self._spawn(write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.messages = queue_module.Queue()
        self.jobs_sent = 0
        self._eof = False
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()
        self._send(setup)

    @staticmethod
    def _spawn(write_fd: int) -> subprocess.Popen:
        # Its own session and process group, so a kill takes everything it started; the messages
        # go on their own pipe, so nothing printed by libraries can be mistaken for one.
        return subprocess.Popen([sys.executable, "-m", "studybot.worker.child", str(write_fd)],
                                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=scrubbed_environment(os.environ),
                                start_new_session=True, close_fds=True)

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: noticed as an exit without a result

    def grade(self, job: dict) -> None:
        """Hand it one job (a dict with an "id"); answers come through next_message()."""
        self.jobs_sent += 1
        self._send(job)

    @property
    def worn_out(self) -> bool:
        return self.jobs_sent >= MAX_JOBS_PER_PROCESS

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

    def drain_result(self, job_id, timeout: float) -> dict | None:
        """After a kill: read what is left until the end of the stream; job_id's result, if any."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            message = self.next_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is not None and message.get("type") == "result" and message.get("id") == job_id:
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

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """An idle process: end of stdin lets it drain its pool and exit; killed if it takes too long."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # its process group: anything it left behind
        self.wait()


def child_main(message_fd: int) -> int:
    """The child's end: read the setup, then grade each job line from stdin, sending JSON lines
    on message_fd; exits at the end of stdin."""
    setup = json.loads(sys.stdin.readline() or "{}")
    # Die with the worker, whatever kills it: the sandbox in turn dies with us (--die-with-parent).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != setup.get("parent"):
        return 1  # the worker is already gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    for entry in reversed(setup["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    out = os.fdopen(message_fd, "w", buffering=1)

    def send(message: dict) -> None:
        out.write(json.dumps(message, default=str) + "\n")
        out.flush()

    try:
        from grader import api, pool
        from grader.paths import resolve_data_dir
        from grader.spec import find_exercise

        pool.drain_on_sigterm()  # SIGTERM: the warm sandboxes are killed and their folders removed
        # A worker that grades one job (--once) leaves no sandbox beside its last run; any other
        # keeps one warm for the next job of an exercise it has graded before (grader/pool.py).
        pool.KEEP_WARM_BETWEEN_GRADES = bool(setup.get("keep_warm", True))
        data_dir = resolve_data_dir(setup["data_dir"])
        load_dataset = function_named(setup["load_dataset"])
    except Exception as error:
        send({"type": "error", "id": None, "message": f"the grader cannot start: {short(error)}"})
        out.close()
        return 1

    jobs_left = setup.get("jobs")  # --once: one job, then this process ends with its pools
    for line in sys.stdin:
        job = json.loads(line)
        job_id = job["id"]
        try:
            spec = find_exercise(job["exercise_id"], setup["exercises_dir"])

            def progress(kind: str, **fields) -> None:
                if kind in ("run", "phase", "run_done", "failed"):
                    send({"type": "progress", "id": job_id, "kind": kind, "fields": fields})

            options = dict(data_dir=data_dir, load_dataset=load_dataset, unsafe_no_sandbox=setup["unsafe"],
                           progress=progress, plot_path=pathlib.Path(job["plot"]))
            if job.get("check"):  # the check lane: one quick unranked run on the public split
                result = api.check_submission(pathlib.Path(job["notebook"]), spec, **options)
            else:
                result = api.grade_submission(pathlib.Path(job["notebook"]), spec, runs=job["runs"], **options)
            send({"type": "result", "id": job_id, "result": result.as_dict()})
        except Exception as error:
            import traceback

            traceback.print_exc()
            send({"type": "error", "id": job_id, "message": short(error)})
        if jobs_left is not None:
            jobs_left -= 1
            if jobs_left <= 0:
                break
    out.close()
    return 0


# A dataset loader (tests) crosses into the child by name, "module:qualname".

def name_of_function(function) -> str | None:
    if function is None:
        return None
    name = f"{function.__module__}:{function.__qualname__}"
    if function_named(name) is not function:
        raise ValueError(f"load_dataset must be a module-level function, not {function!r}")
    return name


def function_named(name: str | None):
    if name is None:
        return None
    module, _, qualname = name.partition(":")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
