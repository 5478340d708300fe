"""Grade a notebook: run it in the sandbox, time it from outside, score it, judge it against
the reference it is given (the caller resolves it first: grader/api.py loads it from the cache
or measures it by grading the reference notebook through this same path).

One timed run, in its own fresh sandbox (so nothing a run caches in memory or on disk can
help the next one):

    1. take a started sandbox from the warm pool (grader/pool.py: bwrap, the runner, torch,
       the device, started ahead with no code and no data) and hand it the code  (off the clock)
    2. `load`: the exported code is executed and its train/predict checked       (off the clock)
    3. `warmup` (if the spec allows): train+predict on random noise of the real
       shapes with random labels, capped at spec.warmup_cap_seconds    (off the clock, recorded)
    4. the train clock starts; then x_train, y_train appear in /sandbox/data;
       `train` ... `done`: the runner puts them on the device, seeds, calls
       train(), then a device-wide synchronize                                  TRAIN CLOCK
    5. at once: x_test appears; `predict` ... `done`: x_test to the device,
       predict(), synchronize, write predictions.npy                          PREDICT CLOCK
    6. the grader reads predictions.npy at once (before the runner may exit),
       validates and scores it against the test labels, which never leave
       this process

Both clocks are time.perf_counter() in this process; the train clock starts before the data is
revealed, and each stops the moment the reader thread receives `done` with the nonce sent in
that command. Nothing the sandbox says about time is used. Steps 4 and 5 are back to back: a
run's rank_seconds = train_seconds + predict_seconds is one continuous span covering all
learner work on real data, so a forged early `done`, or training moved into predict(), only
moves time between the two, and the ranking time (rank_seconds) still holds it. predict() is
also held to a limit relative to the reference's predict time (predict_limit).

A deployment exercise (spec.deploy) splits the run into two sandboxes. Step 4 ends with
export(model, path) into a size-capped folder and the runner packing it, all before `done`
(export is on the train clock); the grader then kills that sandbox and unpacks the export
(regular files and folders only; their total size is the run's model_bytes). Step 5 happens in
a FRESH sandbox on the CPU, started only now, that has never seen the training data or the
training process's memory: the predict clock starts when the export (read-only) and x_test
appear in it, and covers load(path), the latency probe (predict() on latency_items single test
items, each round trip timed here; their median is latency_ms) and predict() on the whole test
set. There is still no off-clock window with real data: between the clocks no process exists
that could see the export.
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import math
import posixpath
import os
import pathlib
import platform
import secrets
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import tarfile
import tempfile
import time
import traceback

import numpy as np

from grader import kinds, metrics, results, review, weights
from grader.errors import DatasetMissing, GraderError, InfraError, InvalidNotebook
from grader.notebook import extract_exports
from grader.sandbox import GPU_INDEX, JobPaths, Sandbox, SandboxConfig, check_available
from grader import pool as sandbox_pool
from grader import sandbox as sandbox_module

# ---- tunables -------------------------------------------------------------------------------
STARTUP_TIMEOUT_SECONDS = 180.0   # sandbox start + `import torch` + device init + exec of the exports
TOO_SLOW_GRACE_SECONDS = 1.0      # added to too_slow_factor x reference rank time, so sub-second
                                  # references do not fail learners on process jitter
PREDICT_FACTOR = 20.0             # predict() may take this many times the reference's median predict
PREDICT_GRACE_SECONDS = 1.0       # ... plus this (s; covers process jitter on a millisecond predict),
                                  # never more than the spec's predict_budget_seconds. predict() only
                                  # has to run a trained model: more means training hidden in it
NVIDIA_SMI_TIMEOUT_SECONDS = 5.0  # per nvidia-smi query for the run records; a hung driver must not
                                  # hold up a grade (the answer is then None)
SEED_BITS = 31                    # seeds are grader-chosen, uniformly in [0, 2**31)
EXPORT_CAP_FACTOR = 2             # deploy: export()'s folder holds this many times [deploy] export_max_mb, so an
                                  # export a little over the limit is still measured and named; past it the
                                  # write fails (ENOSPC)
MAX_EXPORT_FILES = 1000           # deploy: files and folders an export may hold
EXPORT_PACK_OVERHEAD_BYTES = 4096  # deploy: tar headers per file or folder, on top of the files' bytes
PREIMPORTABLE = ("fastai", "pandas", "sklearn", "timm", "torchvision")  # course libraries a waiting sandbox
                                  # imports ahead when the exercise's reference imports them (off every clock)


@dataclasses.dataclass
class RunFailed(Exception):
    """A run stopped early; `status` is a results status, `message` the hint for the learner.
    `exited` marks a sandbox that died without saying why: its exit status explains it."""
    status: str
    message: str
    exited: bool = False


@dataclasses.dataclass
class Measurement:
    """What the runs of one notebook produced."""
    runs: list                   # results.RunRecord for each completed run
    failure: RunFailed | None    # why the runs stopped early, if they did
    log_tail: str
    sandbox_info: dict           # what the runner reported at startup (torch, device name)
    failure_has_record: bool = False  # the failed run completed and is the last of `runs` (deploy: size)


@dataclasses.dataclass(frozen=True)
class Reference:
    """What a submission is compared with, resolved before grading starts (grader/api.py loads
    it from the cache or measures it). grade() itself never measures a reference."""
    summary: dict | None        # {accuracy, train_seconds, ...}; None: no comparison (the reference itself)
    failure: str | None = None  # why it could not be measured here: the grade is then an infra_error
    notes: tuple = ()           # for the result's notes, e.g. that it was measured just now


NO_REFERENCE = Reference(summary=None)


def no_progress(kind: str, **fields) -> None:
    """The progress callback that shows nothing."""


# ---- hardware --------------------------------------------------------------------------------

def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name(index: int) -> str | None:
    """The assigned GPU's name from nvidia-smi (trusted, outside the sandbox), or None."""
    if not os.path.exists("/dev/nvidiactl") or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    name = out.stdout.strip()
    return name if out.returncode == 0 and name else None


def gpu_state(index: int) -> dict | None:
    """{name, driver, sm_clock_mhz, temperature_c} of the assigned GPU from nvidia-smi, or None
    when there is none, it is slow, or it says something unexpected. Never raises."""
    if not os.path.exists("/dev/nvidiactl") or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=name,driver_version,clocks.sm,temperature.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=NVIDIA_SMI_TIMEOUT_SECONDS)
        name, driver, clock, temperature = [field.strip() for field in out.stdout.strip().split(",")]
        return {"name": name, "driver": driver, "sm_clock_mhz": _number(clock), "temperature_c": _number(temperature)}
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]"


def load_average() -> float | None:
    """The 1-minute load average now (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def detect_hardware(preferred_device: str) -> tuple[dict, list[str]]:
    """Where runs will happen: the spec's device if this machine has it, else CPU with a note."""
    notes = []
    device, device_name = "cpu", _cpu_name()
    if preferred_device == "cuda":
        gpu = _gpu_name(GPU_INDEX)
        if gpu:
            device, device_name = "cuda", gpu
        else:
            notes.append("the exercise prefers CUDA but this machine has no usable GPU: ran on CPU")
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    hardware = {
        "device": device,
        "device_name": device_name,
        "torch": torch_version,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load_average(),
        "gpu": gpu_state(GPU_INDEX) if device == "cuda" else None,
    }
    return hardware, notes


# ---- data ------------------------------------------------------------------------------------

