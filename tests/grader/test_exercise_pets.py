"""The pets exercise (lesson 1, cats vs dogs on Oxford-IIIT Pets): grader/sources/pets.py's
for_grading on the fixture in the real on-disk format (species labels, balanced fixed subsets,
the per-grade secret test images), the notebooks' image_folder contract, and the reference and
the starter graded in the real sandbox (one run each) with a resnet18 weights file of the real
name from a randomly initialised model. The real data needs an 811 MB download, so nothing here
says anything about accuracy: a fixture score is a smoke test."""

import dataclasses
import hashlib
import inspect
import io
import json
import pathlib
from collections import Counter

import nbformat
import numpy as np
import pytest
from PIL import Image

from grader import kinds, results
from grader.errors import DatasetMissing
from grader.notebook import EXPORT_DIRECTIVE, extract_exports, load_solution
from grader.sources import pets
from grader.spec import load_spec
from tests.grader.test_fastai import FASTAI_MEMORY_MB, assert_quiet, save_random_resnet18

EXERCISE = pathlib.Path(__file__).resolve().parents[2] / "exercises" / "pets"
NOTEBOOKS = [EXERCISE / "starter.ipynb", EXERCISE / "reference.ipynb"]
FIXTURE_SEED = 3
FIXTURE_PER_BREED = 8       # 3 cat and 3 dog breeds: 48 photos, about half of them in trainval
# The sandboxed grades' smaller fixture (a resnet18 at 224 pixels is slow on a shared CPU): 12
# training photos (one held out for validation, two batches) and 6 test photos.
SANDBOX_FIXTURE = {"seed": 4, "per_breed": 5, "cat_breeds": 2, "dog_breeds": 2}
P = inspect.Parameter
# fastai 2.8 calls torch.jit.script when imported, which this torch deprecates with a FutureWarning
# (pytest turns warnings into errors here); the notebooks' imports are not ours to change.
FASTAI_IMPORT = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    pets.write_fixture(root, seed=FIXTURE_SEED, per_breed=FIXTURE_PER_BREED)
    return root


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def looks_like(data: bytes) -> str:
    """The fixture paints cats reddish and dogs bluish: which one these bytes are."""
    red, _, blue = np.asarray(decode(data), dtype=np.float64).mean(axis=(0, 1))
    return "cat" if red > blue else "dog"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def species_counts(split_items) -> Counter:
    return Counter(label for _, label in split_items)


# --- for_grading ---------------------------------------------------------------------------------

def test_for_grading_gives_species_labels_on_balanced_subsets_capped_to_the_fixture(fixture_dir):
    data = pets.for_grading(fixture_dir, secret=None)
    assert pets.DATA_KIND == kinds.IMAGE_FOLDER
    for images, split in ((data.train_images, "trainval"), (data.test_images, "test")):
        available = species_counts(pets.load(fixture_dir, split=split).items)
        # the fixture has fewer photos than the real sizes ask for: both species get the rarer one's count
        asked = pets.TRAIN_PER_SPECIES if split == "trainval" else pets.TEST_PER_SPECIES
        expected = min(available.values())
        assert 0 < expected < asked
        assert Counter(label for _, label in images) == {"cat": expected, "dog": expected}
        # each label is the photo's species (the fixture's colour says which), as a JPEG
        assert [looks_like(image) for image, _ in images] == [label for _, label in images]
    train_hashes = {sha(image) for image, _ in data.train_images}
    assert train_hashes.isdisjoint(sha(image) for image, _ in data.test_images)  # test photos never train
    assert pets.for_grading(fixture_dir, secret=None) == data  # fixed: the same subsets every time


def test_the_real_subset_sizes_apply_when_the_data_has_them(fixture_dir, monkeypatch):
    monkeypatch.setattr(pets, "TRAIN_PER_SPECIES", 2)
    monkeypatch.setattr(pets, "TEST_PER_SPECIES", 1)
    data = pets.for_grading(fixture_dir, secret=None)
    assert Counter(label for _, label in data.train_images) == {"cat": 2, "dog": 2}
    assert Counter(label for _, label in data.test_images) == {"cat": 1, "dog": 1}


def test_photos_are_shrunk_to_the_longest_side(tmp_path):
    pets.write_fixture(tmp_path, seed=FIXTURE_SEED, per_breed=4, cat_breeds=1, dog_breeds=1, image_side=300,
                       test_fraction=0.5)
    data = pets.for_grading(tmp_path, secret=7)
    for image, _ in data.train_images:
        assert decode(image).size == (pets.IMAGE_LONGEST_SIDE, pets.IMAGE_LONGEST_SIDE)  # square 300 -> 224
    low = round(pets.TEST_SIDE_MIN_FRACTION * pets.IMAGE_LONGEST_SIDE * pets.TEST_CROP_MIN) - 1
    for image, _ in data.test_images:
        assert low <= max(decode(image).size) <= pets.IMAGE_LONGEST_SIDE


