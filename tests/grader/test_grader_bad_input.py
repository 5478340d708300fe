"""Every kind of bad submission from the issue: each gets a clear status and message, the grader
survives, and the next grade works. Sandboxed, on the tiny exercise (train budget 20 s; 2 s where a test waits for a timeout)."""

import json

import nbformat

from grader import results
from tests.grader.grader_support import reference_source

WORKING_PREDICT = '''
def predict(model, x_test):
    with torch.no_grad():
        return model(x_test)
'''


def with_train(body: str) -> str:
    """The reference's code with train() replaced by `body` (which may call the real one as _train)."""
    return reference_source().replace("def train(", "def _train(", 1) + "\n" + body


# ---- not a gradable notebook: refused before any sandbox starts ---------------------------------

def write_bytes(tmp_path, data: bytes):
    path = tmp_path / "submission.ipynb"
    path.write_bytes(data)
    return path


# One test per bullet of the list; sub-cases of a bullet share the follow-up grade. A notebook
# rejected here, on the host, never reaches a sandbox (no runs): nothing is left to recover from, so
# these have no follow-up grade; everything from the contract on, run in a sandbox, has one.

def test_not_a_notebook_invalid_json_or_nbformat_invalid(tmp_path, grade_tiny):
    for content, fragment in [
        (b"import torch\nprint('a script, not a notebook')", "not valid JSON"),
        (b'{"cells": [{"cell_type": "code"', "not valid JSON"),
        (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                     "cells": [{"cell_type": "code", "source": ["x"]}]}).encode(), "does not follow nbformat 4"),
    ]:
        result = grade_tiny(write_bytes(tmp_path, content))
        assert result.status == results.INVALID_NOTEBOOK
        assert fragment in result.message
        assert result.runs == [] and result.total_seconds < 5


def test_over_the_size_limit(tmp_path, grade_tiny):
    result = grade_tiny(write_bytes(tmp_path, b" " * (21 << 20)))
    assert result.status == results.INVALID_NOTEBOOK
    assert "over the 20 MiB limit" in result.message
    assert result.runs == []


def test_no_export_cells(notebook, grade_tiny):
    result = grade_tiny(notebook(reference_source(), export=False))
    assert result.status == results.INVALID_NOTEBOOK
    assert "no `#| export` cells" in result.message
    assert result.runs == []


def test_syntax_error(tmp_path, grade_tiny):
    path = tmp_path / "submission.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("#| export\n" + reference_source()),
        nbformat.v4.new_code_cell("#| export\nfor epoch in range(3)\n    pass"),
    ]), path)
    result = grade_tiny(path)
    assert result.status == results.INVALID_NOTEBOOK
    assert "syntax error in code cell 2, line 2" in result.message
    assert result.runs == []


# ---- the contract, checked inside the sandbox -----------------------------------------------------

def test_train_or_predict_missing_or_with_the_wrong_signature(notebook, grade_tiny, assert_next_grade_works):
    for source, fragment in [
        ("import torch\n" + WORKING_PREDICT, "`train` is not defined"),
        (reference_source().replace("def predict(model, x_test)", "def predict(x_test)"),
         "`predict` has the wrong signature"),
        (reference_source().replace(", *, seed, device, report=None)", ")"), "`train` has the wrong signature"),
    ]:
        result = grade_tiny(notebook(source))
        assert result.status == results.INVALID_NOTEBOOK, result.message
        assert fragment in result.message
        assert "expected def" in result.message
    assert_next_grade_works()


# ---- learner code that fails at run time ----------------------------------------------------------

def test_exception_in_train(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(with_train('''
def train(x_train, y_train, *, seed, device, report=None):
    model = _train(x_train, y_train, seed=seed, device=device)
    raise ValueError("loss exploded at epoch 3")
''')))
    assert result.status == results.CRASHED
    assert "ValueError: loss exploded at epoch 3" in result.message
    assert "Traceback" in result.log_tail and "loss exploded" in result.log_tail
    assert "runner.py" not in result.log_tail.splitlines()[1]  # the traceback starts in learner code
    assert_next_grade_works()


def test_exception_while_loading(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook("import fastai_that_is_not_installed\n" + reference_source()))
    assert result.status == results.CRASHED
    assert "ModuleNotFoundError" in result.message and "while the exported cells were loading" in result.message
    assert_next_grade_works()


def test_infinite_loop_is_a_timeout(notebook, grade_tiny, quick_timeout_spec, assert_next_grade_works):
    # Loops only in the timed run (the second call in the process), so the warm-up passes.
    result = grade_tiny(notebook(with_train('''
calls = 0
def train(x_train, y_train, *, seed, device, report=None):
    global calls
    calls += 1
    while calls > 1:
        pass
    return _train(x_train, y_train, seed=seed, device=device)
''')), spec=quick_timeout_spec)
    assert result.status == results.TIMEOUT
    assert "train() took longer than its 2 s budget" in result.message
    assert result.total_seconds < 30
    assert_next_grade_works()


def test_memory_bomb_is_oom(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(with_train('''
def train(x_train, y_train, *, seed, device, report=None):
    hoard = []
    while True:
        hoard.append(torch.ones(16 << 20))  # 64 MiB, written, so it is resident
''')))
    assert result.status == results.OOM
    assert "memory" in result.message
    assert_next_grade_works()


def test_fork_bomb_is_contained(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(with_train('''
import os
def train(x_train, y_train, *, seed, device, report=None):
    while True:
        os.fork()
''')))
    assert result.status in (results.CRASHED, results.OOM), result.message
    assert "Resource temporarily unavailable" in result.message or "memory" in result.message
    assert_next_grade_works()


def test_huge_file_write_is_bounded(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(with_train('''
def train(x_train, y_train, *, seed, device, report=None):
    chunk = b"x" * (1 << 20)
    with open("/scratch/huge.bin", "wb") as f:
        while True:
            f.write(chunk)
''')))
    assert result.status == results.CRASHED
    assert "File too large" in result.message or "No space left" in result.message
    assert_next_grade_works()


def test_printing_gigabytes_is_bounded(notebook, grade_tiny, assert_next_grade_works):
    result = grade_tiny(notebook(with_train('''
import sys
def train(x_train, y_train, *, seed, device, report=None):
    line = "spam " * 2000 + "\\n"
    while True:
        sys.stdout.write(line)
''')))
    assert result.status == results.CRASHED
    assert "printed more than 32 MiB" in result.message
    assert len(result.log_tail) < 20_000
    assert_next_grade_works()


# ---- predictions -----------------------------------------------------------------------------------

def test_predictions_of_the_wrong_shape_nan_or_not_a_tensor(notebook, grade_tiny, assert_next_grade_works):
    for body, fragment in [
        ("return model(x_test)[:10]", "predict returned shape (10, 2)"),
        ("return model(x_test) * float('nan')", "NaN or infinity"),
        ("return model(x_test).argmax(1).tolist()", "predict returned a list, not a torch.Tensor"),
        ("return model(x_test).argmax(1).float()", "must be integer class indices"),
    ]:
        source = reference_source().replace("        return model(x_test)", f"        {body}")
        result = grade_tiny(notebook(source))
        assert result.status == results.BAD_OUTPUT, (body, result.message)
        assert fragment in result.message
    assert_next_grade_works()
