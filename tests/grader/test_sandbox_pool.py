"""The warm sandbox pool (grader/pool.py): single use, nothing carried from one run to the next,
dead waiting sandboxes replaced, idle while waiting, drained on SIGTERM."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from grader import grading, pool, results
from grader import sandbox as sandbox_module
from tests.grader.grader_support import reference_source
from tests.support.waiting import eventually

TRAIN_PREFIX = reference_source().replace("def train(", "def _train(", 1)
REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _tiny_config(tiny_spec):
    return grading.sandbox_config(tiny_spec, device="cpu", unsafe_no_sandbox=False)


def _tree_cpu_seconds(*root_pids: int) -> float:
    """utime + stime of every process below root_pids (children that exited are in cutime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in sandbox_module._descendants(*root_pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _runner_pid(sandbox) -> int:
    """The runner's host pid: the forked one is the shim's child; a fresh one is bwrap's innermost."""
    shim = getattr(sandbox._process, "shim_pid", None)
    if shim is None:
        return sandbox_module._descendants(sandbox.pid)[-1]
    [runner] = [pid for pid in sandbox.processes() if pid != shim and _parent(pid) == shim]
    return runner


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_run_sees_nothing_the_previous_run_left(notebook, grade_tiny):
    marker = f"leftover-{uuid.uuid4().hex}"
    first = grade_tiny(notebook(TRAIN_PREFIX + f'''
import builtins, os, subprocess, sys
MARKER = {marker!r}
def train(x_train, y_train, *, seed, device, report=None):
    # /tmp is the scratch space, except in a checkout under /tmp, where it holds that read-only bind
    # (grader/sandbox.py): nothing can be left there then
    for folder in ("/scratch", "/tmp", "/dev/shm"):
        if os.access(folder, os.W_OK):
            with open(f"{{folder}}/{{MARKER}}", "w") as f:
                f.write(MARKER)
    os.environ["LEFTOVER"] = MARKER                 # this process's environment
    builtins.LEFTOVER = MARKER                      # interpreter state
    sys.modules["leftover_module"] = type(sys)(MARKER)
    global kept
    kept = (MARKER * 1000).encode()                 # memory contents
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", MARKER], start_new_session=True)
    return _train(x_train, y_train, seed=seed, device=device)
'''), runs=1)
    assert first.status == results.PASSED, (first.message, first.log_tail)

    second = grade_tiny(notebook(TRAIN_PREFIX + f'''
import builtins, os, sys
MARKER = {marker!r}
def train(x_train, y_train, *, seed, device, report=None):
    seen = []
    for folder in ("/scratch", "/tmp", "/dev/shm"):
        seen += [f"file {{folder}}/{{name}}" for name in os.listdir(folder) if MARKER in name]
    if os.environ.get("LEFTOVER") or hasattr(builtins, "LEFTOVER") or "leftover_module" in sys.modules:
        seen.append("interpreter state")
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{{pid}}/{{what}}", "rb") as f:
                    if MARKER.encode() in f.read():
                        seen.append(f"process {{pid}} {{what}}")
            except OSError:
                pass
        try:                                        # another process's memory, were it visible
            with open(f"/proc/{{pid}}/mem", "rb"):
                if int(pid) > 2 and pid != str(os.getpid()):
                    seen.append(f"process {{pid}} mem is readable")
        except OSError:
            pass
    print("PROCESSES", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    print("SEEN", seen)
    return _train(x_train, y_train, seed=seed, device=device)
'''), runs=1)
    assert second.status == results.PASSED, (second.message, second.log_tail)
    assert "SEEN []" in second.log_tail, second.log_tail
    assert marker not in second.log_tail
    # both runs came through the pool, and say how long their sandbox took
    for result in (first, second):
        run = result.runs[0].as_json()
        assert run["sandbox_start_seconds"] > 0 and run["sandbox_wait_seconds"] >= 0
    # the first run's background process died with its sandbox
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


def test_a_sandbox_that_dies_while_waiting_is_replaced_not_handed_out(sandbox_ready, tiny_spec):
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1)
    try:
        [victim] = tiny_pool.wait_until_ready(1)
        os.kill(_runner_pid(victim), signal.SIGKILL)
        victim._process.wait(timeout=30)  # dead (bwrap follows its runner): from here it is never handed out
        taken = tiny_pool.take()
        try:
            assert taken is not victim and taken.alive()
            assert tiny_pool.discarded >= 1 and tiny_pool.started >= 2
            taken.handoff("def train(*a, **k): pass\ndef predict(*a): pass\n")
            assert taken.next_event(30)["event"] == "hello"  # a live runner, ready for its code
            taken.send(cmd="load")
            assert taken.next_event(30)["event"] == "loaded"
        finally:
            taken.kill()
            taken.finish()
    finally:
        tiny_pool.close()


def test_a_pool_never_starts_a_sandbox_beside_another_pools_run(sandbox_ready, tiny_spec):
    """Serial mode across pools: the deploy exercise's predict pool, or the previous job's exercise,
    must not start a sandbox while a run of another pool may be on its clock."""
    training = pool.Pool(_tiny_config(tiny_spec), size=1, low_priority=False)
    other = None
    try:
        running = training.take()
        try:
            # A second exercise's pool, created while the first pool's sandbox is on its clock.
            other = pool.Pool(dataclasses.replace(_tiny_config(tiny_spec), memory_limit_mb=768), size=1,
                              low_priority=False)
            time.sleep(1.0)  # the run's clock; a start beside it would begin within milliseconds
        finally:
            finished_at = time.monotonic()
            running.kill()
            running.finish()
        [waiting] = other.wait_until_ready(1)
        assert waiting.started_at >= finished_at, f"started {finished_at - waiting.started_at:.2f} s before the run ended"
        # While the other pool's run is on its clock nothing refills; once it is over the other pool
        # refills, and a take from the first pool waits for that start to end.
        other_taken = other.take()
        assert other.waiting == []
        assert not [s for s in training.waiting if s.state == sandbox_module.Sandbox.STARTING]
        other_taken.kill()
        other_taken.finish()
        [refill] = eventually(lambda: other.waiting, timeout=30)  # the pool's thread starts it
        again = training.take()
        try:
            assert refill.state != sandbox_module.Sandbox.STARTING, "handed out while another pool's sandbox started"
        finally:
            again.kill()
            again.finish()
    finally:
        training.close()
        if other is not None:
            other.close()


def test_a_grade_leaves_a_sandbox_warm_only_for_an_exercise_graded_here_before(sandbox_ready, tiny_spec):
    """A sandbox left waiting after a grade is a bet that the next grade here is of the same exercise:
    made from its second grade on, so a one-off exercise leaves nothing to be killed unused."""
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1, low_priority=False)
    try:
        first = tiny_pool.take(end_of_grade=True)  # a one-run grade
        first.kill()
        first.finish()
        assert not tiny_pool.kept_warm_after_grade()
        started = tiny_pool.started
        time.sleep(0.5)  # a measured interval: a refill would start within milliseconds
        assert tiny_pool.started == started and tiny_pool.waiting == []

        tiny_pool.warm()  # the next grade of the exercise begins (grading.warm_pool)
        second = tiny_pool.take(end_of_grade=True)
        second.kill()
        second.finish()
        assert tiny_pool.kept_warm_after_grade() and tiny_pool.grades == 2
        [kept] = tiny_pool.wait_until_ready(1)  # for the third grade
        assert kept is not first and kept is not second
    finally:
        tiny_pool.close()