def _noise_like(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random values with the array's shape, dtype and rough range: warm-up data that carries
    no information about the real data, so nothing useful can be precomputed off the clock."""
    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        return rng.integers(low, high + 1, size=array.shape).astype(array.dtype)
    sample = array.reshape(-1)[:: max(1, array.size // 100_000)].astype(np.float64)
    noise = rng.standard_normal(array.shape, dtype=np.float32) * float(sample.std()) + float(sample.mean())
    return noise.astype(array.dtype)


def _write_array(path: pathlib.Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    os.chmod(path, 0o644)


def _prepare_arrays(directory: pathlib.Path, dataset, warmup: bool, kind: str = kinds.IMAGE_TENSORS) -> kinds.Prepared:
    """Write everything a sandbox may see, once per grade; runs hard-link files into their own
    data directory at the moment each is allowed to appear. Test labels are never written."""
    directory.mkdir(mode=0o755)
    if kind != kinds.IMAGE_TENSORS:
        return kinds.prepare(kind, directory, dataset)
    _write_array(directory / "x_train.npy", dataset.x_train)
    _write_array(directory / "y_train.npy", dataset.y_train)
    _write_array(directory / "x_test.npy", dataset.x_test)
    num_classes = int(getattr(dataset, "num_classes", 0) or 0)
    if warmup:
        rng = np.random.default_rng(secrets.randbits(64))
        _write_array(directory / "warmup_x_train.npy", _noise_like(dataset.x_train, rng))
        if num_classes and dataset.y_train.dtype.kind in "iu":
            labels = rng.integers(0, num_classes, size=dataset.y_train.shape).astype(dataset.y_train.dtype)
        else:  # regression targets: noise of their range
            labels = _noise_like(dataset.y_train, rng)
        _write_array(directory / "warmup_y_train.npy", labels)
        _write_array(directory / "warmup_x_test.npy", _noise_like(dataset.x_test, rng))
    return kinds.Prepared(np.asarray(dataset.y_test), len(dataset.y_test), num_classes,
                          ("x_train.npy", "y_train.npy"), ("x_test.npy",))


def test_size_of(spec, dataset) -> int:
    """How many test items the dataset has, for any data kind."""
    kind = spec.data_kind
    if kind == kinds.IMAGE_TENSORS:
        return len(dataset.y_test)
    if kind in (kinds.TABULAR, kinds.RATINGS):
        return len(dataset.test)
    if kind == kinds.TEXT:
        return len(dataset.test_labels)
    return len(dataset.test_images)


def _reveal(arrays: pathlib.Path, job: JobPaths, *names: str) -> None:
    for name in names:
        os.link(arrays / f"{name}.npy", job.data / f"{name}.npy")


# ---- predictions -----------------------------------------------------------------------------

def read_predictions(path: pathlib.Path, n: int, num_classes: int, *, prepared: kinds.Prepared | None = None,
                     kind: str = kinds.IMAGE_TENSORS, metric: metrics.Metric | None = None) -> np.ndarray:
    """Load predictions.npy written by the sandbox without trusting it: no symlinks, no pickles,
    a size cap, then the shape/dtype/value checks. Returns predicted class indices (image
    tensors, label metrics), or the 1-D labels or values the metric scores."""
    metric = metric or metrics.get(metrics.DEFAULT_METRIC)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise RunFailed(results.BAD_OUTPUT, f"no predictions were written ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        size_cap = kinds.prediction_size_cap(prepared) if prepared is not None else n * max(num_classes, 1) * 8 + 4096
        if not stat.S_ISREG(info.st_mode):
            raise RunFailed(results.BAD_OUTPUT, "the predictions are not a regular file")
        if info.st_size > size_cap:
            raise RunFailed(results.BAD_OUTPUT,
                            f"the predictions file is {info.st_size} bytes, larger than any valid "
                            f"({n}, {num_classes}) array")
        data = f.read(size_cap + 1)
    try:
        predictions = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RunFailed(results.BAD_OUTPUT, f"the predictions are not a valid array ({e})") from None
    if kind == kinds.IMAGE_TENSORS and metric.output == metrics.LABELS:
        return validate_predictions(predictions, n, num_classes)
    try:
        return kinds.check_predictions(kind, metric, predictions, prepared)
    except kinds.BadOutput as e:
        raise RunFailed(results.BAD_OUTPUT, str(e)) from None


def validate_predictions(predictions: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    shape_hint = f"expected class indices of shape ({n},) or scores of shape ({n}, {num_classes})"
    kind = predictions.dtype.kind
    if predictions.ndim == 1:
        if predictions.shape[0] != n:
            raise RunFailed(results.BAD_OUTPUT, f"predict returned shape {tuple(predictions.shape)}; {shape_hint}")
        if kind not in "iu":
            raise RunFailed(results.BAD_OUTPUT,
                            f"1-D predictions must be integer class indices, not {predictions.dtype}; "
                            "return scores.argmax(1) or the (N, num_classes) scores themselves")
        if predictions.min(initial=0) < 0 or predictions.max(initial=0) >= num_classes:
            raise RunFailed(results.BAD_OUTPUT, f"class indices must lie in [0, {num_classes})")
        return predictions.astype(np.int64)
    if predictions.ndim == 2:
        if predictions.shape != (n, num_classes):
            raise RunFailed(results.BAD_OUTPUT, f"predict returned shape {tuple(predictions.shape)}; {shape_hint}")
        if kind not in "iuf":
            raise RunFailed(results.BAD_OUTPUT, f"scores must be numbers, not {predictions.dtype}")
        if kind == "f" and not np.isfinite(predictions).all():
            raise RunFailed(results.BAD_OUTPUT,
                            "the scores contain NaN or infinity; check for a diverging loss "
                            "(lower the learning rate) or a division by zero")
        return predictions.argmax(axis=1)
    raise RunFailed(results.BAD_OUTPUT, f"predict returned shape {tuple(predictions.shape)}; {shape_hint}")


# ---- the export of a deployment exercise ------------------------------------------------------

def export_cap_bytes(deploy) -> int:
    """How much export()'s folder holds (bytes): EXPORT_CAP_FACTOR x the spec's limit."""
    return EXPORT_CAP_FACTOR * deploy.export_max_bytes


def unpack_export(pack: pathlib.Path, destination: pathlib.Path, cap_bytes: int) -> int:
    """Unpack the training sandbox's export.tar into `destination` without trusting it: no
    symlinks anywhere, regular files and folders only, relative names, at most MAX_EXPORT_FILES
    entries and cap_bytes in all. Returns the files' total size in bytes (the model's size)."""
    def refuse(message):
        raise RunFailed(results.BAD_OUTPUT, f"the export: {message}; export() must write regular files "
                                            "(and folders) into the folder it is given")
    try:
        fd = os.open(pack, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        refuse(f"its packed copy could not be read ({e.strerror})")
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap_bytes + MAX_EXPORT_FILES * EXPORT_PACK_OVERHEAD_BYTES:
            refuse(f"its packed copy is {info.st_size} bytes, more than the export folder can hold")
        destination.mkdir(mode=0o755)
        os.chmod(destination, 0o755)
        total, seen = 0, set()
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for count, member in enumerate(tar, start=1):
                    name = posixpath.normpath(member.name)
                    if count > MAX_EXPORT_FILES:
                        refuse(f"more than {MAX_EXPORT_FILES} files and folders")
                    if name.startswith(("/", "..")) or name in (".", "") or name in seen:
                        refuse(f"an entry named {member.name!r}")
                    if not (member.isreg() or member.isdir()):
                        refuse(f"{member.name!r} is a link or a special file")
                    seen.add(name)
                    target = destination / name
                    if member.isdir():
                        target.mkdir(mode=0o755, exist_ok=True)
                        os.chmod(target, 0o755)
                        continue
                    total += member.size
                    if total > cap_bytes:
                        refuse(f"its files hold over {cap_bytes / 2**20:.0f} MiB")
                    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    with open(target, "xb") as out:
                        shutil.copyfileobj(source, out)
                    os.chmod(target, 0o644)
        except (tarfile.TarError, OSError, EOFError) as e:
            refuse(f"its packed copy is broken ({e})")
    return total


def _probe_indices(test_size: int, count: int) -> list[int]:
    """Which test items the latency probe times, one at a time: a fresh random sample per run."""
    return secrets.SystemRandom().sample(range(test_size), min(count, test_size))


# ---- one run -----------------------------------------------------------------------------------

MAX_REPORT_KEYS, MAX_REPORT_KEY_CHARS = 16, 40  # what a report event may carry into the result


def _clean_report(values) -> dict:
    """Report events can be written by learner code directly: keep short names and finite numbers."""
    if not isinstance(values, dict):
        return {}
    clean = {}
    for key, value in list(values.items())[:MAX_REPORT_KEYS]:
        if isinstance(key, str) and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            clean[key[:MAX_REPORT_KEY_CHARS]] = float(value)
    return clean


class _Conversation:
    """Waits for the runner's events with deadlines; turns anything unexpected into RunFailed."""

    def __init__(self, sandbox: Sandbox, run_index: int, progress, curve: list, export_full_message: str = ""):
        self.sandbox = sandbox
        self.export_full_message = export_full_message  # deploy: export() filled its capped folder
        self.run_index = run_index
        self.progress = progress
        self.curve = curve
        self.hello = {}

    def expect(self, wanted: str, *, budget: float, what: str, nonce: str | None = None,
               started: float | None = None, timeout_message: str | None = None) -> dict:
        deadline = (started if started is not None else time.perf_counter()) + budget
        while True:
            event = self.sandbox.next_event(deadline - time.perf_counter())
            kind = event["event"]
            if kind == "report":
                values = _clean_report(event.get("values"))
                if values:
                    self.curve.append(values)
                    self.progress("report", run=self.run_index, values=values)
                continue
            if kind == wanted and (nonce is None or event.get("nonce") == nonce):
                return event
            if kind == "_timeout" and timeout_message:
                self.sandbox.kill()
                raise RunFailed(results.TIMEOUT, timeout_message)
            raise self._failure(event, what=what, budget=budget)

    def _failure(self, event: dict, *, what: str, budget: float) -> RunFailed:
        kind = event["event"]
        if kind == "_timeout":
            self.sandbox.kill()
            return RunFailed(results.TIMEOUT, f"{what} took longer than its {budget:g} s budget and was stopped")
        if kind == "_exit":
            return RunFailed(results.CRASHED, f"the process died during {what}", exited=True)
        if kind == "invalid":
            return RunFailed(results.INVALID_NOTEBOOK, event.get("message", "invalid exported code"))
        if kind == "oom":
            return RunFailed(results.OOM, f"out of memory during {event.get('phase', what)}: {event.get('message', '')}")
        if kind == "bad_output":
            return RunFailed(results.BAD_OUTPUT, event.get("message", "invalid predictions"))
        if kind == "export_full" and self.export_full_message:
            return RunFailed(results.BAD_OUTPUT, f"{self.export_full_message} ({event.get('message', '')})")
        if kind == "error":
            phase, message = event.get("phase", what), event.get("message", "")
            if event.get("type") == "InfraError":
                return RunFailed(results.INFRA_ERROR, message)
            where = "while the exported cells were loading" if phase == "load" else f"in {phase}()"
            if phase == "load_export":
                where = "in load(path), in the fresh process on the CPU"
            if phase == "warmup":
                where = "in the warm-up train()/predict() on random data"
            return RunFailed(results.CRASHED, f"{message} {where}; see log_tail for the traceback")
        if kind == "_protocol":
            return RunFailed(results.CRASHED, f"{event.get('message')} during {what}: learner code must not "
                                              "write to the grader's pipes")
        return RunFailed(results.CRASHED, f"an unexpected {kind!r} message during {what}: learner code must "
                                          "not write to the grader's pipes")


