"""Accuracy and time of the imdb exercise's reference and starter on the real IMDb sample.

    .venv/bin/python bench/imdb_reference.py DATA_DIR [--runs 5] [--secrets 101 202 303]

DATA_DIR is a grader data directory where `grader datasets prepare imdb_sample` has put the
sample (DATA_DIR/imdb_sample/imdb_sample/texts.csv). Each notebook runs in-process through
grader.notebook.load_solution (trusted code, no sandbox) with seeds 0..runs-1, on the public
split and on the per-grade edited test sets those secrets give (grader/sources/imdb_sample.py).
The clock covers train() + predict(), as the grader's ranking time does. Prints mean and std of
test accuracy, the median time, the majority-class baseline, and the machine.
"""

import argparse
import collections
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from grader.notebook import load_solution  # noqa: E402
from grader.sources import imdb_sample  # noqa: E402
from grader.spec import find_exercise  # noqa: E402

NOTEBOOKS = ("reference", "starter")
DEFAULT_SECRETS = (101, 202, 303)  # per-grade test sets to measure on besides the public split


def accuracy(predictions, truth) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(truth)))


def measure(solution, split, runs: int) -> tuple[list[float], list[float]]:
    accuracies, seconds = [], []
    for seed in range(runs):
        start = time.perf_counter()
        model = solution.train(split.train_texts, split.train_labels, seed=seed, device="cpu")
        predictions = solution.predict(model, split.test_texts)
        seconds.append(time.perf_counter() - start)
        accuracies.append(accuracy(predictions, split.test_labels))
    return accuracies, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=pathlib.Path)
    parser.add_argument("--runs", type=int, default=None, help="seeds per test set (default: the spec's runs)")
    parser.add_argument("--secrets", type=int, nargs="*", default=list(DEFAULT_SECRETS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = find_exercise("imdb")
    runs = args.runs or spec.runs
    splits = {"public": imdb_sample.for_grading(args.data_dir, secret=None)}
    splits.update({f"secret {s}": imdb_sample.for_grading(args.data_dir, secret=s) for s in args.secrets})
    public = splits["public"]
    majority = collections.Counter(public.train_labels).most_common(1)[0][0]
    long_enough = sum(len(imdb_sample.sentence_starts(t)) >= imdb_sample.MIN_SENTENCES_TO_DROP
                      for t in public.test_texts)
    print(f"imdb_sample: {len(public.train_texts)} train / {len(public.test_texts)} test reviews; "
          f"majority class ({majority}) {accuracy([majority] * len(public.test_labels), public.test_labels):.4f}; "
          f"{long_enough} test reviews long enough to lose a sentence per grade")
    for name in NOTEBOOKS:
        solution = load_solution(spec.directory / f"{name}.ipynb")
        for label, split in splits.items():
            accuracies, seconds = measure(solution, split, runs)
            print(f"  {name:9s} {label:11s}: accuracy {statistics.mean(accuracies):.4f} "
                  f"(std {statistics.pstdev(accuracies):.4f}, {runs} seeds), "
                  f"median train+predict {statistics.median(seconds):.2f} s", flush=True)
    print(f"target {spec.target}; torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
