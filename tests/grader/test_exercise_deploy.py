"""The lesson-2 exercise `deploy` and the grader's deployment flow (a spec with [deploy]):
train() + export() in the training sandbox, then load() + predict() in a fresh CPU-only sandbox
that sees only the export, with the model's size and the single-item latency judged.

The sandboxed grades run on the image_folder kind's tiny red-or-blue images (grader_support.load_kinds),
through a copy of the deploy spec pointed at that data set: the real data, Oxford-IIIT Pets, needs a
download, so these are smoke tests of the flow, never accuracy figures.
"""

import dataclasses
import inspect
import io
import pathlib
import tarfile

import nbformat
import numpy as np
import pytest

from grader import api, grading, results
from grader.errors import InvalidNotebook, SpecError
from grader.grading import Reference, RunFailed
from grader.notebook import check_deploy_contract, extract_exports, load_solution
from grader.spec import Deploy, load_spec, parse_spec
from tests.grader.grader_support import load_kinds, write_notebook
from tests.grader.test_fastai import save_random_resnet18

EXERCISE = pathlib.Path(__file__).resolve().parents[2] / "exercises" / "deploy"
TEST_BUDGET_SECONDS = 240.0   # per clock, on a busy 2-core box; the real runs take seconds
TEST_MEMORY_MB = 4096         # torch (+ fastai) imported, a resnet18
LOOSE_LATENCY_MS = 60_000.0   # a latency limit nothing in these tests comes near, where latency is not the point
PROBE_ITEMS = 3               # single items the latency probe times in these tests
P = inspect.Parameter
# Importing and running fastai in this process warns (torch.jit.script's deprecation, fastai's own
# notices); pytest turns warnings into errors, so the in-process fastai tests let these through.
def fastai_in_process(test):
    for category in ("FutureWarning", "UserWarning"):
        test = pytest.mark.filterwarnings(f"ignore::{category}")(test)
    return test

# A deployable model without a heavy library: the mean colour of each class, nearest wins.
# export() writes exactly 24 + 9 bytes: 2 classes x 3 float32 means, and the labels "blue\nred\n".
NEAREST_MEAN = '''
import pathlib
import numpy as np
from PIL import Image

def mean_colour(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).mean(axis=(0, 1))

def train(path, *, seed, device, report=None):
    labels = sorted(folder.name for folder in path.iterdir())
    means = np.stack([np.mean([mean_colour(p) for p in (path / label).iterdir()], axis=0) for label in labels])
    return labels, means.astype(np.float32)

def export(model, path):
    labels, means = model
    (path / "means.bin").write_bytes(means.tobytes())
    (path / "labels").mkdir()
    (path / "labels" / "names.txt").write_text("".join(label + "\\n" for label in labels))

def load(path):
    labels = (path / "labels" / "names.txt").read_text().split()
    return labels, np.frombuffer((path / "means.bin").read_bytes(), dtype=np.float32).reshape(len(labels), 3)

def predict(model, paths):
    labels, means = model
    print(f"predict() called with {len(paths)} item(s), the first {paths[0].name}")
    return [labels[int(((means - mean_colour(p)) ** 2).sum(1).argmin())] for p in paths]
'''
NEAREST_MEAN_BYTES = 2 * 3 * 4 + len("blue\nred\n")


def deploy_test_spec(directory: pathlib.Path | None = None, **deploy_changes):
    """The deploy exercise's spec on the tiny red-or-blue folder, on the CPU, one run, without
    pretrained weights (the plain notebooks load none), limits loosened unless a test sets them.
    directory: an exercise folder of the test's own (plain_exercise), whose reference decides what
    a waiting sandbox imports ahead: the real reference's fastai costs seconds per sandbox."""
    spec = load_spec(EXERCISE)
    limits = dict(export_max_mb=1.0, latency_max_ms=LOOSE_LATENCY_MS, latency_items=PROBE_ITEMS) | deploy_changes
    return dataclasses.replace(spec, directory=directory or spec.directory, dataset="synthetic-folder", runs=1,
                               device="cpu", weights=(), target=0.2,
                               train_budget_seconds=TEST_BUDGET_SECONDS, predict_budget_seconds=TEST_BUDGET_SECONDS,
                               memory_limit_mb=TEST_MEMORY_MB, too_slow_factor=1000.0, deploy=Deploy(**limits))


