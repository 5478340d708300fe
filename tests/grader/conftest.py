"""Fixtures for the grader's tests: a tiny exercise on synthetic blobs, notebooks built from
source strings, and a session data directory whose cached reference is measured once.

These tests need bubblewrap. They are never skipped without it: they fail and say why.
"""

import pathlib
import types

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader import grading, sandbox
from grader.errors import DatasetMissing, SandboxUnavailable
from grader.spec import find_exercise

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
EXERCISES = FIXTURES / "exercises"
TINY_REFERENCE = EXERCISES / "tiny" / "reference.ipynb"

BLOBS_TRAIN, BLOBS_TEST, BLOBS_FEATURES = 200, 100, 8   # samples, samples, features
BLOBS_SEPARATION = 1.5                                  # class means at -/+ this, unit variance


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
    """The tiny reference's exported code, for tests that start from a working solution."""
    from grader.notebook import extract_exports
    return extract_exports(TINY_REFERENCE)


def write_notebook(path: pathlib.Path, *sources: str, export: bool = True) -> pathlib.Path:
    """A valid notebook with one code cell per source, each marked `#| export` unless told not."""
    cells = [new_code_cell(("#| export\n" if export else "") + source) for source in sources]
    nbformat.write(new_notebook(cells=cells), path)
    return path


@pytest.fixture(scope="session")
def sandbox_ready():
    try:
        sandbox.check_available()
    except SandboxUnavailable as e:
        pytest.fail(f"the grader tests need a working bubblewrap (apt-get install bubblewrap; .ci/run "
                    f"installs it): {e}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_spec():
    return find_exercise("tiny", EXERCISES)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("grader-data")


@pytest.fixture
def notebook(tmp_path):
    """notebook(*sources) -> path of a notebook whose cells are those sources, exported."""
    counter = iter(range(1000))

    def make(*sources, export=True):
        return write_notebook(tmp_path / f"submission{next(counter)}.ipynb", *sources, export=export)
    return make


@pytest.fixture
def grade_tiny(sandbox_ready, tiny_spec, data_dir):
    """grade_tiny(notebook_path, **options) -> Result, on the tiny exercise."""
    def grade(path, **options):
        options.setdefault("load_dataset", load_blobs)
        return grading.grade(path, tiny_spec, data_dir=data_dir, **options)
    return grade


@pytest.fixture
def assert_next_grade_works(grade_tiny):
    """After a bad submission: the grader is still fine and grades the reference (one run)."""
    def check():
        result = grade_tiny(TINY_REFERENCE, runs=1)
        assert result.status == "passed", (result.status, result.message, result.log_tail)
    return check
