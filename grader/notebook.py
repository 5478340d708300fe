"""The submission contract: which cells of a notebook run, and what they must define.

A learner marks solution cells with nbdev's `#| export` directive (also `# | export`,
`#|export`, and nbdev's `#| exports`) in the leading comment lines of a code cell. Only those
cells run; everything else in the notebook is for the learner. The exported code must define

    def train(x_train, y_train, *, seed, device, report=None) -> model
    def predict(model, x_test) -> torch.Tensor   # (N,) class indices or (N, num_classes) scores

A deployment exercise (a spec with `[deploy]`) also needs

    def export(model, path)    # write the deployable model into the folder `path` (a pathlib.Path)
    def load(path) -> model    # read it back, in a fresh process on the CPU

This module only parses and checks. It never runs untrusted code itself, except in
`load_solution`, which is for TRUSTED notebooks only (see its docstring).
"""

import inspect
import json
import pathlib
import re
import sys
import types

from grader.errors import InvalidNotebook

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024  # bytes; a notebook bigger than this is refused unread
                                       # (outputs with images make honest notebooks a few MB)
EXPORT_DIRECTIVE = re.compile(r"^#\s*\|\s*exports?\s*$")  # nbdev's export directive line
DIRECTIVE_LINE = re.compile(r"^#\s*\|")                   # any nbdev directive, e.g. `#| hide`
CELL_SEPARATOR = "\n\n"                                   # between joined export cells


def _read_notebook(nb_path_or_dict) -> dict:
    """Parse a path, raw bytes/str, or an already-loaded dict into a validated nbformat-4 dict."""
    if isinstance(nb_path_or_dict, dict):
        raw = nb_path_or_dict
    else:
        if isinstance(nb_path_or_dict, (bytes, bytearray)):
            data = bytes(nb_path_or_dict)
        else:
            path = pathlib.Path(nb_path_or_dict)
            if not path.is_file():
                raise InvalidNotebook(f"{path.name}: no such file")
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                raise InvalidNotebook(
                    f"{path.name} is {path.stat().st_size / 2**20:.1f} MiB, over the "
                    f"{MAX_NOTEBOOK_BYTES / 2**20:.0f} MiB limit; clear the outputs and save again"
                )
            data = path.read_bytes()
        if len(data) > MAX_NOTEBOOK_BYTES:
            raise InvalidNotebook(
                f"the notebook is over the {MAX_NOTEBOOK_BYTES / 2**20:.0f} MiB limit; "
                "clear the outputs and save again"
            )
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidNotebook(
                f"not a notebook: the file is not valid JSON ({e}); upload the .ipynb file itself"
            ) from None
        if not isinstance(raw, dict):
            raise InvalidNotebook("not a notebook: the JSON top level is not an object")

    import nbformat  # imported here so the in-sandbox runner never needs it

    if raw.get("nbformat") != 4:
        raise InvalidNotebook(
            f"not a Jupyter notebook in format 4 (nbformat={raw.get('nbformat')!r}); "
            "save it from Jupyter, Colab or VS Code as .ipynb"
        )
    try:
        nb = nbformat.from_dict(raw)
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        first_line = str(e).strip().splitlines()[0]
        raise InvalidNotebook(f"the notebook does not follow nbformat 4: {first_line}") from None
    except Exception as e:  # nbformat raises assorted errors on badly shaped input
        raise InvalidNotebook(f"the notebook does not follow nbformat 4: {e}") from None
    return nb


def _cell_source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _is_export_cell(source: str) -> bool:
    """True when the cell's leading block of `#|` directive lines contains an export."""
    for line in source.lstrip("\n").splitlines():
        line = line.strip()
        if not DIRECTIVE_LINE.match(line):
            return False
        if EXPORT_DIRECTIVE.match(line):
            return True
    return False


def extract_exports(nb_path_or_dict) -> str:
    """Return the joined source of the notebook's `#| export` code cells.

    Raises InvalidNotebook on non-JSON, nbformat-invalid or oversize input, when there are no
    export cells, or when an export cell does not compile (the message names cell and line).
    """
    nb = _read_notebook(nb_path_or_dict)
    exported = []
    for index, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = _cell_source(cell)
        if not _is_export_cell(source):
            continue
        _check_syntax(source, cell_number=index)
        exported.append(source.rstrip() + "\n")
    if not exported:
        raise InvalidNotebook(
            "no `#| export` cells: put `#| export` as the first line of each cell that "
            "defines train() and predict() (and their helpers)"
        )
    return CELL_SEPARATOR.join(exported)


