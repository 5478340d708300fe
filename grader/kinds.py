"""Data kinds: what train() receives and what predict() returns, per exercise (`data_kind` in the
spec). The grader owns the data and the targets; this module writes what a sandbox may see in
a safe on-disk form (npy, CSV with a dtype sidecar, JSON, image files), reveals it at the moment
the clock allows, and checks what comes back. The runner (grader/runner.py) reads those files
and hands them to the learner's code in the kind's form.

    kind            train(...)                                        predict(model, ...) returns
    image_tensors   train(x_train, y_train, *, seed, device, report)  tensor: (N,) class indices or (N, C) scores,
                    tensors on `device`                               or (N,) values for a value metric
    image_folder    train(path, *, seed, device, report): a read-only  one label (str) per path, in order
                    folder of class folders of image files
                    (parent folder name = label); predict(model, paths)
                    gets the test files, random names in one flat folder
    tabular         train(df_train, *, target, seed, device, report):  one prediction per row, in order
                    a pandas DataFrame with the target column;
                    predict(model, df_test): the same columns, target withheld
    text            train(texts, labels, *, seed, device, report):     one label (or number) per text
                    list[str] and a list of labels (or floats)
    ratings         train(df_train, *, seed, device, report): columns  one rating per row, in order
                    user, item, rating; predict(model, df_test): user, item

What a dataset loader returns for each kind (attributes of any object; grader/sources/ and the
tests' load_dataset overrides build them):

    image_tensors   x_train, y_train, x_test, y_test (numpy), num_classes (0 for regression)
    image_folder    train_images, test_images: lists of (image, label), image = encoded bytes
                    (PNG/JPEG) or a uint8 HxWxC / HxW numpy array; label a str
    tabular         train, test: DataFrames that both hold the column `target` (its name)
    text            train_texts, train_labels, test_texts, test_labels
    ratings         train, test: DataFrames with user, item, rating

Prediction targets never enter the sandbox: the test frame loses its target column, the test
texts lose their labels, test images are renamed at random and shuffled.
"""

import dataclasses
import io
import json
import os
import pathlib
import secrets
import shutil

import numpy as np

IMAGE_TENSORS = "image_tensors"
IMAGE_FOLDER = "image_folder"
TABULAR = "tabular"
TEXT = "text"
RATINGS = "ratings"
KINDS = (IMAGE_TENSORS, IMAGE_FOLDER, TABULAR, TEXT, RATINGS)
DEFAULT_KIND = IMAGE_TENSORS
RATINGS_COLUMNS = ("user", "item")
RATINGS_TARGET = "rating"
MAX_LABEL_CHARS = 256            # longest label string accepted back from the sandbox (characters)
TEST_NAME_BYTES = 12             # random bytes in each test image's file name (hex in the name)

# Files in the sandbox's data directory, per kind (names the runner reads; see grader/runner.py)
TRAIN_CSV, TEST_CSV = "train.csv", "test.csv"
TRAIN_DTYPES, TEST_DTYPES = "train.dtypes.json", "test.dtypes.json"
TRAIN_JSON, TEST_JSON = "train.json", "test.json"
TRAIN_FOLDER, TEST_FOLDER, TEST_ORDER = "train", "test", "test_order.json"


@dataclasses.dataclass(frozen=True)
class Contract:
    train_args: tuple        # positional placeholders the runner passes to train()
    train_keywords: tuple    # keyword arguments besides seed, device, report
    train_signature: str
    predict_signature: str
    predict_returns: str


CONTRACTS = {
    IMAGE_TENSORS: Contract((None, None), (), "def train(x_train, y_train, *, seed, device, report=None)",
                            "def predict(model, x_test)",
                            "a tensor of (N,) class indices or (N, num_classes) scores (or (N,) values)"),
    IMAGE_FOLDER: Contract((None,), (), "def train(path, *, seed, device, report=None)",
                           "def predict(model, paths)", "a list of N labels (str), one per path, in order"),
    TABULAR: Contract((None,), ("target",), "def train(df_train, *, target, seed, device, report=None)",
                      "def predict(model, df_test)", "N predictions (list, array, Series), one per row, in order"),
    TEXT: Contract((None, None), (), "def train(texts, labels, *, seed, device, report=None)",
                   "def predict(model, texts)", "N labels (or numbers), one per text, in order"),
    RATINGS: Contract((None,), (), "def train(df_train, *, seed, device, report=None)",
                      "def predict(model, df_test)", "N ratings (numbers), one per (user, item) row, in order"),
}


