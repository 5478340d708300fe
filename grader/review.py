"""Review flags: results that are possible but implausible, for an organizer to look at before
they reach a leaderboard. A flag never changes a status; the bot keeps a flagged entry off the
board until an organizer approves it.

Every threshold is here, in one place. Each rule compares the submission with the reference
measured on the same machine (result.reference); without a reference there are no flags.

    train_near_zero     median train() under TRAIN_NEAR_ZERO_FRACTION of the reference's:
                        the training happened somewhere else (predict(), a look-up table)
    too_good_too_fast   mean accuracy above the reference's by more than TOO_GOOD_STANDARD_ERRORS
                        standard errors of the test set, at under TOO_FAST_FRACTION of its rank
                        time. When the reference is so accurate that this bar lies within one test
                        item of 100% (digits: 99.5% on 360 images), the bar is the reference's own
                        accuracy: matching a tuned reference at a fraction of its time is the most
                        a looked-up answer can show there. Other metrics (rmse, mae, pearson): a score
                        better, in the metric's direction, than the reference's by more than
                        TOO_GOOD_STANDARD_ERRORS x max(the reference's run-to-run std, TOO_GOOD_MIN_MARGIN
                        of its score); error_rate is judged as the accuracy it complements
    far_too_good        at any speed, a score beyond the reference's by FAR_TOO_GOOD_MARGINS of the margins
                        above (accuracy: test-set standard errors, capped below 100% as above; other
                        metrics: the run-to-run/minimum margin): public data sets hold every answer, and
                        a lookup that re-identifies the test items can run at the reference's pace
    predict_heavy       median predict() over PREDICT_HEAVY_FACTOR x the reference's + grace, yet
                        inside the predict limit: work moved from train() into predict()
    warmup_heavy        median untimed warm-up over WARMUP_HEAVY_FACTOR x the reference's + grace:
                        work moved into the warm-up (which only ever sees random data)
"""

import math
import statistics

TRAIN_NEAR_ZERO_FRACTION = 0.05    # median train() below this fraction of the reference's median
TOO_GOOD_STANDARD_ERRORS = 2.0     # accuracy margin over the reference, in test-set standard errors
TOO_FAST_FRACTION = 0.2            # ... while the median rank time is below this fraction of the reference's
TOO_GOOD_MIN_MARGIN = 0.02        # non-accuracy metrics: the smallest margin, as a fraction of the reference's score
FAR_TOO_GOOD_MARGINS = 6.0        # far_too_good: how many margins beyond the reference, whatever the time
PREDICT_HEAVY_FACTOR = 5.0         # median predict() over this many times the reference's median ...
PREDICT_HEAVY_GRACE_SECONDS = 0.25  # ... plus this (s), so jitter on a millisecond predict() never flags
WARMUP_HEAVY_FACTOR = 5.0          # median warm-up over this many times the reference's median ...
WARMUP_HEAVY_GRACE_SECONDS = 5.0   # ... plus this (s): first-call costs (imports, compilation) vary a lot

TRAIN_NEAR_ZERO = "train_near_zero"
TOO_GOOD_TOO_FAST = "too_good_too_fast"
FAR_TOO_GOOD = "far_too_good"
PREDICT_HEAVY = "predict_heavy"
WARMUP_HEAVY = "warmup_heavy"
FLAG_CODES = (TRAIN_NEAR_ZERO, TOO_GOOD_TOO_FAST, FAR_TOO_GOOD, PREDICT_HEAVY, WARMUP_HEAVY)


