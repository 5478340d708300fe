"""What the sandbox costs per run: `grader grade` on an exercise's reference against the same
runs done in a plain in-process script, with the warm sandbox pool off and on, side by side.

    .venv/bin/python bench/grader_overhead.py                      # digits, the spec's runs
    .venv/bin/python bench/grader_overhead.py --exercise mnist1d --repeats 3
    .venv/bin/python bench/grader_overhead.py --modes off,serial,fork,idle

Each side is timed as a whole process with the same wall clock, from exec to exit:

    grader     `grader grade exercises/<id>/reference.ipynb --exercise <id> --json --no-plot`,
               with the reference already cached (it is measured first, untimed, if missing),
               under GRADER_POOL_SIZE / GRADER_POOL_OVERLAP per mode (grader/pool.py):
                 off     no pool: each run starts its sandbox on demand (the old path)
                 serial  pool, the next sandbox starts once the previous run has finished (default)
                 idle    pool, the next sandbox starts at once under SCHED_IDLE (root only)
                 fork    pool as serial, each runner forked from a zygote that imported torch
                         once (grader/zygote.py; the default for CPU sandboxes)
               off, serial and idle start every runner fresh (GRADER_SANDBOX_START=fresh).
    in-process this file with --plain: import torch, load the dataset, load_solution() the
               reference (no sandbox), then the same seeds on the same data, train + predict +
               accuracy, as grader.grading does, minus the sandbox and the protocol.

With --worker it measures instead what the bot's worker sees: from the moment a claimed job is
handed to the worker's grading process (studybot/worker/child.py, started as the worker starts
it) to its result message, per mode, for a worker's first job (the process just started) and
for the next ones (torch loaded; from the exercise's third job on, a sandbox already warm:
grader/pool.py GRADES_BEFORE_KEEPING_WARM); the database's claim and record add milliseconds.

The figure is overhead per run = (wall - sum train - sum predict) / runs, for each side, with
the train and predict times each side measured itself; the grader's minus the in-process one
is what the sandbox costs. Repeats interleave the modes, so a noisy machine hits them alike.
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
        started = time.perf_counter()
        output = solution.predict(model, x_test)
        synchronize()
        predict_seconds = time.perf_counter() - started
        predictions = output.argmax(1) if output.ndim == 2 else output
        accuracy = float((predictions.cpu().numpy() == data.y_test).mean())
        runs.append({"seed": seed, "accuracy": accuracy, "train_seconds": train_seconds,
                     "predict_seconds": predict_seconds})
    print(json.dumps({"runs": runs}))


MODES = {"off": {"GRADER_POOL_SIZE": "0", "GRADER_SANDBOX_START": "fresh"},
         "serial": {"GRADER_POOL_SIZE": "1", "GRADER_POOL_OVERLAP": "serial", "GRADER_SANDBOX_START": "fresh"},
         "idle": {"GRADER_POOL_SIZE": "1", "GRADER_POOL_OVERLAP": "idle", "GRADER_SANDBOX_START": "fresh"},
         "fork": {"GRADER_POOL_SIZE": "1", "GRADER_POOL_OVERLAP": "serial", "GRADER_SANDBOX_START": "fork"}}


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def overhead_per_run(wall: float, runs: list[dict]) -> float:
    """(wall - sum train - sum predict) / runs: what each run cost beyond the learner's own work."""
    return (wall - sum(r["train_seconds"] + r["predict_seconds"] for r in runs)) / len(runs)


