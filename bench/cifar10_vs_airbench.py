"""Time the cifar10-94 reference against airbench94 on the same GPU and the same data.

    git clone https://github.com/KellerJordan/cifar10-airbench /tmp/airbench   # fetched by you,
    .venv/bin/python bench/cifar10_vs_airbench.py --airbench /tmp/airbench     # never vendored

DATA: synthetic. CIFAR-10 cannot be downloaded on the project's machines, so both trainers get
the same random uint8 images of CIFAR-10's shape (50,000 train, 10,000 test, 32x32x3) and
random labels. Their work per run, and so their time, is the same as on the real data;
their accuracies are meaningless (about 10%) and are not reported.

What is timed, per run, interleaved (ours, airbench, ours, airbench, ...) after one untimed
warm-up of each:
- ours: train() + predict() on tensors already on the GPU, wall clock between
  torch.cuda.synchronize() calls, as the grader does. That covers normalization, whitening
  init, training, and TTA inference on the 10,000 test images.
- airbench94: the total_time_seconds it prints for itself: CUDA events around whitening init,
  each epoch's training and the final TTA evaluation. That leaves out its per-epoch plain
  evaluation and its data loading. Its wall clock around main() (including those) is shown too.
The ratio is median(ours) / median(airbench self-timed): below 1 means ours is faster.

--airbench takes the repository directory (airbench94.py at its root, or legacy/airbench94.py)
or the path of the script itself. The script must have airbench94's `main(run)`, which trains
one run and prints a table whose last row has epoch "eval" and total_time_seconds last.
"""

import argparse
import contextlib
import importlib.util
import io
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grader.notebook import load_solution  # noqa: E402

REFERENCE = ROOT / "exercises" / "cifar10-94" / "reference.ipynb"
N_TRAIN, N_TEST = 50_000, 10_000
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synthetic_cifar(seed: int):
    """Random uint8 images of CIFAR-10's shape and random labels, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    x_train = torch.randint(0, 256, (N_TRAIN, 32, 32, 3), dtype=torch.uint8, generator=g)
    y_train = torch.randint(0, 10, (N_TRAIN,), generator=g)
    x_test = torch.randint(0, 256, (N_TEST, 32, 32, 3), dtype=torch.uint8, generator=g)
    y_test = torch.randint(0, 10, (N_TEST,), generator=g)
    return x_train, y_train, x_test, y_test


def find_airbench_script(path: pathlib.Path) -> pathlib.Path:
    if path.is_file():
        return path
    for candidate in (path / "airbench94.py", path / "legacy" / "airbench94.py"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no airbench94.py in {path} or {path / 'legacy'}; pass the script's path")


class Airbench:
    """airbench94 imported from its own file, run in a directory holding the synthetic data in
    its cache format (cifar10/train.pt and test.pt), so its loader never downloads."""

    def __init__(self, script: pathlib.Path, workdir: pathlib.Path, data):
        x_train, y_train, x_test, y_test = data
        (workdir / "cifar10").mkdir(parents=True, exist_ok=True)
        torch.save({"images": x_train, "labels": y_train, "classes": CLASSES}, workdir / "cifar10" / "train.pt")
        torch.save({"images": x_test, "labels": y_test, "classes": CLASSES}, workdir / "cifar10" / "test.pt")
        self.workdir = workdir
        spec = importlib.util.spec_from_file_location("airbench94_under_test", script)
        self.module = importlib.util.module_from_spec(spec)
        with self.inside():
            spec.loader.exec_module(self.module)

    @contextlib.contextmanager
    def inside(self):
        before = os.getcwd()
        os.chdir(self.workdir)
        try:
            yield
        finally:
            os.chdir(before)

    def run(self, run) -> tuple[float | None, float]:
        """(self-reported seconds or None if its table could not be read, wall seconds)."""
        out = io.StringIO()
        with self.inside(), contextlib.redirect_stdout(out):
            torch.cuda.synchronize()
            start = time.perf_counter()
            self.module.main(run)
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
        return self_reported_seconds(out.getvalue()), wall


def self_reported_seconds(table: str) -> float | None:
    for line in reversed(table.splitlines()):
        columns = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(columns) > 2 and "eval" in columns:
            try:
                return float(columns[-1])
            except ValueError:
                return None
    return None


def time_ours(solution, x_train, y_train, x_test, seed: int) -> tuple[float, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    model = solution.train(x_train, y_train, seed=seed, device="cuda")
    torch.cuda.synchronize()
    trained = time.perf_counter()
    solution.predict(model, x_test)
    torch.cuda.synchronize()
    return trained - start, time.perf_counter() - trained


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airbench", type=pathlib.Path, required=True,
                        help="the cifar10-airbench checkout, or its airbench94.py")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU: both trainers are GPU-only at full size", file=sys.stderr)
        return 2

    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"DATA: SYNTHETIC random uint8 images of CIFAR-10's shape ({N_TRAIN:,} train, {N_TEST:,} test) "
          "with random labels; times are comparable, accuracies are meaningless and not shown")
    data = synthetic_cifar(args.seed)
    x_train, y_train, x_test, _ = (t.cuda() for t in data)
    ours = load_solution(REFERENCE)
    script = find_airbench_script(args.airbench)
    print(f"airbench: {script}")

    with tempfile.TemporaryDirectory(prefix="airbench-synthetic-") as workdir:
        airbench = Airbench(script, pathlib.Path(workdir), data)
        print("warm-up (untimed): ours, then airbench ('warmup' run)", flush=True)
        time_ours(ours, x_train, y_train, x_test, seed=10_000)
        airbench.run("warmup")

        ours_train, ours_predict, ab_self, ab_wall = [], [], [], []
        for i in range(args.runs):
            train_s, predict_s = time_ours(ours, x_train, y_train, x_test, seed=i)
            ours_train.append(train_s)
            ours_predict.append(predict_s)
            self_s, wall_s = airbench.run(i)
            ab_wall.append(wall_s)
            if self_s is not None:
                ab_self.append(self_s)
            print(f"run {i}: ours train {train_s:.3f} s + predict {predict_s:.3f} s = {train_s + predict_s:.3f} s | "
                  f"airbench94 self-timed {self_s if self_s is None else f'{self_s:.3f} s'}, wall {wall_s:.3f} s",
                  flush=True)

    ours_total = statistics.median(t + p for t, p in zip(ours_train, ours_predict))
    print()
    print(f"median ours: train {statistics.median(ours_train):.3f} s, predict {statistics.median(ours_predict):.3f} s, "
          f"train+predict {ours_total:.3f} s")
    print(f"median airbench94: wall {statistics.median(ab_wall):.3f} s (includes its data loading and "
          "per-epoch evaluation)")
    if ab_self:
        reference = statistics.median(ab_self)
        print(f"median airbench94 self-timed: {reference:.3f} s (whitening + training + TTA eval)")
    else:
        reference = statistics.median(ab_wall)
        print("could not read airbench94's total_time_seconds; comparing against its wall clock")
    print(f"ratio ours / airbench94: {ours_total / reference:.2f} (n={args.runs}, synthetic data, same GPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
