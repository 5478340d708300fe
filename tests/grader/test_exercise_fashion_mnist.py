"""exercises/fashion-mnist: its grading data (grader/sources/fashion_mnist.py's for_grading and the
per-grade perturbation of the public test set), in-process smoke runs of the reference and the
starter, and one real sandboxed grade, all on a small fixture in the real idx.gz format.

The real data needs a download (about 30 MB), so nothing here measures accuracy: the fixture's
classes are blocky patterns, and a few steps of training are a smoke test of the code paths.
"""

import dataclasses
import hashlib
import math
import pathlib

import numpy as np
import pytest
import torch

from grader import datasets, grading, results
from grader.notebook import load_solution
from grader.sources import fashion_mnist
from grader.spec import load_spec
EXERCISE = pathlib.Path(__file__).resolve().parents[2] / "exercises" / "fashion-mnist"
FIXTURE_SEED = 3
SMOKE_TRAIN, SMOKE_TEST = 60, 20         # images: one optimizer step of the reference per epoch
SECRET_TEST = 300                        # test images for the perturbation checks (no training)
GRADED_TRAIN = 20                        # images in the sandboxed grade: its cost is the reference's
                                         # 8 epochs (twice, with the warm-up) on the CPU


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One intra-op thread: steady timings on a shared 2-core machine (as test_exercises.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion_smoke")
    fashion_mnist.write_fixture(root, seed=FIXTURE_SEED, n_train=SMOKE_TRAIN, n_test=SMOKE_TEST)
    return root


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion_secret")
    fashion_mnist.write_fixture(root, seed=FIXTURE_SEED, n_train=SMOKE_TRAIN, n_test=SECRET_TEST)
    return root


def as_tensors(data):
    return [torch.from_numpy(a) for a in (data.x_train, data.y_train, data.x_test)]


# --- for_grading ---------------------------------------------------------------------------------

def test_for_grading_gives_the_image_tensors_form(smoke_dir):
    public = fashion_mnist.for_grading(smoke_dir, secret=None)
    raw = fashion_mnist.load(smoke_dir)
    assert fashion_mnist.DATA_KIND == "image_tensors" == load_spec(EXERCISE).data_kind
    assert public.num_classes == 10
    for x, n in ((public.x_train, SMOKE_TRAIN), (public.x_test, SMOKE_TEST)):
        assert x.dtype == np.uint8 and x.shape == (n, 28, 28)
    assert public.y_train.dtype == public.y_test.dtype == np.int64
    assert set(public.y_train.tolist()) == set(range(10))
    # no secret: the public split exactly, in the files' order
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(public, name), getattr(raw, name))
    # the grader's own entry points reach it by the spec's dataset id
    via_grader = datasets.load_for_grading(load_spec(EXERCISE).dataset, smoke_dir, secret=5)
    assert via_grader.x_test.shape == (SMOKE_TEST, 28, 28) and via_grader.num_classes == 10


def test_a_secret_perturbs_only_the_test_part_and_is_reproducible(secret_dir):
    public = fashion_mnist.for_grading(secret_dir, secret=None)
    a, again, b = (fashion_mnist.for_grading(secret_dir, secret=s) for s in (2024, 2024, 2025))
    for graded in (a, b):
        np.testing.assert_array_equal(graded.x_train, public.x_train)
        np.testing.assert_array_equal(graded.y_train, public.y_train)
        assert graded.x_test.dtype == np.uint8 and graded.x_test.shape == public.x_test.shape
        assert graded.y_test.dtype == np.int64
        # the same images, reordered: every class keeps its count
        assert np.bincount(graded.y_test, minlength=10).tolist() == np.bincount(public.y_test, minlength=10).tolist()
    np.testing.assert_array_equal(a.x_test, again.x_test)
    np.testing.assert_array_equal(a.y_test, again.y_test)
    assert not np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.y_test, b.y_test)