def _classify_exit(failure: RunFailed, outcome, memory_limit_mb: int) -> RunFailed:
    """Explain a dead or killed sandbox from what the grader saw from outside."""
    if outcome.memory_exceeded:
        return RunFailed(results.OOM, f"used more than the {memory_limit_mb} MiB memory limit and was stopped; "
                                      "use smaller batches, a smaller model, or free tensors you keep")
    if outcome.output_exceeded:
        return RunFailed(results.CRASHED, f"printed more than {sandbox_module.MAX_OUTPUT_BYTES >> 20} MiB "
                                          "and was stopped; print less (e.g. once per epoch)")
    if not failure.exited:
        return failure
    sig = outcome.signal
    if sig == signal.SIGKILL and not outcome.killed_by_grader:
        return RunFailed(results.OOM, "killed by the system (SIGKILL), most likely out of memory")
    if sig == signal.SIGXFSZ:
        return RunFailed(results.CRASHED, f"wrote a file over the {sandbox_module.MAX_FILE_BYTES >> 20} MiB size limit")
    if sig is not None:
        return RunFailed(results.CRASHED, f"{failure.message} ({signal.Signals(sig).name}); see log_tail")
    return RunFailed(results.CRASHED, f"{failure.message} (exit code {outcome.returncode}; did the code call "
                                      "exit()?); see log_tail")


def predict_limit(spec, reference: dict | None) -> tuple[float, str | None]:
    """(seconds, hint): how long predict() may run, and the hint when it runs past that. Relative
    to the reference's median predict time: min(spec budget, PREDICT_FACTOR x reference +
    PREDICT_GRACE_SECONDS). Without a reference (the reference itself) the spec's budget, hint None."""
    ref_predict = (reference or {}).get("predict_seconds")
    if ref_predict is None:
        return spec.predict_budget_seconds, None
    relative = PREDICT_FACTOR * ref_predict + PREDICT_GRACE_SECONDS
    if relative >= spec.predict_budget_seconds:
        return spec.predict_budget_seconds, None
    multiple = relative / max(ref_predict, 1e-9)
    return relative, (f"predict() took over {multiple:.0f}x the reference's predict time (over {relative:.2f} s "
                      f"against {ref_predict:.3f} s) and was stopped: predict() must only run the trained model; "
                      "do all training in train()")


def _one_run(*, run_index: int, run_count: int, seed: int, warmup_seed: int | None, code: str, spec, prepared: kinds.Prepared,
             arrays: pathlib.Path, workspace: pathlib.Path, device: str, unsafe_no_sandbox: bool,
             progress, predict_seconds_limit: float, predict_hint: str | None,
             hidden: tuple = (), weights_dir: pathlib.Path | None = None,
             target: str | None = None) -> tuple[results.RunRecord | None, RunFailed | None, str, dict]:
    """One timed run. Returns (record, failure, log tail, the runner's hello); a deployment run
    whose export is over the size limit returns both its record and the failure."""
    cap = export_cap_bytes(spec.deploy) if spec.deploy is not None else None
    config = sandbox_config(spec, device=device, unsafe_no_sandbox=unsafe_no_sandbox, hidden=hidden,
                            weights_dir=weights_dir, export_cap=cap)
    # A sandbox started ahead (grader/pool.py): bwrap, the runner and torch are up; it has no code, no data.
    sandbox = sandbox_pool.shared(config).take(end_of_grade=run_index == run_count - 1)  # InfraError if none can start
    try:
        return _run_in(sandbox, run_index=run_index, run_count=run_count, seed=seed, warmup_seed=warmup_seed, code=code, spec=spec,
                       prepared=prepared, arrays=arrays, workspace=workspace, device=device,
                       unsafe_no_sandbox=unsafe_no_sandbox, progress=progress,
                       predict_seconds_limit=predict_seconds_limit, predict_hint=predict_hint, hidden=hidden,
                       weights_dir=weights_dir, target=target, cap=cap)
    finally:
        sandbox.kill()  # single use, whatever happened
        sandbox.finish()
        shutil.rmtree(sandbox.job.root, ignore_errors=True)


def sandbox_config(spec, *, device: str, unsafe_no_sandbox: bool, hidden: tuple = (),
                   weights_dir: pathlib.Path | None = None, export_cap: int | None = None,
                   deployed: bool = False) -> SandboxConfig:
    """What a sandbox for this exercise is started with, before it meets any code or data."""
    return SandboxConfig(device=device, memory_limit_mb=spec.memory_limit_mb,
                         prime=not spec.warmup and not deployed, data_kind=spec.data_kind,
                         weights_dir=weights_dir, extra_hidden_paths=tuple(hidden), export_cap_bytes=export_cap,
                         deployed=deployed, preimports=preimports_for(spec.reference_notebook),
                         unsafe_no_sandbox=unsafe_no_sandbox)


def preimports_for(reference_notebook) -> tuple:
    """The course libraries (PREIMPORTABLE) the exercise's reference imports in its exports: a
    learner's notebook likely imports them too, so a waiting sandbox imports them ahead."""
    try:
        path = pathlib.Path(reference_notebook)
        return _preimports(str(path), path.stat().st_mtime_ns)
    except (OSError, TypeError):
        return ()


@functools.lru_cache(maxsize=64)
def _preimports(path: str, _mtime_ns: int) -> tuple:
    import ast
    try:
        tree = ast.parse(extract_exports(path))
    except (InvalidNotebook, SyntaxError, ValueError):
        return ()
    found = []
    for node in ast.walk(tree):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            if name.split(".")[0] in PREIMPORTABLE and name not in found:
                found.append(name)
    return tuple(found)