@pytest.fixture
def plain_exercise(tmp_path) -> pathlib.Path:
    """An exercise folder whose reference is NEAREST_MEAN: sandboxes that import no course library."""
    folder = tmp_path / "plain-deploy"
    folder.mkdir()
    write_notebook(folder / "reference.ipynb", NEAREST_MEAN)
    return folder


def grade(notebook_path, spec, data_dir):
    return grading.grade(notebook_path, spec, data_dir=data_dir, reference=grading.NO_REFERENCE, load_dataset=load_kinds)


def with_replaced(source: str, old: str, new: str) -> str:
    assert old in source, old
    return source.replace(old, new)


# ---- the exercise's files ------------------------------------------------------------------------


def test_the_spec_says_pets_image_folder_and_the_deploy_limits():
    spec = load_spec(EXERCISE)
    assert (spec.dataset, spec.data_kind, spec.metric, spec.weights) == ("pets", "image_folder", "error_rate",
                                                                          ("resnet18",))
    assert not spec.warmup and spec.runs >= 3 and 0 < spec.target < 1 / 3  # always "dog" errs about 1/3
    assert spec.deploy == Deploy(export_max_mb=50.0, latency_max_ms=150.0, latency_items=20)
    assert spec.as_config()["deploy"] == {"export_max_mb": 50.0, "latency_max_ms": 150.0, "latency_items": 20}
    assert 0 < len(spec.summary) <= 120
    readme = (EXERCISE / "README.md").read_text()
    for link in ("https://course.fast.ai/Lessons/lesson2.html", "02_production.ipynb", "50 MiB", "150 ms"):
        assert link in readme, link


@pytest.mark.parametrize("name", ["starter.ipynb", "reference.ipynb"])
@fastai_in_process
def test_both_notebooks_keep_the_deploy_contract(name):
    path = EXERCISE / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells[:first_code])
    for signature in ("def train(path: pathlib.Path, *, seed: int, device: str, report=None)",
                      "def export(model, path: pathlib.Path) -> None", "def load(path: pathlib.Path)",
                      "def predict(model, paths: list[pathlib.Path]) -> list[str]", "fresh process on the CPU"):
        assert signature in prose, signature
    solution = load_solution(path, "image_folder", deploy=True)
    assert [(n, p.kind) for n, p in inspect.signature(solution.train).parameters.items()] == [
        ("path", P.POSITIONAL_OR_KEYWORD), ("seed", P.KEYWORD_ONLY), ("device", P.KEYWORD_ONLY),
        ("report", P.KEYWORD_ONLY)]
    assert list(inspect.signature(solution.export).parameters) == ["model", "path"]
    assert list(inspect.signature(solution.load).parameters) == ["path"]
    assert list(inspect.signature(solution.predict).parameters) == ["model", "paths"]
    assert "load_learner" in solution.code  # the lesson's way to read an export back
    try_out = [c.source for c in nb.cells if c.cell_type == "code" and "#| export" not in c.source]
    assert any("train(folder, seed=" in s and "export(model, export_dir)" in s and "load(export_dir)" in s
               for s in try_out)


