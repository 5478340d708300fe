"""The grader's datasets: what the learner's `train()` and `predict()` are handed.

The grader owns the data. `load()` returns numpy arrays; the runner turns them into tensors
on the exercise's device before it starts the clock. Labels of the test split never leave
the grader's process.

| id        | x_train, x_test                                   | train / test  | source                    |
|-----------|---------------------------------------------------|---------------|---------------------------|
| `digits`  | float32 (N, 64): the 8x8 image flattened row by    | 1,437 / 360   | scikit-learn's bundled    |
|           | row, pixel values 0..16 divided by 16 (so 0..1)    |               | `load_digits` (no network)|
| `mnist1d` | float32 (N, 40): the generator's standardized      | 4,000 / 1,000 | `mnist1d.data.make_dataset`|
|           | signals (mean 0, std 1 over the whole set)         |               | with its default args     |
| `cifar10` | uint8 (N, 32, 32, 3): HWC, RGB, 0..255, exactly as | 50,000 /      | torchvision's on-disk     |
|           | torchvision stores it; solutions normalize         | 10,000        | `cifar-10-batches-py`     |

Labels are int64 class indices 0..9 for all three.

**What a grade sees: `load_for_grading(id, data_dir, secret)`.** The training split is the one
above; the test split is made for that grade alone from a grader-secret number (grading.py
draws one with `secrets` per grade), so a copy of the public test set, pasted into a notebook
or rebuilt with the public generator, does not hold its answers:
- digits (public, only 1,797 images): the 360 test images, perturbed by a label-preserving
  transform drawn from the secret: a global intensity gain in 1 +/- DIGITS_GAIN_SPREAD and
  Gaussian pixel noise of DIGITS_NOISE_STD, clipped to 0..1. Small next to the 1/16 pixel
  levels' spread across images: the reference still scores ~99%.
- mnist1d: MNIST1D_TEST_SIZE test signals generated afresh by the package's generator with a
  seed drawn from the secret (the same transform parameters as the fixed set, standardized by
  their own mean and std like the original), 100 per class; the training split stays fixed.
- cifar10: the real test batch, its images unchanged.
For all three the test items also come in an order drawn from the secret (shuffle_test): the
public labels pasted in their published order score at chance.
No grader-owned copy lives inside the sandbox, and the bundled ones are hidden from it
(grader/sandbox.py, HIDDEN_PACKAGE_DATA).

Where the files live, under the grader's `data_dir`:
- digits: nowhere; scikit-learn ships the 1,797 images inside its wheel.
- mnist1d: `mnist1d/mnist1d.npz`, generated offline once (about 5 s) by the package's own
  generator with its defaults (seed 42, 5,000 samples, 80/20 split: the paper's 4,000/1,000).
  We never call `mnist1d.data.get_dataset`, whose default path downloads a pickle with
  `requests` and no timeout.
- cifar10: `cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`.
  `prepare("cifar10", ...)` fetches it with torchvision's downloader (needs a network; the
  archive's md5 is checked by torchvision).

Why our own CIFAR-10 reader: torchvision's `CIFAR10(download=False)` checks every file against
the md5 of the real archive, so it refuses the small fixture that tests and the CPU smoke run
use. We read the same files the same way (pickles of a dict with `data`, uint8 (N, 3072)
row-major CHW, and `labels`), through an unpickler that only admits numpy arrays, and
`write_cifar10_fixture` writes files in that exact format (Python-2 style string keys, as in
the real archive), so the fixture also loads in torchvision when its md5 list is swapped.
"""

import _codecs
import dataclasses
import io
import os
import pickle
import random
import struct
import tempfile
from pathlib import Path

import numpy as np

from grader import sources
from grader.errors import DatasetMissing, SpecError

TENSOR_DATASET_IDS = ("digits", "mnist1d", "cifar10")  # read by this module
DATASET_IDS = TENSOR_DATASET_IDS + sources.IDS          # ... and by grader/sources/ (one module each)
ALIASES = {"cifar10-94": "cifar10"}  # exercise ids people type at `grader datasets prepare`

DIGITS_TEST_SIZE = 360      # images held out for the test split (20%; 1,437 remain to train)
DIGITS_NOISE_STD = 0.03     # per-grade Gaussian pixel noise on the test images (pixel scale 0..1;
                            # one grey level is 1/16 = 0.0625)
DIGITS_GAIN_SPREAD = 0.08   # per-grade intensity gain, uniform in 1 +/- this (fraction)
MNIST1D_TEST_SIZE = 1000    # fresh test signals per grade (as many as the paper's test split)
DIGITS_SPLIT_SEED = 0       # fixed forever: changing it changes every digits score
MNIST1D_FILE = "mnist1d/mnist1d.npz"
CIFAR10_DIR = "cifar10"     # torchvision's `root`; the batches sit in its cifar-10-batches-py
CIFAR10_BATCHES = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray   # int64
    num_classes: int


