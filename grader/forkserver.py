"""The host's side of a forked sandbox start: a zygote per SandboxConfig, and the process
handle of a sandbox whose runner it forked (the zygote's side and the design: grader/zygote.py).

    zygote = Zygote(command_for, env, cwd=home)  # the pool's thread starts it; ~5 s of imports, once
    shim_pid = zygote.fork(uid, namespace_fds, pipe_fds)   # one runner inside one holder sandbox
    process = ForkedProcess(holder, status_read)           # poll/wait/kill like a Popen
    zygote.close()
"""

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

from grader import zygote as zygote_side
from grader.errors import InfraError

# ---- tunables -------------------------------------------------------------------------------
ZYGOTE_READY_TIMEOUT_SECONDS = 180.0   # the zygote's imports (torch, _dynamo, the exercise's libraries) (s)
READY_POLL_SECONDS = 0.25             # while waiting for the zygote, how often a sandbox looks whether it was killed (s)
FORK_REPLY_TIMEOUT_SECONDS = 30.0      # a ready zygote answers a fork request in milliseconds (s)
ZYGOTE_EXIT_GRACE_SECONDS = 2.0        # after its control socket closes, before SIGKILL (s)
WAIT_SLICE_SECONDS = 0.1              # ForkedProcess.wait() holds its lock this long at most per look (s)
LOG_TAIL_BYTES = 8 << 10               # the zygote's own output kept, to explain a failed start (bytes)


class Zygote:
    """One zygote process: the runner, stopped before `hello`, that forks runners on request.
    Started by the pool's thread (its PR_SET_PDEATHSIG follows that thread); thread-safe."""

    def __init__(self, command_for, env: dict, *, cwd):
        self.command_for = command_for        # control fd -> the zygote's command line
        self.env, self.cwd = env, cwd         # the zygote's own (its runners get the sandbox's)
        self.forks = 0                        # runners forked (count), for tests and the bench
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failure = None
        self._tail = bytearray()
        self._process = None
        self._control = None

    def start(self, *, low_priority: bool = False) -> None:
        """Start the zygote process; it gets ready in the background (wait_ready)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_read, log_write = os.pipe()
        command = (["chrt", "--idle", "0"] if low_priority else []) + self.command_for(theirs.fileno())
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_write, stderr=log_write,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=self.env, close_fds=True, cwd=self.cwd)
        except OSError as e:
            ours.close()
            raise InfraError(f"the sandbox zygote could not be started: {e}") from None
        finally:
            theirs.close()
            os.close(log_write)
        self._control = ours
        threading.Thread(target=self._read_log, args=(log_read,), daemon=True, name="zygote-log").start()
        threading.Thread(target=self._await_ready, daemon=True, name="zygote-ready").start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None and self._failure is None

    def wait_ready(self, timeout: float = ZYGOTE_READY_TIMEOUT_SECONDS, *, unless=None) -> None:
        """Block until the zygote has done its imports; `unless()` turning true gives up early."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(min(READY_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise InfraError(f"the sandbox zygote was not ready after {timeout:g} s")
            if unless is not None and unless():
                raise InfraError("the sandbox was killed before its zygote was ready")
        if self._failure is not None:
            raise InfraError(self._failure)

    def fork(self, uid: int | None, fds: list[int], *, unless=None) -> int:
        """A runner forked into the holder sandbox whose namespaces and pipes `fds` are (the order
        of grader/zygote.py); returns the shim's pid. The caller closes its copies of `fds`."""
        self.wait_ready(unless=unless)
        with self._lock:
            if not self.alive():
                raise InfraError(self._failure or "the sandbox zygote has exited")
            try:
                socket.send_fds(self._control, [zygote_side.pack_request(uid)], fds)
                ready, _, _ = select.select([self._control], [], [], FORK_REPLY_TIMEOUT_SECONDS)
                reply = self._control.recv(4096) if ready else b""
            except OSError as e:
                raise InfraError(f"the sandbox zygote did not take the request: {e}") from None
            if not reply:
                self._failure = f"the sandbox zygote stopped answering{self._last_line()}"
                raise InfraError(self._failure)
            answer = json.loads(reply)
            if "pid" not in answer:
                raise InfraError(f"the sandbox zygote refused the request: {answer.get('error')}")
            self.forks += 1
            return int(answer["pid"])

    def close(self) -> None:
        """Close the control socket (the zygote exits at once), then make sure it is gone."""
        if self._control is not None:
            self._control.close()
        if self._process is None:
            return
        try:
            self._process.wait(timeout=ZYGOTE_EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait()

    # ---- background -----------------------------------------------------------------------------
    def _await_ready(self) -> None:
        try:
            message = self._control.recv(4096)
        except OSError:
            message = b""
        if not message or not json.loads(message).get("ready"):
            self._process.wait()
            self._failure = f"the sandbox zygote died while starting (exit {self._process.returncode}){self._last_line()}"
        self._ready.set()

    def _read_log(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                os.close(fd)
                return
            self._tail += chunk
            del self._tail[:-LOG_TAIL_BYTES]

    def _last_line(self) -> str:
        lines = bytes(self._tail).decode("utf-8", errors="replace").strip().splitlines()
        return f": {lines[-1]}" if lines else ""


class ForkedProcess:
    """A forked sandbox as one process, for grader/sandbox.py: the holder's bwrap (what kill()
    signals: its PID namespace takes the runner along) plus the runner's exit status, which the
    shim writes to a pipe. poll() and wait() answer for the runner, as Popen would for bwrap."""

    def __init__(self, holder: subprocess.Popen, status_read: int):
        self.holder = holder
        self.pid = holder.pid           # the process group that kill() signals
        self.shim_pid = None            # set once the zygote has forked the runner
        self.returncode = None
        self._status_read = status_read
        self._status = b""
        self._lock = threading.Lock()

    def roots(self) -> list[int]:
        """Where the sandbox's processes hang in the host's process tree: under the holder's bwrap
        (its PID namespace's init adopts orphans) and under the shim (the runner)."""
        return [self.pid] + ([self.shim_pid] if self.shim_pid is not None else [])

    def poll(self) -> int | None:
        """Never blocks (the pool asks under its lock): None while another thread reads."""
        if self._lock.acquire(blocking=False):
            try:
                self._read_status(0)
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            remaining = WAIT_SLICE_SECONDS if deadline is None else min(WAIT_SLICE_SECONDS, deadline - time.monotonic())
            if remaining <= 0:
                raise subprocess.TimeoutExpired(self.holder.args, timeout)
            with self._lock:
                self._read_status(remaining)
        return self.returncode

    def _read_status(self, timeout: float) -> None:
        """One look at the status pipe (lock held)."""
        if self.returncode is not None:
            return
        ready, _, _ = select.select([self._status_read], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self._status_read, 64)
        self._status += chunk
        if chunk and not self._status.endswith(b"\n"):
            return
        os.close(self._status_read)
        try:
            code = int(self._status.strip())
        except ValueError:  # the shim never got as far as the runner: the holder's status
            code = None
        # The runner is gone: the holder goes too (it would sleep on), and is reaped.
        try:
            os.killpg(self.holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        holder_code = self.holder.wait()
        self.returncode = code if code is not None else holder_code
