"""Figures of the prototype sweep of `simulate.prototypes` (docs/commands.md): DeltaG* against n_w, the class-mean
Gram heatmaps and the limit gap. Each function takes the sweep's result dict and returns a matplotlib figure (no
files; `simulate.prototypes_command` saves them). Re-exported from `simulate.prototypes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(config: dict) -> str:
    return (
        f"m={config['n_classes']}, majority {config['majority_size']}, d={config['dim']}, tau={config['tau']:g}, "
        f"anchors={config['anchors']}, W: {config['geometry']}"
        + (f", batch {config['batch_size']}" if config["batch_size"] else ", full batch")
    )


def delta_g_figure(result: dict[str, Any]) -> Figure:
    """DeltaG* to the prototype Gram against n_w (symlog x so that n_w = 0 shows), one curve per R."""
    plt = _pyplot()
    config = result["config"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for entry in result["summary"]["per_imbalance"]:
        values = np.maximum(entry["delta_g"], 1e-12)
        ax.plot(entry["n_proto"], values, "o-", label=f"R = {entry['imbalance']:g}")
    limit = result["theory"]["limit_delta_g"]
    if limit > 1e-9:
        ax.axhline(limit, color="k", ls="--", lw=1, label=r"theory, $n_w \to \infty$")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlabel(r"prototype copies per class $n_w$ (symlog; 0 at left)")
    ax.set_ylabel(r"$\Delta G^*$ to the prototype Gram")
    ax.set_title(_title(config), fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def gram_figure(result: dict[str, Any]) -> Figure:
    """Target Gram and learnt class-mean Grams at the smallest and largest n_w, one row per R."""
    plt = _pyplot()
    config = result["config"]
    n_protos = list(config["n_proto"])
    first, last = int(np.argmin(n_protos)), int(np.argmax(n_protos))
    ratios = list(result["_grams"])
    fig, axes = plt.subplots(len(ratios), 3, figsize=(9.5, 3.0 * len(ratios)), squeeze=False)
    for row, ratio in enumerate(ratios):
        cells = {c["n_proto"]: c for c in result["cells"] if c["imbalance"] == ratio}
        panels = [("target W W^T", result["_target"])]
        panels += [
            (f"n_w={n_protos[i]}, DeltaG*={cells[n_protos[i]]['delta_g']:.3g}", result["_grams"][ratio][i])
            for i in (first, last)
        ]
        for ax, (title, gram) in zip(axes[row], panels):
            image = ax.imshow(gram, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(f"R={ratio:g}: {title}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="class-mean inner product")
    fig.suptitle(_title(config), fontsize=8)
    return fig


def limit_figure(result: dict[str, Any]) -> Figure:
    """|loss - log n_w - limit| against n_w (log-log) for the largest-n_w minimiser of each R, with c1/n_w and C/n_w."""
    plt = _pyplot()
    config = result["config"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    from matplotlib.lines import Line2D

    handles = []
    for index, (ratio, data) in enumerate(result["limit_convergence"].items()):
        n = np.asarray(data["n_proto"], dtype=float)
        colour = f"C{index}"
        gaps = np.maximum(data["abs_gap"], 1e-300)  # log axis
        handles += ax.loglog(n, gaps, "o-", ms=3, color=colour, label=f"R = {float(ratio):g}")
        ax.loglog(n, abs(data["first_order"]) / n, "--", color=colour, lw=1)
        ax.loglog(n, data["bound_constant"] / n, ":", color=colour, lw=1.5)
    handles += [
        Line2D([], [], color="k", ls="--", lw=1, label=r"$|c_1| / n_w$ (first-order term, 1/$n_w$ reference)"),
        Line2D([], [], color="k", ls=":", lw=1.5, label=r"proven bound $C / n_w$"),
    ]
    ax.legend(handles=handles, fontsize=7)
    ax.set_xlabel(r"prototype copies per class $n_w$")
    reference = "mean CE" if config["anchors"] == "data" else r"$\bar K$ (mean prototype self-CE)"
    ax.set_ylabel(f"|mean loss - log n_w - {reference}|")
    ax.set_title(_title(config) + "\n(embeddings: the minimiser at the largest n_w)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig
