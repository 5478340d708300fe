"""The result of grading one notebook: statuses, per-run records, and the JSON shape.

The JSON (Result.to_json) is the grader's only interface to the bot. Fields:

    exercise, status, message        status is one of STATUSES; message is a one-line hint at the fix
    metric, higher_is_better         the exercise's metric (grader/metrics.py) and its direction
    score, score_std                 mean and sample std of the metric over the completed runs
    accuracy, accuracy_std           mean and sample std of test accuracy over the completed runs, for
                                     accuracy-type metrics (accuracy, error_rate); null for the others
    runs                             per run: {seed, score, accuracy, train_seconds, predict_seconds,
                                     rank_seconds, warmup_seconds, load_average, gpu,
                                     sandbox_wait_seconds, sandbox_start_seconds}
                                       rank_seconds = train_seconds + predict_seconds: one
                                         continuous span, from the moment the training data is
                                         handed to the sandbox to the predictions being written
                                       warmup_seconds: the untimed warm-up, null without one
                                       load_average: os.getloadavg()[0] at the run's start
                                       gpu: {name, driver, sm_clock_mhz, temperature_c} from
                                         nvidia-smi at the run's start, null on CPU (or unknown)
                                       sandbox_wait_seconds: how long the run waited for its
                                         sandbox (grader/pool.py): 0-ish when one was ready
                                       sandbox_start_seconds: that sandbox's start, bwrap to the
                                         runner's `hello` (torch, CUDA init), mostly hidden by the pool
                                     deployment exercises add (grader/README.md "Deployment exercises"):
                                       load_seconds: load(path) in the fresh CPU process, a part
                                         of predict_seconds
                                       latency_ms: median wall clock of predict() on one test item
                                         at a time there, over the spec's latency_items
                                       model_bytes: the exported files' total size
    train_seconds, predict_seconds   medians over the completed runs (grader-measured wall clock)
    warmup_seconds                   median untimed warm-up, null without one
    latency_ms, model_bytes,         deployment exercises: median over runs of the runs' latency_ms,
      load_seconds                     the largest model_bytes, median load_seconds; null otherwise
    rank_seconds                     THE ranking time: median over runs of the runs' rank_seconds
    rank_seconds_low,                a distribution-free interval for that median from order
      rank_seconds_high                statistics (grader/intervals.py: >= 90% coverage where the
                                       run count allows; min..max for 5 runs or fewer)
    flags                            [{code, message}]: review flags (grader/review.py:
                                     train_near_zero, too_good_too_fast, predict_heavy,
                                     warmup_heavy); a flagged entry waits for an organizer
    reference_remeasured             true when the cached reference was measured again beside
                                     this submission (an extreme ratio) and judged against that
    total_seconds                    wall clock of grading this submission (not of a reference
                                     measured on the way; see notes)
    reference                        {accuracy, accuracy_std, train_seconds, predict_seconds,
                                     rank_seconds, rank_seconds_low, rank_seconds_high,
                                     warmup_seconds, measured_at, runs, code_sha256, hardware,
                                     format} or null
    speed_ratio                      reference rank_seconds / submission rank_seconds
    target                           the score needed (from the spec), in the metric's direction
    hardware                         {device, device_name, torch, cuda, hostname, cpu_count,
                                     python, load_average (at grade start), gpu (null on CPU)}
    log_tail                         the last lines of the learner's stdout+stderr
    code_sha256                      sha256 of the exported code that ran
    config                           spec (incl. version), runs, seeds, warm-up, sandbox limits
    learning_curves                  per run, the report(...) values (downsampled), or []
    notes                            anything the reader should know (CPU fallback, reference measured now)
    plot                             path of the PNG, or null
    graded_at                        UTC timestamp, ISO 8601
"""

import dataclasses
import datetime
import json
import math
import statistics

from grader.intervals import median_interval

PASSED = "passed"
BELOW_TARGET = "below_target"
TOO_SLOW = "too_slow"
TIMEOUT = "timeout"
OOM = "oom"
CRASHED = "crashed"
BAD_OUTPUT = "bad_output"
INVALID_NOTEBOOK = "invalid_notebook"
INFRA_ERROR = "infra_error"
STATUSES = (PASSED, BELOW_TARGET, TOO_SLOW, TIMEOUT, OOM, CRASHED, BAD_OUTPUT, INVALID_NOTEBOOK, INFRA_ERROR)
# Statuses where the learner's code ran to the end of every run and was scored.
JUDGED = (PASSED, BELOW_TARGET, TOO_SLOW)

MAX_CURVE_POINTS = 200  # report() points kept per run in the JSON (evenly downsampled)


