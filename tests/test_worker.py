"""`studybot work` as real processes against real databases, grading in the real sandbox.

The tiny exercise's dataset is synthetic, so the workers run as
``python -c "...studybot.worker.cli.main(argv, load_dataset=load_blobs)" ...``: the worker's own
CLI entry point with the test dataset loader handed in (as `grader grade` tests do in-process).
One test runs the installed `studybot` console script itself (`studybot work`).

Covered: a job graded end to end; an unknown exercise; an infrastructure failure retried with
backoff; a worker SIGKILLed mid-job (its grading dies with it; another worker re-runs the job once
the lease expires); a frozen worker (SIGSTOP) that wakes up after another took its job over and
whose result is refused (SQLite and PostgreSQL); SIGTERM mid-job (the job goes back to the queue
at once); four worker processes on PostgreSQL sharing 200 jobs, each claimed and finished exactly
once (no-op jobs: real grading takes seconds a job); a worker cut off from the database,
which stops grading after 0.75 x lease and reports nothing; one grading process for job after
job, replaced when it died while idle; the grading process, which never
sees the bot's secrets or its database URL; and the bot, which never imports the grader.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from studybot.db.engine import Database
from studybot.db.models import GradingJob, Notebook, Submission
from studybot.queue import JobQueue
from tests.grader.grader_support import EXERCISES, reference_source, require_sandbox, write_notebook
from tests.support.databases import fresh_postgres_schema

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = ("import sys; from studybot.worker.cli import main; from tests.grader.grader_support import load_blobs; "
          "sys.exit(main(sys.argv[1:], load_dataset=load_blobs))")
STUDYBOT_SCRIPT = pathlib.Path(sys.executable).parent / "studybot"
MARKER = "NOTEBOOK-CONTENT-MARKER-7f3a"  # must never show up in a worker's log
SLEEP_AT_LOAD = 1.0  # seconds the slow notebook sleeps while its cells load (off the clock)
WAIT = 120.0  # generous: CI machines are small and shared


@pytest.fixture(scope="session")
def sandbox_ready():
    require_sandbox()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The grader's data directory, shared by the session: the tiny reference is measured once."""
    return tmp_path_factory.mktemp("grader-data")


@pytest.fixture
def sqlite_db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def notebooks(tmp_path):
    def make(sleep: float = 0.0) -> bytes:
        prelude = f"# {MARKER}\nimport time\ntime.sleep({sleep})\n" if sleep else f"# {MARKER}\n"
        return write_notebook(tmp_path / f"nb-{sleep}.ipynb", prelude + reference_source()).read_bytes()
    return make