@dataclasses.dataclass
class Prepared:
    """What the grader keeps of a dataset once its visible parts are on disk."""
    truth: np.ndarray            # the test targets: never written where a sandbox can see them
    test_size: int
    num_classes: int             # image_tensors' score columns; 0 elsewhere
    train_files: tuple           # names under the staging directory revealed at train
    test_files: tuple            # ... and at predict
    folders: bool = False        # image_folder: the names are directories, copied per run


# ---- writing -----------------------------------------------------------------------------------

def _write_frame(frame, csv_path: pathlib.Path, dtypes_path: pathlib.Path) -> None:
    """CSV (no pickles, no code) plus the column dtypes, so the runner restores category and
    bool columns as they were."""
    frame.to_csv(csv_path, index=False)
    dtypes_path.write_text(json.dumps({str(c): str(t) for c, t in frame.dtypes.items()}), encoding="utf-8")
    for path in (csv_path, dtypes_path):
        os.chmod(path, 0o644)


def _write_json(path: pathlib.Path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")
    os.chmod(path, 0o644)


def _encode_image(image) -> tuple[bytes, str]:
    """(bytes, suffix) of one image: encoded bytes are kept as they are, arrays become PNG."""
    if isinstance(image, (bytes, bytearray)):
        suffix = ".png" if bytes(image[:8]) == b"\x89PNG\r\n\x1a\n" else ".jpg"
        return bytes(image), suffix
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


def _write_file(path: pathlib.Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o644)


def _mkdir(path: pathlib.Path) -> None:
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)


def _label_array(labels) -> np.ndarray:
    array = np.asarray(list(labels))
    if array.dtype.kind == "O":
        array = array.astype(str)
    return array


def prepare(kind: str, directory: pathlib.Path, dataset) -> Prepared:
    """Write the visible parts of `dataset` under `directory` (once per grade; not visible to any
    sandbox until revealed) and return what the grader keeps."""
    if kind == TABULAR or kind == RATINGS:
        target = dataset.target if kind == TABULAR else RATINGS_TARGET
        test = dataset.test.reset_index(drop=True)
        _write_frame(dataset.train.reset_index(drop=True), directory / TRAIN_CSV, directory / TRAIN_DTYPES)
        visible = test.drop(columns=[target]) if kind == TABULAR else test[list(RATINGS_COLUMNS)]
        _write_frame(visible, directory / TEST_CSV, directory / TEST_DTYPES)
        truth = test[target].to_numpy()
        truth = truth.astype(str) if truth.dtype.kind == "O" else truth
        return Prepared(truth, len(test), 0, (TRAIN_CSV, TRAIN_DTYPES), (TEST_CSV, TEST_DTYPES))
    if kind == TEXT:
        labels = _label_array(dataset.train_labels).tolist()
        _write_json(directory / TRAIN_JSON, {"texts": [str(t) for t in dataset.train_texts], "labels": labels})
        _write_json(directory / TEST_JSON, {"texts": [str(t) for t in dataset.test_texts]})
        truth = _label_array(dataset.test_labels)
        return Prepared(truth, len(truth), 0, (TRAIN_JSON,), (TEST_JSON,))
    if kind == IMAGE_FOLDER:
        train = directory / TRAIN_FOLDER
        _mkdir(train)
        for index, (image, label) in enumerate(dataset.train_images):
            label = str(label)
            if not label or "/" in label or label.startswith("."):
                raise ValueError(f"image label {label!r} cannot be a folder name")
            (train / label).mkdir(mode=0o755, exist_ok=True)
            os.chmod(train / label, 0o755)
            data, suffix = _encode_image(image)
            _write_file(train / label / f"{index:06d}{suffix}", data)
        # Test files: random names, in a random order, in one flat folder: neither the name nor
        # the listing order says anything about the label.
        test = directory / TEST_FOLDER
        _mkdir(test)
        items = list(dataset.test_images)
        order = list(range(len(items)))
        secrets.SystemRandom().shuffle(order)
        names, truth = [], []
        for position in order:
            image, label = items[position]
            data, suffix = _encode_image(image)
            name = secrets.token_hex(TEST_NAME_BYTES) + suffix
            _write_file(test / name, data)
            names.append(name)
            truth.append(str(label))
        _write_json(directory / TEST_ORDER, names)
        return Prepared(np.asarray(truth), len(truth), 0, (TRAIN_FOLDER,), (TEST_FOLDER, TEST_ORDER), folders=True)
    raise ValueError(f"prepare() does not handle data kind {kind!r}")


