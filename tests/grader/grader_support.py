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
