"""Warm, single-use sandboxes: started ahead of need, handed to one run each, then killed.

A sandbox's start (bwrap, the runner, `import torch`, CUDA init, torch's lazy imports, the
exercise's libraries) needs no learner code and no data, so a Pool does it before a run asks:

    pool = shared(config)        # the process's pool for this SandboxConfig (grader/sandbox.py)
    sandbox = pool.take()        # a ready sandbox no one has used; waits for one if need be
    sandbox.handoff(code) ...    # one run, then sandbox.finish() (grader/grading.py)
    pool.close()                 # kill what waits (close_all() at exit and on SIGTERM)

What a waiting sandbox holds: the runner blocked in a read of its command pipe (no CPU), an
empty /scratch, an empty data folder, no code. take() never returns a sandbox twice, nor one
that died while waiting: that one is discarded and replaced. Each run still gets its own
process, PID namespace, uid (as root), tmpfs and job folder, exactly as an unpooled sandbox.

When the next sandbox starts, without stealing the running one's CPU or GPU (the choice):
  * by default ("serial") a replacement starts only when no taken sandbox of any pool of the
    process is still running, at normal priority, and take() waits until no sandbox of any pool
    is starting: no start ever overlaps a clock, not even another exercise's or the deploy
    exercise's predict pool. What is hidden: the first sandbox of a grade (started beside the dataset's
    load and the reference's look-up) and the one a previous grade of the same exercise in this
    process left warm (from the exercise's second grade on: kept_warm_after_grade).
  * GRADER_POOL_OVERLAP=idle, where the grader may give a priority back (root, or RLIMIT_NICE
    allowing nice 0): the replacement starts at once when a sandbox is taken, under SCHED_IDLE,
    and handoff() restores normal scheduling for every thread of it. It hides each start
    completely, but on a 2-core CPU machine it slowed the timed training ~3x (measured: a
    2-thread torch run and an idle-class `import torch` still contend; bench/idle_contention.py
    puts a training beside a loop of sandbox starts: 8.8 s alone, 52 s beside idle-class starts,
    76 s at nice 19, 78 s at normal priority), so it is for machines with cores the run leaves
    idle (GPU exercises), to be measured there first.

A CPU pool forks its sandboxes' runners from one zygote (grader/zygote.py; START below): then a
start is a bwrap and a fork, about 0.05 s, and serial mode costs a run next to nothing.

Every tunable is below, with its unit; GRADER_POOL_SIZE=0 turns pooling off (each take() then
starts a sandbox on demand, at normal priority: the old behaviour, for comparisons).
"""

import atexit
import os
import pathlib
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time

from grader.errors import InfraError
from grader.sandbox import JobPaths, Sandbox, SandboxConfig, draw_sandbox_uid, zygote_for

def _setting(name: str, default: str, *, choices: tuple = (), count: bool = False):
    """One environment tunable: a malformed value stops the grader with a message naming it."""
    value = os.environ.get(name, default)
    if count:
        if not value.isdigit():
            raise InfraError(f"{name}={value!r}: expected a whole number of 0 or more")
        return int(value)
    if choices and value not in choices:
        raise InfraError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


# ---- tunables -------------------------------------------------------------------------------
POOL_SIZE = _setting("GRADER_POOL_SIZE", "1", count=True)   # sandboxes kept waiting per config (count;
                                                           # 0 = no pool: start on demand)
OVERLAP = _setting("GRADER_POOL_OVERLAP", "serial", choices=("serial", "idle"))  # "serial": a replacement starts only once the
                                       # taken sandbox has finished (no start beside a timed run); "idle": at
                                       # once, under SCHED_IDLE (where its priority can be given back). Measured
                                       # on the 2-core CPU box (bench/grader_overhead.py): idle hides the start
                                       # (wait 0.00 s) but digits' median train() went 1.88 -> 5.39 s, so it
                                       # steals from a CPU run and is not the default
KEEP_WARM_BETWEEN_GRADES = True       # a grade's final run still leaves a sandbox waiting, for the next
                                       # grade of the same exercise in this process (the worker's next job),
                                       # once the exercise has been graded GRADES_BEFORE_KEEPING_WARM times
                                       # here; a one-job process (`studybot work --once`'s grading process)
                                       # sets False
GRADES_BEFORE_KEEPING_WARM = 2         # grades of one config (count) before its final run leaves a sandbox
                                       # waiting: a one-off exercise's grade leaves none to be killed unused
                                       # (the suite: 41 of 154 starts were such; a grade's own first sandbox
                                       # starts beside its dataset's load instead, grading.warm_pool)
