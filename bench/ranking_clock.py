"""The ranking clock on the real references: what the new time-to-predictions costs against the
old train-only time, and how often two grades of the same notebook come out tied.

    .venv/bin/python bench/ranking_clock.py                    # digits and mnist1d, 10 grades each
    .venv/bin/python bench/ranking_clock.py --grades 2 --runs 2 --exercises digits

Each grade is the reference notebook graded through the real path (grading.grade: a fresh
sandbox per run, the grader's clocks, the per-grade secret test set). For each exercise it prints

    rank_seconds    median over grades of each grade's median train()+predict() (the ranking
                    time: from the moment the training data is revealed to the predictions)
    train_seconds   the same for train() alone (what was ranked before issue 8)
    predict share   how much of the ranking time is predict() (includes data loading now)
    tied            over all pairs of grades, the share whose median intervals
                    (grader/intervals.py) overlap: the same notebook should tie with itself.
                    Shown for rank_seconds and, for comparison, train_seconds alone
    width           median relative width of the interval, (high - low) / median

Nothing is cached or compared with a reference: each grade is the reference's own.
"""

import argparse
import itertools
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import grading, results  # noqa: E402
from grader.intervals import intervals_overlap, median_interval  # noqa: E402
from grader.paths import resolve_data_dir  # noqa: E402
from grader.spec import find_exercise  # noqa: E402

DEFAULT_GRADES = 10  # grades of each reference notebook


def grade_reference(spec, data_dir, runs):
    result = grading.grade(spec.reference_notebook, spec, data_dir=data_dir, reference=grading.NO_REFERENCE,
                           runs=runs)
    if result.status not in results.JUDGED:
        raise SystemExit(f"{spec.id}: the reference failed: {result.status}: {result.message}")
    return result


def tied_share(intervals) -> float | None:
    pairs = list(itertools.combinations(intervals, 2))
    return sum(intervals_overlap(a, b) for a, b in pairs) / len(pairs) if pairs else None


def relative_width(interval, median) -> float:
    return (interval[1] - interval[0]) / median if median else float("nan")


def report(spec, grades) -> None:
    rank = [g.rank_seconds for g in grades]
    train = [g.train_seconds for g in grades]
    predict = [g.predict_seconds for g in grades]
    rank_intervals = [g.rank_interval for g in grades]
    train_intervals = [median_interval([r.train_seconds for r in g.runs]) for g in grades]
    tied_rank, tied_train = tied_share(rank_intervals), tied_share(train_intervals)
    fmt = lambda share: "n/a (one grade)" if share is None else f"{share:.0%}"  # noqa: E731
    runs = len(grades[0].runs)
    print(f"{spec.id}: {len(grades)} grades x {runs} runs")
    print(f"  rank_seconds  (train+predict) median {statistics.median(rank):.3f} s "
          f"(grades: {', '.join(f'{v:.3f}' for v in rank)})")
    print(f"  train_seconds (old clock)     median {statistics.median(train):.3f} s "
          f"(grades: {', '.join(f'{v:.3f}' for v in train)})")
    print(f"  predict share of the ranking time {statistics.median(p / r for p, r in zip(predict, rank)):.1%}; "
          f"new / old clock {statistics.median(r / t for r, t in zip(rank, train)):.3f}x")
    print(f"  tied (median intervals overlap) over {len(grades) * (len(grades) - 1) // 2} pairs: "
          f"rank {fmt(tied_rank)}, train-only {fmt(tied_train)}")
    print(f"  interval width / median: rank {statistics.median(relative_width(i, m) for i, m in zip(rank_intervals, rank)):.1%}, "
          f"train-only {statistics.median(relative_width(i, m) for i, m in zip(train_intervals, train)):.1%}")
    print(f"  accuracy {statistics.mean(g.accuracy for g in grades):.2%} mean over grades "
          f"(each on its own secret test set)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grades", type=int, default=DEFAULT_GRADES, help="grades per reference (default 10)")
    parser.add_argument("--runs", type=int, default=None, help="runs per grade (default: the spec's)")
    parser.add_argument("--exercises", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--data-dir", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    for exercise in args.exercises:
        spec = find_exercise(exercise)
        started = time.perf_counter()
        grades = []
        for index in range(args.grades):
            grades.append(grade_reference(spec, data_dir, args.runs))
            print(f"  {exercise} grade {index + 1}/{args.grades}: rank {grades[-1].rank_seconds:.3f} s, "
                  f"train {grades[-1].train_seconds:.3f} s", file=sys.stderr, flush=True)
        report(spec, grades)
        print(f"  ({time.perf_counter() - started:.0f} s of grading)")


if __name__ == "__main__":
    main()
