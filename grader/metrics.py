"""The metrics an exercise is scored with, in one place: what predict() must return for each,
which direction is better, and how a score reads in a message.

    metric       better   predict() returns, per test item            score
    accuracy     higher   a label (class index, class name, 0/1...)    fraction of labels equal to the truth
    error_rate   lower    a label                                      1 - accuracy
    rmse         lower    a number                                     sqrt(mean((prediction - target)^2))
    mae          lower    a number                                     mean(|prediction - target|)
    pearson      higher   a number                                     Pearson correlation with the targets

The grader owns the targets: `score(predictions, truth)` runs in the grader's process, after
grader/kinds.py has turned the sandbox's output into a checked 1-D array (labels for the label
metrics, float64 for the value metrics). A spec's `target` is in the metric's own units and
direction: for rmse `target = 0.95` means "at most 0.95".
"""

import dataclasses

import numpy as np

LABELS = "labels"   # predict() returns one label per item; scored by equality
VALUES = "values"   # predict() returns one number per item; scored by distance or correlation


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    output: str              # LABELS or VALUES: what predict() must return
    display_name: str        # how a message names it ("accuracy", "RMSE")
    is_fraction: bool        # shown as a percentage (accuracy, error rate) or as a plain number
    description: str         # what predict() must return, for bad_output messages and the docs

    def score(self, predictions: np.ndarray, truth: np.ndarray) -> float:
        return float(_SCORERS[self.name](predictions, truth))

    def meets(self, score: float, target: float) -> bool:
        """Whether `score` is at least as good as `target`, in this metric's direction."""
        return score >= target if self.higher_is_better else score <= target

    def better(self, a: float, b: float) -> bool:
        """Whether score a is strictly better than score b."""
        return a > b if self.higher_is_better else a < b

    def format(self, score: float) -> str:
        """'98.10%' or '0.912'."""
        return f"{score:.2%}" if self.is_fraction else f"{score:.3f}"

    def format_target(self, target: float) -> str:
        """'97.00%' for a higher-is-better fraction; '≤ 0.950' for a lower-is-better one."""
        text = self.format(target)
        return text if self.higher_is_better else f"≤ {text}"


def _accuracy(predictions, truth):
    return np.mean(predictions == truth)


def _pearson(predictions, truth):
    predictions, truth = predictions.astype(np.float64), truth.astype(np.float64)
    if predictions.std() == 0 or truth.std() == 0:
        return 0.0  # a constant prediction carries no correlation (numpy would give NaN)
    return np.corrcoef(predictions, truth)[0, 1]


_SCORERS = {
    "accuracy": _accuracy,
    "error_rate": lambda p, t: 1.0 - _accuracy(p, t),
    "rmse": lambda p, t: np.sqrt(np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2)),
    "mae": lambda p, t: np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))),
    "pearson": _pearson,
}

METRICS = {
    "accuracy": Metric("accuracy", True, LABELS, "accuracy", True,
                       "one label per item: a class index or name (or, for image tensors, (N, C) scores)"),
    "error_rate": Metric("error_rate", False, LABELS, "error rate", True,
                         "one label per item: a class index or name (or, for image tensors, (N, C) scores)"),
    "rmse": Metric("rmse", False, VALUES, "RMSE", False, "one finite number per item, shape (N,)"),
    "mae": Metric("mae", False, VALUES, "MAE", False, "one finite number per item, shape (N,)"),
    "pearson": Metric("pearson", True, VALUES, "Pearson r", False, "one finite number per item, shape (N,)"),
}
# Metrics whose score is an accuracy or its complement: the result keeps `accuracy` for them.
ACCURACY_TYPE = ("accuracy", "error_rate")
DEFAULT_METRIC = "accuracy"


def get(name: str) -> Metric:
    return METRICS[name]


def accuracy_from(metric_name: str, score: float | None) -> float | None:
    """The accuracy behind an accuracy-type score (None for the others)."""
    if score is None or metric_name not in ACCURACY_TYPE:
        return None
    return score if metric_name == "accuracy" else 1.0 - score
