"""The `grader` command.

    grader grade NOTEBOOK --exercise ID [--runs N] [--json]   grade one submission
    grader reference ID [--json]                              measure the reference on this machine
    grader exercises [--json]                                 list the exercises
    grader datasets prepare ID | --all [--offline]            fetch or build a dataset (ID: dataset or exercise);
                                                              --all: every one, --offline: skip those needing a network
    grader weights prepare NAME                               download pretrained weights into the model cache

Exit status of `grade` and `reference`: 0 passed, 1 judged but not passed (the learner's
statuses), 3 infra_error or a grader problem (bad spec, missing dataset, no sandbox).
argparse uses 2 for usage errors.

The grading itself is grader/api.py; this module only parses, shows progress and prints.
"""

import argparse
import datetime
import json
import pathlib
import signal
import sys
import threading

from grader import metrics, pool, results
from grader.errors import GraderError
from grader.paths import UNSAFE_FLAG, UNSAFE_WARNING, resolve_data_dir
from grader.spec import default_exercises_dir, find_exercise, list_exercises

EXIT_PASSED, EXIT_NOT_PASSED, EXIT_INFRA = 0, 1, 3


def data_dir_from(args) -> pathlib.Path:
    return resolve_data_dir(args.data_dir)


# ---- progress ---------------------------------------------------------------------------------

class PlainProgress:
    """One line per step, on stderr: for logs, pipes and --json."""

    def __init__(self, stream=None):
        self.stream = stream

    def __call__(self, kind: str, **f) -> None:
        who = "reference " if f.get("reference") else ""
        run = f"{who}run {f['run'] + 1}" if "run" in f else who.strip()
        if kind == "phase":
            line = f"{run}: {f['text']}" if run else f["text"]
        elif kind == "run":
            line = f"{who}run {f['run'] + 1}/{f['total']} (seed {f['seed']})"
        elif kind == "run_done":
            line = (f"{run}: {_run_score(f)}, train {f['train_seconds']:.3f} s, "
                    f"predict {f['predict_seconds']:.3f} s")
        elif kind == "failed":
            line = f"{run}: {f['status']}: {f['message']}"
        else:
            return  # per-epoch reports are too chatty for plain logs
        print(line, file=self.stream or sys.stderr, flush=True)

    def close(self):
        pass