def accuracy_standard_error(accuracy: float, test_size: int) -> float:
    """Binomial standard error of a test-set accuracy (fraction)."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / test_size) if test_size else 0.0


def too_good_bar(reference_accuracy: float, test_size: int, margins: float = TOO_GOOD_STANDARD_ERRORS) -> float:
    """The accuracy above which a very fast result counts as too good (see the module docstring)."""
    bar = reference_accuracy + margins * accuracy_standard_error(reference_accuracy, test_size)
    ceiling = 1.0 - 1.0 / test_size if test_size else 1.0
    return bar if bar < ceiling else reference_accuracy


def flags_for(result, test_size: int) -> list[dict]:
    """The review flags of a result whose runs all completed: [{code, message}]."""
    reference = result.reference
    if not reference or not result.runs:
        return []
    flags = []

    def flag(code, message):
        flags.append({"code": code, "message": message})

    train, ref_train = result.train_seconds, reference.get("train_seconds")
    if ref_train and train < TRAIN_NEAR_ZERO_FRACTION * ref_train:
        flag(TRAIN_NEAR_ZERO, f"median train() {train:.3f} s is under {TRAIN_NEAR_ZERO_FRACTION:.0%} of the "
                              f"reference's {ref_train:.3f} s: where does the training happen?")

    rank, ref_rank, ref_accuracy = result.rank_seconds, reference.get("rank_seconds"), reference.get("accuracy")
    fast = bool(ref_rank) and rank < TOO_FAST_FRACTION * ref_rank
    if fast and result.accuracy is not None and ref_accuracy is not None and test_size:
        bar = too_good_bar(ref_accuracy, test_size)
        if result.accuracy > bar:
            flag(TOO_GOOD_TOO_FAST, f"accuracy {result.accuracy:.2%} beats the reference's {ref_accuracy:.2%} "
                                    f"(bar {bar:.2%}) in {rank:.3f} s, under {TOO_FAST_FRACTION:.0%} of its "
                                    f"{ref_rank:.3f} s: check for looked-up answers")
    elif fast and result.accuracy is None and reference.get("score") is not None and result.score is not None:
        ref_score = reference["score"]
        margin = TOO_GOOD_STANDARD_ERRORS * max(reference.get("score_std") or 0.0,
                                                TOO_GOOD_MIN_MARGIN * abs(ref_score))
        higher = getattr(result, "higher_is_better", True)
        bar = ref_score + margin if higher else ref_score - margin
        if (result.score > bar) if higher else (result.score < bar):
            flag(TOO_GOOD_TOO_FAST, f"{result.metric} {result.score:.4g} beats the reference's {ref_score:.4g} "
                                    f"(bar {bar:.4g}) in {rank:.3f} s, under {TOO_FAST_FRACTION:.0%} of its "
                                    f"{ref_rank:.3f} s: check for looked-up answers")

    already = any(f["code"] == TOO_GOOD_TOO_FAST for f in flags)
    if not already and result.accuracy is not None and ref_accuracy is not None and test_size:
        bar = too_good_bar(ref_accuracy, test_size, FAR_TOO_GOOD_MARGINS)
        if bar > ref_accuracy and result.accuracy > bar:  # no bar where the reference is already near 100%
            flag(FAR_TOO_GOOD, f"accuracy {result.accuracy:.2%} is far beyond the reference's {ref_accuracy:.2%} "
                               f"(bar {bar:.2%}): check for a look-up of the public data set's answers")
    elif not already and result.accuracy is None and reference.get("score") is not None and result.score is not None:
        ref_score = reference["score"]
        margin = FAR_TOO_GOOD_MARGINS * max(reference.get("score_std") or 0.0, TOO_GOOD_MIN_MARGIN * abs(ref_score))
        higher = getattr(result, "higher_is_better", True)
        bar = ref_score + margin if higher else ref_score - margin
        if (result.score > bar) if higher else (result.score < bar):
            flag(FAR_TOO_GOOD, f"{result.metric} {result.score:.4g} is far beyond the reference's {ref_score:.4g} "
                               f"(bar {bar:.4g}): check for a look-up of the public data set's answers")

    predict, ref_predict = result.predict_seconds, reference.get("predict_seconds")
    if ref_predict is not None and predict > PREDICT_HEAVY_FACTOR * ref_predict + PREDICT_HEAVY_GRACE_SECONDS:
        flag(PREDICT_HEAVY, f"median predict() {predict:.3f} s is {predict / max(ref_predict, 1e-9):.0f}x the "
                            f"reference's {ref_predict:.3f} s: predict() should only run the trained model")

    warmups = [r.warmup_seconds for r in result.runs if r.warmup_seconds is not None]
    ref_warmup = reference.get("warmup_seconds")
    if warmups and ref_warmup is not None:
        warmup = statistics.median(warmups)
        if warmup > WARMUP_HEAVY_FACTOR * ref_warmup + WARMUP_HEAVY_GRACE_SECONDS:
            flag(WARMUP_HEAVY, f"median untimed warm-up {warmup:.2f} s is far longer than the reference's "
                               f"{ref_warmup:.2f} s: the warm-up should only absorb start-up costs")
    return flags