def warm_pool(spec, *, data_dir: pathlib.Path, unsafe_no_sandbox: bool = False) -> None:
    """Start this exercise's sandboxes now (grader/api.py, before the dataset and the reference
    are loaded), so the first run finds one ready. Never raises: grading reports any problem."""
    try:
        if not unsafe_no_sandbox:
            check_available()
    except Exception:  # noqa: BLE001  an optimisation only
        return
    _warm(spec, data_dir=data_dir, unsafe_no_sandbox=unsafe_no_sandbox)


def _warm(spec, *, data_dir: pathlib.Path, unsafe_no_sandbox: bool) -> None:
    """warm_pool once the sandbox is known to be usable (grade() has just checked)."""
    try:
        hardware, _ = detect_hardware(spec.device)
        cap = export_cap_bytes(spec.deploy) if spec.deploy is not None else None
        sandbox_pool.shared(sandbox_config(spec, device=hardware["device"], unsafe_no_sandbox=unsafe_no_sandbox,
                                           hidden=(pathlib.Path(data_dir),), weights_dir=weights.ensure_cache(data_dir),
                                           export_cap=cap)).warm()
    except Exception:  # noqa: BLE001  an optimisation only
        pass


def _run_in(sandbox: Sandbox, *, run_index: int, run_count: int, seed: int, warmup_seed: int | None, code: str, spec,
            prepared: kinds.Prepared, arrays: pathlib.Path, workspace: pathlib.Path, device: str,
            unsafe_no_sandbox: bool, progress, predict_seconds_limit: float, predict_hint: str | None,
            hidden: tuple, weights_dir: pathlib.Path | None, target: str | None,
            cap: int | None) -> tuple[results.RunRecord | None, RunFailed | None, str, dict]:
    job = sandbox.job
    pending = job.root / "pending"  # folders copied (hard links) before the clock, renamed in at reveal
    if prepared.folders:  # a deployed run's test folder goes to the fresh sandbox instead
        test_folders = prepared.test_files if spec.deploy is None else ()
        kinds.stage_folders(arrays, pending, prepared.train_files + test_folders)
    curve = []
    export_full = (f"export() wrote more than its folder holds ({cap / 2**20:.0f} MiB, twice this exercise's "
                   f"{spec.deploy.export_max_mb:g} MiB limit) and the write was refused: export a smaller model"
                   if cap is not None else "")
    talk = _Conversation(sandbox, run_index, progress, curve, export_full_message=export_full)
    failure = None
    train_seconds = predict_seconds = warmup_seconds = None
    predictions = None
    hello = {}
    run_load_average = load_average()
    run_gpu = gpu_state(GPU_INDEX) if device == "cuda" else None
    sandbox.handoff(code)
    try:
        hello = talk.expect("hello", budget=STARTUP_TIMEOUT_SECONDS, what="sandbox start-up")
        sandbox.send(cmd="load", target=target)
        talk.expect("loaded", budget=STARTUP_TIMEOUT_SECONDS, what="loading the exported cells")
        if warmup_seed is not None:
            progress("phase", run=run_index, text="warm-up (untimed)")
            _reveal(arrays, job, "warmup_x_train", "warmup_y_train", "warmup_x_test")
            started = time.perf_counter()
            sandbox.send(cmd="warmup", seed=warmup_seed)
            warm = talk.expect("warm", budget=spec.warmup_cap_seconds, what="the warm-up", started=started)
            warmup_seconds = warm["_at"] - started

        # The train clock starts before the training data exists in the sandbox: from the moment
        # it is revealed, whatever runs (loading, the seeding calls, a thread waiting for the
        # files) runs on the clock. There is no off-clock window with real data.
        progress("phase", run=run_index, text="train()" if spec.deploy is None else "train() and export()")
        nonce = secrets.token_hex(16)
        started = time.perf_counter()
        kinds.reveal(arrays, job.data, prepared.train_files, pending=pending)
        sandbox.send(cmd="train", seed=seed, nonce=nonce)
        done = talk.expect("done", budget=spec.train_budget_seconds, what="train()", nonce=nonce, started=started)
        train_seconds = done["_at"] - started

        if spec.deploy is not None:
            # The training process ends now, before anything reads the export: nothing it left
            # running can change the export after the clock stopped, and none of its memory goes on.
            sandbox.kill()
        else:
            # The predict clock starts the moment train's clock stops (when `done` was received), so
            # the timeline from the first `go` to the predictions has no gap: work hidden behind a
            # forged early `done` lands on the predict clock, which the spec's predict budget caps.
            started = done["_at"]
            progress("phase", run=run_index, text="predict()")
            kinds.reveal(arrays, job.data, prepared.test_files, pending=pending)
            nonce = secrets.token_hex(16)
            sandbox.send(cmd="predict", nonce=nonce)
            done = talk.expect("done", budget=predict_seconds_limit, what="predict()", nonce=nonce, started=started,
                               timeout_message=predict_hint)
            predict_seconds = done["_at"] - started
            # Read the predictions now, before the runner may exit: a thread still working after
            # `done` (the clock has stopped) must not get to rewrite them.
            predictions = read_predictions(job.out_file, prepared.test_size, prepared.num_classes,
                                           prepared=prepared, kind=spec.data_kind, metric=spec.metric_info)
            sandbox.send(cmd="exit")
    except RunFailed as e:
        failure = e
        sandbox.kill()
    finally:
        outcome = sandbox.finish()
    if failure is not None:
        return None, _classify_exit(failure, outcome, spec.memory_limit_mb), outcome.log_tail, hello
    if outcome.memory_exceeded or outcome.output_exceeded:
        return None, _classify_exit(RunFailed(results.CRASHED, "the process died", exited=True), outcome,
                                    spec.memory_limit_mb), outcome.log_tail, hello
    deployed = {}
    log_tail = outcome.log_tail
    if spec.deploy is not None:
        progress("phase", run=run_index, text="load() and predict() in a fresh process on the CPU")
        deployed, failure, deployed_tail, deployed_wait = _predict_deployed(
            run_index=run_index, run_count=run_count, code=code, spec=spec, prepared=prepared, arrays=arrays, workspace=workspace,
            export_pack=job.export_pack, unsafe_no_sandbox=unsafe_no_sandbox, progress=progress,
            predict_seconds_limit=predict_seconds_limit, predict_hint=predict_hint, hidden=hidden,
            weights_dir=weights_dir, target=target)
        log_tail = _joined_tail(outcome.log_tail, deployed_tail)
        sandbox.wait_seconds = (sandbox.wait_seconds or 0.0) + deployed_wait
        if "predictions" not in deployed:
            return None, failure, log_tail, hello
        predictions, predict_seconds = deployed.pop("predictions"), deployed.pop("predict_seconds")
    score = spec.metric_info.score(predictions, prepared.truth)
    record = results.RunRecord(seed=seed, score=score, accuracy=metrics.accuracy_from(spec.metric, score),
                               train_seconds=train_seconds,
                               predict_seconds=predict_seconds, curve=curve, warmup_seconds=warmup_seconds,
                               load_average=run_load_average, gpu=run_gpu,
                               sandbox_wait_seconds=sandbox.wait_seconds, sandbox_start_seconds=sandbox.start_seconds,
                               **deployed)
    return record, failure, log_tail, hello