def test_a_waiting_sandbox_sleeps(sandbox_ready, tiny_spec):
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1)
    try:
        [waiting] = tiny_pool.wait_until_ready(1)
        # the sandbox's processes, and the zygote it was forked from (which waits for the next one)
        roots = waiting.processes() + ([tiny_pool.zygote.pid] if tiny_pool.zygote else [])
        time.sleep(1.0)  # let start-up threads settle (OpenMP's spin after the imports)
        before, started = _tree_cpu_seconds(*roots), time.monotonic()
        time.sleep(3.0)  # a measured interval, not a race: CPU time used while it waits
        used = _tree_cpu_seconds(*roots) - before
        assert used / (time.monotonic() - started) < 0.02, f"{used:.3f} s of CPU in 3 s of waiting"
    finally:
        tiny_pool.close()


def test_the_pool_drains_on_sigterm(sandbox_ready, tiny_spec):
    script = textwrap.dedent(f'''
        import json, signal, sys
        sys.path.insert(0, {str(REPOSITORY)!r})
        from grader import grading, pool, sandbox
        from grader.spec import find_exercise
        from tests.grader.grader_support import EXERCISES
        pool.drain_on_sigterm()
        config = grading.sandbox_config(find_exercise("tiny", EXERCISES), device="cpu", unsafe_no_sandbox=False)
        shared = pool.shared(config)
        ready = shared.wait_until_ready(1)
        pids = [pid for s in ready for pid in s.processes()]
        pids += [shared.zygote.pid] if shared.zygote else []  # the zygote the runners are forked from
        print(json.dumps({{"pids": pids, "workspace": shared.workspace}}), flush=True)
        signal.pause()
    ''')
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        state = json.loads(process.stdout.readline())
        assert state["pids"] and all(_alive(pid) for pid in state["pids"])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    assert [pid for pid in state["pids"] if _alive(pid)] == []
    assert not pathlib.Path(state["workspace"]).exists()


def test_a_malformed_pool_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("GRADER_SANDBOX_START", "forked")
    with pytest.raises(pool.InfraError, match=r"GRADER_SANDBOX_START='forked': expected one of fork, fresh"):
        pool._setting("GRADER_SANDBOX_START", "fork", choices=("fork", "fresh"))
    monkeypatch.setenv("GRADER_MAX_POOLS", "two")
    with pytest.raises(pool.InfraError, match=r"GRADER_MAX_POOLS='two': expected a whole number"):
        pool._setting("GRADER_MAX_POOLS", "2", count=True)
    monkeypatch.setenv("GRADER_MAX_POOLS", "4")
    assert pool._setting("GRADER_MAX_POOLS", "2", count=True) == 4
