"""The numbers behind a trustworthy leaderboard, without a sandbox: the median interval, the
review flags, the predict limit, judging on the ranking time, the reference summary's format."""

import dataclasses
import json
import pathlib
import sys

import pytest

from grader import grading, reference_cache, results, review, sandbox
from grader.intervals import coverage, intervals_overlap, median_interval


# ---- median_interval ---------------------------------------------------------------------------

@pytest.mark.parametrize("samples, expected", [
    ([2.0], (2.0, 2.0)),                                  # n = 1: the one sample (no coverage)
    ([3.0, 1.0], (1.0, 3.0)),                             # n = 2..5: min..max
    ([0.9, 1.1, 1.0], (0.9, 1.1)),
    ([5, 1, 4, 2, 3], (1, 5)),                            # n = 5: 93.75%
    ([1, 2, 3, 4, 5, 6, 7], (1, 7)),                      # n = 7: x(2)..x(6) is only 87.5%
    ([8, 1, 7, 2, 6, 3, 5, 4], (2, 7)),                   # n = 8: x(2)..x(7), 92.97%
    (list(range(1, 11)), (2, 9)),                         # n = 10: x(3)..x(8) would be 89.06%
    (list(range(1, 12)), (3, 9)),                         # n = 11: 93.46%
    (list(range(1, 21)), (6, 15)),                        # n = 20: 95.86%
])
def test_median_interval_on_known_samples(samples, expected):
    assert median_interval(samples) == expected


def test_median_interval_is_the_innermost_pair_with_90_percent():
    assert coverage(5, 1) == pytest.approx(0.9375)
    assert coverage(4, 1) == pytest.approx(0.875)
    assert coverage(10, 2) == pytest.approx(0.978515625)
    for n in range(5, 40):
        low, high = median_interval(list(range(1, n + 1)))
        k = low
        assert high == n + 1 - k
        assert coverage(n, k) >= 0.90
        assert k == (n + 1) // 2 or coverage(n, k + 1) < 0.90


def test_median_interval_refuses_nothing_and_overlap():
    with pytest.raises(ValueError):
        median_interval([])
    assert intervals_overlap((1, 2), (2, 3)) and intervals_overlap((1, 4), (2, 3))
    assert not intervals_overlap((1, 2), (2.5, 3))


# ---- review flags --------------------------------------------------------------------------------

REFERENCE = {"accuracy": 0.95, "train_seconds": 3.0, "predict_seconds": 0.03, "rank_seconds": 3.03,
             "warmup_seconds": 2.0}
TEST_SIZE = 1000  # SE at 95% = 0.69 pp: the too-good bar is 96.38%


def make_result(accuracy=0.95, train=3.0, predict=0.03, warmup=None, runs=3, reference=REFERENCE):
    records = [results.RunRecord(seed=i, accuracy=accuracy, train_seconds=train, predict_seconds=predict,
                                 warmup_seconds=warmup) for i in range(runs)]
    return results.Result(exercise="x", status="passed", message="", target=0.9, runs=records,
                          reference=dict(reference) if reference else None)


def codes(result, test_size=TEST_SIZE):
    return [f["code"] for f in review.flags_for(result, test_size)]


def test_an_ordinary_result_has_no_flags():
    assert codes(make_result()) == []
    assert codes(make_result(accuracy=0.99, train=1.0)) == []    # better and 3x faster: plausible
    assert codes(make_result(train=0.5, warmup=9.0)) == []       # 6x faster, warm-up within bounds
    assert codes(make_result(reference=None)) == []              # the reference itself


def test_train_near_zero():
    assert codes(make_result(train=0.16)) == []                  # 5.3% of 3 s
    assert codes(make_result(train=0.14)) == [review.TRAIN_NEAR_ZERO]


def test_too_good_too_fast():
    assert review.too_good_bar(0.95, TEST_SIZE) == pytest.approx(0.95 + 2 * (0.95 * 0.05 / 1000) ** 0.5)
    assert codes(make_result(accuracy=0.965, train=0.5)) == [review.TOO_GOOD_TOO_FAST]
    assert codes(make_result(accuracy=0.962, train=0.5)) == []   # under the bar
    assert codes(make_result(accuracy=0.99, train=0.7)) == []    # not fast enough (23% of the time)
    # digits: 99.5% on 360 images leaves no room for 2 SE above; matching the reference counts
    digits_reference = dict(REFERENCE, accuracy=0.995)
    assert review.too_good_bar(0.995, 360) == 0.995
    assert codes(make_result(accuracy=0.9972, train=0.3, reference=digits_reference), 360) == \
        [review.TOO_GOOD_TOO_FAST]
    assert codes(make_result(accuracy=0.99, train=0.3, reference=digits_reference), 360) == []