def test_the_public_answers_do_not_score_on_a_graded_test_set(secret_dir):
    public = fashion_mnist.for_grading(secret_dir, secret=None)
    graded = fashion_mnist.for_grading(secret_dir, secret=77)
    # (a) the public labels pasted in file order: about chance (10%), never near the target
    assert (public.y_test == graded.y_test).mean() < 0.3
    # (b) a look-up of the public images by their bytes: no perturbed image is byte-equal to any
    digest = lambda image: hashlib.sha256(image.tobytes()).hexdigest()  # noqa: E731
    public_hashes = {digest(image) for image in public.x_test}
    assert not any(digest(image) in public_hashes for image in graded.x_test)
    changed = (graded.x_test != public.x_test[nearest_public(public.x_test, graded.x_test)]).mean(axis=(1, 2))
    assert changed.min() > 0.2, changed.min()  # every image differs in a good share of its pixels


def test_the_perturbation_preserves_labels_and_is_small(secret_dir):
    """Each perturbed image is still closest to the public image it came from, with that image's
    label (which is also why a pasted copy of the public test images plus nearest-neighbour
    matching remains possible, as the module docstring says)."""
    public = fashion_mnist.for_grading(secret_dir, secret=None)
    graded = fashion_mnist.for_grading(secret_dir, secret=31337)
    nearest = nearest_public(public.x_test, graded.x_test)
    assert sorted(nearest.tolist()) == list(range(SECRET_TEST))  # a permutation of the public set
    np.testing.assert_array_equal(public.y_test[nearest], graded.y_test)
    difference = graded.x_test.astype(np.float64) - public.x_test[nearest]
    rms = math.sqrt((difference ** 2).mean())
    # noise of TEST_NOISE_STD grey levels plus a gain within TEST_GAIN_SPREAD of the pixel values,
    # less what clipping at 0 and 255 removes
    bound = fashion_mnist.TEST_NOISE_STD + fashion_mnist.TEST_GAIN_SPREAD * math.sqrt((public.x_test ** 2.0).mean())
    assert 0.3 * fashion_mnist.TEST_NOISE_STD < rms <= bound + 0.5, (rms, bound)


def test_a_negative_secret_is_refused(secret_dir):
    with pytest.raises(ValueError, match="non-negative integer"):
        fashion_mnist.for_grading(secret_dir, secret=-1)


def test_the_test_labels_never_reach_the_sandboxs_files(secret_dir, tmp_path):
    """What grading writes for the sandbox to read (train data, test images, warm-up noise)
    holds no test labels: the test part leaves as images only."""
    graded = fashion_mnist.for_grading(secret_dir, secret=9)
    prepared = grading._prepare_arrays(tmp_path / "arrays", graded, warmup=True)
    np.testing.assert_array_equal(prepared.truth, graded.y_test)
    written = {p.name: np.load(p) for p in (tmp_path / "arrays").iterdir()}
    assert sorted(written) == ["warmup_x_test.npy", "warmup_x_train.npy", "warmup_y_train.npy",
                               "x_test.npy", "x_train.npy", "y_train.npy"]
    np.testing.assert_array_equal(written["x_test.npy"], graded.x_test)
    assert not any(a.shape == graded.y_test.shape and np.array_equal(a, graded.y_test) for a in written.values())


def nearest_public(public_images: np.ndarray, images: np.ndarray) -> np.ndarray:
    """For each image, the index of the public image nearest in L2 distance."""
    a = public_images.reshape(len(public_images), -1).astype(np.float64)
    b = images.reshape(len(images), -1).astype(np.float64)
    distances = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None, :]
    return distances.argmin(1)


# --- the notebooks, in-process --------------------------------------------------------------------