def resolve(dataset_id: str) -> str:
    """The canonical dataset id for an id or an exercise alias; SpecError if unknown."""
    canonical = ALIASES.get(dataset_id, dataset_id)
    if canonical not in DATASET_IDS:
        raise SpecError(f"unknown dataset {dataset_id!r}; known: {', '.join(DATASET_IDS)}")
    return canonical


def load(dataset_id: str, data_dir: Path):
    """Load a prepared dataset with its fixed public split, in its kind's form (grader/kinds.py).
    Raises DatasetMissing if its files are not on disk (mnist1d is built on the spot instead,
    since that needs no network)."""
    dataset_id = resolve(dataset_id)
    data_dir = Path(data_dir)
    if dataset_id in sources.SOURCES:
        return sources.for_grading(dataset_id, data_dir, secret=None)
    if dataset_id == "digits":
        return _load_digits()
    if dataset_id == "mnist1d":
        return _load_mnist1d(data_dir)
    return _load_cifar10(data_dir)


def load_for_grading(dataset_id: str, data_dir: Path, *, secret: int) -> Dataset:
    """load(), with the test split made for one grade from `secret` (see the module docstring).
    The same secret gives the same arrays; the grader draws a fresh one per grade."""
    dataset_id = resolve(dataset_id)
    if dataset_id in sources.SOURCES:
        return sources.for_grading(dataset_id, Path(data_dir), secret=secret)
    dataset = load(dataset_id, data_dir)
    if dataset_id == "digits":
        dataset = dataclasses.replace(dataset, x_test=perturb_digits(dataset.x_test, secret))
    elif dataset_id == "mnist1d":
        x_test, y_test = fresh_mnist1d_test(secret)
        dataset = dataclasses.replace(dataset, x_test=x_test, y_test=y_test)
    return shuffle_test(dataset, secret)


def shuffle_test(dataset: Dataset, secret: int) -> Dataset:
    """The test items in an order drawn from the secret: otherwise the public test labels, pasted
    in their published order, would score whatever the images look like."""
    order = np.random.default_rng([secret, 1]).permutation(len(dataset.y_test))
    return dataclasses.replace(dataset, x_test=dataset.x_test[order], y_test=dataset.y_test[order])


def prepare(dataset_id: str, data_dir: Path) -> None:
    """Put a dataset's files under data_dir, once. Idempotent."""
    dataset_id = resolve(dataset_id)
    data_dir = Path(data_dir)
    if dataset_id in sources.SOURCES:
        sources.prepare(dataset_id, data_dir)
    elif dataset_id == "mnist1d":
        if not (data_dir / MNIST1D_FILE).is_file():
            _save_npz(data_dir / MNIST1D_FILE, _build_mnist1d())
    elif dataset_id == "cifar10":
        import torchvision  # heavy; only this path needs it

        root = data_dir / CIFAR10_DIR
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):  # download=True checks md5s and skips files already there
            torchvision.datasets.CIFAR10(root, train=train, download=True)


def needs_network(dataset_id: str) -> bool:
    """Whether prepare() downloads (digits and mnist1d are built offline)."""
    dataset_id = resolve(dataset_id)
    if dataset_id in sources.SOURCES:
        return sources.needs_network(dataset_id)
    return dataset_id == "cifar10"


# ---------------------------------------------------------------------------------------------
# digits


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, stratify=y, random_state=DIGITS_SPLIT_SEED)
    as_x = lambda a: (a / 16.0).astype(np.float32)  # noqa: E731
    return Dataset("scikit-learn digits (8x8)", as_x(x_train), y_train.astype(np.int64),
                   as_x(x_test), y_test.astype(np.int64), num_classes=10)


