"""Fixtures for the grader's tests: the tiny exercise, notebooks built from source strings, and
a session data directory whose cached reference is measured once.

These tests need bubblewrap. They are never skipped without it: they fail and say why.
"""

import dataclasses

import pytest

from grader import api
from grader.spec import find_exercise
from tests.grader.grader_support import EXERCISES, TINY_REFERENCE, load_blobs, require_sandbox, write_notebook


@pytest.fixture(scope="session")
def sandbox_ready():
    require_sandbox()


@pytest.fixture(scope="session")
def tiny_spec():
    return find_exercise("tiny", EXERCISES)


@pytest.fixture(scope="session")
def quick_timeout_spec(tiny_spec):
    """The tiny exercise with a 2 s train budget, for the tests that wait for a timeout."""
    return dataclasses.replace(tiny_spec, train_budget_seconds=2.0)


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
    """grade_tiny(notebook_path, spec=None, **options) -> Result, on the tiny exercise (or a variant
    of its spec made with dataclasses.replace, which shares its cached reference), as
    `grader grade` grades: against the reference, measured once per session."""
    def grade(path, spec=None, **options):
        options.setdefault("load_dataset", load_blobs)
        return api.grade_submission(path, spec or tiny_spec, data_dir=data_dir, **options)
    return grade


@pytest.fixture
def assert_next_grade_works(grade_tiny):
    """After a bad submission: the grader is still fine and grades the reference (one run)."""
    def check():
        result = grade_tiny(TINY_REFERENCE, runs=1)
        assert result.status == "passed", (result.status, result.message, result.log_tail)
    return check
