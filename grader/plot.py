"""One PNG per result: accuracy and train time per run against the target and the reference,
and the learning curve when the submission called report(...)."""

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: no display on a grading host
import matplotlib.pyplot as plt  # noqa: E402

from grader import metrics  # noqa: E402

FIGURE_DPI = 110
PANEL_SIZE = (4.4, 3.6)      # inches per panel
CURVE_PREFERENCE = ("loss", "train_loss", "val_loss", "accuracy", "acc")  # first present is drawn
STATUS_COLORS = {"passed": "tab:green", "below_target": "tab:orange", "too_slow": "tab:orange"}


def _curve_key(points: list) -> str | None:
    keys = {k for p in points for k in p if k != "epoch"}
    for key in CURVE_PREFERENCE:
        if key in keys:
            return key
    return min(keys) if keys else None


def render(result, path) -> pathlib.Path:
    """Draw `result` (a results.Result with at least one run) to `path`; return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = result.runs
    has_curve = any(r.curve for r in runs)
    panels = 3 if has_curve else 2
    fig, axes = plt.subplots(1, panels, figsize=(PANEL_SIZE[0] * panels, PANEL_SIZE[1]), dpi=FIGURE_DPI)
    labels = [f"run {i + 1}" for i in range(len(runs))]
    color = STATUS_COLORS.get(result.status, "tab:red")
    reference = result.reference or {}

    ax = axes[0]
    # The metric's own scale: percentages for accuracy-type metrics, plain numbers otherwise.
    metric = metrics.get(result.metric)
    scale = 100.0 if metric.is_fraction else 1.0
    scores = [scale * r.score for r in runs]
    ax.bar(labels, scores, color=color, alpha=0.8)
    levels = list(scores)
    if result.target is not None:
        ax.axhline(scale * result.target, color="black", linestyle="--",
                   label=f"target {metric.format_target(result.target)}")
        levels.append(scale * result.target)
    reference_score = reference.get("score", reference.get("accuracy"))
    if reference_score is not None:
        ax.axhline(scale * reference_score, color="tab:blue", linestyle=":",
                   label=f"reference {metric.format(reference_score)}")
        levels.append(scale * reference_score)
    low, high = min(levels), max(levels)
    margin = max(0.5 if metric.is_fraction else 0.0, (high - low) * 0.3) or 0.05 * max(abs(high), 1e-3)
    if metric.is_fraction:
        ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    else:
        ax.set_ylim(low - margin, high + margin)
    ax.set_ylabel(f"test {metric.display_name}" + (" (%)" if metric.is_fraction else ""))
    ax.set_title(f"{metric.display_name}: mean {metric.format(result.score)}")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)

    ax = axes[1]
    ax.bar(labels, [r.train_seconds for r in runs], color=color, alpha=0.8, label="train()")
    ax.bar(labels, [r.predict_seconds for r in runs], bottom=[r.train_seconds for r in runs],
           color="tab:gray", alpha=0.6, label="predict()")
    if reference.get("rank_seconds") is not None:
        ax.axhline(reference["rank_seconds"], color="tab:blue", linestyle=":",
                   label=f"reference train+predict {reference['rank_seconds']:.2f} s")
    ax.set_ylabel("seconds (grader's wall clock)")
    ratio = f", {result.speed_ratio:.2f}x reference speed" if result.speed_ratio else ""
    ax.set_title(f"median train+predict {result.rank_seconds:.2f} s{ratio}")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)

    if has_curve:
        ax = axes[2]
        key = _curve_key([p for r in runs for p in r.curve])
        for label, run in zip(labels, runs):
            points = [p for p in run.curve if key in p]
            xs = [p.get("epoch", i) for i, p in enumerate(points)]
            ax.plot(xs, [p[key] for p in points], marker="." if len(points) < 50 else None, label=label)
        ax.set_xlabel("epoch (as reported)")
        ax.set_ylabel(key)
        ax.set_title("learning curve from report()")
        ax.legend(fontsize="small")

    device = result.hardware.get("device_name", "?")
    fig.suptitle(f"{result.exercise}: {result.status} on {device}, torch {result.hardware.get('torch', '?')}",
                 color=color if result.status != "passed" else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