DEPLOYED_TAIL_HEADER = "---- load() and predict(), in a fresh process on the CPU ----"


def _joined_tail(training_tail: str, deployed_tail: str) -> str:
    """Both processes' output, the fresh one last, within the usual number of lines."""
    if not deployed_tail.strip():
        return training_tail
    lines = training_tail.splitlines() + [DEPLOYED_TAIL_HEADER] + deployed_tail.splitlines()
    return "\n".join(lines[-sandbox_module.LOG_TAIL_LINES:])


def _predict_deployed(*, run_index: int, run_count: int, code: str, spec, prepared: kinds.Prepared, arrays: pathlib.Path,
                      workspace: pathlib.Path, export_pack: pathlib.Path, unsafe_no_sandbox: bool, progress,
                      predict_seconds_limit: float, predict_hint: str | None, hidden: tuple,
                      weights_dir: pathlib.Path | None, target: str | None) -> tuple[dict, RunFailed | None, str, float]:
    """Deployment: load() the export and predict() in a fresh CPU-only sandbox that never saw the
    training data. Returns ({predictions, predict_seconds, load_seconds, latency_ms, model_bytes}
    as far as they came, failure, log tail): the measured fields with a failure when the export is
    over the size limit (the run completed; its figures belong in the result), and the seconds
    spent waiting for that sandbox."""
    config = sandbox_config(spec, device="cpu", unsafe_no_sandbox=unsafe_no_sandbox, hidden=hidden,
                            weights_dir=weights_dir, deployed=True)
    # Started ahead too, between runs (never beside a clock: grader/pool.py); it never saw the training data or process.
    sandbox = sandbox_pool.shared(config).take(end_of_grade=run_index == run_count - 1)
    try:
        measured, failure, log_tail = _predict_in(sandbox, run_index=run_index, code=code, spec=spec, prepared=prepared,
                                                  arrays=arrays, export_pack=export_pack, progress=progress,
                                                  predict_seconds_limit=predict_seconds_limit,
                                                  predict_hint=predict_hint, target=target)
        return measured, failure, log_tail, sandbox.wait_seconds
    finally:
        sandbox.kill()
        sandbox.finish()
        shutil.rmtree(sandbox.job.root, ignore_errors=True)


def _predict_in(sandbox: Sandbox, *, run_index: int, code: str, spec, prepared: kinds.Prepared, arrays: pathlib.Path,
                export_pack: pathlib.Path, progress, predict_seconds_limit: float, predict_hint: str | None,
                target: str | None) -> tuple[dict, RunFailed | None, str]:
    job = sandbox.job
    pending = job.root / "pending"
    pending.mkdir(mode=0o755)
    os.chmod(pending, 0o755)
    try:
        model_bytes = unpack_export(export_pack, pending / sandbox_module.DEPLOYED_MODEL_FOLDER,
                                    export_cap_bytes(spec.deploy))
    except RunFailed as e:
        return {}, e, ""
    if prepared.folders:
        kinds.stage_folders(arrays, pending, prepared.test_files)
    talk = _Conversation(sandbox, run_index, progress, [])
    failure, measured = None, {"model_bytes": model_bytes}
    sandbox.handoff(code)
    try:
        talk.expect("hello", budget=STARTUP_TIMEOUT_SECONDS, what="the fresh sandbox's start-up")
        sandbox.send(cmd="load", target=target)
        talk.expect("loaded", budget=STARTUP_TIMEOUT_SECONDS, what="loading the exported cells")
        # The predict clock: from the moment the export and the test data appear, through
        # load(), the latency probe and predict() on the whole test set, one span.
        started = time.perf_counter()
        os.rename(pending / sandbox_module.DEPLOYED_MODEL_FOLDER, job.data / sandbox_module.DEPLOYED_MODEL_FOLDER)
        kinds.reveal(arrays, job.data, prepared.test_files, pending=pending)
        deadline = dict(budget=predict_seconds_limit, started=started, timeout_message=predict_hint)
        nonce = secrets.token_hex(16)
        sandbox.send(cmd="load_model", nonce=nonce)
        done = talk.expect("done", what="load()", nonce=nonce, **deadline)
        measured["load_seconds"] = done["_at"] - started
        latencies = []
        for index in _probe_indices(prepared.test_size, spec.deploy.latency_items):
            nonce = secrets.token_hex(16)
            sent = time.perf_counter()
            sandbox.send(cmd="item", index=index, nonce=nonce)
            done = talk.expect("done", what="predict() on one item", nonce=nonce, **deadline)
            latencies.append(done["_at"] - sent)
        measured["latency_ms"] = 1000.0 * statistics.median(latencies)
        nonce = secrets.token_hex(16)
        sandbox.send(cmd="predict", nonce=nonce)
        done = talk.expect("done", what="predict()", nonce=nonce, **deadline)
        measured["predict_seconds"] = done["_at"] - started
        measured["predictions"] = read_predictions(job.out_file, prepared.test_size, prepared.num_classes,
                                                   prepared=prepared, kind=spec.data_kind, metric=spec.metric_info)
        sandbox.send(cmd="exit")
    except RunFailed as e:
        failure = e
        sandbox.kill()
    finally:
        outcome = sandbox.finish()
    if failure is not None:
        return {}, _classify_exit(failure, outcome, spec.memory_limit_mb), outcome.log_tail
    if outcome.memory_exceeded or outcome.output_exceeded:
        return {}, _classify_exit(RunFailed(results.CRASHED, "the process died", exited=True), outcome,
                                  spec.memory_limit_mb), outcome.log_tail
    if model_bytes > spec.deploy.export_max_bytes:
        failure = RunFailed(results.BAD_OUTPUT, export_too_large_message(model_bytes, spec.deploy))
    return measured, failure, outcome.log_tail