START = _setting("GRADER_SANDBOX_START", "fork", choices=("fork", "fresh"))  # "fork": a CPU sandbox's runner is forked from the
                                       # pool's zygote, torch already imported (grader/zygote.py; 0.05 s
                                       # instead of ~5 s of imports per start on the 2-core box: digits'
                                       # overhead per run +3.6 s -> -0.1 s against in-process); "fresh":
                                       # every runner imports torch itself (always so for CUDA)
MAX_POOLS = _setting("GRADER_MAX_POOLS", "2", count=True)  # configs with a pool (and a zygote) at once (count); the least recently used
                                       # idle one is closed for a new one (a grade needs 1, deploy 2)
MEMORY_PER_WAITING_SANDBOX_MB = 512    # what a waiting sandbox may cost (MiB; CPU torch + _dynamo measured
                                       # 360 MiB anonymous, the libraries' pages are shared): none is
                                       # started ahead of a run unless MemAvailable has this much
IDLE_TIMEOUT_SECONDS = 600.0           # a sandbox waiting longer is killed, and the pool stays cold
                                       # until the next take() (s)
TAKE_TIMEOUT_SECONDS = 180.0           # take() gives up (InfraError) when none is ready by then (s)
MAX_START_FAILURES = 3                 # starts in a row that die before `hello`: take() then fails
                                       # with the last one's reason instead of retrying forever
FAILURE_BACKOFF_SECONDS = 1.0          # pause after a failed start before the next (s)
MEMORY_RECHECK_SECONDS = 5.0           # how often a pool short of memory looks again (s)


def can_restore_priority() -> bool:
    """Whether this process may move a SCHED_IDLE task back to SCHED_OTHER at nice 0."""
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20  # RLIMIT_NICE n allows nice down to 20 - n


