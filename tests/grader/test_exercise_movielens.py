"""The movielens exercise (lesson 7, collaborative filtering): its spec and notebooks keep the
ratings contract, both sources' for_grading (ML-100k on a fixture in the real format, and the
bundled latest-small) behave as a grade needs, the notebooks learn, and the reference is graded
in the real sandbox.

The real ML-100k needs a download, so nothing here measures accuracy on it: the fixture runs are
smoke tests, and the accuracy checks use the bundled latest-small edition (other users, half
stars), which says only that the notebooks learn real ratings.
"""

import dataclasses
import inspect
import math
import pathlib

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from grader import datasets, grading, kinds, results
from grader.notebook import extract_exports, load_solution
from grader.sources import movielens, movielens_small
from grader.spec import load_spec

EXERCISE = pathlib.Path(__file__).resolve().parents[2] / "exercises" / "movielens"
NOTEBOOKS = [EXERCISE / "starter.ipynb", EXERCISE / "reference.ipynb"]
P = inspect.Parameter
FIXTURE_SEED = 3
FIXTURE_USERS, FIXTURE_ITEMS, FIXTURE_RATINGS = 60, 80, 3000  # enough for two of the starter's 1,024-rating batches
SANDBOX_TRAIN_BUDGET_SECONDS = 240.0  # a busy shared 2-core box; the reference trains in seconds

# pyproject turns warnings into errors; two come from fastai itself, not from our code: its
# torchvision import calls torch.jit.script (deprecated in this torch), and its tabular batches
# turn pandas' read-only (copy-on-write) arrays into tensors, which torch warns about once.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:The given NumPy array is not writable:UserWarning")]


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One intra-op thread: on a shared 2-core machine more threads only fight (see test_exercises.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-100k")
    movielens.write_fixture(root, seed=FIXTURE_SEED, n_users=FIXTURE_USERS, n_items=FIXTURE_ITEMS,
                            n_ratings=FIXTURE_RATINGS)
    return root


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("latest-small")
    movielens_small.prepare(root)
    return root


def rmse(predicted, actual) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=np.float64) - np.asarray(actual)) ** 2)))


def as_pairs(frame) -> set:
    return set(zip(frame["user"], frame["item"]))


# --- spec and notebooks ---------------------------------------------------------------------------

def test_spec_is_the_ratings_exercise_on_ml_100k():
    spec = load_spec(EXERCISE)
    assert (spec.id, spec.dataset, spec.data_kind, spec.metric) == ("movielens", "movielens", kinds.RATINGS, "rmse")
    assert spec.target == 0.95 and not spec.metric_info.higher_is_better
    assert spec.device == "cpu" and spec.warmup is False and spec.weights == ()
    assert datasets.resolve(spec.dataset) == "movielens"
    assert movielens.DATA_KIND == movielens_small.DATA_KIND == spec.data_kind
    assert spec.runs >= 3 and spec.train_budget_seconds >= 30 and spec.predict_budget_seconds >= 5
    assert 0 < len(spec.summary) <= 120 and "\n" not in spec.summary
    for name in ("README.md", "starter.ipynb", "reference.ipynb"):
        assert (EXERCISE / name).is_file(), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_keeps_the_ratings_contract(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), "clear the outputs before committing"
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells[:first_code])
    assert "def train(df_train: pd.DataFrame, *, seed: int, device: str, report=None)" in prose
    assert "def predict(model, df_test: pd.DataFrame)" in prose
    solution = load_solution(path, kind=kinds.RATINGS)  # the grader's own contract check, for this kind
    train = inspect.signature(solution.train).parameters
    assert [(n, p.kind) for n, p in train.items()] == [
        ("df_train", P.POSITIONAL_OR_KEYWORD), ("seed", P.KEYWORD_ONLY), ("device", P.KEYWORD_ONLY),
        ("report", P.KEYWORD_ONLY)]
    assert train["report"].default is None
    assert list(inspect.signature(solution.predict).parameters) == ["model", "df_test"]
    # The try-out cell is there, loads ML-100k as the grader does, and is not exported.
    try_out = [c.source for c in nb.cells if c.cell_type == "code" and "train(df_train, seed=" in c.source]
    assert len(try_out) == 1 and "URLs.ML_100k" in try_out[0] and "default_rng(0)" in try_out[0]
    assert "URLs.ML_100k" not in extract_exports(path)


def test_the_try_out_split_is_the_graders_public_split(fixture_dir):
    """The starter's try-out cell rebuilds split_ratings by hand (learners have no grader package):
    run its split lines on the fixture's u.data and compare with for_grading(secret=None)."""
    source = next(c.source for c in nbformat.read(EXERCISE / "starter.ipynb", as_version=4).cells
                  if c.cell_type == "code" and "URLs.ML_100k" in c.source)
    split_lines = source[source.index("ratings = pd.read_csv"):source.index("for seed in")]
    scope = {"np": np, "pd": pd, "path": movielens.folder(fixture_dir)}
    exec(split_lines, scope)
    public = movielens.for_grading(fixture_dir, secret=None)
    pd.testing.assert_frame_equal(scope["df_train"], public.train)
    pd.testing.assert_frame_equal(scope["df_test"], public.test)


