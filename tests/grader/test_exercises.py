"""exercises/: every spec is valid, every notebook keeps the contract, and the references learn.

The references train in-process through grader.notebook.load_solution (trusted code, no sandbox):
digits and mnist1d in full on one seed, cifar10-94 for one epoch on a tiny CIFAR-10 fixture on
the CPU (its real run needs a GPU; bench/cifar10_vs_airbench.py times it there).
"""

import inspect
import math
import pathlib

import nbformat
import numpy as np
import pytest
import torch

from grader import datasets, kinds, metrics
from grader.notebook import extract_exports, load_solution
from grader.spec import list_exercises, load_spec

EXERCISES = pathlib.Path(__file__).resolve().parents[2] / "exercises"
EXERCISE_DIRS = sorted(p.parent for p in EXERCISES.glob("*/spec.toml"))
NOTEBOOKS = [d / f"{kind}.ipynb" for d in EXERCISE_DIRS for kind in ("starter", "reference")]
P = inspect.Parameter
EXPECTED = {  # id: (dataset, device, metric, target); which lesson has which is the curriculum's (tests/test_curricula.py)
    "deploy": ("pets", "cuda", "error_rate", 0.05),
    "digits": ("digits", "cpu", "accuracy", 0.97),
    "mnist1d": ("mnist1d", "cpu", "accuracy", 0.94),
    "cifar10-94": ("cifar10", "cuda", "accuracy", 0.94),
    "fashion-mnist": ("fashion_mnist", "cuda", "accuracy", 0.90),
    "imdb": ("imdb_sample", "cpu", "accuracy", 0.80),
    "movielens": ("movielens", "cpu", "rmse", 0.95),
    "pets": ("pets", "cuda", "error_rate", 0.05),
    "titanic": ("titanic", "cpu", "accuracy", 0.795),
    "titanic-forest": ("titanic", "cpu", "accuracy", 0.795),
}


def ids(paths):
    return [f"{p.parent.name}/{p.name}" if p.suffix else p.name for p in paths]


def test_every_exercise_is_known_here():
    assert [d.name for d in EXERCISE_DIRS] == sorted(EXPECTED)
    assert [s.id for s in list_exercises(EXERCISES)] == sorted(EXPECTED)


@pytest.mark.parametrize("exercise_dir", EXERCISE_DIRS, ids=ids(EXERCISE_DIRS))
def test_spec_is_valid(exercise_dir):
    spec = load_spec(exercise_dir)  # checks required keys, types and ranges
    assert (spec.dataset, spec.device, spec.metric, spec.target) == EXPECTED[spec.id]
    assert spec.metric in metrics.METRICS
    assert datasets.resolve(spec.dataset) == spec.dataset
    assert spec.runs >= 3 and spec.version >= 1
    assert spec.train_budget_seconds >= 30 and spec.predict_budget_seconds >= 5
    assert 0 < len(spec.summary) <= 120 and "\n" not in spec.summary
    for name in ("README.md", "starter.ipynb", "reference.ipynb"):
        assert (exercise_dir / name).is_file(), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_keeps_the_contract(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), "clear the outputs before committing"
    # The contract is documented at the top, in a markdown cell before any code.
    spec = load_spec(path.parent)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells[:first_code])
    assert "def train(" in prose and "def predict(" in prose
    if spec.data_kind == kinds.IMAGE_TENSORS:
        assert "def train(x_train: torch.Tensor, y_train: torch.Tensor, *, seed: int, device: str, report=None)" in prose
        assert "def predict(model, x_test: torch.Tensor) -> torch.Tensor" in prose
    # Export cells define train and predict with exactly the parameters of the exercise's data kind.
    assert "def train(" in extract_exports(path)
    contract = kinds.CONTRACTS[spec.data_kind]
    solution = load_solution(path, spec.data_kind)
    train = inspect.signature(solution.train).parameters
    assert [(n, p.kind) for n, p in train.items()] == contract_parameters(contract.train_signature)
    assert train["report"].default is None
    assert [(n, p.kind) for n, p in inspect.signature(solution.predict).parameters.items()] == \
        contract_parameters(contract.predict_signature)
    # The learner's try-out cell is there and is not exported.
    assert any(c.cell_type == "code" and "train(" in c.source and not c.source.startswith("#| export")
               for c in nb.cells)


