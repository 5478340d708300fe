"""IMDB_SAMPLE: 1,000 movie reviews labelled positive or negative, fastai's small cut of the
IMDB Large Movie Review Dataset, for lesson 4's text classification.

**What and whose.** The reviews come from Maas et al., "Learning Word Vectors for Sentiment
Analysis", ACL 2011 (https://ai.stanford.edu/~amaas/data/sentiment/; the authors ask that the
paper be cited, and the reviews stay IMDb users' text). fastai publishes the sample on its S3
bucket (https://docs.fast.ai/data.external.html, `URLs.IMDB_SAMPLE`).

**Where it comes from.** `URLs.IMDB_SAMPLE`
(https://s3.amazonaws.com/fast-ai-sample/imdb_sample.tgz, 571,827 bytes), fetched with
fastdownload exactly as fastai's `untar_data` does, which checks its size and the md5 of its
first megabyte against fastai's download_checks.py, but into data_dir rather than ~/.fastai.

**On disk:**

    imdb_sample/archive/imdb_sample.tgz    the archive as downloaded
    imdb_sample/imdb_sample/texts.csv      columns label, text, is_valid (a header row; quoted
                                           text with commas and newlines inside, UTF-8)
    imdb_sample/config.ini                 fastdownload's note of the two paths

label is "negative" or "positive"; is_valid is True for the sample's own validation rows.

**Raw form.** `load(data_dir)` -> `Texts(texts, labels, is_valid)`: three lists of equal length,
str, str, bool, in the file's order.

**Sizes.** 1,000 reviews, about 800 to train and 200 marked is_valid; reviews run from a few
dozen to over a thousand words.

**Baselines.** No learning: the majority label over the training rows ("negative", 417 of 800)
scores 53.5% on the validation rows (107 of 200 negative). Published: on the full 25k/25k
IMDB, ULMFiT (Howard and Ruder 2018, https://arxiv.org/abs/1801.06146) reports 4.6% error and
fastai's chapter 1 / chapter 10 (https://github.com/fastai/fastbook/blob/master/10_nlp.ipynb)
reach about 93-94% accuracy; on 800 training reviews a fine-tuned language model does far worse
than that, and a bag-of-words linear model is a fair CPU reference.

**What a grade sees: `for_grading(data_dir, secret=...)`** (DATA_KIND "text"): a `TextSplit`
whose training part is the sample's 800 rows with is_valid False and whose test part is its
200 rows with is_valid True, texts and "negative"/"positive" labels, in the file's order when
`secret` is None (the public split a learner tries out on).

*Threat model.* Every review and every label of the sample is public (and so is the full IMDb
they come from). The cheap cheats are (1) pasting the 200 public validation labels in order and
(2) pasting a table {review text or its hash: label} and looking each test review up. So for one
grade, from the grader's secret:
- the test reviews come in a fresh order (a list of labels in the file's order scores ~50%);
- every test review gets a few spaces doubled (WHITESPACE_EDIT_FRACTION of its single spaces,
  at least one), so the raw string and any hash of it differ from the public one;
- a review of at least MIN_SENTENCES_TO_DROP sentences (about 96% of the sample's) loses one
  sentence drawn at random, so a hash of the whitespace-normalised text misses too.
These edits keep the label: the label is the reviewer's own rating, and dropping one sentence
of four or more (or doubling a space) leaves the rest of the review as written; a model sees at
most one sentence less evidence. The training part is never changed.

*What remains possible.* Fuzzy look-ups still work: hashing each sentence, or the review's word
n-grams, or a nearest-neighbour search against the 200 pasted public reviews (about 270 KB of
text, well under the notebook size limit) finds each perturbed review, and the few short reviews
that lose no sentence differ from the public text only in whitespace. No edit light enough to
keep every label can stop that on public text. The backstop is the review flags
(grader/review.py): a look-up scores far above what 800 reviews can teach and takes almost no
time, which is `too_good_too_fast` (and a near-zero train() is `train_near_zero`), so such a
result waits for an organizer before it reaches a leaderboard. A test set no paste can cover
would need reviews that are not public, or per grade a fresh draw from the full 25,000-review
IMDb test split (the 84 MB `URLs.IMDB` archive), which makes a pasted table large but still not
impossible.
"""

