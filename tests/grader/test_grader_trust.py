"""Leaderboards you can trust: the three ways to win without training faster, each tried on the
tiny exercise (fast variants) and once on the real digits exercise. Each must end as a ranking
time that includes its work, an honest failure with a hint, or a review flag; never a fast
clean pass.

1. work moved out of the clock: train() returns at once, predict() trains
2. work done before the clock: in a patched seeding function the runner calls, or in a thread
   started at import that waits for the training data to appear
3. answers looked up: bundled copies of the data are hidden; generated test sets are fresh per
   grade; a pasted public test set matches nothing exactly and is flagged
"""

import re

import numpy as np
import pytest

from grader import api, datasets, grading, reference_cache, results, review
from grader.spec import find_exercise
from tests.grader.grader_support import TINY_REFERENCE, load_blobs, reference_source

TRAIN_PREFIX = reference_source().replace("def train(", "def _train(", 1)
HIDDEN_SECONDS = 1.5      # how long the cheats really work where they hope no clock runs
# A fixed reference for the tiny cheats judged by grading.grade (a busy machine cannot flip it):
# predict limit = 20 x 0.02 + 1 = 1.4 s; predict_heavy over 5 x 0.02 + 0.25 = 0.35 s;
# train_near_zero below 5% of 10 s = 0.5 s.
FIXED_REFERENCE = grading.Reference({"accuracy": 1.0, "train_seconds": 10.0, "predict_seconds": 0.02,
                                     "rank_seconds": 10.02})


def flag_codes(result):
    return [f["code"] for f in result.flags]


def assert_not_a_fast_clean_pass(result):
    assert result.status != results.PASSED or result.flags, (result.status, result.message)


# ---- 1. work moved out of the clock ----------------------------------------------------------

TRAIN_IN_PREDICT = '''
import time
def train(x_train, y_train, *, seed, device, report=None):
    return (x_train, y_train, seed)          # no training here ...

def predict(model, x_test):
    x_train, y_train, seed = model          # ... it all happens in predict()
    trained = _train(x_train, y_train, seed=seed, device="cpu")
    time.sleep(EXTRA)                       # stands in for a longer training
    with torch.no_grad():
        return trained(x_test)
'''


def test_training_in_predict_is_stopped_at_the_predict_limit(notebook, tiny_spec, data_dir, sandbox_ready):
    result = grading.grade(notebook(TRAIN_PREFIX + TRAIN_IN_PREDICT.replace("EXTRA", "2.0")), tiny_spec,
                           data_dir=data_dir, load_dataset=load_blobs, reference=FIXED_REFERENCE)
    assert result.status == results.TIMEOUT, result.message
    assert "predict() took over 70x the reference's predict time (over 1.40 s against 0.020 s)" in result.message
    assert "predict() must only run the trained model" in result.message
    assert result.config["predict_limit_seconds"] == pytest.approx(1.4)


def test_training_in_predict_within_the_limit_is_ranked_and_flagged(notebook, tiny_spec, data_dir, sandbox_ready):
    result = grading.grade(notebook(TRAIN_PREFIX + TRAIN_IN_PREDICT.replace("EXTRA", "0.5")), tiny_spec,
                           data_dir=data_dir, load_dataset=load_blobs, reference=FIXED_REFERENCE)
    assert result.status == results.PASSED, result.message
    run = result.runs[0]
    assert run.predict_seconds >= 0.5 and result.rank_seconds == run.train_seconds + run.predict_seconds >= 0.5
    assert review.PREDICT_HEAVY in flag_codes(result) and review.TRAIN_NEAR_ZERO in flag_codes(result)
    assert "flagged for review" in result.message


# ---- 2. work done before the clock -----------------------------------------------------------

TRAIN_IN_MANUAL_SEED = f'''
import os, time
import numpy as np
hidden = {{}}
real_manual_seed = torch.manual_seed

def sneaky_manual_seed(seed):
    # called by the runner between loading the data and calling train()
    if "busy" not in hidden and os.path.exists("/sandbox/data/x_train.npy"):
        hidden["busy"] = True  # _train seeds too
        started = time.perf_counter()
        x = torch.from_numpy(np.load("/sandbox/data/x_train.npy"))
        y = torch.from_numpy(np.load("/sandbox/data/y_train.npy"))
        hidden["model"] = _train(x, y, seed=0, device="cpu")
        time.sleep({HIDDEN_SECONDS})
        print(f"hidden work took {{time.perf_counter() - started:.4f}} s")
    return real_manual_seed(seed)
torch.manual_seed = sneaky_manual_seed

def train(x_train, y_train, *, seed, device, report=None):
    return hidden.get("model") or _train(x_train, y_train, seed=seed, device=device)
'''

TRAIN_IN_THREAD = f'''
import os, threading, time
import numpy as np
hidden = {{}}

def wait_for_the_data():
    while not os.path.exists("/sandbox/data/x_train.npy"):
        time.sleep(0.0005)
    time.sleep(0.01)  # let the second file land
    started = time.perf_counter()
    x = torch.from_numpy(np.load("/sandbox/data/x_train.npy"))
    y = torch.from_numpy(np.load("/sandbox/data/y_train.npy"))
    hidden["model"] = _train(x, y, seed=0, device="cpu")
    time.sleep({HIDDEN_SECONDS})
    print(f"hidden work took {{time.perf_counter() - started:.4f}} s")

worker = threading.Thread(target=wait_for_the_data, daemon=True)
worker.start()  # at import, long before the clock could start

def train(x_train, y_train, *, seed, device, report=None):
    if not os.path.exists("/sandbox/data/x_train.npy"):   # the warm-up, on noise
        return _train(x_train, y_train, seed=seed, device=device)
    worker.join()
    return hidden["model"]
'''


def hidden_seconds(result) -> float:
    found = re.findall(r"hidden work took ([0-9.]+) s", result.log_tail)
    assert found, result.log_tail
    return float(found[-1])


@pytest.mark.parametrize("cheat", [TRAIN_IN_MANUAL_SEED, TRAIN_IN_THREAD], ids=["manual_seed", "thread"])
def test_work_hidden_before_train_is_on_the_clock(cheat, notebook, grade_tiny):
    result = grade_tiny(notebook(TRAIN_PREFIX + cheat))
    assert result.status == results.PASSED, (result.message, result.log_tail)
    hidden = hidden_seconds(result)
    assert hidden >= HIDDEN_SECONDS
    assert result.runs[0].train_seconds >= hidden and result.rank_seconds >= hidden


# ---- 3. answers looked up --------------------------------------------------------------------

LOOKUPS = '''
import glob, os, pathlib
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    if calls == 2:  # the timed call
        try:
            from sklearn.datasets import load_digits
            digits = load_digits()
            print("LOOKUP-OK sklearn digits", digits.target[:5])
        except Exception as e:
            print("lookup-failed sklearn", type(e).__name__)
        try:
            from mnist1d.data import get_dataset_args, make_dataset
            make_dataset(get_dataset_args())
            print("LOOKUP-OK mnist1d generator")
        except Exception as e:
            print("lookup-failed mnist1d", type(e).__name__)
        import sklearn
        root = pathlib.Path(sklearn.__file__).parent / "datasets"
        for folder in ("data", "descr", "images"):
            print("listing", folder, sorted(os.listdir(root / folder)))
        for path in PATHS:
            print("visible" if os.path.exists(path) else "absent", path)
    return _train(x_train, y_train, seed=seed, device=device)
'''


def test_bundled_data_and_dataset_caches_are_out_of_reach(notebook, grade_tiny, data_dir):
    import pathlib
    paths = [str(data_dir), str(pathlib.Path.home() / ".cache"), str(pathlib.Path.home() / "scikit_learn_data"),
             "/root/.cache/studybot-grader"]
    result = grade_tiny(notebook(TRAIN_PREFIX + LOOKUPS.replace("PATHS", repr(paths))))
    assert result.status == results.PASSED, (result.message, result.log_tail)
    assert "LOOKUP-OK" not in result.log_tail
    assert "lookup-failed sklearn FileNotFoundError" in result.log_tail
    assert "lookup-failed mnist1d ModuleNotFoundError" in result.log_tail
    for folder in ("data", "descr", "images"):
        assert f"listing {folder} []" in result.log_tail
    assert "visible" not in result.log_tail and result.log_tail.count("absent") == len(paths)


