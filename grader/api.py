"""The grader's entry points: grade a submission against this machine's reference, and measure
that reference.

    grade_submission(notebook, spec, data_dir=...)  -> results.Result   (`grader grade`, the bot's worker)
    measure_reference(spec, data_dir=...)           -> results.Result   (`grader reference`)

Grading compares a submission with the exercise's reference measured on the same machine, so
this is one step above grading: load the reference's summary from the cache (reference_cache),
or measure it first by grading reference.ipynb exactly as a submission is graded, then grade
the submission against it (grading.grade, which never looks for a reference itself).
"""

import pathlib

from grader import grading, reference_cache, results
from grader.errors import InvalidNotebook
from grader.grading import NO_REFERENCE, Reference, no_progress
from grader.notebook import extract_exports

MEASURED_NOW_NOTE = "the reference was measured now, on this machine, before this submission"


def grade_submission(notebook, spec, *, data_dir: pathlib.Path, load_dataset=None, runs: int | None = None,
                     unsafe_no_sandbox: bool = False, progress=no_progress,
                     plot_path: pathlib.Path | None = None) -> results.Result:
    """Grade one notebook against `spec` and this machine's reference (measured first when it
    is not cached yet). Never raises for anything the learner did."""
    options = dict(data_dir=data_dir, load_dataset=load_dataset, unsafe_no_sandbox=unsafe_no_sandbox,
                   progress=progress)
    try:
        extract_exports(notebook)
    except InvalidNotebook:
        # Told at once, without waiting for a reference measurement (minutes on a fresh machine).
        return grading.grade(notebook, spec, reference=NO_REFERENCE, runs=runs, plot_path=plot_path, **options)
    reference = resolve_reference(spec, **options)
    return grading.grade(notebook, spec, reference=reference, runs=runs, plot_path=plot_path, **options)


def resolve_reference(spec, *, data_dir: pathlib.Path, load_dataset=None, unsafe_no_sandbox: bool = False,
                      progress=no_progress) -> Reference:
    """The cached reference for this machine, or measured now when missing or stale. A reference
    that fails here comes back as Reference.failure, for grade() to report as an infra_error."""
    hardware, _ = grading.detect_hardware(spec.device)
    cached = reference_cache.load(spec, data_dir=data_dir, hardware=hardware)
    if cached is not None:
        return Reference(summary=cached)
    progress("phase", text=f"no reference timing for {spec.id} on this machine yet: measuring the reference first")

    def reference_progress(kind, **fields):
        progress(kind, reference=True, **fields)
    result = measure_reference(spec, data_dir=data_dir, load_dataset=load_dataset,
                               unsafe_no_sandbox=unsafe_no_sandbox, progress=reference_progress)
    if result.status not in results.JUDGED:
        return Reference(summary=None, failure=f"the reference notebook of {spec.id} failed on this machine "
                                               f"({result.status}: {result.message})")
    return Reference(summary=result.reference, notes=(MEASURED_NOW_NOTE,))


def measure_reference(spec, *, data_dir: pathlib.Path, load_dataset=None, unsafe_no_sandbox: bool = False,
                      progress=no_progress, plot_path: pathlib.Path | None = None) -> results.Result:
    """Grade the exercise's reference.ipynb like any submission, cache it, and return the result
    (its own reference, so speed_ratio is 1.0)."""
    result = grading.grade(spec.reference_notebook, spec, data_dir=data_dir, reference=NO_REFERENCE,
                           load_dataset=load_dataset, unsafe_no_sandbox=unsafe_no_sandbox, progress=progress)
    if result.status in results.JUDGED:
        result.reference = reference_cache.save(spec, data_dir=data_dir, result=result)
        if result.status == results.BELOW_TARGET:
            result.notes.append("the reference itself misses the exercise's target on this machine")
    if result.runs and plot_path is not None:
        from grader import plot
        result.plot = str(plot.render(result, plot_path))
    return result