class RichProgress:
    """A live bar over the runs, with the phase and the last report(...) values."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                                 console=self.console, transient=False)
        self.progress.start()
        self.tasks = {}

    def _task(self, f, total=None):
        key = bool(f.get("reference"))
        if key not in self.tasks:
            label = "reference" if key else "submission"
            self.tasks[key] = self.progress.add_task(label, total=total, detail="")
        elif total is not None:
            self.progress.update(self.tasks[key], total=total)
        return self.tasks[key]

    def __call__(self, kind: str, **f) -> None:
        label = "reference" if f.get("reference") else "submission"
        if kind == "phase" and "run" not in f:
            self.console.print(f"[bold]{f['text']}[/]")
        elif kind == "run":
            self.progress.update(self._task(f, total=f["total"]), description=f"{label} run {f['run'] + 1}",
                                 detail="starting the sandbox")
        elif kind == "phase":
            self.progress.update(self._task(f), detail=f["text"])
        elif kind == "report":
            values = " ".join(f"{k} {v:.4g}" for k, v in list(f["values"].items())[:4])
            self.progress.update(self._task(f), detail=values)
        elif kind == "run_done":
            self.progress.advance(self._task(f))
            self.progress.update(self._task(f), detail="")
            self.console.print(f"  {label} run {f['run'] + 1}: {_run_score(f)}, "
                               f"train {f['train_seconds']:.3f} s, predict {f['predict_seconds']:.3f} s")
        elif kind == "failed":
            self.console.print(f"  [red]{label} run {f['run'] + 1}: {f['status']}[/]: {f['message']}")

    def close(self):
        self.progress.stop()


def _run_score(fields: dict) -> str:
    """'accuracy 98.10%' or 'RMSE 0.912' for a run_done event."""
    metric = metrics.get(fields.get("metric", metrics.DEFAULT_METRIC))
    score = fields.get("score", fields.get("accuracy"))
    return f"{metric.display_name} {metric.format(score)}"


def make_progress(json_output: bool):
    if not json_output and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()


# ---- output -----------------------------------------------------------------------------------

def print_result(result: results.Result, json_output: bool) -> None:
    if json_output:
        print(result.to_json())
        return
    print(f"{result.exercise}: {result.status.upper()}")
    print(f"  {result.message}")
    if result.runs:
        low, high = result.rank_interval
        metric = metrics.get(result.metric)
        print(f"  {metric.display_name} {metric.format(result.score)} ± {metric.format(result.score_std)} over "
              f"{len(result.runs)} runs; "
              f"ranking time (train+predict, median) {result.rank_seconds:.3f} s [{low:.3f}, {high:.3f}]: "
              f"train {result.train_seconds:.3f} s, predict {result.predict_seconds:.3f} s")
    if result.model_bytes is not None:  # a deployment exercise
        latency = f"{result.latency_ms:.1f} ms" if result.latency_ms is not None else "not measured"
        print(f"  deployed (a fresh process on the CPU): model {result.model_bytes / 2**20:.2f} MiB, "
              f"one item {latency} (median)"
              + (f", load() {result.load_seconds:.3f} s" if result.load_seconds is not None else ""))
    if result.reference:
        ratio = f"; speed ratio {result.speed_ratio:.2f}" if result.speed_ratio else ""
        again = " (measured again now)" if result.reference_remeasured else ""
        reference_score = result.reference.get("score", result.reference.get("accuracy"))
        print(f"  reference{again}: {metrics.get(result.metric).format(reference_score)}, ranking time "
              f"{result.reference['rank_seconds']:.3f} s (train {result.reference['train_seconds']:.3f} s){ratio}")
    for flag in result.flags:
        print(f"  FLAGGED for review, {flag['code']}: {flag['message']}")
    if result.hardware:
        print(f"  on {result.hardware.get('device_name')} ({result.hardware.get('device')}), "
              f"torch {result.hardware.get('torch')}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.plot:
        print(f"  plot: {result.plot}")
    if result.status not in (results.PASSED, results.BELOW_TARGET, results.TOO_SLOW) and result.log_tail:
        print("  last lines of the notebook's output:")
        for line in result.log_tail.splitlines()[-15:]:
            print(f"    {line}")


def exit_status(result: results.Result) -> int:
    if result.status == results.PASSED:
        return EXIT_PASSED
    return EXIT_INFRA if result.status == results.INFRA_ERROR else EXIT_NOT_PASSED


def default_plot_path(data_dir: pathlib.Path, exercise: str, tag: str) -> pathlib.Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return data_dir / "plots" / f"{exercise}-{stamp}-{tag}.png"


# ---- commands ---------------------------------------------------------------------------------

def cmd_grade(args, load_dataset) -> int:
    from grader import api
    spec = find_exercise(args.exercise, args.exercises_dir)
    data_dir = data_dir_from(args)
    if args.unsafe:
        print(UNSAFE_WARNING, file=sys.stderr)
    progress = make_progress(args.json)
    try:
        result = api.grade_submission(args.notebook, spec, data_dir=data_dir, load_dataset=load_dataset,
                                      runs=args.runs, unsafe_no_sandbox=args.unsafe, progress=progress,
                                      plot_path=None if args.no_plot else (args.plot or default_plot_path(
                                          data_dir, spec.id, pathlib.Path(args.notebook).stem[:40])))
    finally:
        progress.close()
    print_result(result, args.json)
    return exit_status(result)


def cmd_reference(args, load_dataset) -> int:
    from grader import api
    spec = find_exercise(args.exercise, args.exercises_dir)
    data_dir = data_dir_from(args)
    if args.unsafe:
        print(UNSAFE_WARNING, file=sys.stderr)
    progress = make_progress(args.json)
    try:
        result = api.measure_reference(
            spec, data_dir=data_dir, load_dataset=load_dataset, unsafe_no_sandbox=args.unsafe, progress=progress,
            plot_path=None if args.no_plot else (args.plot or default_plot_path(data_dir, spec.id, "reference")))
    finally:
        progress.close()
    print_result(result, args.json)
    return exit_status(result)


def cmd_exercises(args, load_dataset) -> int:
    specs = list_exercises(args.exercises_dir)
    if args.json:
        print(json.dumps([s.as_config() for s in specs], indent=2))
        return 0
    if not specs:
        print(f"no exercises in {args.exercises_dir or default_exercises_dir()}")
    for s in specs:
        target = f"{s.metric_info.display_name} {s.metric_info.format_target(s.target)}"
        print(f"{s.id:<14} {s.data_kind}, target {target}  {s.runs} runs on {s.device:<4}  {s.title}")
        print(f"{'':<14} {s.summary}")
    return 0


def cmd_datasets_prepare(args, load_dataset) -> int:
    from grader import datasets
    data_dir = data_dir_from(args)
    if args.all == (args.id is not None):
        print("grader datasets prepare: give one ID (a dataset or exercise id) or --all", file=sys.stderr)
        return 2
    if not args.all:
        dataset_id = args.id
        try:  # an exercise id names its dataset
            dataset_id = find_exercise(args.id, args.exercises_dir).dataset
        except GraderError:
            pass
        datasets.prepare(dataset_id, data_dir)
        print(f"dataset {dataset_id!r} is ready under {data_dir}")
        return 0
    # --all: every dataset, each on its own: one that fails (no network here, a bad checksum)
    # is reported and the rest still get prepared.
    failed = 0
    for dataset_id in datasets.DATASET_IDS:
        if args.offline and datasets.needs_network(dataset_id):
            print(f"{dataset_id:<16} skipped (needs a network; run without --offline where there is one)")
            continue
        try:
            datasets.prepare(dataset_id, data_dir)
        except Exception as e:  # noqa: BLE001 - reported per dataset, the exit status says it failed
            failed += 1
            print(f"{dataset_id:<16} FAILED: {type(e).__name__}: {e}")
        else:
            print(f"{dataset_id:<16} ready")
    print(f"under {data_dir}: {len(datasets.DATASET_IDS) - failed} of {len(datasets.DATASET_IDS)} handled, "
          f"{failed} failed")
    return EXIT_INFRA if failed else 0


def cmd_weights_prepare(args, load_dataset) -> int:
    from grader import weights
    data_dir = data_dir_from(args)
    path = weights.prepare(args.name, data_dir)
    print(f"weights {args.name!r} are ready at {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Grade fast.ai study-group notebooks in a sandbox.")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p, *, judged: bool):
        p.add_argument("--exercises-dir", type=pathlib.Path, default=None,
                       help="where exercises/<id>/spec.toml live (default: the repository's exercises/)")
        p.add_argument("--data-dir", type=pathlib.Path, default=None,
                       help="datasets, cached references and plots (default: $GRADER_DATA_DIR or ~/.cache/studybot-grader)")
        if judged:
            p.add_argument("--json", action="store_true", help="print the result as JSON only")
            p.add_argument("--plot", type=pathlib.Path, default=None, help="where to write the PNG")
            p.add_argument("--no-plot", action="store_true", help="do not draw a PNG")
            p.add_argument(UNSAFE_FLAG, dest="unsafe", action="store_true",
                           help="run WITHOUT the sandbox: trusted code on a development machine only")

    p = commands.add_parser("grade", help="grade one notebook")
    p.add_argument("notebook", type=pathlib.Path)
    p.add_argument("--exercise", required=True, help="exercise id, e.g. digits")
    p.add_argument("--runs", type=int, default=None, help="timed runs (default: the exercise's)")
    common(p, judged=True)
    p.set_defaults(handler=cmd_grade)

    p = commands.add_parser("reference", help="measure an exercise's reference notebook on this machine")
    p.add_argument("exercise")
    common(p, judged=True)
    p.set_defaults(handler=cmd_reference)

    p = commands.add_parser("exercises", help="list the exercises")
    p.add_argument("--json", action="store_true")
    p.add_argument("--exercises-dir", type=pathlib.Path, default=None)
    p.set_defaults(handler=cmd_exercises)

    p = commands.add_parser("datasets", help="manage datasets")
    datasets_commands = p.add_subparsers(dest="datasets_command", required=True)
    p = datasets_commands.add_parser("prepare", help="fetch or build a dataset (by dataset or exercise id)")
    p.add_argument("id", nargs="?", default=None)
    p.add_argument("--all", action="store_true", help="prepare every dataset, each on its own")
    p.add_argument("--offline", action="store_true", help="with --all: skip the datasets that need a download")
    common(p, judged=False)
    p.set_defaults(handler=cmd_datasets_prepare)

    p = commands.add_parser("weights", help="manage the pretrained-weights cache")
    weights_commands = p.add_subparsers(dest="weights_command", required=True)
    p = weights_commands.add_parser("prepare", help="download a model's pretrained weights (needs a network), "
                                                    "e.g. resnet18")
    p.add_argument("name")
    common(p, judged=False)
    p.set_defaults(handler=cmd_weights_prepare)
    return parser


def main(argv=None, *, load_dataset=None) -> int:
    """Entry point. `load_dataset` replaces grader.datasets.load (tests use synthetic data)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "runs", None) is not None and args.runs < 1:
        print("grader: --runs must be at least 1", file=sys.stderr)
        return 2
    previous = _drain_pools_on_sigterm()
    try:
        return args.handler(args, load_dataset)
    except GraderError as e:
        if getattr(args, "json", False) and args.command in ("grade", "reference"):
            exercise = getattr(args, "exercise", None) or ""
            print(results.Result(exercise=exercise, status=results.INFRA_ERROR, message=str(e)).to_json())
        else:
            print(f"grader: {e}", file=sys.stderr)
        return EXIT_INFRA
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _drain_pools_on_sigterm():
    """SIGTERM ends a grade through the normal exit, which kills the waiting sandboxes
    (grader/pool.py); returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    pool.drain_on_sigterm()
    return previous


if __name__ == "__main__":
    sys.exit(main())
