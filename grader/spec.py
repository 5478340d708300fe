"""Exercise specs: exercises/<id>/spec.toml, loaded into a validated, frozen `Spec`.

    id = "digits"                    # must equal the directory name
    title = "Your first image classifier"
    version = 1                      # bump when data, target or budgets change: invalidates cached references
    dataset = "sklearn-digits"       # an id understood by grader.datasets.load
    metric = "accuracy"              # grader/metrics.py: accuracy, error_rate, rmse, mae, pearson
    target = 0.97                    # the mean score over the runs needed to pass, in the metric's
                                     # units and direction (rmse: at most this; accuracy: at least)
    runs = 5                         # timed runs, each with a grader-chosen seed
    train_budget_seconds = 60.0      # wall clock per train() call; over it the run is killed (timeout)
    predict_budget_seconds = 10.0    # most wall clock per predict() call; the limit in force is lower when the
                                     # reference predicts fast (grading.predict_limit); over it -> timeout
    warmup = true                    # one untimed, capped warm-up train()+predict() on noise before each timed run
    device = "cpu"                   # preferred device, "cpu" or "cuda"; no CUDA here means cpu with a note
    memory_limit_mb = 4096           # resident memory of everything in the sandbox, in MiB
    summary = "Train a classifier on 8x8 digits to 97% in seconds."

Optional keys:

    too_slow_factor = 10.0           # passed accuracy but median rank time (train + predict) over this many
                                     # times the reference's median (plus a second of grace) -> too_slow
    warmup_budget_seconds = 60.0     # cap on the warm-up; defaults to train_budget_seconds + predict_budget_seconds
    data_kind = "image_tensors"      # grader/kinds.py: image_tensors (default), image_folder, tabular, text, ratings
    weights = ["resnet18"]           # pretrained weights the notebook loads (grader/weights.py); missing
                                     # from the cache -> infra_error before any run, naming the prepare command

An optional table makes it a deployment exercise (grader/README.md, "Deployment exercises"): the
notebook also defines export(model, path) and load(path); train() + export() run in the training
sandbox, then load() + predict() in a fresh CPU-only sandbox that sees only the exported files:

    [deploy]
    export_max_mb = 50.0             # the exported files together may hold at most this many MiB; more -> bad_output
                                     # (the export folder itself holds twice this: past that the write fails)
    latency_max_ms = 150.0           # median wall clock of predict() on one test item at a time, on the CPU, in
                                     # ms; more -> too_slow
    latency_items = 20               # how many single test items the latency probe times (default 20)
"""

import dataclasses
import pathlib
import tomllib

from grader import kinds, metrics
from grader.errors import SpecError

SPEC_FILENAME = "spec.toml"
REFERENCE_NOTEBOOK = "reference.ipynb"
DEFAULT_TOO_SLOW_FACTOR = 10.0  # x reference median rank time; see `too_slow_factor` above
DEVICES = ("cpu", "cuda")
DEFAULT_LATENCY_ITEMS = 20      # [deploy] latency_items: single items the latency probe times
MAX_EXPORT_MB = 100.0           # [deploy] export_max_mb at most this (MiB): the export folder holds twice the
                                # limit, and its packed copy must stay under the sandbox's 256 MiB file size limit
MAX_LATENCY_ITEMS = 200         # [deploy] latency_items at most this: each item is a round trip on the predict clock
METRICS = tuple(metrics.METRICS)


@dataclasses.dataclass(frozen=True)
class Deploy:
    """The `[deploy]` table: the limits a deployed model is held to (see the module docstring)."""
    export_max_mb: float
    latency_max_ms: float
    latency_items: int = DEFAULT_LATENCY_ITEMS

    @property
    def export_max_bytes(self) -> int:
        return int(self.export_max_mb * 2**20)


@dataclasses.dataclass(frozen=True)
class Spec:
    id: str
    title: str
    version: int
    dataset: str
    metric: str
    target: float
    runs: int
    train_budget_seconds: float
    predict_budget_seconds: float
    warmup: bool
    device: str
    memory_limit_mb: int
    summary: str
    too_slow_factor: float = DEFAULT_TOO_SLOW_FACTOR
    warmup_budget_seconds: float | None = None
    data_kind: str = kinds.DEFAULT_KIND
    weights: tuple = ()
    deploy: Deploy | None = None           # the [deploy] table; None: train and predict in one sandbox
    directory: pathlib.Path | None = None  # where spec.toml was found; not a TOML key

    @property
    def warmup_cap_seconds(self) -> float:
        if self.warmup_budget_seconds is not None:
            return self.warmup_budget_seconds
        return self.train_budget_seconds + self.predict_budget_seconds

    @property
    def metric_info(self) -> metrics.Metric:
        return metrics.get(self.metric)

    @property
    def reference_notebook(self) -> pathlib.Path:
        return self.directory / REFERENCE_NOTEBOOK

    def as_config(self) -> dict:
        """The spec as plain data, for the result JSON (the directory is left out)."""
        config = dataclasses.asdict(self)
        config.pop("directory")
        config["warmup_budget_seconds"] = self.warmup_cap_seconds
        config["weights"] = list(self.weights)
        return config