def perturb_digits(x_test: np.ndarray, secret: int) -> np.ndarray:
    """A label-preserving, per-grade variant of the digits test images: gain and noise."""
    rng = np.random.default_rng(secret)
    gain = rng.uniform(1 - DIGITS_GAIN_SPREAD, 1 + DIGITS_GAIN_SPREAD)
    noise = rng.normal(0.0, DIGITS_NOISE_STD, size=x_test.shape)
    return np.clip(x_test * gain + noise, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# mnist1d


def _build_mnist1d() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and numpy RNGs; put them back afterwards.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x_train": d["x"].astype(np.float32), "y_train": d["y"].astype(np.int64),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


def fresh_mnist1d_test(secret: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST1D_TEST_SIZE signals from the generator with the default transform parameters and a
    seed derived from `secret`: the same distribution as the paper's test split, other samples."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = secret % 2**32          # make_dataset seeds numpy's global RNG with it
    args.num_samples = MNIST1D_TEST_SIZE
    args.train_split = 0.0              # everything goes to the test part
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)


def _load_mnist1d(data_dir: Path) -> Dataset:
    path = data_dir / MNIST1D_FILE
    if path.is_file():
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    else:
        arrays = _build_mnist1d()
        try:
            _save_npz(path, arrays)
        except OSError:
            pass  # a read-only data_dir: use the arrays just built, rebuild next time
    return Dataset("MNIST-1D", num_classes=10, **arrays)


def _save_npz(path: Path, arrays: dict) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# cifar10: reading


_NP_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array unpickling helper
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,   # files pickled by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,  # files pickled by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles carry raw bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses any other global."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR-10 batch") from None


def _read_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        raw = _ArrayUnpickler(f, encoding="latin1").load()
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _load_cifar10(data_dir: Path) -> Dataset:
    folder = data_dir / CIFAR10_DIR / CIFAR10_BATCHES
    missing = [n for n in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE) if not (folder / n).is_file()]
    if missing:
        raise DatasetMissing("cifar10", f"no {folder / missing[0]}; needed by exercise cifar10-94")

    def read(names):
        batches = [_read_batch(folder / n) for n in names]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        y = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
        return np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y

    x_train, y_train = read(CIFAR10_TRAIN_FILES)
    x_test, y_test = read((CIFAR10_TEST_FILE,))
    return Dataset("CIFAR-10", x_train, y_train, x_test, y_test, num_classes=10)


# ---------------------------------------------------------------------------------------------
# cifar10: a small fixture in the real on-disk format


def _py2_pickle(obj) -> bytes:
    """Pickle (protocol 2) the way the CIFAR-10 archive was written by Python 2: str objects
    become byte strings (SHORT_BINSTRING), so `pickle.load(f, encoding="bytes")` gives
    b"data" keys and torchvision's `encoding="latin1"` gives "data"."""
    out = io.BytesIO()

    def put(o):
        if isinstance(o, str):
            data = o.encode("latin1")
            if len(data) < 256:
                out.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
            else:
                out.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        elif isinstance(o, dict):
            out.write(pickle.EMPTY_DICT + pickle.MARK)
            for key, value in o.items():
                put(key)
                put(value)
            out.write(pickle.SETITEMS)
        elif isinstance(o, list):
            out.write(pickle.EMPTY_LIST + pickle.MARK)
            for item in o:
                put(item)
            out.write(pickle.APPENDS)
        else:  # ints and numpy arrays: numpy's own protocol-2 opcodes, minus header and STOP.
            # Each such fragment numbers its memo from 0; the unpickler's memo is a dict, and a
            # fragment only reads back what it stored itself, so reusing numbers is harmless.
            body = pickle.dumps(o, protocol=2)
            out.write(body[2:-1])

    out.write(pickle.PROTO + b"\x02")
    put(obj)
    out.write(pickle.STOP)
    return out.getvalue()


def write_cifar10_fixture(root: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Write a small CIFAR-10 in torchvision's on-disk format under root (which plays the role
    of data_dir: files go to root/cifar10/cifar-10-batches-py). n_train is spread over the
    five training batches. Images are learnable: each class is a distinct colour pattern
    plus noise, so a smoke run can show its loss going down. Returns the batches folder."""
    if n_train < 5 or n_test < 1:
        raise ValueError("need n_train >= 5 (one per training batch) and n_test >= 1")
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR10_DIR / CIFAR10_BATCHES
    folder.mkdir(parents=True, exist_ok=True)
    prototypes = rng.integers(0, 256, size=(10, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)

    def images(n):
        labels = rng.permutation(np.arange(n) % 10)
        noise = rng.normal(0, 40, size=(n, 3, 32, 32))
        x = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        return x, [int(v) for v in labels]

    def write(name, batch_label, n):
        x, labels = images(n)
        batch = {"batch_label": batch_label, "labels": labels, "data": x,
                 "filenames": [f"fixture_{name}_{i:05d}.png" for i in range(n)]}
        (folder / name).write_bytes(_py2_pickle(batch))

    sizes = np.diff(np.linspace(0, n_train, 6).round().astype(int))
    for i, (name, n) in enumerate(zip(CIFAR10_TRAIN_FILES, sizes), start=1):
        write(name, f"training batch {i} of 5", int(n))
    write(CIFAR10_TEST_FILE, "testing batch 1 of 1", n_test)
    meta = {"num_cases_per_batch": int(sizes.max()), "label_names": list(CIFAR10_CLASSES),
            "num_vis": 3072}
    (folder / CIFAR10_META_FILE).write_bytes(_py2_pickle(meta))
    return folder
