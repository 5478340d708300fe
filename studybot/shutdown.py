"""SIGTERM and SIGINT for the long-running processes (`serve`, `socket`, `clock`, `slack`).

A process manager stops a process with SIGTERM and kills it with SIGKILL some seconds later
(Heroku and systemd: 30 s; Kubernetes: 30 s by default). In between, each process finishes or
gives back the work in hand and exits 0:

* `serve` stops accepting connections, lets the requests in hand get their responses, then the
  listeners' work after the ack (bolt's listener pool) finish (studybot/slack/server.py);
* `socket` stops reading envelopes, acks every envelope it has read, lets the listeners finish,
  and closes the WebSocket with a close frame (studybot/slack/socket_mode.py);
* `clock` lets the tick in hand finish, then releases its lock so a standby clock takes over
  (studybot/clock_process.py).

The worker (`studybot work`) has its own handling and its own grace, `--stop-grace`
(studybot/worker/loop.py): a grading job can take minutes, so it is given back to the queue instead.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20.0  # after SIGTERM, how long the work in hand may take; below the usual 30 s to SIGKILL
SIGNAL_POLL_SECONDS = 0.05  # how often the relay thread looks for a received signal
EXIT_UNFINISHED = 1  # the grace ran out with work still in hand (it was dropped)


class ShutdownSignal:
    """SIGTERM/SIGINT as a ``threading.Event`` (``stop``) that any thread can wait on.

    The handler only stores the signal number: a plain attribute write takes no lock, so it cannot
    deadlock the code it interrupts (setting an Event from a handler could, if the main thread
    held that Event's lock at the time). A relay thread turns the number into ``stop``."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: int | None = None
        self._relay = threading.Thread(target=self._wait_for_signal, name="shutdown-signal", daemon=True)

    def install(self) -> "ShutdownSignal":
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record)
        self._relay.start()
        return self

    def _record(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum

    def _wait_for_signal(self) -> None:
        while self.received is None and not self.stop.is_set():
            time.sleep(SIGNAL_POLL_SECONDS)
        if self.received is not None:
            log.info("%s received: finishing the work in hand (at most %g s), then exiting",
                     signal.Signals(self.received).name, STOP_GRACE_SECONDS)
        self.stop.set()


def finished_within(work: Callable[[], object], seconds: float) -> bool:
    """Run ``work`` (a blocking wait such as ``executor.shutdown``) for at most ``seconds``;
    True when it returned in time. After a timeout it keeps running in a daemon thread."""
    thread = threading.Thread(target=work, name="shutdown-wait", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    return not thread.is_alive()