def test_reference_smoke_runs_one_short_epoch_on_cpu(smoke_dir):
    reference = load_solution(EXERCISE / "reference.ipynb")
    reference.train.__globals__["HYP"]["epochs"] = 1  # this module's own copy: one step on 60 images
    x_train, y_train, x_test = as_tensors(fashion_mnist.for_grading(smoke_dir, secret=123))
    before = x_train.clone()
    reports = []
    model = reference.train(x_train, y_train, seed=0, device="cpu", report=lambda **values: reports.append(values))
    scores = reference.predict(model, x_test)
    assert scores.shape == (SMOKE_TEST, 10) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert torch.allclose(scores.sum(1), torch.ones(SMOKE_TEST), atol=1e-5)  # averaged probabilities
    assert len(reports) == 1 and reports[0]["epoch"] == 1 and math.isfinite(reports[0]["loss"])
    assert torch.equal(x_train, before)  # the grader's tensors are not modified in place
    again = reference.predict(reference.train(x_train, y_train, seed=0, device="cpu"), x_test)
    other = reference.predict(reference.train(x_train, y_train, seed=1, device="cpu"), x_test)
    assert torch.equal(scores, again) and not torch.equal(scores, other)  # the seed decides


def test_reference_augmentation_is_a_shift_and_a_mirror():
    shifted_crops = load_solution(EXERCISE / "reference.ipynb").train.__globals__["shifted_crops"]
    padded = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 32, 32)
    idx, flip = torch.tensor([2, 0, 1]), torch.tensor([True, False, True])
    torch.manual_seed(0)
    crops = shifted_crops(padded, idx, flip)
    assert crops.shape == (3, 28, 28)
    for crop, i, mirrored in zip(crops, idx, flip):
        image = crop.flip(-1) if mirrored else crop
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(image, padded[i, dy:dy + 28, dx:dx + 28])]
        assert len(windows) == 1  # exactly one window of that image, shifted by at most 2 px


def test_starter_smoke_runs_on_cpu(smoke_dir):
    starter = load_solution(EXERCISE / "starter.ipynb")
    x_train, y_train, x_test = as_tensors(fashion_mnist.for_grading(smoke_dir, secret=123))
    reports = []
    model = starter.train(x_train, y_train, seed=0, device="cpu", report=lambda **values: reports.append(values))
    scores = starter.predict(model, x_test)
    assert scores.shape == (SMOKE_TEST, 10) and torch.isfinite(scores).all()
    assert [r["epoch"] for r in reports] == [1, 2]


# --- one real grade in the sandbox ----------------------------------------------------------------

def test_reference_is_graded_in_the_sandbox_on_the_fixture(sandbox_ready, tmp_path):
    """The reference as it is (8 epochs, warm-up included) through the real bubblewrap sandbox,
    on a graded fixture (a secret per load, as grading draws one per grade), with the warm-up on
    uint8 noise. The target is loosened: a few steps on 20 images say nothing about accuracy."""
    data_dir = tmp_path / "data"
    fashion_mnist.write_fixture(data_dir, seed=FIXTURE_SEED, n_train=GRADED_TRAIN, n_test=SMOKE_TEST)
    secrets_used = []

    def load_graded(dataset_id, directory):
        assert dataset_id == "fashion_mnist" and directory == data_dir
        secrets_used.append(len(secrets_used) + 1000)
        return fashion_mnist.for_grading(directory, secret=secrets_used[-1])

    spec = dataclasses.replace(load_spec(EXERCISE), target=0.0)
    result = grading.grade(spec.reference_notebook, spec, data_dir=data_dir, reference=grading.NO_REFERENCE,
                           load_dataset=load_graded, runs=1)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    assert secrets_used == [1000]
    data = result.as_dict()
    assert len(data["runs"]) == 1 and 0.0 <= data["score"] <= 1.0 and data["metric"] == "accuracy"
    assert data["config"]["test_size"] == SMOKE_TEST and data["config"]["data_kind"] == "image_tensors"
    assert data["config"]["warmup"] is True and data["runs"][0]["warmup_seconds"] > 0
