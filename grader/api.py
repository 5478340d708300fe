"""The grader's entry points: grade a submission against this machine's reference, and measure
that reference.

    grade_submission(notebook, spec, data_dir=...)  -> results.Result   (`grader grade`, the bot's worker)
    measure_reference(spec, data_dir=...)           -> results.Result   (`grader reference`)
    check_submission(notebook, spec, data_dir=...)  -> results.Result   (the bot's `check` lane)

Grading compares a submission with the exercise's reference measured on the same machine, so
this is one step above grading: load the reference's summary from the cache (reference_cache),
or measure it first by grading reference.ipynb exactly as a submission is graded, then grade
the submission against it (grading.grade, which never looks for a reference itself).

Comparable conditions: a cached reference may have been measured on a quieter (or busier)
machine. When the submission's ratio against it is extreme (too_slow, or more than
REMEASURE_FASTER_RATIO times faster and REMEASURE_MIN_GAP_SECONDS faster), the reference is measured again now, beside the
submission, with as many runs, and the submission is judged against that fresh measurement
(reference_remeasured = true, with a note). The fresh measurement is not cached.
"""

import pathlib

from grader import grading, reference_cache, results
from grader.errors import InvalidNotebook
from grader.grading import NO_REFERENCE, Reference, no_progress
from grader.notebook import extract_exports

MEASURED_NOW_NOTE = "the reference was measured now, on this machine, before this submission"
REMEASURE_FASTER_RATIO = 3.0  # speed_ratio (reference rank time / submission's) above which the
                              # cached reference is measured again beside the submission ...
REMEASURE_MIN_GAP_SECONDS = 0.5  # ... when the two rank times also differ by this much (s): on
                                 # sub-second references process jitter alone makes 3x ratios
REMEASURED_NOTE = ("the speed ratio against the cached reference was extreme ({ratio}), so the reference "
                   "was measured again now, beside this submission, and the submission judged against that")


def grade_submission(notebook, spec, *, data_dir: pathlib.Path, load_dataset=None, runs: int | None = None,
                     unsafe_no_sandbox: bool = False, progress=no_progress,
                     plot_path: pathlib.Path | None = None) -> results.Result:
    """Grade one notebook against `spec` and this machine's reference (measured first when it
    is not cached yet). Never raises for anything the learner did."""
    options = dict(data_dir=data_dir, load_dataset=load_dataset, unsafe_no_sandbox=unsafe_no_sandbox,
                   progress=progress)
    # The first sandbox starts now, beside the dataset's load and the reference's look-up.
    grading.warm_pool(spec, data_dir=data_dir, unsafe_no_sandbox=unsafe_no_sandbox)
    try:
        extract_exports(notebook)
    except InvalidNotebook:
        # Told at once, without waiting for a reference measurement (minutes on a fresh machine).
        return grading.grade(notebook, spec, reference=NO_REFERENCE, runs=runs, plot_path=plot_path, **options)
    reference = resolve_reference(spec, **options)
    result = grading.grade(notebook, spec, reference=reference, runs=runs, plot_path=None, **options)
    if needs_fresh_reference(result, reference):
        _judge_against_fresh_reference(result, spec, runs=len(result.runs), **options)
    grading.attach_plot(result, plot_path)  # after any re-judging, so the plot shows the final verdict
    return result


CHECK_NOTE = ("a check: one run on the public split of the data, against the target only; not ranked, "
              "no reference, and the test set is the public one, so its score is only a sanity check")


def check_submission(notebook, spec, *, data_dir: pathlib.Path, load_dataset=None, unsafe_no_sandbox: bool = False,
                     progress=no_progress, plot_path: pathlib.Path | None = None) -> results.Result:
    """"Does my notebook even run?": one sandboxed run on the dataset's fixed public split (no
    per-grade secret), judged against the target only. No reference is measured or compared
    (so no too_slow and no review flags): it is quick, and it is never ranked. Same sandbox,
    clocks and limits as a grade."""
    if load_dataset is None:
        from grader import datasets

        load_dataset = datasets.load  # the public split: what the notebook's try-out cell sees too
    result = grading.grade(notebook, spec, data_dir=data_dir, reference=NO_REFERENCE, runs=1,
                           load_dataset=load_dataset, unsafe_no_sandbox=unsafe_no_sandbox, progress=progress,
                           plot_path=plot_path)
    result.notes.append(CHECK_NOTE)
    return result


def needs_fresh_reference(result: results.Result, reference: Reference) -> bool:
    """Whether the ratio against a cached reference is extreme enough to measure it again now."""
    if MEASURED_NOW_NOTE in reference.notes or not result.reference or result.status not in results.JUDGED:
        return False
    if result.status == results.TOO_SLOW:
        return not grading.latency_over_limit(result)  # a latency limit is absolute: no reference in it
    return (result.speed_ratio is not None and result.speed_ratio > REMEASURE_FASTER_RATIO
            and result.reference["rank_seconds"] - result.rank_seconds > REMEASURE_MIN_GAP_SECONDS)


def _judge_against_fresh_reference(result: results.Result, spec, *, runs: int, data_dir: pathlib.Path,
                                   load_dataset=None, unsafe_no_sandbox: bool = False, progress=no_progress) -> None:
    ratio = result.speed_ratio
    ratio_text = f"{ratio:.2f}x" if ratio is not None else result.status
    progress("phase", text=f"extreme speed ratio ({ratio_text}): measuring the reference again, beside this submission")

    def reference_progress(kind, **fields):
        progress(kind, reference=True, **fields)
    fresh = grading.grade(spec.reference_notebook, spec, data_dir=data_dir, reference=NO_REFERENCE, runs=runs,
                          load_dataset=load_dataset, unsafe_no_sandbox=unsafe_no_sandbox, progress=reference_progress)
    if fresh.status not in results.JUDGED:
        result.notes.append(f"the reference could not be measured again ({fresh.status}: {fresh.message}); "
                            "judged against the cached measurement")
        return
    result.reference = reference_cache.summarize(spec, fresh)
    result.reference_remeasured = True
    result.notes.append(REMEASURED_NOTE.format(ratio=ratio_text))
    grading.review_and_judge(spec, result, result.config["test_size"])


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
    grading.attach_plot(result, plot_path)
    return result