# key -> (accepted python types, human description); `bool` is excluded from the numbers below
# because TOML `true` would otherwise pass as the integer 1.
_REQUIRED = {
    "id": (str, "a string"),
    "title": (str, "a string"),
    "version": (int, "an integer"),
    "dataset": (str, "a string"),
    "metric": (str, "a string"),
    "target": ((int, float), "a number"),
    "runs": (int, "an integer"),
    "train_budget_seconds": ((int, float), "a number of seconds"),
    "predict_budget_seconds": ((int, float), "a number of seconds"),
    "warmup": (bool, "true or false"),
    "device": (str, "a string"),
    "memory_limit_mb": (int, "an integer number of MiB"),
    "summary": (str, "a string"),
}
# A spec says how an exercise is graded, never when: the curriculum's lessons name their exercise.
_SCHEDULED_BY_THE_CURRICULUM = ("curriculum", "lesson")
_OPTIONAL = {
    "too_slow_factor": ((int, float), "a number"),
    "warmup_budget_seconds": ((int, float), "a number of seconds"),
    "data_kind": (str, "a string"),
    "weights": (list, "a list of model names"),
    "deploy": (dict, "a table ([deploy]) with export_max_mb, latency_max_ms and optionally latency_items"),
}
_DEPLOY_KEYS = {
    "export_max_mb": ((int, float), "a number of MiB"),
    "latency_max_ms": ((int, float), "a number of milliseconds"),
    "latency_items": (int, "an integer"),
}


def _parse_deploy(table: dict, fail) -> Deploy:
    for key in table:
        if key not in _DEPLOY_KEYS:
            fail(f"unknown key {key!r} in [deploy] (known keys: {', '.join(_DEPLOY_KEYS)})")
    values = {}
    for key, (types_, description) in _DEPLOY_KEYS.items():
        if key not in table:
            if key != "latency_items":
                fail(f"missing key {key!r} in [deploy]")
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, types_):
            fail(f"[deploy] {key!r} must be {description}, not {value!r}")
        values[key] = float(value) if types_ == (int, float) else value
    if not 0 < values["export_max_mb"] <= MAX_EXPORT_MB:
        fail(f"[deploy] 'export_max_mb' must be above 0 and at most {MAX_EXPORT_MB:g}, not {values['export_max_mb']:g}")
    if values["latency_max_ms"] <= 0:
        fail(f"[deploy] 'latency_max_ms' must be positive, not {values['latency_max_ms']:g}")
    items = values.get("latency_items", DEFAULT_LATENCY_ITEMS)
    if not 1 <= items <= MAX_LATENCY_ITEMS:
        fail(f"[deploy] 'latency_items' must be between 1 and {MAX_LATENCY_ITEMS}, not {items}")
    return Deploy(**values)


