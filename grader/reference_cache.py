"""The reference's accuracy and timing on this machine, cached as JSON under the data directory.

The reference notebook goes through exactly the same path as a submission (grading.grade, in the
sandbox, same runs and clocks). Its result is cached per

    (hostname, device name, torch version, exercise id, exercise version)

in $GRADER_DATA_DIR/references/<key>.json, and dropped when the reference's exported code
changes (its sha256 is stored). `grader grade` measures it on demand when it is missing, so
speed_ratio always compares two measurements from the same machine.
"""

import datetime
import hashlib
import json
import os
import pathlib
import re
import tempfile

from grader import grading, results
from grader.errors import InfraError, InvalidNotebook
from grader.notebook import extract_exports

REFERENCES_SUBDIR = "references"


def cache_key(spec, hardware: dict) -> str:
    raw = (f"{hardware['hostname']}--{hardware['device_name']}--torch{hardware['torch']}"
           f"--{spec.id}--v{spec.version}")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def cache_path(data_dir, spec, hardware: dict) -> pathlib.Path:
    return pathlib.Path(data_dir) / REFERENCES_SUBDIR / f"{cache_key(spec, hardware)}.json"


def _reference_code_sha256(spec) -> str | None:
    try:
        return hashlib.sha256(extract_exports(spec.reference_notebook).encode()).hexdigest()
    except InvalidNotebook:
        return None


def load(spec, *, data_dir, hardware: dict) -> dict | None:
    """The cached reference summary, or None when absent, unreadable or stale."""
    path = cache_path(data_dir, spec, hardware)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not isinstance(summary.get("train_seconds"), (int, float)) \
            or not isinstance(summary.get("accuracy"), (int, float)):
        return None
    if summary.get("code_sha256") != _reference_code_sha256(spec):
        return None  # the reference notebook changed since it was measured
    return summary


def save(spec, *, data_dir, result: results.Result) -> dict:
    """Store a reference result's summary atomically; return the summary."""
    summary = {
        "exercise": spec.id,
        "exercise_version": spec.version,
        "accuracy": result.accuracy,
        "accuracy_std": result.accuracy_std,
        "train_seconds": result.train_seconds,
        "predict_seconds": result.predict_seconds,
        "runs": [r.as_json() for r in result.runs],
        "code_sha256": result.code_sha256,
        "hardware": result.hardware,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = cache_path(data_dir, spec, result.hardware)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    os.replace(f.name, path)
    return summary


def measure_reference(spec, *, data_dir, load_dataset=None, unsafe_no_sandbox=False,
                      progress=grading._noop_progress, plot_path=None) -> results.Result:
    """Grade the exercise's reference.ipynb like any submission, cache it, and return the result
    (its own reference, so speed_ratio is 1.0)."""
    result = grading.grade(spec.reference_notebook, spec, data_dir=data_dir, load_dataset=load_dataset,
                           reference=None, unsafe_no_sandbox=unsafe_no_sandbox, progress=progress)
    if result.status in results.JUDGED:
        result.reference = save(spec, data_dir=data_dir, result=result)
        if result.status == results.BELOW_TARGET:
            result.notes.append("the reference itself misses the exercise's target on this machine")
    if result.runs and plot_path is not None:
        from grader import plot
        result.plot = str(plot.render(result, plot_path))
    return result


def load_or_measure(spec, *, data_dir, hardware: dict, load_dataset=None, unsafe_no_sandbox=False,
                    progress=grading._noop_progress, notes: list | None = None) -> dict:
    """The cached reference summary for this machine, measuring the reference first if needed.
    Raises InfraError when the reference itself cannot be measured."""
    cached = load(spec, data_dir=data_dir, hardware=hardware)
    if cached is not None:
        return cached
    progress("phase", text=f"no reference timing for {spec.id} on this machine yet: measuring the reference first")

    def reference_progress(kind, **fields):
        progress(kind, reference=True, **fields)
    result = measure_reference(spec, data_dir=data_dir, load_dataset=load_dataset,
                               unsafe_no_sandbox=unsafe_no_sandbox, progress=reference_progress)
    if result.status not in results.JUDGED:
        raise InfraError(f"the reference notebook of {spec.id} failed on this machine "
                         f"({result.status}: {result.message})")
    if notes is not None:
        notes.append("the reference was measured now, on this machine, before this submission")
    return result.reference