def test_far_too_good_at_any_speed():
    """A look-up of a public data set's answers can run at the reference's pace: a score many
    margins beyond the reference is flagged whatever the time; near 100% there is no room for it."""
    bar = review.too_good_bar(0.95, TEST_SIZE, review.FAR_TOO_GOOD_MARGINS)
    assert codes(make_result(accuracy=bar + 0.001)) == [review.FAR_TOO_GOOD]
    assert codes(make_result(accuracy=bar - 0.001)) == []
    assert codes(make_result(accuracy=0.999, train=0.5)) == [review.TOO_GOOD_TOO_FAST]  # flagged once
    digits_reference = dict(REFERENCE, accuracy=0.995)
    assert codes(make_result(accuracy=1.0, reference=digits_reference), 360) == []
    # A lower-is-better metric: RMSE 0.20 against a reference of 0.87 (std 0.004) at the same speed
    rmse = results.Result(exercise="x", status="passed", message="", target=0.95, metric="rmse",
                          higher_is_better=False, runs=[results.RunRecord(seed=i, score=0.20, accuracy=None,
                                                                          train_seconds=3.0, predict_seconds=0.03)
                                                        for i in range(3)],
                          reference=dict(REFERENCE, accuracy=None, score=0.87, score_std=0.004))
    assert codes(rmse) == [review.FAR_TOO_GOOD]


def test_predict_heavy_and_warmup_heavy():
    assert codes(make_result(predict=0.35)) == []                # under 5 x 0.03 + 0.25 = 0.40 s
    assert codes(make_result(predict=0.45)) == [review.PREDICT_HEAVY]
    assert codes(make_result(warmup=14.0)) == []                 # under 5 x 2 + 5 = 15 s
    assert codes(make_result(warmup=16.0)) == [review.WARMUP_HEAVY]
    both = review.flags_for(make_result(train=0.01, predict=2.0), TEST_SIZE)
    assert [f["code"] for f in both] == [review.TRAIN_NEAR_ZERO, review.PREDICT_HEAVY]
    assert "67x the reference's 0.030 s" in both[1]["message"]


# ---- the predict limit, judging on the ranking time --------------------------------------------

@pytest.fixture
def spec(tiny_spec):
    return dataclasses.replace(tiny_spec, predict_budget_seconds=10.0, too_slow_factor=10.0)


def test_predict_limit_is_relative_to_the_reference(spec):
    assert grading.predict_limit(spec, None) == (10.0, None)
    limit, hint = grading.predict_limit(spec, {"predict_seconds": 0.03})
    assert limit == pytest.approx(grading.PREDICT_FACTOR * 0.03 + grading.PREDICT_GRACE_SECONDS)
    assert "over 53x the reference's predict time (over 1.60 s against 0.030 s)" in hint
    assert "predict() must only run the trained model" in hint
    assert grading.predict_limit(spec, {"predict_seconds": 0.6}) == (10.0, None)  # the spec's budget caps it


def test_judge_and_speed_ratio_use_the_ranking_time(spec):
    result = make_result(train=0.5, predict=2.0)             # rank 2.5 s against the reference's 3.03 s
    grading.judge(spec, result)
    assert result.status == results.PASSED and result.speed_ratio == pytest.approx(3.03 / 2.5)
    assert "median train()+predict() 2.50 s" in result.message
    result.reference = dict(REFERENCE, rank_seconds=0.1)
    grading.judge(spec, result)                              # 2.5 s > 10 x 0.1 + 1 s
    assert result.status == results.TOO_SLOW and "over the 2.00 s allowed" in result.message
    flagged = make_result(train=0.01)
    grading.review_and_judge(spec, flagged, TEST_SIZE)
    assert flagged.status == results.PASSED and "flagged for review (train_near_zero)" in flagged.message


def test_result_json_carries_the_ranking_fields():
    result = make_result(runs=5)
    for record, rank in zip(result.runs, [1.0, 5.0, 2.0, 4.0, 3.0]):
        record.train_seconds, record.predict_seconds = rank - 0.5, 0.5
    result.flags = [{"code": "predict_heavy", "message": "m"}]
    data = json.loads(result.to_json())
    assert (data["rank_seconds"], data["rank_seconds_low"], data["rank_seconds_high"]) == (3.0, 1.0, 5.0)
    assert data["flags"] == [{"code": "predict_heavy", "message": "m"}] and data["reference_remeasured"] is False
    assert set(data["runs"][0]) == {"seed", "score", "accuracy", "train_seconds", "predict_seconds", "rank_seconds",
                                    "warmup_seconds", "load_average", "gpu", "sandbox_wait_seconds",
                                    "sandbox_start_seconds"}
    assert data["speed_ratio"] == pytest.approx(3.03 / 3.0)