def reveal(staging: pathlib.Path, data_dir: pathlib.Path, names, *, pending: pathlib.Path | None = None) -> None:
    """Make `names` appear in a sandbox's data directory. Files are hard links; a folder is
    first copied as hard links into `pending` (outside the sandbox's view, before the clock)
    and here only renamed into place, so it appears at once and whole."""
    for name in names:
        source = (pending / name) if pending is not None and (pending / name).exists() else staging / name
        if source.is_dir():
            os.rename(source, data_dir / name)
        else:
            os.link(source, data_dir / name)


def stage_folders(staging: pathlib.Path, pending: pathlib.Path, names) -> None:
    """Copy folders (as hard links) into `pending`, so reveal() can rename them in at once."""
    pending.mkdir(mode=0o755, exist_ok=True)
    os.chmod(pending, 0o755)
    for name in names:
        if (staging / name).is_dir():
            shutil.copytree(staging / name, pending / name, copy_function=os.link)


# ---- checking what comes back ---------------------------------------------------------------------

class BadOutput(Exception):
    """predict() returned something the metric cannot score; str(e) says what was expected."""


def check_predictions(kind: str, metric, predictions: np.ndarray, prepared: Prepared) -> np.ndarray:
    """Turn the sandbox's predictions into a 1-D array the metric can score against
    prepared.truth, or raise BadOutput naming the expected shape and type."""
    n = prepared.test_size
    wanted = metric.description if metric.output == "values" else CONTRACTS[kind].predict_returns
    expected = f"expected {wanted} for the {n} test items"
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.ndim != 1 or predictions.shape[0] != n:
        hint = ""
        if predictions.ndim == 2 and metric.output == "labels":
            hint = "; these look like per-class scores: return the labels, e.g. learn.dls.vocab[probs.argmax(1)]"
        raise BadOutput(f"predict returned shape {tuple(predictions.shape)}; {expected}{hint}")
    dtype_kind = predictions.dtype.kind
    if metric.output == "values":
        if dtype_kind not in "iuf":
            raise BadOutput(f"predict returned {predictions.dtype} values; {expected}")
        values = predictions.astype(np.float64)
        if not np.isfinite(values).all():
            raise BadOutput("the predictions contain NaN or infinity; check for a diverging loss or a division by zero")
        return values
    truth = prepared.truth
    if truth.dtype.kind == "U":
        if dtype_kind != "U":
            raise BadOutput(f"predict returned {predictions.dtype} values but the labels are names such as "
                            f"{truth[0].item()!r}; {expected}")
        return predictions
    if dtype_kind == "f":
        if not np.isfinite(predictions).all() or not np.all(predictions == np.round(predictions)):
            raise BadOutput("predict returned fractional numbers but this is a classification task: return "
                            f"labels (such as {truth[0].item()!r}), e.g. by thresholding or argmax; {expected}")
        return predictions.astype(np.int64)
    if dtype_kind not in "iub":
        raise BadOutput(f"predict returned {predictions.dtype} values but the labels are numbers such as "
                        f"{truth[0].item()!r}; {expected}")
    return predictions.astype(np.int64)


def prediction_size_cap(prepared: Prepared) -> int:
    """Largest valid predictions file in bytes: (N, C) float64 scores or N label strings."""
    per_item = max(prepared.num_classes, 1) * 8
    if prepared.truth.dtype.kind == "U":
        per_item = max(per_item, MAX_LABEL_CHARS * 4)  # numpy stores unicode as UCS-4
    return prepared.test_size * per_item + 4096