def contract_parameters(signature: str) -> list[tuple[str, object]]:
    """[(name, kind)] of a contract's documented signature, e.g. 'def train(path, *, seed, ...)'."""
    namespace = {}
    exec(f"{signature}:\n    pass", namespace)  # noqa: S102 - our own constant, not learner code
    function = next(v for k, v in namespace.items() if k in ("train", "predict"))
    return [(n, p.kind) for n, p in inspect.signature(function).parameters.items()]


# --- training in-process ------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One intra-op thread: on a shared 2-core machine two threads slow these tiny models
    down up to 8x whenever another process is busy; one thread is steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def as_tensors(ds):
    return [torch.from_numpy(a) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)]


def accuracy(scores, y):
    assert scores.shape in ((len(y),), (len(y), 10)), scores.shape
    assert torch.isfinite(scores.float()).all()
    predictions = scores.argmax(1) if scores.ndim == 2 else scores
    return (predictions == y).float().mean().item()


def fit(path, ds, seed=0, *, other_test_sets=()):
    """Train once; the accuracy on ds's test set (and on each (x_test, y_test) of other_test_sets)."""
    solution = load_solution(path)
    x_train, y_train, x_test, y_test = as_tensors(ds)
    reports = []
    model = solution.train(x_train, y_train, seed=seed, device="cpu",
                           report=lambda **values: reports.append(values))
    if other_test_sets:
        return [accuracy(solution.predict(model, torch.from_numpy(x)), torch.from_numpy(y))
                for x, y in [(ds.x_test, ds.y_test), *other_test_sets]], reports
    return accuracy(solution.predict(model, x_test), y_test), reports


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return datasets.load("digits", tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    return datasets.load("mnist1d", tmp_path_factory.mktemp("mnist1d"))


def test_digits_reference_reaches_its_target(digits):
    # also on the per-grade perturbed test images (grader/datasets.py): comfortably, every time
    perturbed = [(datasets.perturb_digits(digits.x_test, secret), digits.y_test) for secret in range(4)]
    (acc, *on_perturbed), reports = fit(EXERCISES / "digits" / "reference.ipynb", digits, other_test_sets=perturbed)
    target = load_spec(EXERCISES / "digits").target
    assert acc >= target, acc
    assert min(on_perturbed) >= target + 0.01 and min(on_perturbed) >= acc - 0.015, on_perturbed
    assert [r["epoch"] for r in reports] == list(range(1, len(reports) + 1)) and len(reports) > 1
    assert reports[-1]["loss"] < reports[0]["loss"]


def test_mnist1d_reference_beats_the_papers_cnn(mnist1d):
    # The full reference (10 epochs, ~10 s on two cores): no shortened run needed.
    # also on a test set generated afresh, as each grade draws one (grader/datasets.py)
    fresh = datasets.fresh_mnist1d_test(secret=12345)
    (acc, on_fresh), reports = fit(EXERCISES / "mnist1d" / "reference.ipynb", mnist1d, other_test_sets=[fresh])
    target = load_spec(EXERCISES / "mnist1d").target
    assert acc >= target and on_fresh >= target, (acc, on_fresh)
    assert abs(on_fresh - acc) < 0.03, (acc, on_fresh)  # the same distribution
    assert reports[-1]["loss"] < reports[0]["loss"]


@pytest.mark.parametrize("exercise", ["digits", "mnist1d"])
def test_starter_works_but_leaves_room(exercise, request):
    ds = request.getfixturevalue(exercise)
    acc, reports = fit(EXERCISES / exercise / "starter.ipynb", ds)
    assert 0.3 < acc < load_spec(EXERCISES / exercise).target, acc  # learns, but below target
    assert reports


# --- cifar10-94 on the CPU, on a fixture ---------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    datasets.write_cifar10_fixture(root, n_train=128, n_test=24, seed=0)
    return datasets.load("cifar10", root)


@pytest.fixture(scope="module")
def cifar_reference():
    return load_solution(EXERCISES / "cifar10-94" / "reference.ipynb")


def test_cifar10_reference_smoke_runs_one_epoch_on_cpu(cifar_reference, cifar_fixture):
    hyp = cifar_reference.train.__globals__["HYP"]
    hyp["epochs"] = 1  # this module's own copy: a single step on 128 images
    x_train, y_train, x_test, _ = as_tensors(cifar_fixture)
    reports = []
    model = cifar_reference.train(x_train, y_train, seed=0, device="cpu",
                                  report=lambda **values: reports.append(values))
    scores = cifar_reference.predict(model, x_test)
    assert scores.shape == (24, 10) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert len(reports) == 1 and reports[0]["epoch"] == 1 and math.isfinite(reports[0]["loss"])
    assert x_train.dtype == torch.uint8  # the grader's tensors are not modified in place


def test_cifar10_whitening_layer_decorrelates_patches(cifar_reference):
    g = cifar_reference.train.__globals__
    conv = torch.nn.Conv2d(3, 24, 2)
    images = torch.randn(64, 3, 16, 16) @ torch.randn(16, 16) * 0.3  # correlated pixels
    g["init_whitening"](conv, images)
    out = torch.nn.functional.conv2d(images, conv.weight[:12])  # the half without negatives
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    eps = g["HYP"]["whiten_eps"]
    assert torch.allclose(covariance, torch.eye(12), atol=max(0.05, 50 * eps)), covariance.diag()
    assert torch.equal(conv.weight[12:], -conv.weight[:12])


def test_cifar10_batch_gather_is_a_crop_and_a_mirror(cifar_reference):
    random_crops = cifar_reference.train.__globals__["random_crops"]
    padded = torch.arange(5 * 36 * 36 * 3, dtype=torch.float32).reshape(5, 36, 36, 3)
    idx = torch.tensor([4, 0, 2])
    flip = torch.tensor([False, True, False])
    torch.manual_seed(0)
    crops = random_crops(padded, idx, flip)
    assert crops.shape == (3, 32, 32, 3)
    for crop, i, mirrored in zip(crops, idx, flip):
        image = crop.flip(1) if mirrored else crop
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(image, padded[i, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1  # exactly one window of that image, shifted by at most 2 px


def test_cifar10_tta_views_are_weighted_to_one(cifar_reference):
    tta_views = cifar_reference.train.__globals__["tta_views"]
    x = torch.randn(4, 3, 32, 32)
    for level, n_views in ((0, 1), (1, 2), (2, 6)):
        views, weights = tta_views(x, level)
        assert views.shape == (4 * n_views, 3, 32, 32) and len(weights) == n_views
        assert math.isclose(weights.sum().item(), 1.0)
    views, _ = tta_views(x, 2)
    assert torch.equal(views[4:8], x.flip(-1))


def test_cifar10_starter_runs_on_cpu(cifar_fixture):
    starter = load_solution(EXERCISES / "cifar10-94" / "starter.ipynb")
    starter.train.__globals__["EPOCHS"] = 1
    x_train, y_train, x_test, _ = as_tensors(cifar_fixture)
    model = starter.train(x_train, y_train, seed=0, device="cpu")
    scores = starter.predict(model, x_test)
    assert scores.shape == (24, 10) and torch.isfinite(scores).all()


def test_references_are_deterministic_given_the_seed(digits):
    path = EXERCISES / "digits" / "reference.ipynb"
    solution = load_solution(path)
    solution.train.__globals__["EPOCHS"] = 1
    x_train, y_train, x_test, _ = as_tensors(digits)
    a = solution.predict(solution.train(x_train, y_train, seed=7, device="cpu"), x_test)
    b = solution.predict(solution.train(x_train, y_train, seed=7, device="cpu"), x_test)
    c = solution.predict(solution.train(x_train, y_train, seed=8, device="cpu"), x_test)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert np.isfinite(a.numpy()).all()
