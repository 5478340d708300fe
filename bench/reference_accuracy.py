"""Accuracy and training time of the CPU exercises' reference notebooks, trained in-process.

    .venv/bin/python bench/reference_accuracy.py                  # digits and mnist1d, spec runs
    .venv/bin/python bench/reference_accuracy.py mnist1d --runs 10 --threads 2

Each reference runs through grader.notebook.load_solution (trusted code, no sandbox) over the
spec's number of runs with seeds 0..runs-1. The clock covers train() alone, as in the grader:
tensors are already on the device when it starts. predict() is timed separately. Prints mean
and std of test accuracy, median train and predict seconds, the hardware and torch version.
`grader reference ID` measures the same thing through the sandbox.
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

import torch  # noqa: E402

from grader import datasets  # noqa: E402
from grader.notebook import load_solution  # noqa: E402
from grader.spec import find_exercise  # noqa: E402

CPU_EXERCISES = ("digits", "mnist1d")


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(exercise_id: str, data_dir: pathlib.Path, runs: int | None) -> dict:
    spec = find_exercise(exercise_id)
    ds = datasets.load(spec.dataset, data_dir)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in
                                        (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    solution = load_solution(spec.reference_notebook)
    accuracies, train_seconds, predict_seconds = [], [], []
    for seed in range(runs or spec.runs):
        start = time.perf_counter()
        model = solution.train(x_train, y_train, seed=seed, device="cpu")
        train_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        scores = solution.predict(model, x_test)
        predict_seconds.append(time.perf_counter() - start)
        predictions = scores.argmax(1) if scores.ndim == 2 else scores
        accuracies.append((predictions == y_test).float().mean().item())
        print(f"  {exercise_id} seed {seed}: accuracy {accuracies[-1]:.4f}, "
              f"train {train_seconds[-1]:.2f} s, predict {predict_seconds[-1] * 1000:.0f} ms", flush=True)
    return dict(exercise=exercise_id, target=spec.target, runs=len(accuracies),
                mean=statistics.mean(accuracies),
                std=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                train=statistics.median(train_seconds), predict=statistics.median(predict_seconds))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                        help=f"any of {', '.join(CPU_EXERCISES)} (default: all)")
    parser.add_argument("--runs", type=int, help="runs per exercise (default: the spec's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default: %(default)s; on a shared 2-core machine "
                             "two threads ran these small models up to 15x slower whenever another "
                             "process was busy, one thread only ~1.3x slower than two on a quiet one)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=ROOT / "data",
                        help="where mnist1d is cached (default: %(default)s)")
    args = parser.parse_args(argv)
    unknown = set(args.exercises) - set(CPU_EXERCISES)
    if unknown:
        parser.error(f"not a CPU exercise: {', '.join(sorted(unknown))}")
    args.exercises = args.exercises or list(CPU_EXERCISES)
    torch.set_num_threads(args.threads)

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op thread(s), Python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        print(f"load average before: {os.getloadavg()[0]:.2f}")
    results = [measure(e, args.data_dir, args.runs) for e in args.exercises]
    print()
    print(f"{'exercise':<10} {'runs':>4} {'accuracy mean':>13} {'std':>7} {'target':>6} "
          f"{'median train s':>14} {'median predict ms':>17}")
    for r in results:
        print(f"{r['exercise']:<10} {r['runs']:>4} {r['mean']:>13.4f} {r['std']:>7.4f} {r['target']:>6.2f} "
              f"{r['train']:>14.2f} {r['predict'] * 1000:>17.1f}")
    if hasattr(os, "getloadavg"):
        print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on this machine slow the times)")
    return 0 if all(r["mean"] >= r["target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
