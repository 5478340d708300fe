"""Scoring outside the sandbox: reading predictions without trusting them, the JSON, the plot."""

import dataclasses
import json
import os

import numpy as np
import pytest

from grader import grading, plot, results
from grader.grading import RunFailed, read_predictions, validate_predictions

N, C = 6, 3


def save(path, array):
    with open(path, "wb") as f:
        np.save(f, array)
    return path


@pytest.mark.parametrize("array, fragment", [
    (np.zeros(N - 1, dtype=np.int64), r"shape \(5,\)"),
    (np.zeros((N, C + 1), dtype=np.float32), r"shape \(6, 4\)"),
    (np.zeros((N, C, 1), dtype=np.float32), r"shape \(6, 3, 1\)"),
    (np.zeros(N, dtype=np.float32), "must be integer class indices"),
    (np.full(N, C, dtype=np.int64), r"in \[0, 3\)"),
    (np.full(N, -1, dtype=np.int64), r"in \[0, 3\)"),
    (np.full((N, C), np.nan, dtype=np.float32), "NaN or infinity"),
    (np.full((N, C), np.inf, dtype=np.float64), "NaN or infinity"),
    (np.array(["a"] * N), "must be integer class indices"),
])
def test_invalid_predictions_are_bad_output(array, fragment):
    with pytest.raises(RunFailed, match=fragment) as caught:
        validate_predictions(array, N, C)
    assert caught.value.status == results.BAD_OUTPUT


def test_valid_predictions_become_class_indices():
    assert validate_predictions(np.array([0, 2, 1, 1, 0, 2], dtype=np.int32), N, C).tolist() == [0, 2, 1, 1, 0, 2]
    scores = np.eye(C, dtype=np.float32)[[2, 1, 0, 0, 1, 2]]
    assert validate_predictions(scores, N, C).tolist() == [2, 1, 0, 0, 1, 2]


def test_predictions_file_is_read_without_trusting_it(tmp_path):
    labels = save(tmp_path / "labels.npy", np.array([0, 1, 2, 0, 1, 2]))
    link = tmp_path / "predictions.npy"
    os.symlink(labels, link)  # a sandbox pointing its output at the labels must not score
    with pytest.raises(RunFailed, match="no predictions were written"):
        read_predictions(link, N, C)

    pickled = tmp_path / "pickled.npy"
    with open(pickled, "wb") as f:
        np.save(f, np.array([{"x": 1}] * N, dtype=object), allow_pickle=True)
    with pytest.raises(RunFailed, match="not a valid array"):
        read_predictions(pickled, N, C)

    huge = tmp_path / "huge.npy"
    save(huge, np.zeros((N, 1000)))
    with pytest.raises(RunFailed, match="larger than any valid"):
        read_predictions(huge, N, C)

    empty = tmp_path / "empty.npy"
    empty.touch()
    with pytest.raises(RunFailed, match="not a valid array"):
        read_predictions(empty, N, C)

    good = save(tmp_path / "good.npy", np.array([0, 1, 2, 0, 1, 2]))
    assert read_predictions(good, N, C).tolist() == [0, 1, 2, 0, 1, 2]


def make_result(status="passed", curve=True):
    runs = [results.RunRecord(seed=s, accuracy=a, train_seconds=t, predict_seconds=0.01,
                              curve=[{"epoch": e, "loss": 1 / (e + 1)} for e in range(500)] if curve else [])
            for s, a, t in [(1, 0.95, 2.0), (2, 0.97, 1.0), (3, 0.96, 3.0)]]
    return results.Result(exercise="tiny", status=status, message="m", target=0.94, runs=runs,
                          reference={"accuracy": 0.955, "train_seconds": 3.99, "predict_seconds": 0.01,
                                     "rank_seconds": 4.0},
                          hardware={"device": "cpu", "device_name": "CPU", "torch": "2.x"})


def test_result_json_has_the_agreed_fields():
    data = json.loads(make_result().to_json())
    for key in ("exercise", "status", "message", "accuracy", "accuracy_std", "runs", "train_seconds",
                "total_seconds", "reference", "speed_ratio", "target", "hardware", "log_tail", "code_sha256",
                "config", "plot", "rank_seconds", "rank_seconds_low", "rank_seconds_high", "flags",
                "reference_remeasured", "metric", "higher_is_better", "score", "score_std"):
        assert key in data, key
    assert data["accuracy"] == pytest.approx(0.96)
    assert (data["metric"], data["higher_is_better"]) == ("accuracy", True)
    assert data["score"] == pytest.approx(0.96) and data["score_std"] == pytest.approx(0.01)
    assert data["accuracy_std"] == pytest.approx(0.01)
    assert data["train_seconds"] == 2.0          # median
    assert data["rank_seconds"] == pytest.approx(2.01)  # median of train + predict per run
    assert data["speed_ratio"] == pytest.approx(4.0 / 2.01)  # reference rank 4 s / median rank 2.01 s
    assert set(data["runs"][0]) == {"seed", "score", "accuracy", "train_seconds", "predict_seconds", "rank_seconds",
                                    "warmup_seconds", "load_average", "gpu", "sandbox_wait_seconds",
                                    "sandbox_start_seconds"}
    assert len(data["learning_curves"][0]) == results.MAX_CURVE_POINTS
    assert data["learning_curves"][0][-1]["epoch"] == 499


def test_json_never_contains_nan():
    result = make_result()
    result.reference = {"accuracy": float("nan"), "train_seconds": 4.0, "rank_seconds": 4.0}
    assert "NaN" not in result.to_json()


def test_unknown_status_is_a_bug():
    with pytest.raises(ValueError):
        results.Result(exercise="x", status="great", message="")


@pytest.mark.parametrize("curve", [True, False])
def test_plot_is_a_png(tmp_path, curve):
    path = plot.render(make_result(curve=curve), tmp_path / "plots" / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_judge_boundaries(tiny_spec):
    spec = dataclasses.replace(tiny_spec, too_slow_factor=10.0)
    result = make_result()
    result.reference = {"accuracy": 0.96, "rank_seconds": 0.09}
    grading.judge(spec, result)  # median rank 2.01 s > 10 x 0.09 s + 1 s grace
    assert result.status == results.TOO_SLOW and "over the 1.90 s allowed" in result.message
    result.reference = {"accuracy": 0.96, "rank_seconds": 0.101}
    grading.judge(spec, result)  # 2.01 s is not over 10 x 0.101 + 1 = 2.01 s
    assert result.status == results.PASSED and "0.05x the reference's speed" in result.message
    for run in result.runs:
        run.accuracy = run.score = 0.5
    grading.judge(spec, result)
    assert result.status == results.BELOW_TARGET and "below the target 90.00%" in result.message


def test_a_grader_bug_still_gives_a_result(monkeypatch, grade_tiny, capsys):
    from tests.grader.grader_support import TINY_REFERENCE

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the grader")
    monkeypatch.setattr(grading, "measure", broken)
    result = grade_tiny(TINY_REFERENCE)
    assert result.status == results.INFRA_ERROR
    assert "internal grader error (RuntimeError: a bug in the grader)" in result.message
    assert "Traceback" in capsys.readouterr().err