def test_a_secret_remakes_the_test_photos_and_nothing_else(fixture_dir):
    public = pets.for_grading(fixture_dir, secret=None)
    first, again = pets.for_grading(fixture_dir, secret=11), pets.for_grading(fixture_dir, secret=11)
    other = pets.for_grading(fixture_dir, secret=12)
    assert first == again  # the same secret, the same bytes
    for graded in (first, other):
        assert graded.train_images == public.train_images  # training photos are the public ones
        # the same photos with the same labels, in the same order, but none of the public bytes
        assert [label for _, label in graded.test_images] == [label for _, label in public.test_images]
        assert {sha(image) for image, _ in graded.test_images}.isdisjoint(
            sha(image) for image, _ in public.test_images)
        assert [looks_like(image) for image, _ in graded.test_images] == [label for _, label in graded.test_images]
    # and another grade's copy does not help either
    assert {sha(image) for image, _ in first.test_images}.isdisjoint(sha(image) for image, _ in other.test_images)


def test_what_the_sandbox_sees_holds_no_test_label(fixture_dir, tmp_path):
    data = pets.for_grading(fixture_dir, secret=5)
    prepared = kinds.prepare(kinds.IMAGE_FOLDER, tmp_path, data)
    assert sorted(prepared.truth.tolist()) == sorted(label for _, label in data.test_images)
    test_files = sorted((tmp_path / kinds.TEST_FOLDER).iterdir())
    assert len(test_files) == len(data.test_images)
    for path in test_files:
        assert "cat" not in path.name and "dog" not in path.name and path.suffix == ".jpg"
    order = (tmp_path / kinds.TEST_ORDER).read_text()
    assert "cat" not in order and "dog" not in order
    assert sorted(p.name for p in (tmp_path / kinds.TRAIN_FOLDER).iterdir()) == ["cat", "dog"]


def test_a_split_without_both_species_is_refused(tmp_path):
    pets.write_fixture(tmp_path, seed=FIXTURE_SEED, per_breed=2, dog_breeds=0)
    with pytest.raises(DatasetMissing, match=r"needs both species, found \d+ cat, 0 dog"):
        pets.for_grading(tmp_path, secret=None)


def test_the_try_out_cell_rebuilds_the_graders_public_data(fixture_dir, tmp_path):
    """The notebooks' try-out makes the same subsets, byte for byte, from the public files."""
    nb = nbformat.read(EXERCISE / "starter.ipynb", as_version=4)
    builder = next(c.source for c in nb.cells if c.cell_type == "code" and "def make_pets_folders" in c.source)
    namespace = {}
    exec(compile(builder, "try-out", "exec"), namespace)
    train_dir, test_paths, test_labels = namespace["make_pets_folders"](pets.base_dir(fixture_dir), tmp_path / "out")
    public = pets.for_grading(fixture_dir, secret=None)
    made = sorted((p.parent.name, sha(p.read_bytes())) for p in train_dir.glob("*/*.jpg"))
    assert made == sorted((label, sha(image)) for image, label in public.train_images)
    assert [(label, sha(p.read_bytes())) for p, label in zip(test_paths, test_labels)] == \
        [(label, sha(image)) for image, label in public.test_images]


# --- the exercise's files ---------------------------------------------------------------------------

def test_spec_says_what_the_exercise_needs():
    spec = load_spec(EXERCISE)
    assert (spec.dataset, spec.data_kind, spec.metric, spec.device) == ("pets", "image_folder", "error_rate", "cuda")
    assert spec.weights == ("resnet18",) and spec.warmup is False
    assert 0 < spec.target < 0.5  # lower is better: well under the 50% of always answering "dog"
    assert spec.runs >= 3 and spec.train_budget_seconds >= 300 and spec.predict_budget_seconds >= 30
    readme = (EXERCISE / "README.md").read_text()
    assert "811 MB" in readme and "01_intro.ipynb" in readme and "lesson1" in readme


@FASTAI_IMPORT
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_keeps_the_image_folder_contract(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), "clear the outputs before committing"
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells[:first_code])
    assert "def train(path: pathlib.Path, *, seed: int, device: str, report=None)" in prose
    assert "def predict(model, paths: list[pathlib.Path]) -> list[str]" in prose
    solution = load_solution(path, kinds.IMAGE_FOLDER)
    train = inspect.signature(solution.train).parameters
    assert [(n, p.kind) for n, p in train.items()] == [
        ("path", P.POSITIONAL_OR_KEYWORD), ("seed", P.KEYWORD_ONLY), ("device", P.KEYWORD_ONLY),
        ("report", P.KEYWORD_ONLY)]
    assert train["report"].default is None
    assert list(inspect.signature(solution.predict).parameters) == ["model", "paths"]
    exported = extract_exports(path)
    assert "download" not in exported and "make_pets_folders" not in exported  # the try-out stays out
    tryout = [c for c in nb.cells if c.cell_type == "code" and "train(train_dir, seed=" in c.source]
    assert tryout and not EXPORT_DIRECTIVE.match(tryout[0].source.splitlines()[0].strip())