def _check_syntax(source: str, cell_number: int) -> None:
    """Compile (never run) one cell so a syntax error is reported against the cell it is in."""
    try:
        compile(source, f"<cell {cell_number}>", "exec")
    except SyntaxError as e:
        line_text = (e.text or "").strip()
        hint = ""
        if line_text.startswith(("%", "!")):
            hint = "; IPython magics and shell commands (% and !) cannot be exported"
        raise InvalidNotebook(
            f"syntax error in code cell {cell_number}, line {e.lineno}: {e.msg}"
            f"{': ' + line_text if line_text else ''}{hint}"
        ) from None


# ---------------------------------------------------------------------------------------------
# The contract on the exported code's names and signatures


TRAIN_SIGNATURE = "def train(x_train, y_train, *, seed, device, report=None)"
PREDICT_SIGNATURE = "def predict(model, x_test)"


def check_contract(namespace: dict, kind: str = "image_tensors") -> tuple:
    """Return (train, predict) from an executed namespace, or raise InvalidNotebook naming
    what is missing or which signature is wrong. Checked by binding the exact call the
    runner will make for the exercise's data kind (grader/kinds.py), so defaults,
    keyword-only arguments and **kwargs all work."""
    from grader.kinds import CONTRACTS
    contract = CONTRACTS[kind]
    train_keywords = dict(seed=0, device="cpu", report=None, **{k: None for k in contract.train_keywords})
    functions = []
    for name, signature, args, kwargs in (
        ("train", contract.train_signature, contract.train_args, train_keywords),
        ("predict", contract.predict_signature, (None, None), {}),
    ):
        fn = namespace.get(name)
        if fn is None:
            raise InvalidNotebook(f"`{name}` is not defined in the exported cells; expected {signature}")
        if not callable(fn):
            raise InvalidNotebook(f"`{name}` is a {type(fn).__name__}, not a function; expected {signature}")
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidNotebook(f"`{name}` has the wrong signature ({e}); expected {signature}") from None
        except ValueError:
            pass  # builtins without introspectable signatures: let the call itself decide
        functions.append(fn)
    return tuple(functions)


EXPORT_SIGNATURE = "def export(model, path)"
LOAD_SIGNATURE = "def load(path)"


def check_deploy_contract(namespace: dict) -> tuple:
    """Return (export, load) from an executed namespace, or raise InvalidNotebook naming what
    is missing or wrong; checked by binding the calls the runner makes, as check_contract does."""
    functions = []
    missing = [name for name in ("export", "load") if namespace.get(name) is None]
    if missing:
        raise InvalidNotebook(
            f"this is a deployment exercise: {' and '.join(f'`{name}`' for name in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not defined in the exported cells; expected "
            f"{EXPORT_SIGNATURE} (write the trained model into the folder `path`) and {LOAD_SIGNATURE} "
            "(read it back from that folder, in a fresh process on the CPU)")
    for name, signature, args in (("export", EXPORT_SIGNATURE, (None, None)), ("load", LOAD_SIGNATURE, (None,))):
        fn = namespace[name]
        if not callable(fn):
            raise InvalidNotebook(f"`{name}` is a {type(fn).__name__}, not a function; expected {signature}")
        try:
            inspect.signature(fn).bind(*args)
        except TypeError as e:
            raise InvalidNotebook(f"`{name}` has the wrong signature ({e}); expected {signature}") from None
        except ValueError:
            pass
        functions.append(fn)
    return tuple(functions)


def exec_exports(code: str, module_name: str = "solution") -> types.ModuleType:
    """Execute exported code as a fresh module registered in sys.modules (so dataclasses and
    pickling of its classes work). Runs the code IN THIS PROCESS: callers must trust it."""
    module = types.ModuleType(module_name)
    module.__file__ = f"<{module_name}>"
    sys.modules[module_name] = module
    exec(compile(code, f"<{module_name}>", "exec"), module.__dict__)
    return module


def load_solution(path, kind: str = "image_tensors", deploy: bool = False) -> types.SimpleNamespace:
    """!!! TRUSTED NOTEBOOKS ONLY: runs the notebook's export cells in THIS process, unsandboxed. !!!

    For the exercises' own reference notebooks, their tests and the overhead benchmark.
    Learner submissions must go through `grader grade`, which runs them under bubblewrap.
    Returns SimpleNamespace(train=..., predict=..., code=...), plus export= and load= with deploy=True.
    """
    code = extract_exports(path)
    module = exec_exports(code, module_name=f"trusted_solution_{abs(hash(str(path))):x}")
    train, predict = check_contract(vars(module), kind)
    solution = types.SimpleNamespace(train=train, predict=predict, code=code)
    if deploy:
        solution.export, solution.load = check_deploy_contract(vars(module))
    return solution
