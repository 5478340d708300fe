"""The cache of the reference's accuracy and timing on this machine, as JSON under the data directory.

A reference result (measured by grader/api.py, through exactly the same path as a submission:
grading.grade, in the sandbox, same runs and clocks) is cached per

    (hostname, device name, torch version, exercise id, exercise version, SUMMARY_FORMAT)

in $GRADER_DATA_DIR/references/<key>.json, and dropped when the reference's exported code
changes (its sha256 is stored) or the summary's format is older than SUMMARY_FORMAT. This module only reads and writes that cache; it grades nothing.
"""

import datetime
import hashlib
import json
import os
import pathlib
import re
import tempfile

from grader import results
from grader.errors import InvalidNotebook
from grader.notebook import extract_exports

REFERENCES_SUBDIR = "references"
SUMMARY_FORMAT = 2  # bump when the summary's fields or the clock change: older entries are stale.
                    # 2: the ranking clock (rank_seconds = train + predict from the data's reveal),
                    #    its interval, warm-up time


def cache_key(spec, hardware: dict) -> str:
    raw = (f"{hardware['hostname']}--{hardware['device_name']}--torch{hardware['torch']}"
           f"--{spec.id}--v{spec.version}--f{SUMMARY_FORMAT}")
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
    if isinstance(summary, dict) and "score" not in summary:
        summary["score"] = summary.get("accuracy")  # written before metrics: accuracy was the score
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT or any(
            not isinstance(summary.get(key), (int, float))
            for key in ("score", "train_seconds", "predict_seconds", "rank_seconds")):
        return None
    if summary.get("code_sha256") != _reference_code_sha256(spec):
        return None  # the reference notebook changed since it was measured
    return summary


def summarize(spec, result: results.Result) -> dict:
    """What a submission is compared with: the reference result's accuracy and times."""
    low, high = result.rank_interval
    return {
        "format": SUMMARY_FORMAT,
        "exercise": spec.id,
        "exercise_version": spec.version,
        "metric": result.metric,
        "score": result.score,
        "score_std": result.score_std,
        "accuracy": result.accuracy,
        "accuracy_std": result.accuracy_std,
        "train_seconds": result.train_seconds,
        "predict_seconds": result.predict_seconds,
        "rank_seconds": result.rank_seconds,
        "rank_seconds_low": low,
        "rank_seconds_high": high,
        "warmup_seconds": result.warmup_seconds,
        "latency_ms": result.latency_ms,    # deployment exercises; None otherwise
        "model_bytes": result.model_bytes,
        "runs": [r.as_json() for r in result.runs],
        "code_sha256": result.code_sha256,
        "hardware": result.hardware,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save(spec, *, data_dir, result: results.Result) -> dict:
    """Store a reference result's summary atomically; return the summary."""
    summary = summarize(spec, result)
    path = cache_path(data_dir, spec, result.hardware)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    os.replace(f.name, path)
    return summary
