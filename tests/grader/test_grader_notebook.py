"""The submission contract, without a sandbox: which cells are exported, and what is refused."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import notebook as nb
from grader.errors import InvalidNotebook

from tests.grader.grader_support import TINY_REFERENCE, write_notebook


def notebook_dict(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


@pytest.mark.parametrize("directive", ["#| export", "# | export", "#|export", "#| exports", "  #|  export  "])
def test_export_directive_spellings(directive):
    code = nb.extract_exports(notebook_dict(new_code_cell(f"{directive}\nx = 1")))
    assert "x = 1" in code


def test_only_export_code_cells_are_joined_in_order():
    code = nb.extract_exports(notebook_dict(
        new_code_cell("#| export\na = 1"),
        new_code_cell("b = 2  # not exported"),
        new_markdown_cell("#| export\nnot code"),
        new_code_cell("#| hide\n#| export\nc = 3"),
        new_code_cell("d = 4\n#| export"),  # a directive after code is not a directive
    ))
    assert code.index("a = 1") < code.index("c = 3")
    assert "b = 2" not in code and "not code" not in code and "d = 4" not in code


def test_accepts_path_bytes_and_dict(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "x = 1")
    assert "x = 1" in nb.extract_exports(path)
    assert "x = 1" in nb.extract_exports(str(path))
    assert "x = 1" in nb.extract_exports(path.read_bytes())
    assert "x = 1" in nb.extract_exports(json.loads(path.read_text()))


@pytest.mark.parametrize("content, fragment", [
    (b"print('I am a script')", "not valid JSON"),
    (b'{"cells": [', "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[1, 2, 3]", "top level is not an object"),
    (b'{"nbformat": 3, "cells": []}', "format 4"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                 "cells": [{"cell_type": "code", "source": 3}]}).encode(), "does not follow nbformat 4"),
])
def test_not_a_notebook_is_refused_with_a_clear_message(tmp_path, content, fragment):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(InvalidNotebook, match=fragment):
        nb.extract_exports(path)


def test_oversize_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.ipynb"
    with open(path, "wb") as f:
        f.truncate(nb.MAX_NOTEBOOK_BYTES + 1)
    with pytest.raises(InvalidNotebook, match="over the 20 MiB limit"):
        nb.extract_exports(path)


def test_no_export_cells(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "def train(): pass", export=False)
    with pytest.raises(InvalidNotebook, match=r"no `#\| export` cells"):
        nb.extract_exports(path)


def test_syntax_error_names_cell_and_line(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("intro"),
                                       new_code_cell("#| export\nimport torch\ndef train(:\n    pass")]), path)
    with pytest.raises(InvalidNotebook, match="syntax error in code cell 2, line 3"):
        nb.extract_exports(path)


def test_ipython_magic_in_export_cell_gets_a_hint():
    with pytest.raises(InvalidNotebook, match="IPython magics"):
        nb.extract_exports(notebook_dict(new_code_cell("#| export\n!pip install fastai")))


@pytest.mark.parametrize("source, fragment", [
    ("def predict(model, x): pass", "`train` is not defined"),
    ("train = 3\ndef predict(model, x): pass", "`train` is a int"),
    ("def train(x, y): pass\ndef predict(model, x): pass", "`train` has the wrong signature"),
    ("def train(x, y, seed, device): pass\ndef predict(model, x): pass", "`train` has the wrong signature"),
    ("def train(x, y, *, seed, device, report=None): pass", "`predict` is not defined"),
    ("def train(x, y, *, seed, device, report=None): pass\ndef predict(model): pass", "`predict` has the wrong"),
])
def test_contract_violations_name_the_function(source, fragment):
    namespace = {}
    exec(source, namespace)
    with pytest.raises(InvalidNotebook, match=fragment):
        nb.check_contract(namespace)


def test_contract_accepts_defaults_and_kwargs():
    namespace = {}
    exec("def train(x_train, y_train, seed=0, device='cpu', **extra): pass\n"
         "def predict(model, x_test, batch_size=256): pass", namespace)
    assert len(nb.check_contract(namespace)) == 2


def test_load_solution_runs_the_trusted_reference():
    import torch

    from tests.grader.grader_support import load_blobs
    solution = nb.load_solution(TINY_REFERENCE)
    data = load_blobs("synthetic-blobs", None)
    points = []
    model = solution.train(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train), seed=0, device="cpu",
                           report=lambda **values: points.append(values))
    scores = solution.predict(model, torch.from_numpy(data.x_test))
    assert scores.shape == (len(data.y_test), 2)
    assert (scores.argmax(1).numpy() == data.y_test).mean() > 0.9
    assert points and "loss" in points[0]
