"""Figures of a sweep of empirical runs (matplotlib's object API: no pyplot, no global backend).

Each function takes the run results returned by `empirical.train.run` (dicts with
"config", "log", "final", "gram", "target_gram") and the name of the swept config field
("n_proto" or "alpha"), and returns a `matplotlib.figure.Figure`; the caller saves it.
Spread over seeds is shown as mean +- one standard deviation with the seed count n.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from empirical.evaluation import over_seeds

LABELS = {"n_proto": "prototypes per class $n_w$", "alpha": r"$\alpha$ (weight of the self-supervised term)"}


def _by_value(results: list[dict], key: str) -> dict:
    """Finished results grouped by the swept value, in increasing order."""
    groups = defaultdict(list)
    for result in results:
        if result.get("status") == "finished" and result.get("final"):
            groups[result["config"][key]].append(result)
    return dict(sorted(groups.items()))


def metric_by_sweep(results: list[dict], key: str, metrics: dict[str, str], title: str) -> Figure:
    """Final values of the named metrics against the swept value: mean +- std over seeds, and each seed."""
    groups = _by_value(results, key)
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(groups))
    for offset, (metric, label) in enumerate(metrics.items()):
        shift = (offset - (len(metrics) - 1) / 2) * 0.08
        stats = [over_seeds(r["final"][metric] for r in runs)[:2] for runs in groups.values()]
        means, stds = zip(*stats) if stats else ((), ())
        axes.errorbar(positions + shift, means, yerr=stds, marker="o", capsize=4, label=label)
        for position, runs in zip(positions, groups.values()):
            axes.scatter(
                [position + shift] * len(runs), [r["final"][metric] for r in runs], s=10, color="grey", zorder=3
            )
    axes.set_xticks(positions, [f"{value:g}" for value in groups])
    axes.set_xlabel(LABELS.get(key, key))
    seeds = sorted({len(runs) for runs in groups.values()})
    axes.set_title(f"{title} (mean ± std, n = {', '.join(map(str, seeds))} seeds)", fontsize=9)
    if len(metrics) > 1:
        axes.legend()
    axes.grid(alpha=0.3)
    return figure


def delta_g_over_epochs(results: list[dict], key: str) -> Figure:
    """DeltaG* of every run against the epoch, coloured by the swept value."""
    groups = _by_value(results, key)
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axes = figure.add_subplot()
    colours = [f"C{i}" for i in range(len(groups))]
    for colour, (value, runs) in zip(colours, groups.items()):
        for i, run in enumerate(runs):
            points = [(r["epoch"], r["delta_g"]) for r in run["log"] if "delta_g" in r]
            axes.plot(*zip(*points), color=colour, alpha=0.8, label=f"{key} = {value:g}" if i == 0 else None)
    axes.set_xlabel("epoch")
    axes.set_ylabel(r"$\Delta G^*$")
    axes.set_title(r"$\Delta G^*$ of the training class means over epochs (one line per seed)", fontsize=9)
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


def gram_heatmaps(results: list[dict], key: str) -> Figure:
    """The target Gram G* and, per swept value, the learned Gram rescaled to ||G*||_F (first seed)."""
    groups = _by_value(results, key)
    firsts = [(value, runs[0]) for value, runs in groups.items()]
    if not firsts:
        return Figure()
    target = np.asarray(firsts[0][1]["target_gram"])
    panels = [("target $G^*$", target)]
    for value, run in firsts:
        gram = np.asarray(run["gram"])
        panels.append(
            (f"{key} = {value:g}, seed {run['config']['seed']}", gram * np.linalg.norm(target) / np.linalg.norm(gram))
        )
    figure = Figure(figsize=(2.6 * len(panels) + 0.8, 2.8), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, matrix) in zip(axes, panels):
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.suptitle(r"class-mean Gram, learned (scaled to $\|G^*\|_F$) vs target", fontsize=9)
    return figure


def accuracy_by_group(results: list[dict], key: str) -> Figure:
    """Test nearest-class-centre accuracy of the majority and minority classes against the swept value."""
    return metric_by_sweep(
        results,
        key,
        {"test_acc_majority": "majority classes", "test_acc_minority": "minority classes", "test_acc_overall": "all"},
        "test nearest-class-centre accuracy",
    )