class Workers:
    """Worker processes started by a test, each logging to its own file; all killed at the end."""

    def __init__(self, tmp_path: pathlib.Path, data_dir: pathlib.Path):
        self.tmp_path, self.data_dir = tmp_path, data_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, database_url: str, *args: str, script: bool = False, env: dict | None = None):
        command = ([str(STUDYBOT_SCRIPT), "work"] if script else [sys.executable, "-c", WORKER]) + [
            "--worker-id", name, "--exercises-dir", str(EXERCISES), "--data-dir", str(self.data_dir), *args]
        environment = {**os.environ, "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-must-not-leak",
                       "SLACK_SIGNING_SECRET": "must-not-leak-either", **(env or {})}
        with open(self.tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def wait(self, name: str, timeout: float = WAIT) -> int:
        try:
            return self.processes[name].wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {name} did not exit; its log:\n{self.log(name)}")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGCONT)
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


@pytest.fixture
def workers(tmp_path, data_dir, sandbox_ready):
    started = Workers(tmp_path, data_dir)
    yield started
    started.close()


def enqueue(db: Database, content: bytes, *, user: str = "U1", exercise: str = "tiny", count: int = 1) -> list[int]:
    queue = JobQueue(db)
    now = datetime.now(timezone.utc)
    digest = hashlib.sha256(content).hexdigest()
    ids = []
    with db.session() as s:
        if s.get(Notebook, digest) is None:
            s.add(Notebook(sha256=digest, content=content, size=len(content), created_at=now))
        for i in range(count):
            submission = Submission(user_id=f"{user}-{i % 17}" if count > 1 else user, exercise_id=exercise,
                                    status="queued", created_at=now, notebook_sha256=digest, lane="ranked",
                                    source="shell")
            s.add(submission)
            s.flush()
            queue.enqueue(s, submission)
            ids.append(submission.id)
    return ids


def row(db: Database, submission_id: int) -> tuple[Submission, GradingJob]:
    with db.session() as s:
        return (s.get(Submission, submission_id),
                s.scalar(select(GradingJob).where(GradingJob.submission_id == submission_id)))


def wait_for(predicate, what: str, timeout: float = WAIT, logs=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}" + (f"\n{logs()}" if logs else ""))


def children(pid: int) -> list[int]:
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def process_state(pid: int) -> str | None:
    """R, S, T, Z…, or None once it is gone (reaped)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def grading_children(pid: int) -> list[int]:
    """The grading children (`python -m studybot.worker.child FD`) of a process, alive or not reaped."""
    found = []
    for child in children(pid):
        try:
            if b"studybot.worker.child" in pathlib.Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                found.append(child)
        except OSError:
            pass
    return found


def grading_child_of(pid: int, logs) -> int:
    """The worker's grading child once a job is in its hands (the child is started with the worker,
    before the first claim, so its existence alone says nothing about the job)."""
    wait_for(lambda: "handed to grading process" in logs(), "a job handed to the grading process", logs=logs)
    return wait_for(lambda: next(iter(grading_children(pid)), None), "the worker's grading child", logs=logs)


def final(db: Database, submission_id: int) -> bool:
    return row(db, submission_id)[0].status not in ("queued", "running")


def test_a_job_is_graded_end_to_end_by_studybot_work_once(workers, sqlite_db, notebooks):
    [sid] = enqueue(sqlite_db, notebooks())
    worker = workers.start("solo", sqlite_db.url, "--once")
    assert workers.wait("solo") == 0, workers.log("solo")
    submission, job = row(sqlite_db, sid)
    result = json.loads(submission.result_json)
    assert submission.status == "passed", result
    assert submission.accuracy >= 0.9 and submission.train_seconds > 0 and submission.finished_at
    assert result["status"] == "passed" and result["exercise"] == "tiny" and result["runs"]
    assert (result["worker"], result["attempt"], result["plot"]) == ("solo", 1, None)
    assert submission.plot_png.startswith(b"\x89PNG")  # the picture travels in the database
    assert (job.status, job.attempts, job.lease_owner) == ("done", 1, "solo")
    progress = json.loads(job.progress)
    assert (progress["run"], progress["runs"]) == (1, 1)
    log = workers.log("solo")
    assert re.search(rf"claimed job {job.id} \(submission {sid}, exercise tiny, lane ranked, attempt 1\)", log)
    assert re.search(rf"finished job {job.id} \(submission {sid}\): passed in [\d.]+ s", log)
    assert MARKER not in log and "must-not-leak" not in log and "xoxb" not in log
    assert worker.returncode == 0


def test_one_grading_process_grades_job_after_job(workers, sqlite_db, notebooks):
    # Two jobs through one worker: the grading process it started before its first claim grades
    # both (torch and the warm sandbox carry over). A job stopped early takes its process along:
    # test_sigterm_mid_job_gives_the_job_back_at_once.
    first, second = enqueue(sqlite_db, notebooks()) + enqueue(sqlite_db, notebooks(), user="U2")
    workers.start("steady", sqlite_db.url, "--drain", "--poll", "0.1")
    assert workers.wait("steady") == 0, workers.log("steady")
    log = workers.log("steady")
    assert [row(sqlite_db, sid)[0].status for sid in (first, second)] == ["passed", "passed"], log
    assert len(re.findall(r"grading process \d+ started", log)) == 1, log
    assert "stopped after 2 job(s)" in log


def test_a_grading_process_that_died_while_idle_is_replaced_before_the_next_job(workers, sqlite_db, notebooks):
    worker = workers.start("resilient", sqlite_db.url, "--poll", "0.1")
    logs = lambda: workers.log("resilient")  # noqa: E731
    wait_for(lambda: "grading process" in logs(), "the grading process", logs=logs)
    idle = wait_for(lambda: next(iter(grading_children(worker.pid)), None), "the idle grading process", logs=logs)
    os.kill(idle, signal.SIGKILL)  # say the kernel's OOM killer chose it while the queue was empty
    wait_for(lambda: process_state(idle) in (None, "Z"), "the grading process to die")
    [sid] = enqueue(sqlite_db, notebooks())
    wait_for(lambda: final(sqlite_db, sid), "the job's result", logs=logs)
    assert row(sqlite_db, sid)[0].status == "passed", logs()
    assert len(re.findall(r"grading process \d+ started", logs())) == 2, logs()
    os.kill(worker.pid, signal.SIGTERM)
    assert workers.wait("resilient") == 0, logs()


def test_an_unknown_exercise_is_an_invalid_notebook_naming_the_known_ones(workers, sqlite_db, notebooks):
    [sid] = enqueue(sqlite_db, notebooks(), exercise="no-such-exercise")
    workers.start("w", sqlite_db.url, "--once")
    assert workers.wait("w") == 0, workers.log("w")
    submission, job = row(sqlite_db, sid)
    assert (submission.status, job.status) == ("invalid_notebook", "done")
    message = json.loads(submission.result_json)["message"]
    assert "no-such-exercise" in message and "tiny" in message


def test_an_infrastructure_error_goes_back_to_the_queue_with_backoff(workers, sqlite_db, notebooks):
    # The installed console script (`studybot work`), without the test dataset loader: the tiny exercise's
    # synthetic dataset is unknown to grader.datasets, which is the grader's problem, not the learner's.
    [sid] = enqueue(sqlite_db, notebooks())
    workers.start("plain", sqlite_db.url, "--once", script=True)
    assert workers.wait("plain") == 0, workers.log("plain")
    submission, job = row(sqlite_db, sid)
    assert (submission.status, job.status, job.attempts) == ("queued", "queued", 1)
    assert "synthetic-blobs" in job.last_error
    assert (job.run_after - datetime.now(timezone.utc)).total_seconds() > 3  # 10 s backoff
    assert "infrastructure failure" in workers.log("plain")


def test_a_worker_killed_mid_job_is_replaced_once_its_lease_expires(workers, sqlite_db, notebooks):
    [sid] = enqueue(sqlite_db, notebooks(sleep=SLEEP_AT_LOAD))
    doomed = workers.start("doomed", sqlite_db.url, "--lease", "2", "--poll", "0.1")
    logs = lambda: workers.log("doomed")  # noqa: E731
    child = grading_child_of(doomed.pid, logs)
    wait_for(lambda: row(sqlite_db, sid)[1].lease_owner == "doomed", "the claim", logs=logs)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    # The grading child (and with it the sandbox) dies with its worker.
    wait_for(lambda: process_state(child) in (None, "Z"), "the orphaned grading child to die")
    assert row(sqlite_db, sid)[0].status == "running"

    workers.start("heir", sqlite_db.url, "--lease", "30", "--poll", "0.1")
    wait_for(lambda: final(sqlite_db, sid), "the re-run", logs=lambda: workers.log("heir"))
    submission, job = row(sqlite_db, sid)
    assert submission.status == "passed", submission.result_json
    assert (job.status, job.attempts, job.lease_owner) == ("done", 2, "heir")
    assert json.loads(submission.result_json)["attempt"] == 2
    os.kill(workers.processes["heir"].pid, signal.SIGTERM)
    assert workers.wait("heir") == 0
    everything = workers.log("doomed") + workers.log("heir")
    assert len(re.findall(rf"finished job {job.id} ", everything)) == 1  # graded once
    assert "attempt 1" in workers.log("doomed") and "attempt 2" in workers.log("heir")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
        drop = lambda: None  # noqa: E731
    else:
        url, drop = fresh_postgres_schema()
        database = Database(url)
    database.migrate()
    yield database
    database.dispose()
    drop()


def freeze(pid: int, db: Database) -> None:
    """SIGSTOP the worker. On SQLite, only at a moment it holds no write transaction: a process
    frozen inside one keeps the whole database locked until it resumes (SQLite has no server to
    end its session). On PostgreSQL anywhere, even mid-transaction: the worker's sessions have
    idle_in_transaction_session_timeout, so the server ends a frozen one and frees its row lock."""
    while True:
        os.kill(pid, signal.SIGSTOP)
        if db.is_postgres or _sqlite_writable(db):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)


def _sqlite_writable(db: Database) -> bool:
    import sqlite3

    connection = sqlite3.connect(db.url.split("///", 1)[1], timeout=0.3, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def test_a_frozen_worker_that_wakes_up_late_cannot_overwrite_the_result(workers, any_db, notebooks):
    db = any_db
    [sid] = enqueue(db, notebooks(sleep=SLEEP_AT_LOAD))
    zombie = workers.start("zombie", db.url, "--once", "--lease", "2", "--poll", "0.1")
    logs = lambda: workers.log("zombie")  # noqa: E731
    child = grading_child_of(zombie.pid, logs)
    wait_for(lambda: row(db, sid)[1].lease_owner == "zombie", "the claim", logs=logs)
    freeze(zombie.pid, db)  # no more heartbeats; its grading child runs on

    workers.start("owner", db.url, "--lease", "30", "--poll", "0.1")
    wait_for(lambda: final(db, sid), "the new owner's result", logs=lambda: workers.log("owner"))
    # The zombie's own grading has finished too, its result waiting in the pipe.
    wait_for(lambda: process_state(child) in (None, "Z"), "the zombie's grading to complete")
    before = row(db, sid)

    os.kill(zombie.pid, signal.SIGCONT)
    assert workers.wait("zombie") == 0, logs()  # it wakes up, is refused, and exits cleanly
    assert re.search(r"result refused: the lease was lost", logs()), logs()
    submission, job = row(db, sid)
    assert (job.status, job.attempts, job.lease_owner) == ("done", 2, "owner")
    assert submission.result_json == before[0].result_json and submission.finished_at == before[0].finished_at
    assert json.loads(submission.result_json)["worker"] == "owner"
    os.kill(workers.processes["owner"].pid, signal.SIGTERM)
    assert workers.wait("owner") == 0


def test_sigterm_mid_job_gives_the_job_back_at_once(workers, sqlite_db, notebooks):
    [sid] = enqueue(sqlite_db, notebooks(sleep=30))
    worker = workers.start("leaving", sqlite_db.url, "--stop-grace", "0", "--poll", "0.1")
    logs = lambda: workers.log("leaving")  # noqa: E731
    child = grading_child_of(worker.pid, logs)
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert workers.wait("leaving", timeout=30) == 0, logs()
    assert time.monotonic() - started < 15
    assert process_state(child) is None
    submission, job = row(sqlite_db, sid)
    assert (submission.status, job.status, job.attempts, job.last_error) == ("queued", "queued", 0, "worker stopped")
    assert "given back to the queue" in logs()


def test_sigterm_mid_job_within_the_grace_lets_the_job_finish_and_exits_0(workers, sqlite_db, notebooks):
    # The grading child is running (it sleeps SLEEP_AT_LOAD while its cells load) when SIGTERM
    # comes: with the default grace (25 s) the job is graded to the end, its result recorded, and
    # no new job is claimed after it.
    first, second = enqueue(sqlite_db, notebooks(sleep=SLEEP_AT_LOAD)) + enqueue(sqlite_db, notebooks(), user="U2")
    worker = workers.start("finisher", sqlite_db.url, "--poll", "0.1")
    logs = lambda: workers.log("finisher")  # noqa: E731
    grading_child_of(worker.pid, logs)
    os.kill(worker.pid, signal.SIGTERM)
    assert workers.wait("finisher") == 0, logs()
    submission, job = row(sqlite_db, first)
    assert (submission.status, job.status, job.attempts) == ("passed", "done", 1), logs()
    assert row(sqlite_db, second)[1].status == "queued"  # stopping: nothing more was claimed
    assert "given back" not in logs() and "stopped after 1 job(s)" in logs()


def test_the_grading_child_never_sees_the_bots_secrets_or_its_database(workers, sqlite_db, notebooks):
    # Workers.start gives the worker SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and DATABASE_URL; one
    # more SLACK_ variable that no list names stands for any the bot may add later.
    enqueue(sqlite_db, notebooks(sleep=30))
    worker = workers.start("careful", sqlite_db.url, "--stop-grace", "0", "--poll", "0.1",
                           env={"SLACK_SOMETHING_NEW": "must-not-leak-either"})
    logs = lambda: workers.log("careful")  # noqa: E731
    child = grading_child_of(worker.pid, logs)
    names = {entry.split(b"=", 1)[0].decode() for entry in
             pathlib.Path(f"/proc/{child}/environ").read_bytes().split(b"\0") if entry}
    assert "PATH" in names  # the environment was read, and is the worker's otherwise
    assert not {name for name in names if name.startswith("SLACK_") or name == "DATABASE_URL"}, names
    os.kill(worker.pid, signal.SIGTERM)
    assert workers.wait("careful", timeout=30) == 0, logs()


def test_the_bot_never_imports_the_grader_or_torch():
    # Every studybot module, the worker's included: only the grading child imports the grader,
    # inside child_main, so a bot-only install (no torch) runs everything else.
    program = ("import importlib, pkgutil, sys, studybot\n"
               "for module in pkgutil.walk_packages(studybot.__path__, 'studybot.'):\n"
               "    if '.migrations' not in module.name and module.name != 'studybot.__main__':\n"
               "        importlib.import_module(module.name)\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grader', 'torch', 'numpy')))\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_grader_knows_nothing_of_the_bot():
    program = ("import importlib, pkgutil, sys, grader\n"
               "for module in pkgutil.walk_packages(grader.__path__, 'grader.'):\n"
               "    importlib.import_module(module.name)\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'studybot'))\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    sources = {path.name: path.read_text() for path in (REPO / "grader").glob("*.py")}
    assert len(sources) > 10
    assert [name for name, text in sources.items() if re.search(r"SLACK_|DATABASE_URL", text)] == []


def test_four_workers_on_postgresql_share_200_jobs_each_exactly_once(workers):
    url, drop = fresh_postgres_schema()
    db = Database(url)
    try:
        db.migrate()
        names = [f"pg{i}" for i in range(4)]
        for name in names:
            workers.start(name, url, "--noop-jobs", "--poll", "0.05")
        for name in names:
            wait_for(lambda: ": lanes " in workers.log(name), f"worker {name} to start",
                     logs=lambda: workers.log(name))
        ids = enqueue(db, b'{"cells": [], "nbformat": 4}', count=200)
        queue = JobQueue(db)
        wait_for(lambda: queue.counts()["done"] == 200, "200 jobs done",
                 logs=lambda: "\n".join(workers.log(n)[-2000:] for n in names))
        for name in names:
            os.kill(workers.processes[name].pid, signal.SIGTERM)
        assert [workers.wait(name) for name in names] == [0, 0, 0, 0]

        with db.session() as s:
            jobs = s.scalars(select(GradingJob)).all()
            results = dict(s.execute(select(Submission.id, Submission.result_json)).all())
        assert len(jobs) == 200 and {j.status for j in jobs} == {"done"} and {j.attempts for j in jobs} == {1}
        claims, finishes = {}, {}
        for name in names:
            log = workers.log(name)
            for job_id in re.findall(r"claimed job (\d+) ", log):
                claims.setdefault(int(job_id), []).append(name)
            for job_id in re.findall(r"finished job (\d+) ", log):
                finishes.setdefault(int(job_id), []).append(name)
        assert sorted(claims) == sorted(j.id for j in jobs)
        assert all(len(who) == 1 for who in claims.values())  # each claimed exactly once
        assert finishes == claims  # and finished by the worker that claimed it
        assert {json.loads(results[sid])["worker"] for sid in ids} == {who[0] for who in claims.values()}
        assert {j.lease_owner for j in jobs} == {who[0] for who in claims.values()}
        assert len({who[0] for who in claims.values()}) >= 2  # the work was really shared
    finally:
        db.dispose()
        drop()


class CutOffQueue:
    """The real queue, except that the database stops answering heartbeats and progress writes
    right after the claim (a network partition, as this worker sees it)."""

    def __init__(self, queue: JobQueue):
        self.queue, self.lease, self.reports = queue, queue.lease, []

    def claim(self, *args, **kwargs):
        return self.queue.claim(*args, **kwargs)

    def heartbeat(self, *args):
        raise ConnectionError("the database does not answer")

    report_progress = heartbeat

    def __getattr__(self, name):  # finish, fail, release: recorded, then passed on
        def call(*args, **kwargs):
            self.reports.append(name)
            return getattr(self.queue, name)(*args, **kwargs)
        return call


def test_a_worker_cut_off_from_the_database_stops_grading_after_three_quarters_of_its_lease(
        sqlite_db, notebooks, data_dir, sandbox_ready):
    from studybot.worker.loop import Worker
    from tests.grader.grader_support import load_blobs

    [sid] = enqueue(sqlite_db, notebooks(sleep=30))
    queue = JobQueue(sqlite_db, lease=timedelta(seconds=2))
    cut_off = CutOffQueue(queue)
    worker = Worker(cut_off, worker_id="cut-off", exercises_dir=EXERCISES, data_dir=data_dir, load_dataset=load_blobs)
    started = time.monotonic()
    claim = cut_off.claim("cut-off")
    assert worker.handle(claim) == "fenced"
    assert 1.5 <= time.monotonic() - started < 10  # 0.75 x 2 s, then the kill
    assert cut_off.reports == []  # nothing reported: the job is left to expire and be re-run
    submission, job = row(sqlite_db, sid)
    assert (submission.status, job.status, job.lease_owner) == ("running", "running", "cut-off")
    assert not grading_children(os.getpid())  # the grading child was killed and reaped


def test_a_record_candidate_is_verified_on_the_other_worker_then_posted_once(workers, bot):
    """Two `studybot work` processes (no-op grading with a fixed passing result): the record candidate's
    re-run goes to the worker that did not grade it, is verified, and the record post goes out once.
    On SQLite and PostgreSQL (the claim's avoid_worker condition is SQL)."""
    from studybot.db.models import Delivery
    from tests.support.boards import start

    bot.clock.set(datetime.now(timezone.utc))  # the workers run on real time
    start(bot)
    db, url = bot.services.db, bot.services.db.url
    result = {"status": "passed", "message": "passed", "accuracy": 0.98, "target": 0.97, "train_seconds": 2.0,
              "predict_seconds": 0.2, "rank_seconds": 2.2, "rank_seconds_low": 2.1, "rank_seconds_high": 2.4,
              "speed_ratio": 1.5, "flags": [], "log_tail": "", "hardware": {"device_name": "noop"}, "runs": []}
    names = ("w1", "w2")
    for name in names:
        workers.start(name, url, "--noop-jobs", "--noop-result", json.dumps(result), "--poll", "0.05")
    for name in names:
        wait_for(lambda: "lanes check,ranked,verify" in workers.log(name), f"worker {name} to start",
                 logs=lambda: workers.log(name))
    logs = lambda: "\n".join(workers.log(n)[-2000:] for n in names)  # noqa: E731
    accepted = bot.services.submissions.submit("ada", b'{"cells": [], "nbformat": 4}', filename="a.ipynb",
                                               exercise="digits", source="shell")
    bot.services.submissions.attach_message(accepted.submission_id, "@ada", "m0", "queued")
    original_id = accepted.submission_id
    wait_for(lambda: row(db, original_id)[0].status == "passed", "the submission graded", logs=logs)
    graded_by = row(db, original_id)[1].lease_owner
    bot.services.feedback.tick()  # the result DM; the record candidate gets its re-run
    with db.session() as s:
        rerun_id = s.scalar(select(Submission.id).where(Submission.verifies == original_id))
    assert rerun_id is not None
    wait_for(lambda: row(db, rerun_id)[0].status not in ("queued", "running"), "the re-run graded", logs=logs)
    rerun, rerun_job = row(db, rerun_id)
    assert rerun_job.avoid_worker == graded_by and rerun_job.lease_owner != graded_by
    assert json.loads(rerun.result_json)["worker"] == ({"w1", "w2"} - {graded_by}).pop()
    assert bot.services.feedback.tick() == [] and bot.services.feedback.tick() == []
    posts = [p.message.text for p in bot.chat.posted if p.channel_id == "fastai"]
    assert posts == ["First on the digits board in fastai: <@ada> trained and predicted in 2.20 s (2.10–2.40) "
                     "to 98.0%."]
    original = row(db, original_id)[0]
    assert (original.verification, original.verified_by_submission) == ("verified", rerun_id)
    with db.session() as s:
        assert s.execute(select(Delivery.lesson_key, Delivery.status).where(Delivery.kind == "record")).all() == [
            (f"sub{original_id}", "sent")]
    assert bot.services.submissions.quota_left("ada", "digits") == accepted.quota_left  # the re-run is free
    for name in names:
        os.kill(workers.processes[name].pid, signal.SIGTERM)
    assert [workers.wait(name) for name in names] == [0, 0]


def test_progress_keeps_the_last_runs_score_in_its_metric():
    from studybot.worker.progress import Progress

    progress = Progress(runs=5, attempt=1)
    progress.event("run", {"run": 0, "total": 5, "seed": 1})
    progress.event("run_done", {"run": 0, "accuracy": None, "score": 0.9312, "metric": "rmse",
                                "train_seconds": 1.0, "predict_seconds": 0.1, "rank_seconds": 1.1})
    _, state = progress.snapshot()
    assert (state["runs_done"], state["last_score"], state["last_metric"]) == (1, 0.9312, "rmse")
    assert "last_accuracy" not in state
