"""Figures of the verification report: what a figure is, the data figures share, drawing and saving one.

The figures are drawn from library calls with small settings (the checks return numbers, not
pictures); each is drawn only when one of its claims is reported (the catalogue is
`proofs_checks.report.FIGURES`; the figure functions live in `report_figures_ssem` and
`report_figures_prototypes`, the empirical one here). A figure that raises is kept as its error and
the report goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from proofs_checks.report_render import FIGURE_FOLDER, format_value

METRIC_LABELS = {
    "delta_g": r"$\Delta G^*$",
    "within_var": "within-class variance W",
    "between_var": "between-class variance B",
    "test_acc_majority": "majority classes",
    "test_acc_minority": "minority classes",
}


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: file stem, the claims it illustrates, its caption and how to draw it."""

    name: str
    claims: tuple
    caption: str
    draw: Callable  # (FigureInputs) -> matplotlib Figure


@dataclass(frozen=True)
class MadeFigure:
    name: str
    claims: tuple
    caption: str
    path: Path | None
    error: str | None
    seconds: float


class FigureInputs:
    """Data shared by several figures, computed at most once per report (a run-local cache)."""

    @cached_property
    def prototype_sweep(self) -> dict:
        """simulate.prototypes sweep, ETF prototypes: m=4, majority 20, R in {1, 5, 20}, n_w up to 1e4."""
        from simulate import prototypes
        from simulate.prototypes_command import Config

        config = Config(
            n_classes=4,
            majority_size=20,
            imbalance=(1.0, 5.0, 20.0),
            n_proto=(0, 1, 10, 100, 1000, 10000),
            dim=8,
            tau=0.5,
            certify_max_vectors=0,
        )
        return prototypes.run(config)


def new_figure(width: float, height: float, columns: int = 1):
    """An empty matplotlib Figure (object API, constrained layout) and its row of `columns` axes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, axes


def empirical_figure(entry: dict):
    """DeltaG* (and variances or accuracies) against the swept value: mean ± std over seeds."""
    key, rows = entry["sweep"], entry["rows"]
    second = ("within_var", "between_var") if key == "alpha" else ("test_acc_majority", "test_acc_minority")
    figure, (left, right) = new_figure(11.0, 4.2, 2)
    positions = np.arange(len(rows))
    for ax, metrics in ((left, ("delta_g",)), (right, second)):
        for metric in metrics:
            stats = [row.get(metric) for row in rows]
            if all(stats):
                ax.errorbar(
                    positions,
                    [s["mean"] for s in stats],
                    yerr=[s["std"] for s in stats],
                    marker="o",
                    capsize=4,
                    label=METRIC_LABELS.get(metric, metric),
                )
        ax.set_xticks(positions, [format_value(row[key]) for row in rows])
        ax.set_xlabel({"n_proto": r"prototype copies per class $n_w$", "alpha": r"$\alpha$"}.get(key, key))
        ax.grid(alpha=0.3)
    left.set_ylabel(r"$\Delta G^*$ at the last epoch")
    left.set_title(r"$\Delta G^*$ of the learnt class means to the target Gram", fontsize=9)
    right.set_ylabel("variance" if key == "alpha" else "nearest-class-centre test accuracy")
    right.set_title("within / between-class variance" if key == "alpha" else "test accuracy by class group", fontsize=9)
    right.legend(fontsize=8)
    seeds = "/".join(map(str, sorted({row["seeds"] for row in rows})))
    figure.suptitle(
        f"Empirical: {entry['dataset']}, R = {format_value(entry['imbalance'])}, {entry['loss']} loss, "
        f"tau = {entry['tau']}, {entry['epochs']} epochs (mean ± std over {seeds} seed(s); bars: 1 std)",
        fontsize=10,
    )
    return figure


def draw_figure(spec: FigureSpec, inputs: FigureInputs, out_dir) -> MadeFigure:
    """Draw and save one figure as out_dir/figures/<name>.png; an exception is kept as the figure's error."""
    from simulate import cli

    started = time.perf_counter()
    path, error = None, None
    try:
        figure = spec.draw(inputs)
        path = cli.save_figure(figure, Path(out_dir) / FIGURE_FOLDER / f"{spec.name}.png")
        _close(figure)
    except Exception as failure:  # a figure that cannot be drawn is reported, the report goes on
        error = f"{type(failure).__name__}: {failure}"
    return MadeFigure(spec.name, spec.claims, spec.caption, path, error, time.perf_counter() - started)


def draw_empirical(entry: dict, claims: tuple, out_dir, index: int) -> MadeFigure:
    """The figure of one empirical summary, attached to the claims with the empirical route."""
    spec = FigureSpec(
        f"empirical_{index}",
        claims,
        f"Empirical {entry['dataset']}: final DeltaG* and "
        f"{'variances' if entry['sweep'] == 'alpha' else 'accuracies'} against {entry['sweep']} "
        f"(mean ± std over seeds), from {entry['path']}.",
        lambda _: empirical_figure(entry),
    )
    return draw_figure(spec, FigureInputs(), out_dir)


def _close(figure) -> None:
    """Release a figure made through pyplot (library figures of simulate); object-API figures need nothing."""
    import matplotlib.pyplot as plt

    plt.close(figure)
