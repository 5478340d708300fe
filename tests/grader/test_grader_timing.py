"""The grader owns the clock: what the learner does to time, the channel or the warm-up cannot
shorten the measured training time."""

import dataclasses

import pytest

from grader import grading, results
from tests.grader.grader_support import load_blobs, reference_source

TRAIN_PREFIX = reference_source().replace("def train(", "def _train(", 1)
CLEVER_SECONDS = 1.5  # how long the cheating submissions really train


def test_tampering_with_time_changes_nothing(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(TRAIN_PREFIX + f'''
import time
import torch

real_clock = time.perf_counter
class FrozenEvent:
    def __init__(self, *args, **kwargs): pass
    def record(self, *args, **kwargs): pass
    def synchronize(self): pass
    def elapsed_time(self, other): return 0.001

def train(x_train, y_train, *, seed, device, report=None):
    for name in ("perf_counter", "time", "monotonic", "process_time"):
        setattr(time, name, lambda: 0.0)
    for name in ("perf_counter_ns", "time_ns", "monotonic_ns"):
        setattr(time, name, lambda: 0)
    torch.cuda.Event = FrozenEvent
    torch.cuda.synchronize = lambda *args, **kwargs: None
    started = real_clock()
    model = _train(x_train, y_train, seed=seed, device=device)
    while real_clock() - started < {CLEVER_SECONDS}:
        pass
    if report is not None:
        report(epoch=0, loss=0.0, train_seconds=0.001)  # self-reported numbers are not timings
    return model
'''))
    assert result.status == results.PASSED, result.message
    assert result.runs[0].train_seconds >= CLEVER_SECONDS
    assert result.train_seconds >= CLEVER_SECONDS
    assert_next_grade_works()


def test_forged_early_done_is_caught(notebook, tiny_spec, data_dir, sandbox_ready, assert_next_grade_works):
    # The learner digs the nonce out of the runner's frame and announces `done` at once, then
    # keeps training. The runner's own `done` then arrives out of turn (given a predict limit
    # roomy enough, 20 x 0.2 + 1 = 5 s, that the predict limit does not stop it first).
    roomy = grading.Reference({"accuracy": 1.0, "train_seconds": 1.0, "predict_seconds": 0.2, "rank_seconds": 1.2})
    result = grading.grade(notebook(TRAIN_PREFIX + f'''
import sys, time
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    if calls == 2:
        runner = sys._getframe(1).f_locals
        runner["channel"].send("done", nonce=runner["nonce"])
    model = _train(x_train, y_train, seed=seed, device=device)
    time.sleep({CLEVER_SECONDS})
    return model
'''), tiny_spec, data_dir=data_dir, load_dataset=load_blobs, reference=roomy)
    assert result.status == results.CRASHED
    assert "unexpected 'done' message" in result.message
    assert_next_grade_works()


def test_forged_done_that_hides_its_tracks_lands_on_the_predict_clock(notebook, tiny_spec, data_dir, sandbox_ready):
    # A cleverer forgery also swallows the runner's real `done`. The hidden training then runs
    # while the grader's predict clock is already ticking: the timeline has no gap, and the
    # predict limit (20x the reference's predict + 1 s) caps how much work can hide there.
    path = notebook(TRAIN_PREFIX + f'''
import sys, time
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    if calls == 2:
        runner = sys._getframe(1).f_locals
        channel = runner["channel"]
        channel.send("done", nonce=runner["nonce"])
        real_send = channel.send
        def send(event, **fields):
            if event == "done" and fields.get("nonce") == runner["nonce"]:
                channel.send = real_send
                return
            real_send(event, **fields)
        channel.send = send
    model = _train(x_train, y_train, seed=seed, device=device)
    time.sleep(SLEEP)
    return model
'''.replace("SLEEP", str(CLEVER_SECONDS)))
    # predict limit 20 x 0.01 + 1 = 1.2 s: CLEVER_SECONDS of hidden work is stopped there
    fixed = grading.Reference({"accuracy": 1.0, "train_seconds": 1.0, "predict_seconds": 0.01, "rank_seconds": 1.01})
    result = grading.grade(path, tiny_spec, data_dir=data_dir, load_dataset=load_blobs, reference=fixed)
    assert result.status == results.TIMEOUT, result.message
    assert "the reference's predict time" in result.message
    # with a roomier limit (a slower reference predict) it passes, and the ranking time holds it
    roomy = grading.Reference({"accuracy": 1.0, "train_seconds": 1.0, "predict_seconds": 0.2, "rank_seconds": 1.2})
    result = grading.grade(path, tiny_spec, data_dir=data_dir, load_dataset=load_blobs, reference=roomy)
    assert result.status == results.PASSED, result.message
    run = result.runs[0]
    assert run.train_seconds < CLEVER_SECONDS <= run.rank_seconds == result.rank_seconds
    assert run.predict_seconds >= CLEVER_SECONDS