def test_reference_summary_carries_the_ranking_time_and_old_entries_are_stale(tmp_path, tiny_spec):
    result = make_result(runs=3)
    result.hardware = {"hostname": "h", "device_name": "cpu", "torch": "2"}
    result.code_sha256 = reference_cache._reference_code_sha256(tiny_spec)
    summary = reference_cache.save(tiny_spec, data_dir=tmp_path, result=result)
    for key in ("accuracy", "train_seconds", "predict_seconds", "rank_seconds", "rank_seconds_low",
                "rank_seconds_high", "warmup_seconds", "measured_at"):
        assert key in summary, key
    assert reference_cache.load(tiny_spec, data_dir=tmp_path, hardware=result.hardware) == summary
    path = reference_cache.cache_path(tmp_path, tiny_spec, result.hardware)
    old = {k: v for k, v in summary.items() if k not in ("format", "rank_seconds")}  # a format-1 entry
    path.write_text(json.dumps(old))
    assert reference_cache.load(tiny_spec, data_dir=tmp_path, hardware=result.hardware) is None


def test_hidden_paths_cover_bundled_data_and_data_dirs_under_bound_paths(tmp_path):
    hidden = [str(p) for p in sandbox.paths_to_hide([tmp_path])]
    assert any(p.endswith("sklearn/datasets/data") for p in hidden)
    assert any(p.endswith("sklearn/datasets/descr") for p in hidden)
    assert any(p.endswith("sklearn/datasets/images") for p in hidden)
    assert any(p.endswith("site-packages/mnist1d") for p in hidden)
    assert str(tmp_path) not in hidden                        # not bound at all: nothing to hide
    inside = sandbox.python_roots()[0]                        # a data dir inside a bound path is blanked
    assert str(inside.resolve()) in [str(p) for p in sandbox.paths_to_hide([inside])]



def test_hidden_paths_are_named_as_the_sandbox_sees_a_root_reached_through_a_symlink(tmp_path, monkeypatch):
    # A venv reached by a link (a checkout whose .venv is a symlink): bwrap binds the root at its linked
    # name, so the bundled data must be blanked under that name, not only under its real one.
    real_venv = pathlib.Path(sys.prefix).resolve()
    linked = tmp_path / "linked-venv"
    linked.symlink_to(real_venv)
    monkeypatch.setattr(sandbox, "python_roots", lambda: [linked])
    hidden = [str(p) for p in sandbox.paths_to_hide()]
    data = next(p for p in sandbox.hidden_package_paths() if str(p).endswith("sklearn/datasets/data"))
    assert str(linked / data.relative_to(real_venv)) in hidden, hidden

# ---- the machine's state: never a failed grade -----------------------------------------------------

def test_gpu_state_reads_nvidia_smi_and_never_fails(monkeypatch):
    import subprocess
    import types
    monkeypatch.setattr(grading.os.path, "exists", lambda path: True)
    monkeypatch.setattr(grading.shutil, "which", lambda tool: "/usr/bin/nvidia-smi")
    answers = iter([
        types.SimpleNamespace(stdout="NVIDIA H200, 560.35.03, 1980, 41\n", returncode=0),
        types.SimpleNamespace(stdout="NVIDIA H200, 560.35.03, [N/A], 41\n", returncode=0),
        types.SimpleNamespace(stdout="garbage\n", returncode=9),
    ])

    def fake_run(command, **kwargs):
        assert kwargs["timeout"] == grading.NVIDIA_SMI_TIMEOUT_SECONDS
        answer = next(answers, None)
        if answer is None:
            raise subprocess.TimeoutExpired(command, kwargs["timeout"])
        return answer
    monkeypatch.setattr(grading.subprocess, "run", fake_run)
    assert grading.gpu_state(0) == {"name": "NVIDIA H200", "driver": "560.35.03", "sm_clock_mhz": 1980.0,
                                    "temperature_c": 41.0}
    assert grading.gpu_state(0)["sm_clock_mhz"] is None
    assert grading.gpu_state(0) is None      # unexpected output
    assert grading.gpu_state(0) is None      # a hung nvidia-smi
    assert isinstance(grading.load_average(), float)