@dataclasses.dataclass
class RunRecord:
    seed: int
    accuracy: float | None              # for accuracy-type metrics; None for the others
    train_seconds: float
    predict_seconds: float
    curve: list = dataclasses.field(default_factory=list)  # report() values, in call order
    warmup_seconds: float | None = None   # the untimed warm-up; None without one
    load_average: float | None = None     # 1-minute load average at the run's start
    gpu: dict | None = None               # nvidia-smi's view at the run's start; None on CPU
    score: float | None = None            # the metric's value; defaults to the accuracy
    load_seconds: float | None = None     # deploy: load() in the fresh process (part of predict_seconds)
    latency_ms: float | None = None       # deploy: median ms of predict() on one item, on the CPU
    model_bytes: int | None = None        # deploy: total size of the exported files
    sandbox_wait_seconds: float | None = None   # the run waited this long for a ready sandbox (s)
    sandbox_start_seconds: float | None = None  # that sandbox's start, prestart to `hello` (s)

    def __post_init__(self):
        if self.score is None:
            self.score = self.accuracy

    @property
    def rank_seconds(self) -> float:
        """Time to predictions: the train and predict clocks are back to back, one span."""
        return self.train_seconds + self.predict_seconds

    def as_json(self) -> dict:
        data = {"seed": self.seed, "score": self.score, "accuracy": self.accuracy,
                "train_seconds": self.train_seconds, "predict_seconds": self.predict_seconds,
                "rank_seconds": self.rank_seconds, "warmup_seconds": self.warmup_seconds,
                "load_average": self.load_average, "gpu": self.gpu,
                "sandbox_wait_seconds": self.sandbox_wait_seconds, "sandbox_start_seconds": self.sandbox_start_seconds}
        if self.model_bytes is not None:  # a deployed run
            data.update(load_seconds=self.load_seconds, latency_ms=self.latency_ms, model_bytes=self.model_bytes)
        return data


def downsample(points: list, limit: int = MAX_CURVE_POINTS) -> list:
    """At most `limit` evenly spaced points, always keeping the last one."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


@dataclasses.dataclass
class Result:
    exercise: str
    status: str
    message: str
    target: float | None = None
    metric: str = "accuracy"
    higher_is_better: bool = True
    runs: list = dataclasses.field(default_factory=list)  # RunRecord
    total_seconds: float = 0.0
    reference: dict | None = None
    hardware: dict = dataclasses.field(default_factory=dict)
    log_tail: str = ""
    code_sha256: str | None = None
    config: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    plot: str | None = None
    flags: list = dataclasses.field(default_factory=list)  # [{code, message}] from grader/review.py
    reference_remeasured: bool = False
    graded_at: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def accuracy(self) -> float | None:
        if not self.runs or any(r.accuracy is None for r in self.runs):
            return None
        return statistics.fmean(r.accuracy for r in self.runs)

    @property
    def accuracy_std(self) -> float | None:
        if self.accuracy is None:
            return None
        return statistics.stdev(r.accuracy for r in self.runs) if len(self.runs) > 1 else 0.0

    @property
    def score(self) -> float | None:
        return statistics.fmean(r.score for r in self.runs) if self.runs else None

    @property
    def score_std(self) -> float | None:
        if not self.runs:
            return None
        return statistics.stdev(r.score for r in self.runs) if len(self.runs) > 1 else 0.0

    @property
    def train_seconds(self) -> float | None:
        return statistics.median(r.train_seconds for r in self.runs) if self.runs else None

    @property
    def predict_seconds(self) -> float | None:
        return statistics.median(r.predict_seconds for r in self.runs) if self.runs else None

    @property
    def warmup_seconds(self) -> float | None:
        warmups = [r.warmup_seconds for r in self.runs if r.warmup_seconds is not None]
        return statistics.median(warmups) if warmups else None

    @property
    def latency_ms(self) -> float | None:
        latencies = [r.latency_ms for r in self.runs if r.latency_ms is not None]
        return statistics.median(latencies) if latencies else None

    @property
    def model_bytes(self) -> int | None:
        sizes = [r.model_bytes for r in self.runs if r.model_bytes is not None]
        return max(sizes) if sizes else None

    @property
    def load_seconds(self) -> float | None:
        loads = [r.load_seconds for r in self.runs if r.load_seconds is not None]
        return statistics.median(loads) if loads else None

    @property
    def rank_seconds(self) -> float | None:
        return statistics.median(r.rank_seconds for r in self.runs) if self.runs else None

    @property
    def rank_interval(self) -> tuple[float, float] | tuple[None, None]:
        return median_interval([r.rank_seconds for r in self.runs]) if self.runs else (None, None)

    @property
    def speed_ratio(self) -> float | None:
        if not self.reference or not self.rank_seconds or not self.reference.get("rank_seconds"):
            return None
        return self.reference["rank_seconds"] / self.rank_seconds

    def as_dict(self) -> dict:
        return _finite({
            "exercise": self.exercise,
            "status": self.status,
            "message": self.message,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "score": self.score,
            "score_std": self.score_std,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "target": self.target,
            "runs": [r.as_json() for r in self.runs],
            "train_seconds": self.train_seconds,
            "predict_seconds": self.predict_seconds,
            "warmup_seconds": self.warmup_seconds,
            "latency_ms": self.latency_ms,
            "model_bytes": self.model_bytes,
            "load_seconds": self.load_seconds,
            "rank_seconds": self.rank_seconds,
            "rank_seconds_low": self.rank_interval[0],
            "rank_seconds_high": self.rank_interval[1],
            "flags": self.flags,
            "reference_remeasured": self.reference_remeasured,
            "total_seconds": self.total_seconds,
            "reference": self.reference,
            "speed_ratio": self.speed_ratio,
            "hardware": self.hardware,
            "log_tail": self.log_tail,
            "code_sha256": self.code_sha256,
            "config": self.config,
            "learning_curves": [downsample(r.curve) for r in self.runs],
            "notes": self.notes,
            "plot": self.plot,
            "graded_at": self.graded_at,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent, allow_nan=False)


def _finite(value):
    """JSON has no NaN or infinity: replace them with null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