def test_warmup_sees_only_noise_and_no_test_inputs(notebook, grade_tiny):
    real = load_blobs("synthetic-blobs", None)
    result = grade_tiny(notebook(TRAIN_PREFIX + '''
import os
def train(x_train, y_train, *, seed, device, report=None):
    print("files:", sorted(os.listdir("/sandbox/data")))
    print(f"first value: {float(x_train[0, 0]):.6f} labels: {sorted(set(y_train.tolist()))}")
    return _train(x_train, y_train, seed=seed, device=device)
'''))
    assert result.status == results.PASSED, result.message
    warmup_files, timed_files = [line for line in result.log_tail.splitlines() if line.startswith("files:")]
    assert "'x_train.npy'" not in warmup_files and "x_test" not in warmup_files.replace("warmup_x_test", "")
    assert "'x_train.npy'" in timed_files and "'x_test.npy'" not in timed_files
    assert "y_test" not in result.log_tail
    warmup_value, timed_value = [line for line in result.log_tail.splitlines() if line.startswith("first value:")]
    assert f"first value: {real.x_train[0, 0]:.6f}" == timed_value.split(" labels")[0]
    assert f"{real.x_train[0, 0]:.6f}" not in warmup_value


def test_several_runs_seeds_mean_and_median(grade_tiny):
    from tests.grader.grader_support import TINY_REFERENCE
    result = grade_tiny(TINY_REFERENCE, runs=3)
    assert result.status == results.PASSED, result.message
    seeds = [r.seed for r in result.runs]
    assert len(set(seeds)) == 3 and result.config["seeds"] == seeds
    times = sorted(r.train_seconds for r in result.runs)
    assert result.train_seconds == times[1]
    ranks = sorted(r.train_seconds + r.predict_seconds for r in result.runs)
    assert result.rank_seconds == pytest.approx(ranks[1])
    assert result.rank_interval == pytest.approx((ranks[0], ranks[2]))  # 3 runs: min..max
    assert all(r.load_average is not None and r.warmup_seconds > 0 and r.gpu is None for r in result.runs)
    assert result.hardware["load_average"] is not None and result.hardware["gpu"] is None
    assert result.accuracy == sum(r.accuracy for r in result.runs) / 3
    assert len(result.as_dict()["learning_curves"]) == 3


def test_too_slow_against_the_reference(notebook, tiny_spec, data_dir, sandbox_ready):
    strict = dataclasses.replace(tiny_spec, too_slow_factor=2.0)
    reference = grading.Reference({"accuracy": 1.0, "train_seconds": 0.1, "rank_seconds": 0.1})  # fixed: a busy
    # machine cannot flip this
    result = grading.grade(notebook(TRAIN_PREFIX + f'''
import time
def train(x_train, y_train, *, seed, device, report=None):
    model = _train(x_train, y_train, seed=seed, device=device)
    time.sleep({CLEVER_SECONDS})
    return model
'''), strict, data_dir=data_dir, load_dataset=load_blobs, reference=reference)
    assert result.status == results.TOO_SLOW, result.message
    assert "train()+predict() took" in result.message
    assert "over the 1.20 s allowed (2x the reference's 0.10 s + 1 s)" in result.message
    assert result.speed_ratio < 0.1


def test_below_target(notebook, grade_tiny):
    always_zero = "        return torch.zeros(len(x_test), dtype=torch.long)  # about half the blobs"
    result = grade_tiny(notebook(reference_source().replace("        return model(x_test)", always_zero)))
    assert result.status == results.BELOW_TARGET
    assert "below the target 90.00%" in result.message
    assert 0.3 < result.accuracy < 0.7


def test_without_warmup_torch_lazy_imports_happen_before_the_clock(notebook, tiny_spec, data_dir, sandbox_ready):
    no_warmup = dataclasses.replace(tiny_spec, warmup=False)
    result = grading.grade(notebook(TRAIN_PREFIX + '''
import sys
def train(x_train, y_train, *, seed, device, report=None):
    print("dynamo already imported:", "torch._dynamo" in sys.modules)
    return _train(x_train, y_train, seed=seed, device=device)
'''), no_warmup, data_dir=data_dir, load_dataset=load_blobs,
    reference=grading.Reference({"accuracy": 1.0, "train_seconds": 1.0, "rank_seconds": 1.0}))
    assert result.status == results.PASSED, result.message
    assert "dynamo already imported: True" in result.log_tail
    assert result.config["warmup"] is False


def test_garbage_on_the_control_channel_is_caught(notebook, grade_tiny):
    result = grade_tiny(notebook(TRAIN_PREFIX + '''
import os, sys
def train(x_train, y_train, *, seed, device, report=None):
    event_fd = int(sys.argv[sys.argv.index("--event-fd") + 1])
    os.write(event_fd, b'{"event": "report", "values": {"loss": 1e308, "x" : "y"}}\\n')  # harmless
    os.write(event_fd, b"\\xff not json\\n")
    return _train(x_train, y_train, seed=seed, device=device)
'''))
    assert result.status == results.CRASHED
    assert "garbage on the control channel" in result.message