# --- for_grading ----------------------------------------------------------------------------------

def test_for_grading_on_the_ml_100k_fixture(fixture_dir):
    raw = movielens.load(fixture_dir)
    public = movielens.for_grading(fixture_dir, secret=None)
    fixed_train, fixed_test = movielens.split_ratings(raw)
    for part, fixed in ((public.train, fixed_train), (public.test, fixed_test)):
        assert list(part.columns) == ["user", "item", "rating"]
        assert part.dtypes.tolist() == [np.int64, np.int64, np.float64]
        assert part.values.tolist() == fixed[["user", "item", "rating"]].values.tolist()  # ids and order as in u.data
    assert len(public.test) == round(movielens.TEST_FRACTION * len(raw))
    again = movielens.for_grading(fixture_dir, secret=None)
    pd.testing.assert_frame_equal(public.test, again.test)

    graded = movielens.for_grading(fixture_dir, secret=12345)
    same = movielens.for_grading(fixture_dir, secret=12345)
    other = movielens.for_grading(fixture_dir, secret=54321)
    pd.testing.assert_frame_equal(graded.train, same.train)
    pd.testing.assert_frame_equal(graded.test, same.test)
    assert as_pairs(graded.test) != as_pairs(other.test)
    assert (len(graded.train), len(graded.test)) == (len(public.train), len(public.test))
    assert list(graded.test.columns) == ["user", "item", "rating"]
    assert graded.test.dtypes.tolist() == [np.int64, np.int64, np.float64]
    # Every rating is in exactly one part; the ids are the same numbers with other meanings.
    everything = pd.concat([graded.train, graded.test])
    assert sorted(everything["rating"]) == sorted(raw["rating"])
    assert len(as_pairs(everything)) == len(raw)
    for column in ("user", "item"):
        assert set(everything[column]) == set(raw[column])
    assert as_pairs(everything) != as_pairs(raw)  # pseudonymised, not the public pairs


def test_a_grade_of_ml_100k_is_the_same_ratings_renamed(fixture_dir):
    """Pseudonymisation only relabels: each user keeps their ratings (count and stars) under one new id."""
    raw = movielens.load(fixture_dir)
    graded = movielens.for_grading(fixture_dir, secret=777)
    everything = pd.concat([graded.train, graded.test])
    for column in ("user", "item"):
        profile = lambda frame: sorted(tuple(sorted(g)) for _, g in frame.groupby(column)["rating"])  # noqa: E731
        assert profile(everything) == profile(raw)


def test_the_bundled_latest_small_under_a_secret(bundled_dir, tmp_path):
    raw = movielens_small.load(bundled_dir)
    public = movielens_small.for_grading(bundled_dir, secret=None)
    assert (len(public.train), len(public.test)) == (80_003, 20_001)
    graded = movielens_small.for_grading(bundled_dir, secret=2024)
    pd.testing.assert_frame_equal(graded.test, movielens_small.for_grading(bundled_dir, secret=2024).test)
    other = movielens_small.for_grading(bundled_dir, secret=2025)
    overlap = len(as_pairs(graded.test) & as_pairs(other.test)) / len(graded.test)
    assert overlap < 0.05, overlap  # two grades' test parts are unrelated draws, not one fixed set

    # As the sandbox sees it: test.csv has user and item only; the ratings stay with the grader.
    prepared = kinds.prepare(kinds.RATINGS, tmp_path, graded)
    visible = pd.read_csv(tmp_path / kinds.TEST_CSV)
    assert list(visible.columns) == ["user", "item"] and len(visible) == len(graded.test)
    assert visible.values.tolist() == graded.test[["user", "item"]].values.tolist()
    assert prepared.truth.tolist() == graded.test["rating"].tolist()
    assert list(pd.read_csv(tmp_path / kinds.TRAIN_CSV).columns) == ["user", "item", "rating"]

    # The threat the secret answers: a table of every public rating, looked up by (user, item).
    lookup = raw.set_index(["user", "item"])["rating"]
    mean = raw["rating"].mean()

    def pasted_lookup(test):
        keys = pd.MultiIndex.from_frame(test[["user", "item"]])
        return lookup.reindex(keys).fillna(mean).to_numpy()

    assert rmse(pasted_lookup(public.test), public.test["rating"]) == 0.0  # the public split: exact
    global_mean = rmse(np.full(len(graded.test), graded.train["rating"].mean()), graded.test["rating"])
    assert rmse(pasted_lookup(graded.test), graded.test["rating"]) > global_mean  # a grade: worse than no model


# --- the notebooks learn --------------------------------------------------------------------------