def size_text(size_bytes: int) -> str:
    """A size for a message: MiB, KiB below a tenth of one, bytes below one KiB."""
    if size_bytes < 2**10:
        return f"{size_bytes} bytes"
    return f"{size_bytes / 2**20:.1f} MiB" if size_bytes >= 2**20 / 10 else f"{size_bytes / 2**10:.1f} KiB"


def export_too_large_message(model_bytes: int, deploy) -> str:
    return (f"the exported model is {size_text(model_bytes)}, over this exercise's {deploy.export_max_mb:g} MiB "
            "limit: export a smaller model (a smaller architecture such as resnet18, or weights in half precision), "
            "and only what load() needs")


def measure(code: str, spec, dataset, *, device: str, seeds: list[int], unsafe_no_sandbox: bool = False,
            progress=no_progress, reference: dict | None = None, hidden: tuple = (),
            weights_dir: pathlib.Path | None = None) -> Measurement:
    """Run `code` once per seed, each in a fresh sandbox; stop at the first failed run. predict()
    is held to predict_limit(spec, reference); `hidden` are extra host paths (a dataset cache)
    to blank out should they lie under something the sandbox binds."""
    predict_seconds_limit, predict_hint = predict_limit(spec, reference)
    workspace = pathlib.Path(tempfile.mkdtemp(prefix="studybot-grade-"))
    os.chmod(workspace, 0o711)
    records, failure, log_tail, hello, record = [], None, "", {}, None
    try:
        arrays = workspace / "arrays"
        prepared = _prepare_arrays(arrays, dataset, warmup=spec.warmup, kind=spec.data_kind)
        target = getattr(dataset, "target", None) if spec.data_kind == kinds.TABULAR else None
        for index, seed in enumerate(seeds):
            progress("run", run=index, total=len(seeds), seed=seed)
            warmup_seed = secrets.randbits(SEED_BITS) if spec.warmup else None
            record, failure, log_tail, run_hello = _one_run(
                run_index=index, run_count=len(seeds), seed=seed, warmup_seed=warmup_seed, code=code, spec=spec, prepared=prepared,
                arrays=arrays, workspace=workspace, device=device, unsafe_no_sandbox=unsafe_no_sandbox,
                progress=progress, predict_seconds_limit=predict_seconds_limit, predict_hint=predict_hint,
                hidden=hidden, weights_dir=weights_dir, target=target)
            hello = hello or run_hello
            if record is not None:
                records.append(record)  # with a failure too: a deployed run whose export is over the limit
            if failure is not None:
                progress("failed", run=index, status=failure.status, message=failure.message)
                break
            progress("run_done", run=index, accuracy=record.accuracy, score=record.score, metric=spec.metric,
                     train_seconds=record.train_seconds,
                     predict_seconds=record.predict_seconds, rank_seconds=record.rank_seconds)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    info = {k: hello[k] for k in ("torch", "cuda", "device_name") if k in hello}
    return Measurement(runs=records, failure=failure, log_tail=log_tail, sandbox_info=info,
                       failure_has_record=failure is not None and record is not None)


# ---- judging -----------------------------------------------------------------------------------

def choose_seeds(count: int) -> list[int]:
    return [secrets.randbits(SEED_BITS) for _ in range(count)]


def judge(spec, result: results.Result) -> None:
    """Set status and message for a result whose runs all completed. The score is judged in the
    metric's direction (below_target means worse than the target: for rmse, above it). Time is
    the ranking time, rank_seconds (train + predict, one span), against the reference's."""
    metric = spec.metric_info
    score, seconds = result.score, result.rank_seconds
    reference = result.reference
    scored = f"{metric.display_name} {metric.format(score)}"
    if not metric.meets(score, spec.target):
        result.status = results.BELOW_TARGET
        worse = "below" if metric.higher_is_better else "above"
        result.message = (f"mean {scored} is {worse} the target {metric.format_target(spec.target)}: "
                          "train longer, tune the learning rate, or use a better model")
        return
    if latency_over_limit(result):
        result.status = results.TOO_SLOW
        result.message = (f"good enough ({scored}), but predicting one item took a median "
                          f"{result.latency_ms:.1f} ms on the CPU, over this exercise's {spec.deploy.latency_max_ms:g} ms "
                          "limit: use a smaller or faster model, smaller input images, or less work per item in "
                          "predict()")
        return
    if reference:
        limit = spec.too_slow_factor * reference["rank_seconds"] + TOO_SLOW_GRACE_SECONDS
        if seconds > limit:
            result.status = results.TOO_SLOW
            result.message = (f"good enough ({scored}), but the median train()+predict() took {seconds:.2f} s, "
                              f"over the {limit:.2f} s allowed ({spec.too_slow_factor:g}x the reference's "
                              f"{reference['rank_seconds']:.2f} s + {TOO_SLOW_GRACE_SECONDS:g} s): train for "
                              "fewer epochs, or keep the data on the device")
            return
    result.status = results.PASSED
    speed = f", {result.speed_ratio:.2f}x the reference's speed" if result.speed_ratio else ""
    review_note = f"; flagged for review ({', '.join(f['code'] for f in result.flags)})" if result.flags else ""
    deployed = ""
    if spec.deploy is not None:
        deployed = (f", {result.latency_ms:.1f} ms per item on the CPU (limit {spec.deploy.latency_max_ms:g} ms), "
                    f"model {size_text(result.model_bytes)} (limit {spec.deploy.export_max_mb:g} MiB)")
    result.message = (f"passed: mean {scored} (target {metric.format_target(spec.target)}), median "
                      f"train()+predict() {seconds:.2f} s{speed}{deployed}{review_note}")


