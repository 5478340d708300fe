"""The real `studybot` processes, started as the Procfile starts them, with their logs to wait on.

    app = StudybotProcess(["socket"], env)
    app.wait_for_line(r"Socket Mode: connected")
    app.send_signal(signal.SIGTERM)
    assert app.wait() == 0
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Mapping

STUDYBOT = [sys.executable, "-m", "studybot"]


def studybot_env(tmp_path, **extra: str) -> dict:
    """The test's environment without any Slack, database or studybot variable, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "STUDYBOT_"))}
    return {**base, "STUDYBOT_DATA_DIR": str(tmp_path), "STUDYBOT_LOG_LEVEL": "INFO", **extra}


class StudybotProcess:
    """``python -m studybot ARGS``; its stderr (the log) is read line by line in a thread."""

    def __init__(self, args: list[str], env: Mapping[str, str], name: str | None = None,
                 command: list[str] | None = None) -> None:
        """``command``: run this argv instead of ``python -m studybot ARGS`` (bench/'s bare app)."""
        self.name = name or " ".join(args)
        self.process = subprocess.Popen(command or STUDYBOT + list(args), env=dict(env), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"log {self.name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for_line(self, pattern: str, timeout: float = 30.0, count: int = 1) -> re.Match:
        """Until ``count`` log lines match ``pattern``; the last match. AssertionError (with the log)
        after ``timeout`` or when the process exits first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in (re.search(pattern, line) for line in self.lines) if m]
                if len(matches) >= count:
                    return matches[count - 1]
                exited = not self._reader.is_alive()
                if exited or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name}: {len(matches)} line(s) matching {pattern!r}, expected {count}"
                        f"{' (it exited)' if exited else f' within {timeout}s'}; its log:\n" + "\n".join(self.lines))
                self._changed.wait(min(0.5, max(0.01, deadline - time.monotonic())))

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s; its log:\n{self.log()}") from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