def test_two_grades_see_different_mnist1d_test_sets(tmp_path):
    public = datasets.load("mnist1d", tmp_path)
    first = datasets.load_for_grading("mnist1d", tmp_path, secret=1)
    second = datasets.load_for_grading("mnist1d", tmp_path, secret=2)
    np.testing.assert_array_equal(first.x_train, public.x_train)         # the training split stays
    assert not np.isin(first.x_test, public.x_test).all(axis=1).any()      # no published test signal
    assert (first.x_test != second.x_test).any(axis=1).all()               # every signal differs
    assert first.x_test.shape == public.x_test.shape and first.x_test.dtype == np.float32
    assert np.bincount(first.y_test).tolist() == [100] * 10
    assert abs(first.x_test.mean()) < 1e-5 and abs(first.x_test.std() - 1) < 1e-4  # standardized
    again = datasets.load_for_grading("mnist1d", tmp_path, secret=1)
    np.testing.assert_array_equal(first.x_test, again.x_test)


def test_digits_test_inputs_are_perturbed_and_reordered_per_grade(tmp_path):
    public = datasets.load("digits", tmp_path)
    first = datasets.load_for_grading("digits", tmp_path, secret=1)
    second = datasets.load_for_grading("digits", tmp_path, secret=2)
    np.testing.assert_array_equal(first.x_train, public.x_train)
    assert np.bincount(first.y_test).tolist() == np.bincount(public.y_test).tolist()
    # The public labels pasted in their published order score about chance, not 100%.
    assert (first.y_test == public.y_test).mean() < 0.3
    # Each test image is a public one, slightly changed, with its own label kept.
    nearest = ((first.x_test[:, None, :] - public.x_test[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(public.y_test[nearest], first.y_test)
    assert np.abs(first.x_test - public.x_test[nearest]).mean() < 0.05    # small: same digits
    assert (first.x_test != public.x_test[nearest]).any(axis=1).all()      # no image matches exactly
    assert first.x_test.min() >= 0.0 and first.x_test.max() <= 1.0
    assert (first.y_test != second.y_test).any()                           # another grade, another order
    again = datasets.load_for_grading("digits", tmp_path, secret=1)
    np.testing.assert_array_equal(first.x_test, again.x_test)


def test_the_cifar10_test_batch_comes_in_a_secret_order(tmp_path):
    datasets.write_cifar10_fixture(tmp_path, n_train=10, n_test=200, seed=0)
    public = datasets.load("cifar10", tmp_path)
    graded = datasets.load_for_grading("cifar10", tmp_path, secret=7)
    assert (graded.y_test == public.y_test).mean() < 0.3
    assert sorted(map(bytes, graded.x_test)) == sorted(map(bytes, public.x_test))  # the same images


def test_extreme_ratio_remeasures_the_reference_beside_the_submission(grade_tiny, monkeypatch):
    # A cached reference measured on a much slower machine (or a bad day): 100 s.
    stale = {"format": reference_cache.SUMMARY_FORMAT, "accuracy": 1.0, "train_seconds": 99.0,
             "predict_seconds": 1.0, "rank_seconds": 100.0, "measured_at": "2026-01-01T00:00:00+00:00"}
    monkeypatch.setattr(api.reference_cache, "load", lambda spec, **kwargs: dict(stale))
    result = grade_tiny(TINY_REFERENCE, runs=1)
    assert result.status == results.PASSED, result.message
    assert result.reference_remeasured is True and result.as_dict()["reference_remeasured"] is True
    assert result.reference["rank_seconds"] < 100.0 and result.reference["format"] == reference_cache.SUMMARY_FORMAT
    assert any("measured again now" in note for note in result.notes)
    # Judged against today's measurement, not the stale one. (No bound on the ratio itself: a 20 ms
    # training against a 1-run re-measurement is noise, and flaked beside another pytest worker.)
    assert result.reference["measured_at"] != stale["measured_at"]


# ---- the real digits exercise, one run each -------------------------------------------------------

DIGITS_REFERENCE_RUNS = 2


@pytest.fixture(scope="module")
def digits_spec():
    return find_exercise("digits")


@pytest.fixture(scope="module")
def digits_reference(digits_spec, tmp_path_factory, sandbox_ready):
    """The digits reference measured once here, through the real path (2 runs)."""
    data_dir = tmp_path_factory.mktemp("digits-data")
    measured = grading.grade(digits_spec.reference_notebook, digits_spec, data_dir=data_dir,
                             reference=grading.NO_REFERENCE, runs=DIGITS_REFERENCE_RUNS)
    assert measured.status == results.PASSED, (measured.message, measured.log_tail)
    return grading.Reference(reference_cache.summarize(digits_spec, measured)), data_dir


def digits_source() -> str:
    from grader.notebook import EXPORT_DIRECTIVE, extract_exports
    from grader.spec import default_exercises_dir
    lines = extract_exports(default_exercises_dir() / "digits" / "reference.ipynb").splitlines()
    return "\n".join(line for line in lines if not EXPORT_DIRECTIVE.match(line.strip())) + "\n"


def grade_digits(path, digits_spec, digits_reference):
    reference, data_dir = digits_reference
    return grading.grade(path, digits_spec, data_dir=data_dir, reference=reference, runs=1)


def test_digits_training_in_predict(notebook, digits_spec, digits_reference):
    cheat = digits_source().replace("def train(", "def _train(", 1) + '''
def train(x_train, y_train, *, seed, device, report=None):
    return (x_train, y_train, seed)

_predict = predict
def predict(model, x_test):
    x_train, y_train, seed = model
    return _predict(_train(x_train, y_train, seed=seed, device="cpu"), x_test)
'''
    result = grade_digits(notebook(cheat), digits_spec, digits_reference)
    assert_not_a_fast_clean_pass(result)
    if result.status == results.TIMEOUT:   # the reference's training does not fit in ~20x its predict
        assert "the reference's predict time" in result.message
    else:
        assert review.TRAIN_NEAR_ZERO in flag_codes(result) and result.rank_seconds >= result.predict_seconds


def test_digits_training_in_patched_np_random_seed(notebook, digits_spec, digits_reference):
    cheat = digits_source().replace("def train(", "def _train(", 1) + '''
import os, time
import numpy as np
hidden = {}
real_seed = np.random.seed

def sneaky_seed(seed=None):
    if "busy" not in hidden and os.path.exists("/sandbox/data/x_train.npy"):
        hidden["busy"] = True  # _train seeds too
        started = time.perf_counter()
        x = torch.from_numpy(np.load("/sandbox/data/x_train.npy"))
        y = torch.from_numpy(np.load("/sandbox/data/y_train.npy"))
        hidden["model"] = _train(x, y, seed=0, device="cpu")
        print(f"hidden work took {time.perf_counter() - started:.4f} s")
    return real_seed(seed)
np.random.seed = sneaky_seed

def train(x_train, y_train, *, seed, device, report=None):
    return hidden.get("model") or _train(x_train, y_train, seed=seed, device=device, report=report)
'''
    result = grade_digits(notebook(cheat), digits_spec, digits_reference)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    hidden = hidden_seconds(result)
    assert result.runs[0].train_seconds >= hidden > 0.5   # the whole training, on the clock
    assert review.TRAIN_NEAR_ZERO not in flag_codes(result)


def test_digits_pasted_public_test_set_is_flagged(notebook, digits_spec, digits_reference, tmp_path):
    public = datasets.load("digits", tmp_path)
    lookup = f'''
import torch
PUBLIC_X = torch.tensor({public.x_test.round(4).tolist()!r})
PUBLIC_Y = torch.tensor({public.y_test.tolist()!r})

def train(x_train, y_train, *, seed, device, report=None):
    return None  # nothing to learn: the answers are pasted above

def predict(model, x_test):
    return PUBLIC_Y[torch.cdist(x_test, PUBLIC_X).argmin(1)]  # nearest pasted image
'''
    result = grade_digits(notebook(lookup), digits_spec, digits_reference)
    assert_not_a_fast_clean_pass(result)
    assert review.TRAIN_NEAR_ZERO in flag_codes(result) or review.TOO_GOOD_TOO_FAST in flag_codes(result)
    assert result.accuracy > 0.9   # the look-up does work on the perturbed images: the flags catch it