import csv
import dataclasses
import re
from pathlib import Path

from grader import kinds
from grader.sources import _files

SOURCE_ID = "imdb_sample"
DATA_KIND = kinds.TEXT
NEEDS_NETWORK = True
IMDB_SAMPLE_URL = "https://s3.amazonaws.com/fast-ai-sample/imdb_sample.tgz"  # fastai's URLs.IMDB_SAMPLE
DOWNLOAD_BYTES = 571_827
EXTRACTED_FOLDER = "imdb_sample"  # the archive's top folder
TEXTS_FILE = "texts.csv"
COLUMNS = ("label", "text", "is_valid")
LABELS = ("negative", "positive")

# Per-grade edits of the test reviews (see "What a grade sees" above)
MIN_SENTENCES_TO_DROP = 4         # a review of at least this many sentences loses one of them
WHITESPACE_EDIT_FRACTION = 0.05   # share of a review's single spaces doubled (at least one)
# A sentence ends at . ! or ? (with any closing quotes or brackets), followed by whitespace or
# the <br /> line breaks the IMDb reviews carry. Abbreviations ("Mr. Smith") split too: that
# only makes the dropped piece shorter.
_SENTENCE_END = re.compile(r"""[.!?]+["')\]]*(?:\s|<br\s*/?>)+""", re.IGNORECASE)
_TRAILING_BREAKS = re.compile(r"(?:\s|<br\s*/?>)+$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Texts:
    texts: list[str]
    labels: list[str]     # "negative" / "positive"
    is_valid: list[bool]  # the sample's own validation rows


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """The text kind's form (grader/kinds.py): what train() and predict() are handed."""
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def texts_path(data_dir: Path) -> Path:
    return _files.source_dir(data_dir, SOURCE_ID) / EXTRACTED_FOLDER / TEXTS_FILE


def prepare(data_dir: Path, *, url: str = IMDB_SAMPLE_URL) -> Path:
    """Fetch and extract the sample once with fastdownload (fastai's downloader); idempotent.
    `url` exists so that tests can point it at a local server."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            extracted = _files.fastdownload_get(url, staging)
            if not (extracted / TEXTS_FILE).is_file():
                raise ValueError(f"{url} did not hold {EXTRACTED_FOLDER}/{TEXTS_FILE}")
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path) -> Texts:
    import pandas as pd

    path = texts_path(data_dir)
    _files.require(SOURCE_ID, path)
    frame = pd.read_csv(path, dtype={"label": str, "text": str})
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}")
    unknown = set(frame["label"]) - set(LABELS)
    if unknown:
        raise ValueError(f"{path}: labels {sorted(unknown)}, expected {LABELS}")
    is_valid = frame["is_valid"].map(_as_bool)
    return Texts(frame["text"].tolist(), frame["label"].tolist(), is_valid.tolist())


def for_grading(data_dir: Path, *, secret: int | None) -> TextSplit:
    """Train on the is_valid False rows, test on the is_valid True rows; with a secret, the test
    reviews reordered and lightly edited for this grade (see the module docstring)."""
    raw = load(data_dir)
    train = [i for i, valid in enumerate(raw.is_valid) if not valid]
    test = [i for i, valid in enumerate(raw.is_valid) if valid]
    if not train or not test:
        raise ValueError(f"{texts_path(data_dir)} needs rows with is_valid True and False; "
                         f"it has {len(train)} training and {len(test)} validation rows")
    test_texts = [raw.texts[i] for i in test]
    test_labels = [raw.labels[i] for i in test]
    if secret is not None:
        test_texts, test_labels = perturb_test(test_texts, test_labels, secret)
    return TextSplit([raw.texts[i] for i in train], [raw.labels[i] for i in train], test_texts, test_labels)


def perturb_test(texts: list[str], labels: list[str], secret: int) -> tuple[list[str], list[str]]:
    """The test reviews in an order drawn from `secret`, each with a few spaces doubled and, if
    it is long enough, one sentence dropped; labels follow their reviews. Same secret, same
    output."""
    import numpy as np

    rng = np.random.default_rng(secret)
    order = rng.permutation(len(texts))
    edited = [_double_some_spaces(drop_one_sentence(texts[i], rng), rng) for i in order]
    return edited, [labels[i] for i in order]


def sentence_starts(text: str) -> list[int]:
    """Where each sentence of `text` starts (0 first)."""
    return [0] + [m.end() for m in _SENTENCE_END.finditer(text) if m.end() < len(text)]


def drop_one_sentence(text: str, rng) -> str:
    """`text` less one sentence drawn with `rng`, when it has at least MIN_SENTENCES_TO_DROP."""
    starts = sentence_starts(text)
    if len(starts) < MIN_SENTENCES_TO_DROP:
        return text
    k = int(rng.integers(len(starts)))
    if k + 1 < len(starts):
        return text[:starts[k]] + text[starts[k + 1]:]
    return _TRAILING_BREAKS.sub("", text[:starts[k]])  # the last one: no dangling break after it


def _double_some_spaces(text: str, rng) -> str:
    """Double WHITESPACE_EDIT_FRACTION of the single spaces (at least one), so the string differs."""
    singles = [m.start() for m in re.finditer(r"(?<! ) (?! )", text)]
    if not singles:
        return text + " "
    count = max(1, round(WHITESPACE_EDIT_FRACTION * len(singles)))
    chosen = set(int(i) for i in rng.choice(singles, size=count, replace=False))
    return "".join("  " if i in chosen else ch for i, ch in enumerate(text))


def _as_bool(value) -> bool:
    """pandas reads the column as bool when every cell is True/False; be explicit otherwise."""
    if isinstance(value, bool) or hasattr(value, "dtype"):
        return bool(value)
    lowered = str(value).strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"is_valid {value!r} is neither True nor False")
    return lowered == "true"


# Words for the fixture's generated reviews: a learnable signal (sentiment words) in filler.
_POSITIVE_WORDS = ("wonderful", "moving", "brilliant", "funny", "gripping", "superb")
_NEGATIVE_WORDS = ("dull", "clumsy", "boring", "awful", "tedious", "lifeless")
FIXTURE_SENTENCE_WORDS = 6  # words per generated sentence
_FILLER_WORDS = ("the", "film", "plot", "cast", "scene", "ending", "director", "and", "a",
                 "was", "with", "score", "camera", "story", "really", "quite")


def write_fixture(root: Path, *, seed: int, n_train: int = 40, n_valid: int = 10,
                  words_per_review: int = 30) -> Path:
    """A small texts.csv in the real format under root (playing data_dir): generated reviews of
    several sentences (FIXTURE_SENTENCE_WORDS words each, some parted by the real data's
    "<br /><br />"), with commas, quotes and a line break inside some, so the CSV quoting and the
    per-grade sentence edits are exercised. Returns the file."""
    import numpy as np

    rng = np.random.default_rng(seed)
    path = texts_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_train + n_valid):
        label = LABELS[i % 2]
        signal = _POSITIVE_WORDS if label == "positive" else _NEGATIVE_WORDS
        words = list(rng.choice(_FILLER_WORDS, size=words_per_review))
        for position in rng.choice(words_per_review, size=3, replace=False):
            words[position] = str(rng.choice(signal))
        sentences = [" ".join(words[start:start + FIXTURE_SENTENCE_WORDS]) + "."
                     for start in range(0, words_per_review, FIXTURE_SENTENCE_WORDS)]
        text = "".join(sentence + ("<br /><br />" if n % 3 == 2 else " ")
                       for n, sentence in enumerate(sentences)).rstrip()
        if i % 5 == 0:
            text = f'{text} Yes, "honestly".\nSecond paragraph, {words[0]}.'
        rows.append((label, text, i >= n_train))
    order = rng.permutation(len(rows))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # the real file quotes only the cells that need it
        writer.writerow(COLUMNS)
        for index in order:
            writer.writerow(rows[index])
    return path


def write_fixture_archive(fixture_root: Path, archive_path: Path) -> Path:
    """Pack a fixture written by write_fixture into a .tgz shaped like the real one (one top
    folder imdb_sample/ holding texts.csv), for tests that serve it to the real downloader."""
    import tarfile

    archive_path = Path(archive_path)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_path, "w:gz") as tar:
        tar.add(texts_path(fixture_root).parent, arcname=EXTRACTED_FOLDER)
    return archive_path
