"""The imdb exercise (lesson 4): its data source's grading split and per-grade edits on a fixture
in the real on-disk format (grader/sources/imdb_sample.py), both notebooks' text contract,
in-process smoke runs of the reference and the starter, and one real sandboxed grade.

The real sample needs a download, so nothing here measures accuracy on it: the fixture's
generated reviews only show that the code runs and learns (bench/imdb_reference.py measures the
real thing).
"""

import collections
import dataclasses
import inspect
import json
import pathlib
import re

import nbformat
import numpy as np
import pytest
import torch

from grader import grading, kinds, results
from grader.notebook import extract_exports, load_solution
from grader.sources import imdb_sample
from grader.spec import load_spec

EXERCISE = pathlib.Path(__file__).resolve().parents[2] / "exercises" / "imdb"
NOTEBOOKS = [EXERCISE / "starter.ipynb", EXERCISE / "reference.ipynb"]
FIXTURE_SEED = 3
N_TRAIN, N_VALID = 60, 30          # fixture reviews: enough for a stable smoke score, seconds to train
SANDBOX_TRAIN_BUDGET_SECONDS = 120.0  # sklearn + torch imports on a busy 2-core box; the run is ~1 s
P = inspect.Parameter


def normalised(text: str) -> str:
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """The review's words, without punctuation or its <br /> line breaks."""
    return re.findall(r"[\w']+", re.sub(r"<br\s*/?>", " ", text.lower()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imdb")
    imdb_sample.write_fixture(root, seed=FIXTURE_SEED, n_train=N_TRAIN, n_valid=N_VALID)
    return root


@pytest.fixture(scope="module")
def raw(data_dir):
    return imdb_sample.load(data_dir)


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One intra-op thread: steady timings on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the data source: split and per-grade edits ---------------------------------------------------


def test_spec_names_the_text_source():
    spec = load_spec(EXERCISE)
    assert (spec.dataset, spec.data_kind, spec.metric, spec.device) == ("imdb_sample", "text", "accuracy", "cpu")
    assert imdb_sample.DATA_KIND == spec.data_kind and not spec.warmup
    assert 0.5 < spec.target < 1.0 and spec.runs >= 3
    assert 0 < len(spec.summary) <= 120 and "\n" not in spec.summary


def test_the_public_split_is_the_samples_own(data_dir, raw):
    split = imdb_sample.for_grading(data_dir, secret=None)
    train = [i for i, valid in enumerate(raw.is_valid) if not valid]
    test = [i for i, valid in enumerate(raw.is_valid) if valid]
    assert (len(train), len(test)) == (N_TRAIN, N_VALID)
    assert split.train_texts == [raw.texts[i] for i in train]
    assert split.train_labels == [raw.labels[i] for i in train]
    assert split.test_texts == [raw.texts[i] for i in test]
    assert split.test_labels == [raw.labels[i] for i in test]
    assert set(split.test_labels) == set(imdb_sample.LABELS)


def test_a_secret_reorders_and_edits_only_the_test_reviews(data_dir):
    public = imdb_sample.for_grading(data_dir, secret=None)
    first = imdb_sample.for_grading(data_dir, secret=11)
    assert first == imdb_sample.for_grading(data_dir, secret=11)  # same secret, same test set
    second = imdb_sample.for_grading(data_dir, secret=12)
    assert first.test_texts != second.test_texts and first.test_labels != second.test_labels
    for grade in (first, second):
        assert (grade.train_texts, grade.train_labels) == (public.train_texts, public.train_labels)
        assert collections.Counter(grade.test_labels) == collections.Counter(public.test_labels)
        assert grade.test_labels != public.test_labels  # the public order no longer lines up
        # No test review is a public one, not even with its whitespace normalised, except the
        # short ones that lose no sentence (the module docstring says so).
        assert not set(grade.test_texts) & set(public.test_texts)
        short = {normalised(t) for t in public.test_texts
                 if len(imdb_sample.sentence_starts(t)) < imdb_sample.MIN_SENTENCES_TO_DROP}
        assert not ({normalised(t) for t in grade.test_texts} & {normalised(t) for t in public.test_texts}) - short


def test_the_edits_keep_each_reviews_label(data_dir):
    """Each edited review is its public original less at most one sentence, and keeps its label:
    a fuzzy look-up (here: which original's words it is a subsequence of) still finds it,
    which is the documented limit of this defence."""
    public = imdb_sample.for_grading(data_dir, secret=None)
    grade = imdb_sample.for_grading(data_dir, secret=99)
    dropped = 0
    for text, label in zip(grade.test_texts, grade.test_labels):
        edited = words(text)
        matches = [i for i, original in enumerate(public.test_texts) if is_subsequence(edited, words(original))]
        assert len(matches) == 1, text
        original = public.test_texts[matches[0]]
        assert public.test_labels[matches[0]] == label
        missing = len(words(original)) - len(edited)
        longest_sentence = max(len(words(s)) for s in sentences(original))
        assert 0 <= missing <= longest_sentence
        dropped += missing > 0
    assert dropped >= N_VALID // 2  # the fixture's reviews have five sentences or more: most lose one


def is_subsequence(short, long) -> bool:
    remaining = iter(long)
    return all(word in remaining for word in short)


def sentences(text):
    starts = imdb_sample.sentence_starts(text)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]


def test_drop_one_sentence_cuts_at_sentence_ends():
    text = 'It starts well. Then "it drags!"<br /><br />The cast tries? The end is dull.'
    assert sentences(text) == ["It starts well. ", 'Then "it drags!"<br /><br />', "The cast tries? ",
                               "The end is dull."]
    outcomes = {imdb_sample.drop_one_sentence(text, np.random.default_rng(seed)) for seed in range(40)}
    assert outcomes == {
        'Then "it drags!"<br /><br />The cast tries? The end is dull.',
        "It starts well. The cast tries? The end is dull.",
        'It starts well. Then "it drags!"<br /><br />The end is dull.',
        'It starts well. Then "it drags!"<br /><br />The cast tries?',  # no dangling space after the last
    }
    short = "Too short. Only three. Sentences here."
    assert imdb_sample.drop_one_sentence(short, np.random.default_rng(0)) == short


def test_the_sandbox_files_hold_no_test_label(data_dir, tmp_path):
    """What kinds.prepare writes for a sandbox (train.json, test.json) from this source: the
    test file holds the edited texts alone; the labels stay with the grader."""
    grade = imdb_sample.for_grading(data_dir, secret=5)
    prepared = kinds.prepare(kinds.TEXT, tmp_path, grade)
    visible = json.loads((tmp_path / kinds.TEST_JSON).read_text(encoding="utf-8"))
    assert visible == {"texts": grade.test_texts}
    assert prepared.truth.tolist() == grade.test_labels and prepared.test_size == N_VALID
    assert json.loads((tmp_path / kinds.TRAIN_JSON).read_text(encoding="utf-8"))["labels"] == grade.train_labels


# --- the notebooks: the text contract -------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_keeps_the_text_contract(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), "clear the outputs before committing"
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    prose = "\n".join(c.source for c in nb.cells[:first_code])
    assert "def train(texts: list[str], labels: list[str], *, seed: int, device: str, report=None)" in prose
    assert "def predict(model, texts: list[str]) -> list[str]" in prose
    assert "def train(" in extract_exports(path)
    solution = load_solution(path)
    train = inspect.signature(solution.train).parameters
    assert [(n, p.kind) for n, p in train.items()] == [
        ("texts", P.POSITIONAL_OR_KEYWORD), ("labels", P.POSITIONAL_OR_KEYWORD),
        ("seed", P.KEYWORD_ONLY), ("device", P.KEYWORD_ONLY), ("report", P.KEYWORD_ONLY)]
    assert train["report"].default is None
    assert list(inspect.signature(solution.predict).parameters) == ["model", "texts"]
    tryout = [c.source for c in nb.cells if c.cell_type == "code" and "train(texts, labels, seed=" in c.source]
    assert len(tryout) == 1 and "#| export" not in tryout[0]
    assert "untar_data(URLs.IMDB_SAMPLE)" in tryout[0] and 'df["is_valid"]' in tryout[0]


def test_the_reference_keeps_its_tunables_in_one_commented_block():
    nb = nbformat.read(EXERCISE / "reference.ipynb", as_version=4)
    first_export = next(c.source for c in nb.cells if c.cell_type == "code")
    constants = [line for line in first_export.splitlines() if re.match(r"[A-Z_]+ = ", line)]
    assert len(constants) >= 6 and all("#" in line for line in constants)


# --- in-process smoke runs on the fixture ---------------------------------------------------------


def accuracy(predictions, truth) -> float:
    predictions = list(predictions)
    assert len(predictions) == len(truth) and set(predictions) <= set(imdb_sample.LABELS)
    return float(np.mean(np.array(predictions) == np.array(truth)))


def test_the_reference_learns_on_the_fixture(data_dir):
    solution = load_solution(EXERCISE / "reference.ipynb")
    public = imdb_sample.for_grading(data_dir, secret=None)
    grade = imdb_sample.for_grading(data_dir, secret=21)
    reports = []
    model = solution.train(public.train_texts, public.train_labels, seed=0, device="cpu",
                           report=lambda **values: reports.append(values))
    epochs = solution.train.__globals__["EPOCHS"]
    assert [r["epoch"] for r in reports] == list(range(1, epochs + 1))
    assert reports[-1]["loss"] < reports[0]["loss"] / 2
    # The fixture's reviews carry three sentiment words each in filler: learnable, also edited.
    assert accuracy(solution.predict(model, public.test_texts), public.test_labels) >= 0.9
    assert accuracy(solution.predict(model, grade.test_texts), grade.test_labels) >= 0.8
    assert public.train_texts == imdb_sample.for_grading(data_dir, secret=None).train_texts  # not modified


def test_the_reference_is_deterministic_given_the_seed(data_dir):
    solution = load_solution(EXERCISE / "reference.ipynb")
    split = imdb_sample.for_grading(data_dir, secret=None)

    def weights(seed):
        model = solution.train(split.train_texts, split.train_labels, seed=seed, device="cpu")
        return model["bag"].weight.detach().clone()
    a, b, c = weights(7), weights(7), weights(8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_starter_runs_and_learns_only_its_fallback(data_dir):
    starter = load_solution(EXERCISE / "starter.ipynb")
    split = imdb_sample.for_grading(data_dir, secret=4)
    model = starter.train(split.train_texts, split.train_labels, seed=0, device="cpu", report=lambda **v: None)
    predictions = starter.predict(model, split.test_texts)
    assert 0.0 <= accuracy(predictions, split.test_labels) <= 1.0
    assert model["fallback"] == collections.Counter(split.train_labels).most_common(1)[0][0]
    assert starter.predict(model, ["nothing to see"]) == [model["fallback"]]  # a tie: the fallback
    assert starter.predict(model, ["A brilliant, wonderful film."]) == ["positive"]
    with pytest.raises(ValueError, match="'negative' and 'positive'"):
        starter.train(["a", "b"], ["good", "bad"], seed=0, device="cpu")


# --- one real grade in the sandbox ------------------------------------------------------------------


def test_the_reference_is_graded_in_the_sandbox(sandbox_ready, data_dir):
    """The grader's own path: datasets.load_for_grading with a fresh secret (no load_dataset
    override), kinds' text files, the bubblewrap sandbox, one run."""
    spec = dataclasses.replace(load_spec(EXERCISE), train_budget_seconds=SANDBOX_TRAIN_BUDGET_SECONDS,
                               predict_budget_seconds=SANDBOX_TRAIN_BUDGET_SECONDS)
    result = grading.grade(EXERCISE / "reference.ipynb", spec, data_dir=data_dir, reference=grading.NO_REFERENCE,
                           runs=1)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    data = result.as_dict()
    assert data["config"]["data_kind"] == "text" and len(data["runs"]) == 1
    assert spec.target <= data["score"] <= 1.0


def test_the_sample_file_is_out_of_the_sandboxs_reach(sandbox_ready, data_dir, notebook):
    """The grader's copy of texts.csv (with every label) is not readable by learner code."""
    labelled = imdb_sample.texts_path(data_dir)
    peek = notebook(f"LABELLED = {str(labelled)!r}\n"
                    "def train(texts, labels, *, seed, device, report=None):\n"
                    "    try:\n"
                    "        open(LABELLED).read()\n"
                    "    except OSError:\n"
                    "        return None\n"
                    "    raise RuntimeError('the labelled sample is visible in the sandbox')\n",
                    "def predict(model, texts):\n    return ['negative'] * len(texts)\n")
    spec = dataclasses.replace(load_spec(EXERCISE), train_budget_seconds=SANDBOX_TRAIN_BUDGET_SECONDS)
    result = grading.grade(peek, spec, data_dir=data_dir, reference=grading.NO_REFERENCE, runs=1)
    assert result.status == results.BELOW_TARGET, (result.message, result.log_tail)