def latency_over_limit(result: results.Result) -> bool:
    """Deploy: whether the median single-item latency is over the spec's limit (as recorded in
    result.config, so callers holding only the result can tell a latency too_slow apart)."""
    limit = (result.config.get("deploy") or {}).get("latency_max_ms")
    return limit is not None and result.latency_ms is not None and result.latency_ms > limit


def review_and_judge(spec, result: results.Result, test_size: int) -> None:
    """Flags first (judge's message mentions them), then the status."""
    result.flags = review.flags_for(result, test_size)
    judge(spec, result)


def grade(notebook, spec, *, data_dir: pathlib.Path, reference: Reference, load_dataset=None,
          runs: int | None = None, unsafe_no_sandbox: bool = False, progress=no_progress,
          plot_path: pathlib.Path | None = None) -> results.Result:
    """Grade one notebook against `spec` and an already resolved `reference` (NO_REFERENCE for
    the reference notebook itself; grader/api.py resolves it for everything else). Never raises
    for anything the learner did.

    A reference that could not be measured (reference.failure) makes the grade an infra_error,
    but only once the submission's own checks have passed: a broken notebook is still told so.
    """
    started = time.perf_counter()
    result = results.Result(exercise=spec.id, status=results.INFRA_ERROR, message="", target=spec.target,
                            metric=spec.metric, higher_is_better=spec.metric_info.higher_is_better)
    run_count = runs or spec.runs
    try:
        try:
            code = extract_exports(notebook)
        except InvalidNotebook as e:
            result.status, result.message = results.INVALID_NOTEBOOK, str(e)
            return result
        result.code_sha256 = hashlib.sha256(code.encode()).hexdigest()
        if unsafe_no_sandbox:
            result.notes.append("UNSAFE: ran without the sandbox (--unsafe-no-sandbox-dev-only)")
        else:
            check_available()
        _warm(spec, data_dir=data_dir, unsafe_no_sandbox=unsafe_no_sandbox)  # starts beside the dataset's load
        dataset = _load_dataset(load_dataset, spec, data_dir)
        absent_weights = weights.missing(spec.weights, data_dir)
        if absent_weights:
            raise InfraError(weights.missing_message(absent_weights))
        test_size = test_size_of(spec, dataset)
        hardware, notes = detect_hardware(spec.device)
        result.hardware, result.notes = hardware, result.notes + notes

        if reference.failure is not None:
            raise InfraError(reference.failure)
        result.notes.extend(reference.notes)
        result.reference = reference.summary

        seeds = choose_seeds(run_count)
        result.config = {
            "spec": spec.as_config(), "runs": run_count, "seeds": seeds, "warmup": spec.warmup,
            "sandbox": "none (UNSAFE development mode)" if unsafe_no_sandbox else "bubblewrap",
            "test_size": test_size, "data_kind": spec.data_kind, "metric": spec.metric,
            "predict_limit_seconds": predict_limit(spec, reference.summary)[0],
            "limits": {"memory_mb": spec.memory_limit_mb, "scratch_bytes": sandbox_module.SCRATCH_BYTES,
                       "file_bytes": sandbox_module.MAX_FILE_BYTES, "processes": sandbox_module.MAX_PROCESSES,
                       "output_bytes": sandbox_module.MAX_OUTPUT_BYTES},
        }
        if spec.deploy is not None:
            result.config["limits"]["export_cap_bytes"] = export_cap_bytes(spec.deploy)
            result.config["deploy"] = {"export_max_bytes": spec.deploy.export_max_bytes,
                                       "latency_max_ms": spec.deploy.latency_max_ms,
                                       "latency_items": min(spec.deploy.latency_items, test_size),
                                       "predict_device": "cpu"}
        progress("phase", text=f"grading {spec.id}: {run_count} runs on {hardware['device_name']}")
        measurement = measure(code, spec, dataset, device=hardware["device"], seeds=seeds,
                              unsafe_no_sandbox=unsafe_no_sandbox, progress=progress, reference=reference.summary,
                              hidden=(pathlib.Path(data_dir),), weights_dir=weights.ensure_cache(data_dir))
        result.runs = measurement.runs
        result.log_tail = measurement.log_tail
        if hardware["device"] == "cuda":
            result.hardware["cuda"] = measurement.sandbox_info.get("cuda")
        if measurement.failure is not None:
            failure = measurement.failure
            run_number = len(measurement.runs) + (0 if measurement.failure_has_record else 1)
            result.status = failure.status
            result.message = failure.message if failure.status in (results.INVALID_NOTEBOOK, results.INFRA_ERROR) \
                else f"run {run_number} of {run_count}: {failure.message}"
        else:
            review_and_judge(spec, result, test_size)
    except GraderError as e:
        result.status, result.message = results.INFRA_ERROR, str(e)
    except Exception as e:  # a grader bug: still a result the bot can show, plus a traceback here
        traceback.print_exc()
        result.status = results.INFRA_ERROR
        result.message = f"internal grader error ({type(e).__name__}: {e}); the submission was not judged"
    finally:
        result.total_seconds = time.perf_counter() - started
    attach_plot(result, plot_path)
    return result


def attach_plot(result: results.Result, plot_path: pathlib.Path | None) -> None:
    """Draw the runs' plot to plot_path (when asked and there are runs); a broken plot never loses a result."""
    if not result.runs or plot_path is None:
        return
    from grader import plot
    try:
        result.plot = str(plot.render(result, plot_path))
    except Exception as e:
        result.notes.append(f"the plot could not be drawn: {e}")


def _load_dataset(load_dataset, spec, data_dir):
    if load_dataset is None:
        try:
            from grader.datasets import load_for_grading
        except ImportError as e:
            raise InfraError(f"grader.datasets is not available ({e})") from None
        # A test set no one outside this grade has seen: generated from, or perturbed by, a
        # secret drawn now (grader/datasets.py); a copy of the public test set does not match it.
        secret = secrets.randbits(63)

        def load_dataset(dataset_id, directory):
            return load_for_grading(dataset_id, directory, secret=secret)
    try:
        return load_dataset(spec.dataset, pathlib.Path(data_dir))
    except DatasetMissing:
        raise
    except GraderError:
        raise
    except Exception as e:
        raise InfraError(f"dataset {spec.dataset!r} could not be loaded: {type(e).__name__}: {e}") from None