@fastai_in_process
def test_the_starter_trains_exports_loads_and_predicts_in_process(tmp_path):
    """A smoke run of the starter on the tiny folder (its real run is on Pets): export() writes
    the Learner, load() reads it back as a separate object, predict() gives a label per path."""
    data = load_kinds("synthetic-folder", tmp_path)
    train_dir, test_paths = tmp_path / "train", []
    from PIL import Image
    for index, (image, label) in enumerate(data.train_images):
        (train_dir / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(train_dir / label / f"{index}.png")
    for index, (image, _) in enumerate(data.test_images):
        test_paths.append(tmp_path / f"test{index}.png")
        Image.fromarray(image).save(test_paths[-1])
    starter = load_solution(EXERCISE / "starter.ipynb", "image_folder", deploy=True)
    starter.train.__globals__["BATCH_SIZE"] = 8  # 24 images: the real 64 would leave no full batch
    model = starter.train(train_dir, seed=0, device="cpu")
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    starter.export(model, export_dir)
    assert (export_dir / "export.pkl").stat().st_size > 1 << 20  # a whole resnet18
    loaded = starter.load(export_dir)
    assert loaded is not model
    labels = starter.predict(loaded, test_paths)
    assert len(labels) == len(test_paths) and set(labels) <= {"red", "blue"}


# ---- the spec's [deploy] table ---------------------------------------------------------------------

GOOD = dict(id="x", title="t", version=1, dataset="d", metric="accuracy", target=0.9, runs=2,
            train_budget_seconds=5, predict_budget_seconds=1, warmup=False, device="cpu", memory_limit_mb=512,
            summary="s", data_kind="image_folder")


@pytest.mark.parametrize("table, fragment", [
    ({"latency_max_ms": 100}, "missing key 'export_max_mb' in \\[deploy\\]"),
    ({"export_max_mb": 50}, "missing key 'latency_max_ms' in \\[deploy\\]"),
    ({"export_max_mb": 50, "latency_max_ms": 100, "latency": 3}, "unknown key 'latency' in \\[deploy\\]"),
    ({"export_max_mb": "big", "latency_max_ms": 100}, "'export_max_mb' must be a number of MiB"),
    ({"export_max_mb": 500, "latency_max_ms": 100}, "'export_max_mb' must be above 0 and at most 100"),
    ({"export_max_mb": 50, "latency_max_ms": 0}, "'latency_max_ms' must be positive"),
    ({"export_max_mb": 50, "latency_max_ms": 100, "latency_items": 0}, "'latency_items' must be between 1 and"),
    ({"export_max_mb": 50, "latency_max_ms": 100, "latency_items": True}, "'latency_items' must be an integer"),
])
def test_bad_deploy_tables_are_named(table, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_spec({**GOOD, "deploy": table})
    with pytest.raises(SpecError, match="'deploy' must be a table"):
        parse_spec({**GOOD, "deploy": 50})
    assert parse_spec(GOOD).deploy is None  # without the table: the one-sandbox flow
    assert parse_spec({**GOOD, "deploy": {"export_max_mb": 1, "latency_max_ms": 5}}).deploy.latency_items == 20


def test_a_missing_export_or_load_names_them():
    with pytest.raises(InvalidNotebook, match="`export` and `load` are not defined"):
        check_deploy_contract({})
    with pytest.raises(InvalidNotebook, match="`load` is not defined .* expected def export"):
        check_deploy_contract({"export": lambda model, path: None})
    with pytest.raises(InvalidNotebook, match="`load` has the wrong signature"):
        check_deploy_contract({"export": lambda model, path: None, "load": lambda: None})


# ---- the export's unpacking, without a sandbox ------------------------------------------------------


def packed(tmp_path, *members) -> pathlib.Path:
    path = tmp_path / "export.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member, fragment", [
    (link_member("model.pt", "/etc/passwd"), "'model.pt' is a link or a special file"),
    (link_member("model.pt", "other", tarfile.LNKTYPE), "'model.pt' is a link or a special file"),
    (file_member("../outside.pt", b"x"), "an entry named '../outside.pt'"),
    (file_member("/abs.pt", b"x"), "an entry named '/abs.pt'"),
    (file_member("big.pt", b"x" * 2048), "its files hold over"),
])
def test_the_export_is_unpacked_without_trusting_it(tmp_path, member, fragment):
    pack = packed(tmp_path, file_member("ok/fine.txt", b"fine"), member)
    with pytest.raises(RunFailed, match=fragment) as failure:
        grading.unpack_export(pack, tmp_path / "unpacked", cap_bytes=1024)
    assert failure.value.status == results.BAD_OUTPUT
    assert not (tmp_path / "outside.pt").exists()


def test_an_honest_export_unpacks_to_its_files_and_size(tmp_path):
    pack = packed(tmp_path, file_member("model.pt", b"w" * 100), file_member("sub/vocab.txt", b"cat\ndog\n"))
    assert grading.unpack_export(pack, tmp_path / "unpacked", cap_bytes=1024) == 108
    assert (tmp_path / "unpacked" / "sub" / "vocab.txt").read_bytes() == b"cat\ndog\n"


# ---- the flow in the real sandbox -------------------------------------------------------------------


def test_predict_runs_in_a_fresh_cpu_process_that_sees_only_the_export(sandbox_ready, tmp_path, plain_exercise):
    """train() leaves a global, a scratch file and a note of the training folder behind; load()
    and predict() in the fresh process find none of them, cannot write the export, and have no GPU."""
    source = NEAREST_MEAN + '''
import os, torch
TRAINING_TRACES = {}

_train = train
def train(path, *, seed, device, report=None):
    TRAINING_TRACES["trained"] = True
    pathlib.Path("/scratch/left-behind.txt").write_text("from training")
    TRAINING_TRACES["train_dir"] = str(path)
    return _train(path, seed=seed, device=device)

_load = load
def load(path):
    assert not TRAINING_TRACES, f"the training process's memory is here: {TRAINING_TRACES}"
    assert not pathlib.Path("/scratch/left-behind.txt").exists(), "the training process's scratch files are here"
    assert not (path.parent / "train").exists(), "the training images are visible"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model", "test", "test_order.json"]
    assert not torch.cuda.is_available() and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    try:
        (path / "tampered.txt").write_text("x")
    except OSError:
        pass
    else:
        raise AssertionError("the export is writable in the predict process")
    print("load() checks passed in the fresh process")
    return _load(path)
'''
    result = grade(write_notebook(tmp_path / "nb.ipynb", source), deploy_test_spec(plain_exercise), tmp_path)
    assert result.status == results.PASSED, (result.status, result.message, result.log_tail)
    assert "load() checks passed in the fresh process" in result.log_tail
    # the probe called predict() on PROBE_ITEMS single items, then once on the whole test set
    assert result.log_tail.count("predict() called with 1 item(s), the first ") == PROBE_ITEMS, result.log_tail
    assert "predict() called with 12 item(s)" in result.log_tail
    data = result.as_dict()
    run = data["runs"][0]
    assert run["model_bytes"] == data["model_bytes"] == NEAREST_MEAN_BYTES
    assert 0 < run["latency_ms"] == data["latency_ms"] and 0 < run["load_seconds"] < run["predict_seconds"]
    assert run["latency_ms"] / 1000 * PROBE_ITEMS < run["predict_seconds"]  # the probe is on the predict clock
    assert data["config"]["deploy"] == {"export_max_bytes": 1 << 20, "latency_max_ms": LOOSE_LATENCY_MS,
                                        "latency_items": PROBE_ITEMS, "predict_device": "cpu"}
    assert data["config"]["limits"]["export_cap_bytes"] == 2 << 20
    assert "ms per item on the CPU (limit 60000 ms), model 33 bytes (limit 1 MiB)" in result.message


def test_an_export_over_the_size_limit_fails_and_says_its_size(sandbox_ready, tmp_path, plain_exercise):
    source = with_replaced(NEAREST_MEAN, '    (path / "labels").mkdir()',
                           '    (path / "padding.bin").write_bytes(bytes(3 << 19))  # 1.5 MiB\n'
                           '    (path / "labels").mkdir()')
    spec = deploy_test_spec(plain_exercise, export_max_mb=1.0)
    result = grade(write_notebook(tmp_path / "nb.ipynb", source), spec, tmp_path)
    assert result.status == results.BAD_OUTPUT, (result.status, result.message, result.log_tail)
    assert result.message.startswith("run 1 of 1: the exported model is 1.5 MiB, over this exercise's 1 MiB limit")
    # the run completed and its figures are in the result
    assert result.model_bytes == (3 << 19) + NEAREST_MEAN_BYTES and result.score == 0.0
    assert result.as_dict()["runs"][0]["latency_ms"] > 0


def test_a_huge_export_is_stopped_by_the_export_folders_cap(sandbox_ready, tmp_path, plain_exercise):
    """export() tries to write 64 MiB into a folder capped at twice the 1 MiB limit: the kernel
    refuses the write (ENOSPC) and the learner is told the cap and the limit."""
    source = with_replaced(NEAREST_MEAN, '    (path / "labels").mkdir()',
                           '    with open(path / "huge.bin", "wb") as f:\n'
                           '        for _ in range(64):\n'
                           '            f.write(bytes(1 << 20))\n'
                           '    (path / "labels").mkdir()')
    spec = deploy_test_spec(plain_exercise, export_max_mb=1.0)
    result = grade(write_notebook(tmp_path / "nb.ipynb", source), spec, tmp_path)
    assert result.status == results.BAD_OUTPUT, (result.status, result.message, result.log_tail)
    assert "export() wrote more than its folder holds (2 MiB, twice this exercise's 1 MiB limit)" in result.message
    assert "No space left on device" in result.message and not result.runs


def test_a_slow_single_item_predict_is_too_slow(sandbox_ready, tmp_path, plain_exercise):
    """predict() on one item takes 0.3 s against a 100 ms limit: too_slow, judged on the median
    of the probe, and not a reason to measure the reference again (the limit is absolute)."""
    source = with_replaced(NEAREST_MEAN, "    labels, means = model\n    print(",
                           "    import time\n    if len(paths) == 1:\n        time.sleep(0.3)\n"
                           "    labels, means = model\n    print(")
    spec = deploy_test_spec(plain_exercise, latency_max_ms=100.0)
    result = grade(write_notebook(tmp_path / "nb.ipynb", source), spec, tmp_path)
    assert result.status == results.TOO_SLOW, (result.status, result.message, result.log_tail)
    assert result.latency_ms >= 300.0
    assert "on the CPU, over this exercise's 100 ms limit" in result.message
    result.reference = {"rank_seconds": 1000.0}
    assert not api.needs_fresh_reference(result, Reference(summary=result.reference))


def test_a_notebook_without_export_and_load_is_invalid(sandbox_ready, tmp_path, plain_exercise):
    source = NEAREST_MEAN.replace("def export(", "def _export(").replace("def load(", "def _load(")
    result = grade(write_notebook(tmp_path / "nb.ipynb", source), deploy_test_spec(plain_exercise), tmp_path)
    assert result.status == results.INVALID_NOTEBOOK, (result.status, result.message, result.log_tail)
    assert "`export` and `load` are not defined in the exported cells" in result.message


def test_the_reference_is_graded_through_the_deploy_flow(sandbox_ready, tmp_path):
    """The reference notebook, as exported, with only its batch size and image size cut for 24
    tiny images and random resnet18 weights (so its error rate means nothing): it trains, exports
    in half precision under the real 50 MiB limit, and is loaded and run in the fresh CPU process."""
    save_random_resnet18(tmp_path)
    code = extract_exports(EXERCISE / "reference.ipynb")
    code = with_replaced(code, "BATCH_SIZE = 64 ", "BATCH_SIZE = 8 ")
    code = with_replaced(code, "IMAGE_PIXELS = 160 ", "IMAGE_PIXELS = 64 ")
    notebook = write_notebook(tmp_path / "reference-small.ipynb", code, export=False)  # its own `#| export` lines
    real = load_spec(EXERCISE).deploy
    spec = dataclasses.replace(deploy_test_spec(), weights=("resnet18",), target=1.0,
                               deploy=dataclasses.replace(real, latency_max_ms=LOOSE_LATENCY_MS, latency_items=2))
    result = grade(notebook, spec, tmp_path)
    assert result.status == results.PASSED, (result.status, result.message, result.log_tail)
    # a resnet18 in float32 is about 45 MiB; the half-precision export about half that
    assert 18 << 20 < result.model_bytes < 26 << 20, result.model_bytes
    assert result.model_bytes < real.export_max_bytes and 0 <= result.score <= 1
