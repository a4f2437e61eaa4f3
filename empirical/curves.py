"""Per-epoch curves of training runs: the table (CSV rows) and the figure, from `empirical.train.run`'s log.

A run's log has one record per epoch with the mean training loss; the records of evaluated
epochs (every ``eval_every`` and the last) also carry the geometry (`empirical.evaluation`).
`curve_rows` keeps, per epoch, the quantities a convergence judgement reads (loss, DeltaG*,
within-class variance W, nearest-class-centre accuracy); `curves_figure` draws them for a sweep
of runs; `write_curves` saves one run's CSV and figure (the only function here that writes).

How a command line with an output folder calls it, after a run finishes::

    write_curves(result, out_dir / "runs", f"{run_id}.curves")   # -> runs/<run_id>.curves.csv and .png
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

#: Columns of the curve table: the epoch, then the quantities, None where an epoch was not evaluated.
CURVE_COLUMNS = ("epoch", "lr", "loss", "delta_g", "within_var", "between_var", "train_acc_overall", "test_acc_overall")
#: The panels of `curves_figure`: log key -> axis label.
PANELS = {
    "loss": "training loss (epoch mean)",
    "delta_g": r"$\Delta G^*$ to the target Gram",
    "within_var": "within-class variance W",
    "test_acc_overall": "test nearest-class-centre accuracy",
}


def curve_rows(log: list[dict]) -> list[dict]:
    """One row per epoch of ``log`` with the `CURVE_COLUMNS` (None where the epoch was not evaluated)."""
    return [{column: record.get(column) for column in CURVE_COLUMNS} for record in log]


def _points(log: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(record["epoch"], record[key]) for record in log if record.get(key) is not None]
    return ([e for e, _ in pairs], [v for _, v in pairs]) if pairs else ([], [])


def curves_figure(results: list[dict], key: str, title: str) -> Figure:
    """Loss, DeltaG*, W and test NCC accuracy against the epoch: one thin line per run, coloured by ``key``.

    Args:
        results: run results of `empirical.train.run` ("config", "log").
        key: the config field the runs sweep (e.g. "n_proto", "alpha"); one colour per value.
        title: the figure's title (the setting).
    """
    groups = defaultdict(list)
    for result in results:
        groups[result["config"][key]].append(result["log"])
    figure = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = figure.subplots(1, len(PANELS), squeeze=True)
    for ax, (metric, label) in zip(axes, PANELS.items()):
        for index, (value, logs) in enumerate(sorted(groups.items())):
            for seed, log in enumerate(logs):
                ax.plot(
                    *_points(log, metric),
                    color=f"C{index}",
                    lw=0.9,
                    alpha=0.7,
                    label=f"{key} = {value:g} ({len(logs)} runs)" if seed == 0 else None,
                )
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    return figure


def write_curves(result: dict, folder, stem: str = "curves") -> tuple[Path, Path]:
    """Write one run's curves as ``folder``/``stem``.csv and .png (atomically); returns both paths."""
    from simulate import cli

    folder = Path(folder)
    csv_path = cli.write_csv(folder / f"{stem}.csv", curve_rows(result["log"]))
    config = result["config"]
    swept = "n_proto" if config.get("loss") == "prototype" else "alpha"
    figure = curves_figure(
        [result], swept, f"{config.get('dataset')}: seed {config.get('seed')}, {config.get('epochs')} epochs"
    )
    return csv_path, cli.save_figure(figure, folder / f"{stem}.png")
