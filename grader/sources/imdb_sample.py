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

**Baselines.** No learning: the majority label over the training rows (about half; the sample
is close to balanced, so about 50% on the validation rows). Published: on the full 25k/25k
IMDB, ULMFiT (Howard and Ruder 2018, https://arxiv.org/abs/1801.06146) reports 4.6% error and
fastai's chapter 1 / chapter 10 (https://github.com/fastai/fastbook/blob/master/10_nlp.ipynb)
reach about 93-94% accuracy; on 800 training reviews a fine-tuned language model does far worse
than that, and a bag-of-words linear model is a fair CPU reference.
"""

import csv
import dataclasses
from pathlib import Path

from grader.sources import _files

SOURCE_ID = "imdb_sample"
NEEDS_NETWORK = True
IMDB_SAMPLE_URL = "https://s3.amazonaws.com/fast-ai-sample/imdb_sample.tgz"  # fastai's URLs.IMDB_SAMPLE
DOWNLOAD_BYTES = 571_827
EXTRACTED_FOLDER = "imdb_sample"  # the archive's top folder
TEXTS_FILE = "texts.csv"
COLUMNS = ("label", "text", "is_valid")
LABELS = ("negative", "positive")


@dataclasses.dataclass(frozen=True)
class Texts:
    texts: list[str]
    labels: list[str]     # "negative" / "positive"
    is_valid: list[bool]  # the sample's own validation rows


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
_FILLER_WORDS = ("the", "film", "plot", "cast", "scene", "ending", "director", "and", "a",
                 "was", "with", "score", "camera", "story", "really", "quite")


def write_fixture(root: Path, *, seed: int, n_train: int = 40, n_valid: int = 10,
                  words_per_review: int = 30) -> Path:
    """A small texts.csv in the real format under root (playing data_dir): generated reviews
    with commas, quotes and a line break inside some, so the CSV quoting is exercised.
    Returns the file."""
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
        text = " ".join(words)
        if i % 5 == 0:
            text = f'{text}, "honestly".\nSecond paragraph, {words[0]}.'
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
