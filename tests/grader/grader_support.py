"""Helpers for the grader's tests: the tiny exercise's synthetic dataset and notebook builders."""

import pathlib
import types

import nbformat
import numpy as np
from nbformat.v4 import new_code_cell, new_notebook

from grader.errors import DatasetMissing, SandboxUnavailable

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
EXERCISES = FIXTURES / "exercises"
TINY_REFERENCE = EXERCISES / "tiny" / "reference.ipynb"

BLOBS_TRAIN, BLOBS_TEST, BLOBS_FEATURES = 200, 100, 8   # samples, samples, features
BLOBS_SEPARATION = 1.5                                  # class means at -/+ this, unit variance


def require_sandbox() -> None:
    """Fail (never skip) the calling test when bubblewrap is not usable here, saying how to get it."""
    import pytest

    from grader import sandbox
    try:
        sandbox.check_available()
    except SandboxUnavailable as e:
        pytest.fail(f"the grader tests need a working bubblewrap (apt-get install bubblewrap; .ci/run "
                    f"installs it): {e}", pytrace=False)


def load_blobs(dataset_id: str, data_dir: pathlib.Path):
    """The tiny exercise's dataset: two well separated Gaussian blobs, fixed seed."""
    if dataset_id != "synthetic-blobs":
        raise DatasetMissing(dataset_id, "the grader tests only know synthetic-blobs")
    rng = np.random.default_rng(0)
    n = BLOBS_TRAIN + BLOBS_TEST
    y = rng.integers(0, 2, size=n).astype(np.int64)
    x = rng.standard_normal((n, BLOBS_FEATURES)).astype(np.float32) + np.where(y[:, None] == 1, 1, -1) * BLOBS_SEPARATION
    x = x.astype(np.float32)
    return types.SimpleNamespace(x_train=x[:BLOBS_TRAIN], y_train=y[:BLOBS_TRAIN], x_test=x[BLOBS_TRAIN:],
                                 y_test=y[BLOBS_TRAIN:], num_classes=2)


def reference_source() -> str:
    """The tiny reference's exported code without its `#| export` lines, for tests that start
    from a working solution."""
    from grader.notebook import EXPORT_DIRECTIVE, extract_exports
    lines = extract_exports(TINY_REFERENCE).splitlines()
    return "\n".join(line for line in lines if not EXPORT_DIRECTIVE.match(line.strip())) + "\n"


def write_notebook(path: pathlib.Path, *sources: str, export: bool = True) -> pathlib.Path:
    """A valid notebook with one code cell per source, each marked `#| export` unless told not."""
    cells = [new_code_cell(("#| export\n" if export else "") + source) for source in sources]
    nbformat.write(new_notebook(cells=cells), path)
    return path


# ---- one tiny synthetic dataset per data kind (grader/kinds.py), for tests/grader/test_kinds.py --------

FOLDER_TRAIN_PER_CLASS, FOLDER_TEST_PER_CLASS = 12, 6  # images per class (red, blue)
FOLDER_IMAGE_PIXELS = 32                               # square side; the smallest resnet18 still handles
TABULAR_TRAIN, TABULAR_TEST = 240, 80                  # rows
TEXT_TRAIN, TEXT_TEST = 120, 40                        # texts
RATINGS_USERS, RATINGS_ITEMS = 30, 20                  # ids; every pair is rated once, a quarter held out
RATINGS_NOISE_STD = 0.2                                # rating = 3 + user bias + item bias + this noise


def _colour_images(count: int, channel: int, rng) -> list:
    images = []
    for _ in range(count):
        image = rng.integers(0, 90, size=(FOLDER_IMAGE_PIXELS, FOLDER_IMAGE_PIXELS, 3)).astype(np.uint8)
        image[..., channel] = rng.integers(160, 256)
        images.append(image)
    return images


def load_kinds(dataset_id: str, data_dir: pathlib.Path):
    """The kind exercises' datasets (tests/grader/fixtures/exercises/tiny_*), fixed seeds; the
    blobs of the tiny exercise too, so one override serves every fixture exercise."""
    import pandas as pd

    rng = np.random.default_rng(0)
    if dataset_id == "synthetic-blobs":
        return load_blobs(dataset_id, data_dir)
    if dataset_id == "synthetic-folder":  # red vs blue images
        def split(per_class):
            return [(image, label) for label, channel in (("red", 0), ("blue", 2))
                    for image in _colour_images(per_class, channel, rng)]
        return types.SimpleNamespace(train_images=split(FOLDER_TRAIN_PER_CLASS),
                                     test_images=split(FOLDER_TEST_PER_CLASS))
    if dataset_id == "synthetic-tabular":  # survived = women or the young, plus a little noise
        n = TABULAR_TRAIN + TABULAR_TEST
        sex = rng.choice(["female", "male"], size=n)
        age = rng.uniform(1, 70, size=n).round(1)
        fare = rng.exponential(30, size=n).round(2)
        survived = ((sex == "female") | (age < 12)).astype(np.int64)
        frame = pd.DataFrame({"sex": pd.Categorical(sex), "age": age, "fare": fare, "survived": survived})
        return types.SimpleNamespace(train=frame[:TABULAR_TRAIN], test=frame[TABULAR_TRAIN:], target="survived")
    if dataset_id == "synthetic-text":  # positive texts say good things
        good, bad, filler = ["good", "great", "lovely"], ["bad", "awful", "boring"], ["the", "film", "was", "a", "plot"]
        texts, labels = [], []
        for _ in range(TEXT_TRAIN + TEXT_TEST):
            label = rng.choice(["pos", "neg"])
            words = list(rng.choice(filler, size=4)) + list(rng.choice(good if label == "pos" else bad, size=2))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(str(label))
        return types.SimpleNamespace(train_texts=texts[:TEXT_TRAIN], train_labels=labels[:TEXT_TRAIN],
                                     test_texts=texts[TEXT_TRAIN:], test_labels=labels[TEXT_TRAIN:])
    if dataset_id == "synthetic-ratings":
        user_bias = rng.normal(0, 0.8, RATINGS_USERS)
        item_bias = rng.normal(0, 0.8, RATINGS_ITEMS)
        users, items = np.meshgrid(np.arange(RATINGS_USERS), np.arange(RATINGS_ITEMS), indexing="ij")
        users, items = users.ravel(), items.ravel()
        rating = 3 + user_bias[users] + item_bias[items] + rng.normal(0, RATINGS_NOISE_STD, users.size)
        frame = pd.DataFrame({"user": users, "item": items, "rating": rating.round(2)}).sample(frac=1, random_state=0)
        cut = len(frame) * 3 // 4
        return types.SimpleNamespace(train=frame[:cut], test=frame[cut:])
    raise DatasetMissing(dataset_id, "the grader tests only know the synthetic datasets")
