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

**For grading** (`DATA_KIND = "image_tensors"`; `for_grading(data_dir, *, secret)`): an object
with `x_train`, `y_train`, `x_test`, `y_test`, `num_classes` (grader/kinds.py's image_tensors
form), exactly:

    x_train  uint8 (60000, 28, 28)  row-major greyscale, 0 = background .. 255, as in the idx files
                                    (and as torchvision's `FashionMNIST(...).data`); no channel axis
    y_train  int64 (60000,)         class indices 0..9 (CLASSES above)
    x_test   uint8 (10000, 28, 28)  the same format
    y_test   int64 (10000,)         kept by the grader; never written where the sandbox can see it
    num_classes  10

With `secret=None` this is the fixed public split, in the files' order. With a secret (the grader
draws one per grade) the training part is the same and the test part is the public test set made
for that grade by a label-preserving perturbation, every draw from `np.random.default_rng(secret)`:
1. the 10,000 test images are put in a secret order (labels moved with them);
2. every image's intensities are multiplied by the same gain, drawn once per grade, uniform in
   1 +/- TEST_GAIN_SPREAD;
3. Gaussian noise of TEST_NOISE_STD grey levels is added to every pixel; the result is rounded
   and clipped to 0..255 and stays uint8.
The change is small next to what tells the classes apart (a garment's outline and texture span
tens to hundreds of grey levels; the noise's typical size is a few), so a good model's accuracy
should be unaffected: the same idea and about the same relative size as the digits exercise's
gain and noise (grader/datasets.py), which the digits reference shrugs off. (Not measured on the
real data, which the machine this was written on cannot download; the tests check on the fixture
that each perturbed image stays nearest to its original, with its label, and how large the
change is.)

Threat model. The test set is public, and so are its labels, so without this a notebook could
score 100% by (a) returning the 10,000 public labels in file order (10 kB of text), or (b) looking
each test image up by its bytes (a hash of the public images). The secret order defeats (a). The
noise changes most pixels of every image (where the garment is, all but the few draws that round
to zero; on the black background about half, since clipping removes the negative draws), so no
perturbed image equals its public original and (b) finds nothing. What remains possible: a
notebook that carries the public test images with their labels (about 4.4 MB gzip'd, under the
grader's 20 MiB notebook limit) and matches each perturbed image to its *nearest* public image
recovers the labels; only a test set nobody has seen would stop that, and Fashion-MNIST has none.
The defence there is the grader's review of implausible results (grader/review.py: a train() of
almost no time, or accuracy well beyond the reference's at a fraction of its time, waits for an
organizer) and the code hash kept with each result. The idx files themselves cannot be read from
a submission: the grader's data_dir is not visible inside the sandbox (grader/grading.py hides it).
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
DATA_KIND = "image_tensors"  # grader/kinds.py: train()/predict() get tensors on the device
TEST_GAIN_SPREAD = 0.06      # per-grade intensity gain on the test images, uniform in 1 +/- this (fraction)
TEST_NOISE_STD = 6.0         # per-grade Gaussian pixel noise on the test images, in grey levels (of 0..255)


@dataclasses.dataclass(frozen=True)
class FashionMNIST:
    x_train: np.ndarray  # uint8 (N, 28, 28)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class GradingData:
    """The image_tensors form (grader/kinds.py) that train() and predict() are handed."""
    name: str
    x_train: np.ndarray  # uint8 (60000, 28, 28), 0..255
    y_train: np.ndarray  # int64 (60000,)
    x_test: np.ndarray   # uint8 (10000, 28, 28), 0..255; perturbed per grade when secret is given
    y_test: np.ndarray   # int64 (10000,): the grader's alone
    num_classes: int = NUM_CLASSES


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


def for_grading(data_dir: Path, *, secret: int | None) -> GradingData:
    """The prepared data in the image_tensors form: the public split when secret is None, else
    with the test part perturbed for one grade (module docstring: "For grading")."""
    data = load(data_dir)
    x_test, y_test = data.x_test, data.y_test
    if secret is not None:
        x_test, y_test = perturb_test(x_test, y_test, secret)
    return GradingData("Fashion-MNIST", data.x_train, data.y_train, x_test, y_test)


def perturb_test(x_test: np.ndarray, y_test: np.ndarray, secret: int) -> tuple[np.ndarray, np.ndarray]:
    """The test images in a secret order, with a secret gain and pixel noise; labels follow
    their images. The same secret gives the same arrays."""
    if secret < 0:
        raise ValueError(f"the grading secret must be a non-negative integer, not {secret}")
    rng = np.random.default_rng(secret)
    order = rng.permutation(len(x_test))
    gain = rng.uniform(1 - TEST_GAIN_SPREAD, 1 + TEST_GAIN_SPREAD)
    noise = rng.normal(0.0, TEST_NOISE_STD, size=x_test.shape)
    perturbed = np.clip(np.rint(x_test[order] * gain + noise), 0, 255).astype(np.uint8)
    return perturbed, y_test[order].astype(np.int64)


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
