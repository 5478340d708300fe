"""The sandbox from the learner's side: no network, no host files, no secrets, nothing survives."""

import os
import pathlib
import socket
import threading
import time
import uuid

import numpy as np
import pytest

from grader import grading, results
from grader import sandbox as sandbox_module
from tests.grader.grader_support import TINY_REFERENCE, reference_source

REPOSITORY = str(pathlib.Path(grading.__file__).resolve().parents[1])  # its .venv is visible, nothing else
TRAIN_PREFIX = reference_source().replace("def train(", "def _train(", 1)


def test_network_is_unreachable(notebook, grade_tiny, assert_next_grade_works):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        result = grade_tiny(notebook(TRAIN_PREFIX + f'''
import socket
def train(x_train, y_train, *, seed, device, report=None):
    for target in [("1.1.1.1", 443), ("10.0.0.1", 80)]:
        try:
            socket.create_connection(target, timeout=2).close()
            print("CONNECTED", target)
        except OSError as e:
            print("blocked", target, type(e).__name__)
    try:
        socket.getaddrinfo("pypi.org", 443)
        print("RESOLVED")
    except OSError as e:
        print("dns blocked", type(e).__name__)
    socket.create_connection(("127.0.0.1", {port}), timeout=2)  # not caught: the run crashes
'''))
        assert result.status == results.CRASHED
        assert "ConnectionRefusedError" in result.message
        assert result.log_tail.count("blocked") == 3, result.log_tail
        assert "CONNECTED" not in result.log_tail and "RESOLVED" not in result.log_tail
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host's loopback
    finally:
        listener.close()
    assert_next_grade_works()


def test_labels_host_files_and_secrets_are_out_of_reach(notebook, grade_tiny, data_dir, monkeypatch,
                                                        assert_next_grade_works):
    labels = data_dir / "synthetic-blobs-y_test.npy"  # where a dataset cache would keep test labels
    np.save(labels, np.arange(10))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-this-must-not-leak")
    result = grade_tiny(notebook(TRAIN_PREFIX + f'''
import glob, os
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    if calls == 1:  # the warm-up; probe in the timed call, when the real training data is there
        return _train(x_train, y_train, seed=seed, device=device)
    leaks = []
    for path in [{str(labels)!r}, "/etc/shadow", "/etc/passwd", "/root/.bashrc", {str(TINY_REFERENCE)!r},
                 "/sandbox/grader/../../etc/shadow", "/proc/kcore"]:
        try:
            with open(path, "rb") as f:
                f.read(1)
            leaks.append(path)
        except OSError as e:
            print("denied", path, type(e).__name__)
    for pattern in ["/root/*", "/home/*", "/tmp/studybot-grade-*", {REPOSITORY + "/*"!r}, "/sandbox/data/*y_test*"]:
        found = glob.glob(pattern)
        if found:
            leaks.append(str(found))
        else:
            print("nothing at", pattern)
    for path in ["/usr/evil", "/sandbox/code/evil.py", "/sandbox/data/x_test.npy", "/sandbox/grader/evil.py",
                 "/dev/evil", "/evil", "/sandbox/evil"]:
        try:
            open(path, "wb").close()
            leaks.append("wrote " + path)
        except OSError as e:
            print("read-only", path, type(e).__name__)
    if any("xoxb" in value for value in os.environ.values()):
        leaks.append("environment")
    print("environment:", sorted(os.environ))
    if leaks:
        raise RuntimeError(f"LEAKED {{leaks}}")
    return _train(x_train, y_train, seed=seed, device=device)
'''))
    assert result.status == results.PASSED, (result.message, result.log_tail)
    assert "LEAKED" not in result.log_tail
    assert result.log_tail.count("denied") == 7 and result.log_tail.count("read-only") == 7
    assert "xoxb" not in result.log_tail and "SLACK_BOT_TOKEN" not in result.log_tail
    assert_next_grade_works()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_timeout_kills_double_forked_setsid_escapees(notebook, grade_tiny, quick_timeout_spec,
                                                     assert_next_grade_works):
    marker = f"escapee-{uuid.uuid4().hex}"
    path = notebook(TRAIN_PREFIX + f'''
import os, subprocess, sys
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    if calls == 1:  # a normal warm-up; the timed call escapes and hangs
        return _train(x_train, y_train, seed=seed, device=device)
    if os.fork() == 0:                      # child
        os.setsid()
        if os.fork() == 0:                  # grandchild, orphaned, in its own session
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
        os._exit(0)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}],
                     start_new_session=True)
    while True:
        pass
''')
    outcome = {}
    grading_thread = threading.Thread(
        target=lambda: outcome.setdefault("result", grade_tiny(path, spec=quick_timeout_spec)))
    grading_thread.start()
    seen = []
    while grading_thread.is_alive() and not seen:
        seen = _processes_with(marker)
        time.sleep(0.2)
    grading_thread.join()
    assert len(seen) >= 1, "the escapees never started, so this test proves nothing"
    assert outcome["result"].status == results.TIMEOUT
    assert "train() took longer than its 2 s budget" in outcome["result"].message
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert_next_grade_works()


def test_refuses_to_run_without_bubblewrap(notebook, grade_tiny, monkeypatch):
    real_which = sandbox_module.shutil.which
    monkeypatch.setattr(sandbox_module.shutil, "which",
                        lambda tool, path=None: None if tool == "bwrap" else real_which(tool, path=path))
    result = grade_tiny(TINY_REFERENCE)
    assert result.status == results.INFRA_ERROR
    assert "bwrap" in result.message and "--unsafe-no-sandbox-dev-only" in result.message
    assert result.runs == []

    unsafe = grade_tiny(TINY_REFERENCE, unsafe_no_sandbox=True)
    assert unsafe.status == results.PASSED, unsafe.message
    assert any("UNSAFE" in note for note in unsafe.notes)
    assert "UNSAFE" in unsafe.config["sandbox"]


def test_each_run_starts_from_nothing(notebook, grade_tiny):
    # A learner caching a trained model across runs (in memory or on disk) must find nothing.
    result = grade_tiny(notebook(TRAIN_PREFIX + '''
import os
cache = {}
def train(x_train, y_train, *, seed, device, report=None):
    print("calls in this process:", len(cache), "files in scratch:", sorted(os.listdir("/scratch")))
    model = _train(x_train, y_train, seed=seed, device=device)
    cache[len(cache)] = model
    torch.save(model.state_dict(), f"/scratch/model{len(cache)}.pt")
    return model
'''), runs=2)
    assert result.status == results.PASSED, result.message
    # the last run's log: its warm-up call saw nothing, its timed call saw only the warm-up's files
    assert "calls in this process: 0 files in scratch: []" in result.log_tail
    assert "calls in this process: 1 files in scratch: ['model1.pt']" in result.log_tail
    assert "model2" not in result.log_tail


def test_which_paths_need_staging(tmp_path):
    uid = sandbox_module.SANDBOX_UID_RANGE[0]
    assert sandbox_module._sandbox_user_can_read(pathlib.Path("/usr"), uid)
    hidden = tmp_path / "private"          # pytest's tmp dirs are 0700: the sandbox uid cannot pass
    hidden.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o700)
    assert not sandbox_module._sandbox_user_can_read(hidden, uid)
    os.chmod(tmp_path, 0o711)              # traversable but the leaf must still be readable
    os.chmod(hidden, 0o711)
    assert not sandbox_module._sandbox_user_can_read(hidden, uid)
    os.chmod(hidden, 0o755)
    assert sandbox_module._sandbox_user_can_read(hidden, uid) == all(
        os.stat(p).st_mode & 0o001 for p in hidden.parents)
