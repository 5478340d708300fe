"""Fashion-MNIST: 28x28 greyscale photos of clothes in 10 classes, for the Part 2 exercise that
trains mini-batches from scratch.

**What and whose.** Zalando Research's drop-in replacement for MNIST (Xiao, Rasul and Vollgraf,
2017, https://arxiv.org/abs/1708.07747), MIT licence:
https://github.com/zalandoresearch/fashion-mnist. Classes 0..9: T-shirt/top, Trouser, Pullover,
Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.

**Where it comes from.** `torchvision.datasets.FashionMNIST(root, download=True)`, which fetches
the four gzip'd files from the project's S3 mirror and checks each against its md5.

**On disk** (data_dir/fashion_mnist is torchvision's `root`):

    fashion_mnist/FashionMNIST/raw/train-images-idx3-ubyte.gz   60,000 images  (26 MB)
                                   train-labels-idx1-ubyte.gz   60,000 labels  (29 kB)
                                   t10k-images-idx3-ubyte.gz    10,000 images  (4.4 MB)
                                   t10k-labels-idx1-ubyte.gz    10,000 labels  (5 kB)

(torchvision also leaves the unzipped copies next to them; we read the .gz files.) The idx
format: a big-endian header, magic 2051 then count, rows, cols (uint32 each) for images,
magic 2049 then count for labels, then the uint8 bytes row by row.

**Raw form.** `load(data_dir)` -> `FashionMNIST(x_train, y_train, x_test, y_test)`: x uint8
(N, 28, 28), 0 = background; y int64 0..9. Read by our own idx reader (`read_idx`), not
torchvision's, so that the small fixture (which has no real md5) reads through the same code.

**Sizes.** 60,000 train / 10,000 test, exactly 6,000 / 1,000 per class.

**Baselines.** No learning: the majority class is 10% (the classes are balanced). Published
(the project's benchmark table, https://github.com/zalandoresearch/fashion-mnist#benchmark):
scikit-learn classifiers reach about 84% (logistic regression) to about 90% (SVC); the README's
small convolutional nets about 90-93%; ResNet18 about 95%. A from-scratch MLP in the spirit of
course22p2's mini-batch lessons lands in the high 80s, so an exercise target near 0.90 asks for
a real (small conv) model.
"""

import dataclasses
import gzip
import struct
from pathlib import Path

import numpy as np

from grader.sources import _files

SOURCE_ID = "fashion_mnist"
NEEDS_NETWORK = True
DOWNLOAD_BYTES = 30_000_000   # the four .gz files together, about 30 MB
RAW_FOLDER = "FashionMNIST/raw"  # torchvision's raw_folder under its root
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
IMAGES_MAGIC = 2051  # idx: unsigned byte data, 3 dimensions
LABELS_MAGIC = 2049  # idx: unsigned byte data, 1 dimension
IMAGE_SIDE = 28      # pixels
NUM_CLASSES = 10
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class FashionMNIST:
    x_train: np.ndarray  # uint8 (N, 28, 28)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray


def raw_dir(data_dir: Path) -> Path:
    return _files.source_dir(data_dir, SOURCE_ID) / RAW_FOLDER


def prepare(data_dir: Path) -> Path:
    """Fetch the four files once with torchvision's downloader (md5-checked); idempotent."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST  # heavy

            for train in (True, False):
                TorchvisionFashionMNIST(staging, train=train, download=True)
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path) -> FashionMNIST:
    folder = raw_dir(data_dir)
    names = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    _files.require(SOURCE_ID, *(folder / n for n in names))
    x_train, y_train, x_test, y_test = (read_idx(folder / n) for n in names)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"images and labels disagree in count under {folder}")
    return FashionMNIST(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip'd when its name ends in .gz) as a uint8 array: (N, rows, cols) for
    images, (N,) for labels."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    (magic,) = struct.unpack(">I", data[:4])
    if magic == IMAGES_MAGIC:
        count, rows, cols = struct.unpack(">III", data[4:16])
        shape, offset = (count, rows, cols), 16
    elif magic == LABELS_MAGIC:
        (count,) = struct.unpack(">I", data[4:8])
        shape, offset = (count,), 8
    else:
        raise ValueError(f"{path}: magic {magic}, expected {IMAGES_MAGIC} or {LABELS_MAGIC}")
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {expected} bytes of data, file has {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array of 1 (labels) or 3 (images) dimensions in the idx format."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3:
        header = struct.pack(">IIII", IMAGES_MAGIC, *array.shape)
    elif array.ndim == 1:
        header = struct.pack(">II", LABELS_MAGIC, len(array))
    else:
        raise ValueError(f"idx arrays here are 1-D or 3-D, not {array.ndim}-D")
    return header + array.tobytes()


def write_fixture(root: Path, *, seed: int, n_train: int = 60, n_test: int = 20) -> Path:
    """A small Fashion-MNIST in the real layout under root (playing data_dir): gzip'd idx files
    in root/fashion_mnist/FashionMNIST/raw. Each class is a distinct blocky pattern plus noise,
    so a smoke run can learn it. Returns the raw folder."""
    rng = np.random.default_rng(seed)
    folder = raw_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    block = IMAGE_SIDE // 4
    prototypes = rng.integers(0, 256, size=(NUM_CLASSES, 4, 4)).repeat(block, 1).repeat(block, 2)

    def split(n, images_name, labels_name):
        labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
        noise = rng.normal(0, 30, size=(n, IMAGE_SIDE, IMAGE_SIDE))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        # mtime=0: the same seed gives the same bytes, so a test can pin the fixture's md5
        for name, array in ((images_name, images), (labels_name, labels)):
            (folder / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))

    split(n_train, TRAIN_IMAGES, TRAIN_LABELS)
    split(n_test, TEST_IMAGES, TEST_LABELS)
    return folder
