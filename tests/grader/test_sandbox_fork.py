"""Forked sandbox starts (grader/zygote.py, grader/forkserver.py): a CPU runner forked from the
pool's zygote ends up with no more than a fresh runner has: no capabilities, none of the zygote's
fds, the sandbox's uid and namespaces, and no process outside its PID namespace in sight. The
isolation tests (test_grader_isolation.py, test_sandbox_pool.py) run against forked sandboxes
too, since that is how a CPU sandbox starts by default."""

import json
import os
import signal

import pytest

from grader import grading, pool, results
from grader import sandbox as sandbox_module
from tests.grader.grader_support import reference_source
from tests.support.waiting import eventually

TRAIN_PREFIX = reference_source().replace("def train(", "def _train(", 1)


def _tiny_config(tiny_spec):
    return grading.sandbox_config(tiny_spec, device="cpu", unsafe_no_sandbox=False)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _loads_code(sandbox) -> None:
    """A live runner: it said hello, takes its (empty) code and checks the contract."""
    sandbox.handoff("def train(*a, **k): pass\ndef predict(*a): pass\n")
    assert sandbox.next_event(30)["event"] == "hello"
    sandbox.send(cmd="load")
    assert sandbox.next_event(30)["event"] == "loaded"


def test_a_forked_runner_holds_no_privilege_and_nothing_of_the_zygote(notebook, grade_tiny):
    result = grade_tiny(notebook(TRAIN_PREFIX + '''
import ctypes, json, os, socket, stat
def train(x_train, y_train, *, seed, device, report=None):
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    new_user_namespace = libc.unshare(0x10000000)  # CLONE_NEWUSER: refused inside the sandbox
    others = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    print("FORKED " + json.dumps({
        "caps": {key: status[key].strip() for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": status["NoNewPrivs"].strip(), "uid": os.getuid(), "pid": os.getpid(),
        "ppid": os.getppid(), "fds": fds, "unshare_user": new_user_namespace, "processes": others,
        "cwd": os.getcwd(), "home": os.environ.get("HOME"), "environ": sorted(os.environ)}))
    return _train(x_train, y_train, seed=seed, device=device)
'''), runs=1)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    [line] = [line for line in result.log_tail.splitlines() if line.startswith("FORKED ")]
    seen = json.loads(line[len("FORKED "):])
    assert set(seen["caps"].values()) == {"0000000000000000"}, seen["caps"]
    assert seen["no_new_privs"] == "1"
    assert seen["unshare_user"] == -1
    if os.geteuid() == 0:
        assert seen["uid"] != 0
    # its own PID namespace: bwrap's init, the holder, the runner (and what it runs), nothing else;
    # the zygote and the shim that forked it are outside, so its parent reads as 0
    assert seen["ppid"] == 0 and seen["processes"][:2] == [1, 2] and seen["pid"] in seen["processes"]
    # stdin, the merged output, the two pipes of the protocol, and what train() opened itself
    # (the /proc/self/fd listing): none of the zygote's control socket or namespace fds
    kept = {fd: target for fd, target in seen["fds"].items() if not target.startswith("/proc/")}
    assert set(kept) == {"0", "1", "2", "3", "4"}, seen["fds"]
    assert not any(target.startswith(("socket:", "user:", "mnt:", "net:", "pid:")) for target in kept.values())
    assert seen["cwd"] == sandbox_module.IN_SCRATCH and seen["home"] == sandbox_module.IN_SCRATCH
    assert "PYTHONDONTWRITEBYTECODE" in seen["environ"] and "PWD" not in seen["environ"]


def test_sandboxes_of_a_pool_are_forked_from_one_zygote(sandbox_ready, tiny_spec):
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1, low_priority=False)
    try:
        assert tiny_pool.forks()
        taken = []
        for _ in range(2):
            sandbox = tiny_pool.take()
            taken.append(sandbox)
            # the runner: a child of the shim, which is a child of the pool's zygote
            shim = sandbox._process.shim_pid
            assert _parent(shim) == tiny_pool.zygote.pid
            _loads_code(sandbox)
            sandbox.kill()
            assert sandbox.finish().killed_by_grader
            # the shim exits right after it has written the runner's status
            eventually(lambda: shim not in sandbox_module._descendants(tiny_pool.zygote.pid), timeout=10)
        assert tiny_pool.zygote.forks >= 2 and taken[0].pid != taken[1].pid
    finally:
        tiny_pool.close()


def test_a_dead_zygote_is_replaced(sandbox_ready, tiny_spec):
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1, low_priority=False)
    try:
        [waiting] = tiny_pool.wait_until_ready(1)
        first = tiny_pool.zygote
        os.kill(first.pid, signal.SIGKILL)
        first._process.wait(timeout=30)
        assert not first.alive()
        # the waiting sandbox was forked before and lives on; the one after it needs a new zygote
        for index in range(2):
            sandbox = tiny_pool.take()
            assert (sandbox is waiting) == (index == 0)
            _loads_code(sandbox)
            sandbox.kill()
            sandbox.finish()
        assert tiny_pool.zygote is not first and tiny_pool.zygote.alive()
    finally:
        tiny_pool.close()
    assert not tiny_pool.zygote.alive()


def test_fresh_starts_remain_for_gpus_and_comparisons(sandbox_ready, tiny_spec, monkeypatch):
    monkeypatch.setattr(pool, "START", "fresh")
    tiny_pool = pool.Pool(_tiny_config(tiny_spec), size=1, low_priority=False)
    try:
        sandbox = tiny_pool.take()
        assert sandbox.zygote is None and tiny_pool.zygote is None
        _loads_code(sandbox)
        sandbox.kill()
        sandbox.finish()
    finally:
        tiny_pool.close()
    cuda = pool.Pool(sandbox_module.SandboxConfig(device="cuda"), size=0)
    try:
        assert not cuda.forks()  # CUDA cannot be used in a process forked after its initialisation
    finally:
        cuda.close()


@pytest.mark.parametrize("request_fds", [0, 3])
def test_the_zygote_refuses_a_request_without_its_fds(sandbox_ready, tiny_spec, request_fds, tmp_path):
    """A malformed request (the host's bug, never the learner's: learner code cannot reach the
    control socket) forks nothing and leaves the zygote serving."""
    from grader import zygote as zygote_side
    import socket
    zygote = sandbox_module.zygote_for(_tiny_config(tiny_spec), tmp_path)
    # it runs on the host: what its imports write goes to its own folder, never to a host /scratch
    assert zygote.env["HOME"] == str(tmp_path) and zygote.cwd == tmp_path
    assert not [value for value in zygote.env.values() if value.startswith(sandbox_module.IN_SCRATCH)]
    zygote.start()
    try:
        zygote.wait_ready()
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(request_fds)]
        socket.send_fds(zygote._control, [zygote_side.pack_request(None)], fds)
        reply = json.loads(zygote._control.recv(4096))
        assert "expected" in reply["error"] and zygote.alive()
        for fd in fds:
            os.close(fd)
    finally:
        zygote.close()
    assert not zygote.alive()
