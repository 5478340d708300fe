"""What the sandbox costs: `grader grade` on the digits reference against the same runs done in
a plain in-process script.

    .venv/bin/python bench/grader_overhead.py                 # digits, the spec's runs
    .venv/bin/python bench/grader_overhead.py --exercise mnist1d --repeats 3

Both sides are timed as whole processes with the same wall clock, from exec to exit:

    grader     `grader grade exercises/<id>/reference.ipynb --exercise <id> --json --no-plot`,
               with the reference already cached (it is measured first, untimed, if missing):
               one fresh bubblewrap sandbox per run, the grader's clock, scoring outside.
    in-process this file with --plain: import torch, load the dataset, load_solution() the
               reference (no sandbox), then the same seeds on the same data, train + predict +
               accuracy, as grader.grading does, minus the sandbox and the protocol.

Prints absolute seconds, the ratio, and the median train() time each side measured, so the
overhead (process starts, torch imports per run, warm-ups, data hand-over) is visible
separately from any effect on the timed section itself.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRADER = pathlib.Path(sys.executable).with_name("grader")


def plain(exercise: str, seeds: list[int]) -> None:
    """The in-process side: prints one JSON line with per-run accuracy and train seconds."""
    sys.path.insert(0, str(ROOT))
    import random

    import numpy as np
    import torch

    from grader import datasets
    from grader.notebook import load_solution
    from grader.paths import resolve_data_dir
    from grader.spec import find_exercise

    spec = find_exercise(exercise)
    data_dir = resolve_data_dir()
    data = datasets.load(spec.dataset, data_dir)
    solution = load_solution(spec.reference_notebook)
    device = "cuda" if spec.device == "cuda" and torch.cuda.is_available() else "cpu"
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    runs = []
    for seed in seeds:
        x, y, x_test = (torch.from_numpy(a).to(device) for a in (data.x_train, data.y_train, data.x_test))
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        synchronize()
        started = time.perf_counter()
        model = solution.train(x, y, seed=seed, device=device, report=lambda **values: None)
        synchronize()
        train_seconds = time.perf_counter() - started
        output = solution.predict(model, x_test)
        predictions = output.argmax(1) if output.ndim == 2 else output
        accuracy = float((predictions.cpu().numpy() == data.y_test).mean())
        runs.append({"seed": seed, "accuracy": accuracy, "train_seconds": train_seconds})
    print(json.dumps({"runs": runs}))


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercise", default="digits")
    parser.add_argument("--repeats", type=int, default=1, help="measure each side this many times")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(args.exercise, [int(s) for s in args.seeds.split(",")])
        return

    notebook = ROOT / "exercises" / args.exercise / "reference.ipynb"
    print(f"caching the {args.exercise} reference on this machine (untimed) ...", file=sys.stderr)
    subprocess.run([str(GRADER), "reference", args.exercise, "--no-plot", "--json"], cwd=ROOT,
                   capture_output=True, check=False)
    grader_seconds, plain_seconds, grader_train, plain_train = [], [], [], []
    for _ in range(args.repeats):
        seconds, out = timed([str(GRADER), "grade", str(notebook), "--exercise", args.exercise, "--json", "--no-plot"])
        result = json.loads(out)
        if result["status"] not in ("passed", "below_target", "too_slow"):
            sys.exit(f"grader: {result['status']}: {result['message']}")
        grader_seconds.append(seconds)
        grader_train.append(result["train_seconds"])
        seeds = ",".join(str(s) for s in result["config"]["seeds"])
        seconds, out = timed([sys.executable, __file__, "--plain", "--exercise", args.exercise, "--seeds", seeds])
        plain_seconds.append(seconds)
        plain_train.append(statistics.median(r["train_seconds"] for r in json.loads(out)["runs"]))

    runs = len(result["runs"])
    g, p = statistics.median(grader_seconds), statistics.median(plain_seconds)
    print(f"{args.exercise}: {runs} runs on {result['hardware']['device_name']} ({result['hardware']['device']}), "
          f"torch {result['hardware']['torch']}, {os.cpu_count()} CPUs, median of {args.repeats} repeat(s)")
    print(f"  grader grade (sandbox, fresh process per run): {g:7.2f} s wall   median train() {statistics.median(grader_train):.3f} s")
    print(f"  plain in-process script, same seeds and data:  {p:7.2f} s wall   median train() {statistics.median(plain_train):.3f} s")
    print(f"  overhead: {g - p:+.2f} s, ratio {g / p:.2f}x  ({(g - p) / runs:.2f} s per run)")


if __name__ == "__main__":
    main()