def test_the_reference_fine_tunes_a_pretrained_resnet18_and_the_starter_does_not():
    reference, starter = (extract_exports(EXERCISE / name) for name in ("reference.ipynb", "starter.ipynb"))
    assert "vision_learner(dls, resnet18" in reference and "fine_tune(" in reference
    assert 'if device == "cuda":\n        learn = learn.to_fp16()' in reference
    assert "resnet" not in starter and "pretrained" not in starter  # from scratch, on purpose


@FASTAI_IMPORT
def test_the_starter_trains_and_predicts_in_process_on_the_fixture(fixture_dir, tmp_path):
    """Trusted code, no sandbox: the folder exactly as the sandbox gets it (kinds.prepare), the
    labels back as the contract says, one report per epoch. (The reference's run is the
    sandboxed grade below: a resnet18 at 224 pixels costs half a minute on a CPU.)"""
    import torch

    path = EXERCISE / "starter.ipynb"
    staging = tmp_path / "staging"
    staging.mkdir()
    prepared = kinds.prepare(kinds.IMAGE_FOLDER, staging, pets.for_grading(fixture_dir, secret=1))
    test_paths = [staging / kinds.TEST_FOLDER / name for name in json.loads((staging / kinds.TEST_ORDER).read_text())]
    solution = load_solution(path, kinds.IMAGE_FOLDER)
    tunables = solution.train.__globals__
    reports = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a shared 2-core box
    try:
        model = solution.train(staging / kinds.TRAIN_FOLDER, seed=0, device="cpu",
                               report=lambda **values: reports.append(values))
        predictions = solution.predict(model, test_paths)
    finally:
        torch.set_num_threads(threads)
    assert len(predictions) == prepared.test_size and set(predictions) <= {"cat", "dog"}
    assert all(isinstance(p, str) for p in predictions)
    epochs = tunables["EPOCHS"] + tunables.get("FREEZE_EPOCHS", 0)  # fine_tune counts its frozen epochs too
    assert [r["epoch"] for r in reports] == list(range(1, epochs + 1)), reports
    assert all(np.isfinite(r["loss"]) for r in reports)


# --- graded in the real sandbox ------------------------------------------------------------------------

@pytest.fixture
def graded_data_dir(tmp_path):
    """A grader data directory: the Pets fixture where `grader datasets prepare pets` puts the
    real files, and resnet18 weights of the real file name (random init: no network here)."""
    pets.write_fixture(tmp_path, **SANDBOX_FIXTURE)
    save_random_resnet18(tmp_path)
    return tmp_path


@FASTAI_IMPORT
@pytest.mark.parametrize("notebook_name", ["reference.ipynb", "starter.ipynb"])
def test_the_notebook_is_graded_in_the_sandbox_on_the_fixture(notebook_name, sandbox_ready, graded_data_dir):
    from grader import grading

    # The grader's own data path (datasets.load_for_grading with a fresh secret), one run. A
    # fixture of 16-pixel photos and random weights says nothing about accuracy: target loosened.
    spec = dataclasses.replace(load_spec(EXERCISE), target=1.0, memory_limit_mb=FASTAI_MEMORY_MB)
    result = grading.grade(EXERCISE / notebook_name, spec, data_dir=graded_data_dir,
                           reference=grading.NO_REFERENCE, runs=1)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    data = result.as_dict()
    expected_test_size = 2 * min(species_counts(pets.load(graded_data_dir, split="test").items).values())
    assert data["config"]["data_kind"] == "image_folder" and data["config"]["test_size"] == expected_test_size
    assert data["metric"] == "error_rate" and 0.0 <= data["score"] <= 1.0 and data["accuracy"] is not None
    tunables = load_solution(EXERCISE / notebook_name, kinds.IMAGE_FOLDER).train.__globals__
    epochs = tunables["EPOCHS"] + tunables.get("FREEZE_EPOCHS", 0)  # fine_tune counts its frozen epochs too
    curve = result.runs[0].curve
    assert [point["epoch"] for point in curve] == list(range(1, epochs + 1)), curve
    assert all(np.isfinite(point["loss"]) for point in curve)
    assert_quiet(result.log_tail)
