"""The grader's progress events, folded into what the bot shows while a job runs ("run k of N").

The grading process forwards the grader's progress callbacks (`run`, `phase`, `run_done`,
`failed`; those of the reference carry reference=True) over its pipe; the worker folds them
here, and the LeaseKeeper writes the latest state to the job row (studybot/services/feedback.py
renders it in the learner's DM).
"""

import threading


class Progress:
    """{"stage", "run", "runs", "phase", …}, updated by the supervising thread and read by the
    LeaseKeeper; `version` changes whenever there is something new to write."""

    def __init__(self, runs: int, attempt: int):
        self._lock = threading.Lock()
        self._state = {"stage": "starting", "run": 0, "runs": runs, "attempt": attempt}
        self._version = 1

    def event(self, kind: str, fields: dict) -> None:
        with self._lock:
            state = self._state
            if fields.get("reference"):
                state["stage"] = "measuring the reference"
                if kind == "run":
                    state["reference_run"], state["reference_runs"] = fields["run"] + 1, fields["total"]
            elif kind == "run":
                state.update(stage="grading", run=fields["run"] + 1, runs=fields["total"],
                             phase="starting the sandbox")
            elif kind == "phase":
                if "run" in fields:
                    state["phase"] = str(fields.get("text", ""))[:80]
                else:
                    state["stage"] = "grading"
            elif kind == "run_done":
                # the run's score in its exercise's metric (accuracy, rmse, ...), not only accuracy
                state.update(runs_done=fields["run"] + 1, last_score=fields.get("score"),
                             last_metric=fields.get("metric") or "accuracy", phase="done")
            elif kind == "failed":
                state.update(phase=f"failed: {fields.get('status')}")
            else:
                return
            self._version += 1

    def expect_runs(self, runs: int) -> None:
        with self._lock:
            self._state["runs"] = runs
            self._version += 1

    def snapshot(self) -> tuple[int, dict]:
        with self._lock:
            return self._version, dict(self._state)
