"""`/study submit EXERCISE PATH` (and `/study check EXERCISE PATH`) in the shell: queue the notebook, grade it with an in-process
worker on this machine's CPU, and show the same edited DM message as Slack would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from studybot.bootstrap import Services
from studybot.errors import InputError
from studybot.services.feedback import FINAL_PREFIX
from studybot.services.intake import QUEUED

GRADE_TIMEOUT_SECONDS = 30 * 60  # the shell waits this long for a result before giving up on showing it
POLL_SECONDS = 0.5


def submit_and_grade(services: Services, user_id: str, exercise: str, path: str, say, *, lane: str = "ranked") -> None:
    file = Path(path).expanduser()
    if not file.is_file():
        services.intake.refuse(user_id, InputError(f"There is no file {path!r}."))
        return
    taken = services.intake.accept(user_id, file.read_bytes(), filename=file.name, exercise=exercise, source="shell",
                                   lane=lane)
    if taken.status != QUEUED:
        return
    submission = services.submissions.get(taken.submission_id)  # what the grading loop below watches
    try:
        from studybot.worker.loop import Worker
    except ImportError:
        say("Queued. The shell grades with the grader extra, which is not installed here: "
            "run `scripts/setup --all`, or start `studybot work` beside the shell.")
        return
    # Not drain: an infrastructure retry waits out its backoff, and the worker must still be there.
    worker = Worker(services.queue, worker_id="shell", poll=1.0, lanes=("check", "ranked", "verify"))
    thread = threading.Thread(target=worker.run, name="shell-grader", daemon=True)
    thread.start()
    deadline = time.monotonic() + GRADE_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline and thread.is_alive():
            changed = services.feedback.tick()
            if any(sid == submission.id and state.startswith(FINAL_PREFIX) for sid, state in changed):
                break
            time.sleep(POLL_SECONDS)
        else:
            say("Still grading; the result will show here when it is ready (`:quit` leaves, the job stays queued).")
            return
    finally:
        worker.stop()
        thread.join(timeout=10)
    if services.verification.state(submission.id) == "pending":
        _verify(services, submission.id, say)


def _verify(services: Services, submission_id: int, say) -> None:
    """A record candidate's re-run on new seeds. The shell is the only worker on its machine, so rather than
    let its own worker wait out the queue's avoid-worker grace, a second in-process worker takes it."""
    from studybot.worker.loop import Worker

    say("A new #1: grading it again on new seeds before the record is posted…")
    verifier = Worker(services.queue, worker_id="shell-verifier", lanes=("verify",), poll=1.0)
    thread = threading.Thread(target=verifier.run, name="shell-verifier", daemon=True)
    thread.start()
    deadline = time.monotonic() + GRADE_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline and thread.is_alive():
            services.feedback.tick()  # settles the re-run, and posts the record once it is verified
            if services.verification.state(submission_id) != "pending":
                return
            time.sleep(POLL_SECONDS)
    finally:
        verifier.stop()
        thread.join(timeout=10)
