"""`/study submit EXERCISE PATH` in the shell: queue the notebook, grade it with an in-process
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


def submit_and_grade(services: Services, user_id: str, exercise: str, path: str, say) -> None:
    file = Path(path).expanduser()
    if not file.is_file():
        services.intake.refuse(user_id, InputError(f"There is no file {path!r}."))
        return
    taken = services.intake.accept(user_id, file.read_bytes(), filename=file.name, exercise=exercise, source="shell")
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
    worker = Worker(services.queue, worker_id="shell", poll=1.0)
    thread = threading.Thread(target=worker.run, name="shell-grader", daemon=True)
    thread.start()
    deadline = time.monotonic() + GRADE_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline and thread.is_alive():
            changed = services.feedback.tick()
            if any(sid == submission.id and state.startswith(FINAL_PREFIX) for sid, state in changed):
                return
            time.sleep(POLL_SECONDS)
        say("Still grading; the result will show here when it is ready (`:quit` leaves, the job stays queued).")
    finally:
        worker.stop()
        thread.join(timeout=10)
