"""grader/datasets.py: the exact arrays learners are handed, and the CIFAR-10 on-disk format."""

import hashlib
import os
import pickle

import numpy as np
import pytest

from grader import datasets
from grader.errors import DatasetMissing, GraderError, SpecError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def mnist1d(data_dir):
    return datasets.load("mnist1d", data_dir)


def check_arrays(ds, n_train, n_test, x_shape, x_dtype):
    assert ds.x_train.shape == (n_train, *x_shape) and ds.x_test.shape == (n_test, *x_shape)
    assert ds.x_train.dtype == ds.x_test.dtype == x_dtype
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    assert ds.num_classes == 10
    assert set(np.unique(ds.y_train)) == set(np.unique(ds.y_test)) == set(range(10))


# --- digits -------------------------------------------------------------------------------------

DIGITS_TEST_LABELS_SHA = "4493b2052e7b4258"  # sha256 prefix of the test labels, as split today

def test_digits_shapes_dtypes_and_scale(data_dir):
    ds = datasets.load("digits", data_dir)
    check_arrays(ds, 1437, 360, (64,), np.float32)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


def test_digits_split_is_fixed_and_stratified(data_dir):
    a, b = datasets.load("digits", data_dir), datasets.load("digits", data_dir)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # load_digits has 174..183 images per class; a stratified 20% split keeps that balance.
    assert np.bincount(a.y_test).min() >= 34 and np.bincount(a.y_test).max() <= 37
    # The exact split is part of every digits score: it must never change silently.
    assert hashlib.sha256(a.y_test.tobytes()).hexdigest()[:16] == DIGITS_TEST_LABELS_SHA


# --- mnist1d ------------------------------------------------------------------------------------

def test_mnist1d_is_the_papers_split(mnist1d):
    check_arrays(mnist1d, 4000, 1000, (40,), np.float32)
    assert np.bincount(mnist1d.y_train).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert np.bincount(mnist1d.y_test).tolist() == [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]
    everything = np.concatenate([mnist1d.x_train, mnist1d.x_test])
    assert abs(everything.mean()) < 1e-5 and abs(everything.std() - 1) < 1e-4  # standardized


def test_mnist1d_is_cached_and_deterministic(mnist1d, data_dir):
    assert (data_dir / datasets.MNIST1D_FILE).is_file()
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    fresh = datasets._build_mnist1d()  # the generator again, from scratch
    assert np.random.rand() == expected_draw  # make_dataset reseeds numpy; we restore its state
    cached = datasets.load("mnist1d", data_dir)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(fresh[name], getattr(cached, name))
        np.testing.assert_array_equal(getattr(mnist1d, name), getattr(cached, name))


def test_prepare_builds_mnist1d_once(tmp_path, mnist1d, monkeypatch):
    builds = []
    arrays = {k: getattr(mnist1d, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    monkeypatch.setattr(datasets, "_build_mnist1d", lambda: builds.append(1) or arrays)
    datasets.prepare("mnist1d", tmp_path)
    datasets.prepare("mnist1d", tmp_path)
    datasets.load("mnist1d", tmp_path)
    assert len(builds) == 1
    datasets.prepare("digits", tmp_path)  # nothing to do: bundled with scikit-learn
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        datasets.MNIST1D_FILE]


# --- cifar10 ------------------------------------------------------------------------------------

def test_cifar10_fixture_round_trips_through_load(tmp_path):
    folder = datasets.write_cifar10_fixture(tmp_path, n_train=53, n_test=20, seed=1)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*datasets.CIFAR10_TRAIN_FILES, "test_batch", "batches.meta"])
    ds = datasets.load("cifar10", tmp_path)
    check_arrays(ds, 53, 20, (32, 32, 3), np.uint8)

    # The files hold what the real archive holds, read the way its authors document it.
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert {b"batch_label", b"labels", b"data", b"filenames"} <= set(raw)
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape[1] == 3072
    first = raw[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)  # CHW rows -> HWC
    np.testing.assert_array_equal(ds.x_train[0], first)
    assert ds.y_train[0] == raw[b"labels"][0]

    assert datasets.load("cifar10-94", tmp_path).x_test.shape == (20, 32, 32, 3)  # exercise alias


def test_cifar10_fixture_is_deterministic(tmp_path):
    datasets.write_cifar10_fixture(tmp_path / "a", n_train=10, n_test=5, seed=3)
    datasets.write_cifar10_fixture(tmp_path / "b", n_train=10, n_test=5, seed=3)
    a, b = datasets.load("cifar10", tmp_path / "a"), datasets.load("cifar10", tmp_path / "b")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_cifar10_fixture_loads_in_torchvision_given_its_md5s(tmp_path):
    """Same format as torchvision's: only the md5 list (of the real archive) stands between the
    fixture and torchvision's CIFAR10, which is why grader.datasets has its own reader."""
    torchvision = pytest.importorskip("torchvision")
    folder = datasets.write_cifar10_fixture(tmp_path, n_train=25, n_test=10, seed=2)
    root = tmp_path / datasets.CIFAR10_DIR
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(root, train=True, download=False)

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    class FixtureCIFAR10(torchvision.datasets.CIFAR10):
        train_list = [[name, md5(name)] for name in datasets.CIFAR10_TRAIN_FILES]
        test_list = [["test_batch", md5("test_batch")]]
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": md5("batches.meta")}

    ours = datasets.load("cifar10", tmp_path)
    theirs_train = FixtureCIFAR10(root, train=True)
    theirs_test = FixtureCIFAR10(root, train=False)
    np.testing.assert_array_equal(theirs_train.data, ours.x_train)
    np.testing.assert_array_equal(theirs_train.targets, ours.y_train)
    np.testing.assert_array_equal(theirs_test.data, ours.x_test)
    assert theirs_train.classes == list(datasets.CIFAR10_CLASSES)


def test_cifar10_reader_refuses_anything_but_arrays(tmp_path):
    datasets.write_cifar10_fixture(tmp_path, n_train=5, n_test=1, seed=0)
    batch = tmp_path / datasets.CIFAR10_DIR / datasets.CIFAR10_BATCHES / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": os.getcwd, "labels": [0]}))  # a global by reference
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets.load("cifar10", tmp_path)


def test_missing_cifar10_names_the_prepare_command(tmp_path):
    with pytest.raises(DatasetMissing) as caught:
        datasets.load("cifar10", tmp_path)
    message = str(caught.value)
    assert "grader datasets prepare cifar10" in message
    assert "data_batch_1" in message and "cifar10-94" in message
    assert isinstance(caught.value, GraderError)


def test_prepare_cifar10_uses_torchvisions_downloader(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10",
                        lambda root, train, download: calls.append((root, train, download)))
    datasets.prepare("cifar10-94", tmp_path)
    assert calls == [(tmp_path / "cifar10", True, True), (tmp_path / "cifar10", False, True)]


def test_unknown_dataset_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="unknown dataset 'imagenet'"):
        datasets.load("imagenet", tmp_path)