def claim_to_result(exercise: str, mode: str, jobs: int = 2) -> tuple[list[float], dict]:
    """Seconds from handing a claimed job to the worker's grading process (studybot/worker/child.py,
    started exactly as the worker starts it) to its result, for `jobs` jobs in a row through one
    process: the first as a worker that has just started (the process was started with it, so
    its imports overlap nothing here), the next ones as a worker that has graded before. The
    environment carries the pool mode into the process."""
    sys.path.insert(0, str(ROOT))
    from studybot.worker.child import GradingChild
    import tempfile
    os.environ.update(MODES[mode])
    seconds, result = [], None
    with tempfile.TemporaryDirectory() as workdir:
        setup = {"exercises_dir": None, "data_dir": None, "unsafe": False, "load_dataset": None,
                 "sys_path": sys.path, "parent": os.getpid(), "keep_warm": True, "jobs": None}
        started = time.perf_counter()
        child = GradingChild(setup)
        for number in range(1, jobs + 1):
            child.grade({"id": number, "notebook": str(ROOT / "exercises" / exercise / "reference.ipynb"),
                         "exercise_id": exercise, "runs": None, "check": False,
                         "plot": str(pathlib.Path(workdir) / "plot.png")})
            while True:
                message = child.next_message(timeout=0.2)
                if message is not None and message.get("type") in ("result", "error"):
                    if message["type"] == "error":
                        sys.exit(f"the grading process failed: {message.get('message')}")
                    seconds.append(time.perf_counter() - started)
                    result = message["result"]
                    break
                if child.exited:
                    sys.exit(f"the grading process died ({child.exit_description()})")
            started = time.perf_counter()
        child.close()
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercise", default="digits")
    parser.add_argument("--repeats", type=int, default=1, help="measure each side this many times")
    parser.add_argument("--modes", default="off,serial,fork", help=f"pool modes to compare, of {','.join(MODES)}")
    parser.add_argument("--worker", action="store_true",
                        help="time claim-to-result through the worker's grading process instead")
    parser.add_argument("--jobs", type=int, default=3, help="with --worker: jobs in a row through one process")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(args.exercise, [int(s) for s in args.seeds.split(",")])
        return

    modes = args.modes.split(",")
    notebook = ROOT / "exercises" / args.exercise / "reference.ipynb"
    print(f"caching the {args.exercise} reference on this machine (untimed) ...", file=sys.stderr)
    subprocess.run([str(GRADER), "reference", args.exercise, "--no-plot", "--json"], cwd=ROOT,
                   capture_output=True, check=False)
    if args.worker:
        jobs = {mode: [] for mode in modes}   # per repeat: seconds of job 1, 2, ... through one grading process
        for _ in range(args.repeats):
            for mode in modes:  # each in a fresh process, so no pool survives from one to the next
                seconds, out = timed([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                                      f"from bench.grader_overhead import claim_to_result; import json; "
                                      f"print(json.dumps(claim_to_result({args.exercise!r}, {mode!r}, {args.jobs})))"])
                jobs[mode].append(json.loads(out.strip().splitlines()[-1])[0])
        print(f"{args.exercise}: claim to result through the worker's grading process, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}, median of {args.repeats} interleaved repeat(s); job 1 is a worker's "
              "first (the process just started), from job 3 on a sandbox is kept warm between jobs")
        print(f"  {'mode':<7} " + " ".join(f"{f'job {n}':>9}" for n in range(1, args.jobs + 1)))
        for mode in modes:
            medians = [statistics.median(repeat[n] for repeat in jobs[mode]) for n in range(args.jobs)]
            print(f"  {mode:<7} " + " ".join(f"{m:7.2f} s" for m in medians) + "   (each: "
                  + "; ".join("/".join(f"{s:.1f}" for s in repeat) for repeat in jobs[mode]) + ")")
        return
    measured = {mode: [] for mode in modes + ["in-process"]}  # per repeat: (wall, overhead per run, median train)
    waits = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        for mode in modes:
            seconds, out = timed([str(GRADER), "grade", str(notebook), "--exercise", args.exercise, "--json",
                                  "--no-plot"], env=MODES[mode])
            result = json.loads(out)
            if result["status"] not in ("passed", "below_target", "too_slow"):
                sys.exit(f"grader ({mode}): {result['status']}: {result['message']}")
            runs = result["runs"]
            measured[mode].append((seconds, overhead_per_run(seconds, runs), result["train_seconds"]))
            waits[mode] += [r.get("sandbox_wait_seconds") or 0.0 for r in runs]
        seeds = ",".join(str(s) for s in result["config"]["seeds"])
        seconds, out = timed([sys.executable, __file__, "--plain", "--exercise", args.exercise, "--seeds", seeds])
        runs = json.loads(out)["runs"]
        measured["in-process"].append((seconds, overhead_per_run(seconds, runs),
                                       statistics.median(r["train_seconds"] for r in runs)))

    def median(mode, index):
        return statistics.median(m[index] for m in measured[mode])
    print(f"{args.exercise}: {len(result['runs'])} runs on {result['hardware']['device_name']} "
          f"({result['hardware']['device']}), torch {result['hardware']['torch']}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, median of {args.repeats} interleaved repeat(s)")
    base = median("in-process", 1)
    print(f"  {'side':<11} {'wall s':>8} {'overhead/run s':>15} {'minus in-process':>17} {'median train s':>15} "
          f"{'median wait s':>14}")
    for mode in ["in-process"] + modes:
        wait = f"{statistics.median(waits[mode]):14.2f}" if mode in waits else f"{'':14}"
        print(f"  {mode:<11} {median(mode, 0):8.2f} {median(mode, 1):15.2f} {median(mode, 1) - base:+17.2f} "
              f"{median(mode, 2):15.3f} {wait}")
    if "off" in modes:
        for mode in modes:
            if mode != "off":
                print(f"  {mode} against off: wall {median(mode, 0) / median('off', 0):.2f}x, sandbox overhead per run "
                      f"{(median(mode, 1) - base) / max(median('off', 1) - base, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