def fit(path, data, seed=0):
    solution = load_solution(path, kind=kinds.RATINGS)
    reports = []
    model = solution.train(data.train.copy(), seed=seed, device="cpu", report=lambda **values: reports.append(values))
    predicted = np.asarray(solution.predict(model, data.test[["user", "item"]].copy()), dtype=np.float64)
    assert predicted.shape == (len(data.test),) and np.isfinite(predicted).all()
    return predicted, reports


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_smoke_runs_on_the_ml_100k_fixture(path, fixture_dir):
    data = movielens.for_grading(fixture_dir, secret=99)
    unseen = data.test.iloc[:2].assign(user=[10_000, 1], item=[1, 10_000])  # ids training never saw
    data = dataclasses.replace(data, test=pd.concat([data.test, unseen], ignore_index=True))
    predicted, reports = fit(path, data)
    assert ((predicted >= 0) & (predicted <= 5.5)).all()  # y_range (0, 5.5)
    assert [r["epoch"] for r in reports] == list(range(1, len(reports) + 1)) and reports
    assert all(math.isfinite(r["loss"]) for r in reports)


@pytest.fixture(scope="module")
def latest_small_grade(bundled_dir):
    """One grade's data of the bundled edition, and its no-learning per-user mean."""
    data = movielens_small.for_grading(bundled_dir, secret=1)
    per_user = data.test["user"].map(data.train.groupby("user")["rating"].mean()).fillna(data.train["rating"].mean())
    return data, rmse(per_user, data.test["rating"])


@pytest.fixture(scope="module")
def reference_rmse(latest_small_grade):
    data, _ = latest_small_grade
    predicted, reports = fit(EXERCISE / "reference.ipynb", data, seed=1)
    assert reports[-1]["loss"] < reports[0]["loss"]
    return rmse(predicted, data.test["rating"])


def test_reference_learns_real_ratings(latest_small_grade, reference_rmse):
    # latest-small, not ML-100k: measured by bench/collab_exercise.py at about 0.87; its per-user
    # mean is about 0.96. Well ahead of no learning, on a pseudonymised, shuffled grade split.
    _, per_user_mean = latest_small_grade
    assert reference_rmse < per_user_mean - 0.06, (reference_rmse, per_user_mean)


def test_starter_learns_but_leaves_room(latest_small_grade, reference_rmse):
    data, per_user_mean = latest_small_grade
    predicted, reports = fit(EXERCISE / "starter.ipynb", data, seed=1)
    starter = rmse(predicted, data.test["rating"])
    global_mean = rmse(np.full(len(data.test), data.train["rating"].mean()), data.test["rating"])
    assert starter < global_mean, (starter, global_mean)               # it learns something
    assert starter > reference_rmse + 0.05, (starter, reference_rmse)  # far behind the reference
    assert [r["epoch"] for r in reports] == [1, 2] and "valid_loss" in reports[0]


def test_reference_is_deterministic_given_the_seed(fixture_dir):
    data = movielens.for_grading(fixture_dir, secret=5)
    a, _ = fit(EXERCISE / "reference.ipynb", data, seed=7)
    b, _ = fit(EXERCISE / "reference.ipynb", data, seed=7)
    c, _ = fit(EXERCISE / "reference.ipynb", data, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# --- in the sandbox -------------------------------------------------------------------------------

def sandbox_spec(**changes):
    return dataclasses.replace(load_spec(EXERCISE), train_budget_seconds=SANDBOX_TRAIN_BUDGET_SECONDS,
                               predict_budget_seconds=SANDBOX_TRAIN_BUDGET_SECONDS, too_slow_factor=1000.0,
                               **changes)


def test_reference_is_graded_in_the_sandbox_on_the_fixture(sandbox_ready, fixture_dir):
    # The real path: no load_dataset override, so datasets.load_for_grading reads the fixture's
    # u.data with a secret drawn for this grade. The fixture is noisy and tiny, so any RMSE passes.
    result = grading.grade(EXERCISE / "reference.ipynb", sandbox_spec(target=5.5), data_dir=fixture_dir,
                           reference=grading.NO_REFERENCE, runs=1)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    data = result.as_dict()
    assert (data["metric"], data["higher_is_better"], data["config"]["data_kind"]) == ("rmse", False, "ratings")
    assert 0.0 < data["score"] < 2.0 and data["accuracy"] is None
    assert len(data["runs"]) == 1 and data["runs"][0]["score"] == data["score"]


def test_an_rmse_above_the_target_is_below_target(sandbox_ready, fixture_dir, notebook):
    """The real spec (target 0.95): predicting 1 star for everything scores an RMSE well above it."""
    one_star = notebook("def train(df_train, *, seed, device, report=None):\n    return 1.0\n",
                        "def predict(model, df_test):\n    return [model] * len(df_test)\n")
    spec = sandbox_spec()
    result = grading.grade(one_star, spec, data_dir=fixture_dir, reference=grading.NO_REFERENCE, runs=1)
    assert result.status == results.BELOW_TARGET, (result.message, result.log_tail)
    assert result.score > spec.target and "above the target ≤ 0.950" in result.message