def parse_spec(data: dict, *, source: str = "spec.toml", directory: pathlib.Path | None = None) -> Spec:
    """Validate a parsed spec table; every error names the file and the bad key."""
    def fail(message):
        raise SpecError(f"{source}: {message}")

    known = {**_REQUIRED, **_OPTIONAL}
    for key in data:
        if key in _SCHEDULED_BY_THE_CURRICULUM:
            fail(f"key {key!r} does not belong in a spec: which lesson has which exercise is said once, in the "
                 "curriculum TOML (the lesson's `exercise = \"ID\"`, see docs/curricula.md); remove it here")
        if key not in known:
            fail(f"unknown key {key!r} (known keys: {', '.join(known)})")
    for key in _REQUIRED:
        if key not in data:
            fail(f"missing key {key!r}")
    values = {}
    for key, (types_, description) in known.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) and types_ is not bool:
            fail(f"{key!r} must be {description}, not {value!r}")
        if not isinstance(value, types_):
            fail(f"{key!r} must be {description}, not {value!r}")
        if isinstance(value, str) and not value.strip():
            fail(f"{key!r} must not be empty")
        values[key] = float(value) if types_ == (int, float) else value

    if values["version"] < 1:
        fail(f"'version' must be at least 1, not {values['version']}")
    if values["metric"] not in METRICS:
        fail(f"'metric' must be one of {METRICS}, not {values['metric']!r}")
    metric = values["metric"]
    if metric in metrics.ACCURACY_TYPE and not 0.0 <= values["target"] <= 1.0:
        fail(f"'target' is a fraction of the test set for {metric}: between 0 and 1, not {values['target']}")
    if metric in ("rmse", "mae") and values["target"] <= 0:
        fail(f"'target' of {metric} is an error that must be at most this: positive, not {values['target']}")
    if metric == "pearson" and not -1.0 < values["target"] <= 1.0:
        fail(f"'target' of pearson is a correlation: in (-1, 1], not {values['target']}")
    kind = values.setdefault("data_kind", kinds.DEFAULT_KIND)
    if kind not in kinds.KINDS:
        fail(f"'data_kind' must be one of {kinds.KINDS}, not {kind!r}")
    if values["warmup"] and kind != kinds.IMAGE_TENSORS:
        # Warm-up data must carry no information about the real data; noise of the real shapes
        # is only defined for tensors so far. Without a warm-up the runner primes torch's lazy
        # imports instead (grader/runner.py --prime).
        fail(f"'warmup = true' is only supported for data_kind image_tensors so far, not {kind!r}: set warmup = false")
    weights = values.get("weights", [])
    if not all(isinstance(name, str) and name.strip() for name in weights):
        fail(f"'weights' must be a list of model names such as [\"resnet18\"], not {weights!r}")
    values["weights"] = tuple(weights)
    if "deploy" in values:
        values["deploy"] = _parse_deploy(values["deploy"], fail)
    if values["runs"] < 1:
        fail(f"'runs' must be at least 1, not {values['runs']}")
    if values["device"] not in DEVICES:
        fail(f"'device' must be one of {DEVICES}, not {values['device']!r}")
    if values["memory_limit_mb"] < 64:
        fail(f"'memory_limit_mb' must be at least 64, not {values['memory_limit_mb']}")
    for key in ("train_budget_seconds", "predict_budget_seconds", "too_slow_factor", "warmup_budget_seconds"):
        if key in values and values[key] <= 0:
            fail(f"{key!r} must be positive, not {values[key]}")
    if directory is not None and values["id"] != directory.name:
        fail(f"'id' is {values['id']!r} but the exercise directory is {directory.name!r}")
    return Spec(**values, directory=directory)


def load_spec(exercise_dir) -> Spec:
    """Load and validate exercise_dir/spec.toml."""
    exercise_dir = pathlib.Path(exercise_dir)
    path = exercise_dir / SPEC_FILENAME
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    return parse_spec(data, source=str(path), directory=exercise_dir)


def default_exercises_dir() -> pathlib.Path:
    """The repository's exercises/ directory, next to the grader package."""
    return pathlib.Path(__file__).resolve().parent.parent / "exercises"


def find_exercise(exercise_id: str, exercises_dir=None) -> Spec:
    """Load the spec of one exercise by id, with a message listing the known ids on a miss."""
    exercises_dir = pathlib.Path(exercises_dir or default_exercises_dir())
    if not exercise_id or "/" in exercise_id or exercise_id.startswith("."):
        raise SpecError(f"{exercise_id!r} is not an exercise id")
    exercise_dir = exercises_dir / exercise_id
    if not (exercise_dir / SPEC_FILENAME).is_file():
        known = [p.name for p in _exercise_dirs(exercises_dir)]
        raise SpecError(
            f"no exercise {exercise_id!r} in {exercises_dir} "
            f"(known: {', '.join(known) if known else 'none'})"
        )
    return load_spec(exercise_dir)


def list_exercises(exercises_dir=None) -> list[Spec]:
    """Every exercise under exercises_dir, sorted by id. A malformed spec raises SpecError."""
    exercises_dir = pathlib.Path(exercises_dir or default_exercises_dir())
    return [load_spec(d) for d in _exercise_dirs(exercises_dir)]


def _exercise_dirs(exercises_dir: pathlib.Path) -> list[pathlib.Path]:
    if not exercises_dir.is_dir():
        return []
    return sorted(d for d in exercises_dir.iterdir() if (d / SPEC_FILENAME).is_file())