def memory_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Pool:
    """Sandboxes of one SandboxConfig, started ahead and handed out once each.

    All sandboxes are spawned by the pool's own thread, which lives as long as the pool: bwrap's
    --die-with-parent follows the thread that forked it, so a grading thread that ends (or a
    grader that dies) never leaves a sandbox behind, and close() ends that thread last."""

    def __init__(self, config: SandboxConfig, *, size: int | None = None, low_priority: bool | None = None,
                 idle_timeout_seconds: float | None = None):
        self.config = config
        self.size = POOL_SIZE if size is None else size
        if low_priority is None:
            low_priority = OVERLAP == "idle" and can_restore_priority()
        self.low_priority = low_priority
        self.idle_timeout_seconds = IDLE_TIMEOUT_SECONDS if idle_timeout_seconds is None else idle_timeout_seconds
        self.workspace = tempfile.mkdtemp(prefix="studybot-pool-")
        os.chmod(self.workspace, 0o711)  # traversable by the sandbox uids, not listable
        self.started = self.discarded = self.expired = 0  # counters, for tests and the bench
        self.grades = 0                     # grades whose final run this pool served (count)
        self._waiting: list[Sandbox] = []   # started, not handed out: starting or ready
        self._in_use = 0                    # taken and not finished yet
        self._takers = 0                    # threads blocked in take()
        self._cold = False                  # idle timeout hit: start nothing until the next take()
        self._failures, self._last_failure = 0, None
        self._closed = False
        self._counter = 0
        self._zygote = None                 # forked starts: the zygote, started by this pool's thread
        self._cond = _PROCESS_COND          # one for every pool of the process (see _PROCESS_COND)
        with self._cond:
            _live_pools.add(self)
        self._thread = threading.Thread(target=self._keep_filled, name="sandbox-pool", daemon=True)
        self._thread.start()

    # ---- the interface ----------------------------------------------------------------------
    def take(self, timeout: float = TAKE_TIMEOUT_SECONDS, *, end_of_grade: bool = False) -> Sandbox:
        """A ready sandbox that has never served; its wait_seconds says how long this call waited.
        end_of_grade: for a grade's final run. No replacement is started after it unless this pool
        keeps one warm for the next grade (kept_warm_after_grade); otherwise it refills at the
        next warm() or take()."""
        asked = time.monotonic()
        deadline = asked + timeout
        with self._cond:
            self._takers += 1
            self._cold = False
            self._cond.notify_all()
            try:
                while True:
                    if self._closed:
                        raise InfraError("the sandbox pool is closed (the grader is shutting down)")
                    sandbox = self._ready_one()
                    if sandbox is not None:
                        break
                    if self._failures >= MAX_START_FAILURES:
                        self._failures = 0
                        raise InfraError(self._last_failure)
                    for starting in self._waiting:
                        starting.promote()  # a run waits for it: full speed now
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise InfraError(f"no sandbox was ready after {timeout:g} s (the machine is overloaded?)")
                    self._cond.wait(remaining)
            finally:
                self._takers -= 1
            self._waiting.remove(sandbox)
            self._in_use += 1
            sandbox.on_change = None
            sandbox.on_finished = self._finished
            sandbox.wait_seconds = time.monotonic() - asked
            if end_of_grade:
                self.grades += 1
            self._cold = end_of_grade and not self.kept_warm_after_grade()
            self._cond.notify_all()  # the pool thread starts the replacement (or waits for this one's end)
        return sandbox

    def warm(self) -> None:
        """A grade is about to ask: start filling now, if the pool went cold (after a grade, or idle)."""
        with self._cond:
            self._cold = False
            self._cond.notify_all()

    def kept_warm_after_grade(self) -> bool:
        """Whether a grade's final run leaves a sandbox waiting for the next grade: a bet that the next
        grade in this process is of the same exercise, made once it has been graded here before."""
        return KEEP_WARM_BETWEEN_GRADES and self.grades >= GRADES_BEFORE_KEEPING_WARM

    def close(self) -> None:
        """Kill every sandbox of this pool (waiting or in use), end its thread, remove its folders."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            _live_pools.discard(self)
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if self._zygote is not None:
            self._zygote.close()
        shutil.rmtree(self.workspace, ignore_errors=True)

    # ---- bookkeeping ------------------------------------------------------------------------
    @property
    def waiting(self) -> list[Sandbox]:
        with self._cond:
            return list(self._waiting)

    def wait_until_ready(self, count: int = 1, timeout: float = TAKE_TIMEOUT_SECONDS) -> list[Sandbox]:
        """Block until `count` sandboxes wait ready (tests, the bench); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ready = [s for s in self._waiting if s.state == Sandbox.READY]
                if len(ready) >= count:
                    return ready
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise InfraError(f"{count} sandbox(es) were not ready after {timeout:g} s: {self._last_failure}")
                self._cond.wait(remaining)

    def _ready_one(self) -> Sandbox | None:
        """The longest-waiting live ready sandbox; None while there is none, or (at normal
        priority) while another is still starting, in this pool or any other of the process, so a
        start never overlaps a run."""
        if not self.low_priority and _starting_at_normal_priority():
            return None
        ready = [s for s in self._waiting if s.state == Sandbox.READY and s.alive()]
        return ready[0] if ready else None

    def _changed(self, sandbox: Sandbox) -> None:
        with self._cond:
            self._cond.notify_all()

    def _finished(self, sandbox: Sandbox) -> None:
        with self._cond:
            self._in_use -= 1
            self._cond.notify_all()

    def _wanted(self) -> int:
        if self._cold and not self._takers:
            return 0
        if not self.low_priority and not self._takers and _sandboxes_in_use():
            return 0  # normal priority: nothing starts while a taken sandbox (of any pool) may be on a clock
        return max(self.size, self._takers)

    # ---- the pool's thread ------------------------------------------------------------------
    def _keep_filled(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._closed:
                        break
                    dead, expired = self._collect_dead(), self._collect_expired()
                    if not dead and not expired:
                        wait = self._start_one() if len(self._waiting) < self._wanted() else self._next_expiry()
                        if wait != 0:
                            self._cond.wait(wait)
                # Reaping joins the sandbox's reader threads, which take the lock: outside it.
                for sandbox in dead + expired:
                    sandbox.kill()
                    failure = _start_failure(sandbox) if sandbox in dead and sandbox.ready_at is None else None
                    sandbox.finish()
                    shutil.rmtree(sandbox.job.root, ignore_errors=True)
                    if failure:
                        with self._cond:
                            self._record_failure(failure)
        finally:
            with self._cond:
                leftovers, self._waiting = self._waiting, []
            for sandbox in leftovers:
                sandbox.kill()
                sandbox.finish()
            # Sandboxes in use die with this thread: bwrap's --die-with-parent follows it.

    def _start_one(self) -> float | None:
        """Start one sandbox (lock held); returns how long to wait before looking again."""
        available = memory_available_mb()
        if not self._takers and available is not None and available < MEMORY_PER_WAITING_SANDBOX_MB:
            return MEMORY_RECHECK_SECONDS  # no run needs it yet: not at the risk of swapping
        self._counter += 1
        job = JobPaths(_path(self.workspace, f"sandbox{self._counter}"))
        uid = None if self.config.unsafe_no_sandbox else draw_sandbox_uid()
        try:
            job.create(owner_uid=uid, export=self.config.export_cap_bytes is not None)
            sandbox = Sandbox(job, uid=uid, config=self.config, zygote=self._zygote_for_start())
            sandbox.on_change = self._changed
            sandbox.prestart(low_priority=self.low_priority and not self._takers)
        except Exception as e:  # noqa: BLE001  InfraError, or a broken environment: reported to take()
            self._record_failure(f"the sandbox could not be started: {e}")
            shutil.rmtree(job.root, ignore_errors=True)
            return FAILURE_BACKOFF_SECONDS
        self.started += 1
        self._waiting.append(sandbox)
        return 0

    @property
    def zygote(self):
        """The zygote this pool's runners are forked from (None before the first start, or fresh)."""
        return self._zygote

    def forks(self) -> bool:
        """Whether this pool's sandboxes get their runner from a zygote (CPU, sandboxed, START=fork)."""
        return START == "fork" and self.config.device == "cpu" and not self.config.unsafe_no_sandbox

    def _zygote_for_start(self):
        """The live zygote for the next start (lock held, pool thread): started now if there is
        none or it died; None where sandboxes start fresh."""
        if not self.forks():
            return None
        if self._zygote is None or not self._zygote.alive():
            if self._zygote is not None:
                self._zygote.close()
            home = pathlib.Path(tempfile.mkdtemp(prefix="zygote", dir=self.workspace))  # 0700: the zygote's alone
            self._zygote = zygote_for(self.config, home)
            self._zygote.start(low_priority=self.low_priority and not self._takers)
        return self._zygote

    def _collect_dead(self) -> list[Sandbox]:
        """Waiting sandboxes that died (lock held): never handed out; the pool replaces them."""
        dead = [s for s in self._waiting if s.state == Sandbox.DEAD or not s.alive()]
        for sandbox in dead:
            self._waiting.remove(sandbox)
            self.discarded += 1
        if any(s.state == Sandbox.READY for s in self._waiting):
            self._failures = 0
        return dead

    def _collect_expired(self) -> list[Sandbox]:
        """Sandboxes ready for longer than the idle timeout (lock held); the pool goes cold."""
        now = time.monotonic()
        expired = [s for s in self._waiting if s.ready_at is not None and now - s.ready_at > self.idle_timeout_seconds]
        for sandbox in expired:
            self._waiting.remove(sandbox)
            self.expired += 1
            self._cold = True
        return expired

    def _next_expiry(self) -> float | None:
        ready = [s.ready_at for s in self._waiting if s.ready_at is not None]
        if not ready:
            return None
        return max(0.01, min(ready) + self.idle_timeout_seconds - time.monotonic())

    def _record_failure(self, message: str) -> None:
        self._failures += 1
        self._last_failure = message
        self._cond.notify_all()


def _path(workspace: str, name: str) -> pathlib.Path:
    return pathlib.Path(workspace) / name


def _start_failure(sandbox: Sandbox) -> str:
    """Why a sandbox died before it was ready, for the grade's infra_error."""
    event = sandbox.first_event or {}
    if event.get("event") == "error" and event.get("message"):
        return event["message"]
    outcome = sandbox.finish()  # it is dead: returns at once
    last = outcome.log_tail.strip().splitlines()[-1:] or [f"exit status {outcome.returncode}"]
    return f"the sandbox died while starting: {last[0]}"


# ---- the process's pools ------------------------------------------------------------------------

# Every pool of the process shares one lock and condition, because at normal priority a start
# must not overlap a run of *another* pool either: the deploy exercise's predict pool refills
# beside its training pool's next run, and the previous job's exercise keeps a sandbox warm
# while this job's exercise is graded. Each pool's rules (_ready_one, _wanted) look at all.
_PROCESS_COND = threading.Condition()
_live_pools: set[Pool] = set()          # pools not closed yet (lock: _PROCESS_COND)


def _starting_at_normal_priority() -> bool:
    """Whether a normal-priority pool of the process has a sandbox starting (lock held)."""
    return any(s.state == Sandbox.STARTING for p in _live_pools if not p.low_priority for s in p._waiting)


def _sandboxes_in_use() -> int:
    """Sandboxes of the process's pools taken and not finished yet (lock held)."""
    return sum(p._in_use for p in _live_pools)


_pools: dict[SandboxConfig, Pool] = {}   # most recently used last
_pools_lock = threading.Lock()


def shared(config: SandboxConfig) -> Pool:
    """This process's pool for `config`, created (and started filling) on first use."""
    with _pools_lock:
        pool = _pools.pop(config, None)
        if pool is None:
            idle = [c for c, p in _pools.items() if p._in_use == 0]
            while len(_pools) >= MAX_POOLS and idle:
                _pools.pop(idle.pop(0)).close()
            pool = Pool(config)
        _pools[config] = pool
        return pool


def close_all() -> None:
    """Drain every pool of this process: no sandbox outlives it. Safe to call twice."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_all)


def drain_on_sigterm() -> None:
    """SIGTERM exits through the normal path: SystemExit unwinds the grade (releasing its
    locks), then atexit drains the pools. Main thread only."""
    def stop(signum, _frame):
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
