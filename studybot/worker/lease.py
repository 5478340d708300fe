"""The LeaseKeeper: the thread that keeps a claimed job's lease alive while it is graded.

It is the only thread that talks to the database during a job: it extends the lease every
lease/3 and stores progress at most once per PROGRESS_INTERVAL, both fenced by the job's token
(studybot/queue.py). So a slow or locked database never stalls the thread that decides to
self-fence (studybot/worker/loop.py).
"""

import logging
import threading
import time

from studybot.worker.describe import short
from studybot.worker.progress import Progress

log = logging.getLogger("studybot.worker")

PROGRESS_INTERVAL = 1.0  # seconds: at most one progress write per job per second


class LeaseKeeper(threading.Thread):
    """`lost` is set when a heartbeat or a progress write is refused (another worker holds the
    job now); `last_ok` is the monotonic time the last successful heartbeat was *sent*."""

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
            log.warning("job %s: heartbeat failed: %s", self.job_id, short(error))
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
            log.warning("job %s: progress not stored: %s", self.job_id, short(error))
            return
        self._written_version = version
        if not ok:
            self.lost.set()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)
