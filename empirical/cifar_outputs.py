"""Outputs of the `empirical.cifar` sweep: summary rows, the figures, the summary manifest, resume look-ups.

summary.json is written last and names every file of the set; `retire_summary` removes an earlier sweep's
summary set when a sweep starts, so a folder without summary.json holds an unfinished sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulate import cli

if TYPE_CHECKING:
    from empirical.cifar import SweepConfig

#: The sweep's own criterion (recorded in summary.json): every run ends with these final metrics (summary.csv
#: columns: the loss and DeltaG* of the last evaluation) finite.
CRITERIA = {"finite_final_metrics": ("final_loss", "delta_g")}
#: Files of the summary set, removed when a sweep starts (summary.json first: it is the set's manifest).
SUMMARY_FILES = ("summary.json", "summary.csv")
FIGURE_PATTERNS = (
    "delta_g_vs_*.png",
    "delta_g_epochs*.png",
    "gram_heatmaps*.png",
    "accuracy*.png",
    "variances_vs_alpha*.png",
)


def summary_row(run_id: str, result: dict) -> dict:
    """One CSV row: identity of the run, its status and its final metrics."""
    config, final = result["config"], result.get("final") or {}
    speeds = [r["images_per_s"] for r in result.get("log", []) if r.get("images_per_s")]
    row = {"run": run_id, "status": result["status"]}
    row.update(
        {
            key: config[key]
            for key in (
                "dataset",
                "imbalance",
                "profile",
                "loss",
                "n_proto",
                "anchors",
                "geometry",
                "alpha",
                "variant",
                "tau",
                "model",
                "augmentation",
                "epochs",
                "seed",
            )
        }
    )
    row["augmentation"] = result.get("augmentation", config["augmentation"])  # the recipe "auto" resolved to
    row["epochs_done"] = len(result.get("log", []))
    row["final_loss"] = final.get("loss")  # the column "loss" names the loss function
    row.update(
        {
            key: value
            for key, value in final.items()
            if key not in ("epoch", "loss", "lr", "train_seconds", "images_per_s")
        }
    )
    row.update(
        {
            f"backbone_{key}": value
            for key, value in (result.get("final_backbone") or {}).items()
            if key != "eval_precision"
        }
    )
    row["mean_images_per_s"] = float(np.mean(speeds)) if speeds else None
    return row


def write_figures(out: Path, results: list[dict], key: str, anchors: tuple = ("data",)) -> list[Path]:
    """The sweep's figures; with several anchor modes one set per mode (the n_w = 0 runs in each)."""
    from empirical import figures

    groups = {"": results}
    if key == "n_proto" and len(anchors) > 1:
        groups = {
            f"_anchors-{mode}": [r for r in results if r["config"]["n_proto"] == 0 or r["config"]["anchors"] == mode]
            for mode in anchors
        }
    paths = []
    for suffix, subset in groups.items():
        made = {
            f"delta_g_vs_{key}": figures.metric_by_sweep(
                subset, key, {"delta_g": r"$\Delta G^*$"}, r"$\Delta G^*$ at the last epoch"
            ),
            "delta_g_epochs": figures.delta_g_over_epochs(subset, key),
            "gram_heatmaps": figures.gram_heatmaps(subset, key),
            "accuracy": figures.accuracy_by_group(subset, key),
        }
        if key == "alpha":
            made["variances_vs_alpha"] = figures.metric_by_sweep(
                subset,
                key,
                {"within_var": "within-class W", "between_var": "between-class B"},
                "variances at the last epoch",
            )
        for name, figure in made.items():
            paths.append(cli.save_figure(figure, out / f"{name}{suffix}.png", dpi=120))
    return paths


def finished_result(path: Path, config) -> dict | None:
    """The stored result of a finished run with the same config (up to resumable changes), else None."""
    from empirical.train import RESUMABLE_CHANGES

    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    current = dataclasses.asdict(config)
    same = all(stored.get("config", {}).get(k) == v for k, v in current.items() if k not in RESUMABLE_CHANGES)
    return stored if same and stored.get("status") == "finished" else None


def summary_line(sweep: SweepConfig, results: list[dict], device: str, world: int, failures: list) -> str:
    finished = [r for r in results if r["status"] == "finished"]
    groups = {}
    for r in finished:
        config = r["config"]
        value = config[sweep.sweep_key]
        label = (
            f"{value:g}"
            if sweep.sweep_key == "alpha" or value == 0 or len(sweep.anchors) == 1
            else f"{value:g}/{config['anchors']}"
        )
        groups.setdefault(label, []).append(r["final"]["delta_g"])
    parts = []
    for label, values in groups.items():
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        parts.append(f"{label}: {np.mean(values):.3f}±{std:.3f}")
    name = "n_w" if sweep.sweep_key == "n_proto" else "alpha"
    if sweep.sweep_key == "n_proto" and len(sweep.anchors) > 1:
        name += "/anchors"
    return (
        f"{len(finished)} runs on {sweep.base.dataset} ({device}, {world} process{'es' * (world > 1)}); "
        f"final DeltaG* by {name} (mean±std over seeds): {', '.join(parts)}; "
        + (
            f"exit 1: non-finite final loss or DeltaG* in {', '.join(failures)}"
            if failures
            else "exit 0: every run ended with a finite loss and DeltaG*"
        )
        + f"; results in {sweep.out}/"
    )


def finite_final_metrics(row: dict) -> bool:
    """`CRITERIA`: the row's final metrics are finite numbers (a result read back from JSON has "nan" strings)."""
    return all(
        isinstance(row.get(key), (int, float)) and math.isfinite(row[key]) for key in CRITERIA["finite_final_metrics"]
    )


def retire_summary(out: Path) -> None:
    """Remove the summary set of an earlier sweep (its manifest first), so none sits beside this sweep's runs."""
    for name in SUMMARY_FILES:
        (out / name).unlink(missing_ok=True)
    for pattern in FIGURE_PATTERNS:
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)


def run_files(run_id: str) -> list[str]:
    """The files a run writes under --out, relative to it (named in summary.json)."""
    return [
        f"runs/{run_id}.jsonl",
        f"runs/{run_id}.json",
        f"checkpoints/{run_id}.pt",
        f"runs/{run_id}.curves.csv",
        f"runs/{run_id}.curves.png",
    ]


def write_summary(
    sweep: SweepConfig, finished: list[dict], rows: list[dict], files: list[str], provenance: dict, failures: list
) -> None:
    """The figures, then summary.json: written last, the manifest of a complete set."""
    out = Path(sweep.out)
    figures = write_figures(out, finished, sweep.sweep_key, sweep.anchors)
    files = [*files, "summary.csv", *(path.name for path in figures)]
    cli.write_json(
        out / "summary.json",
        {
            "command": "empirical.cifar",
            "metadata": cli.run_metadata(),
            "sweep": sweep.sweep_key,
            "values": list(sweep.sweep_values),
            "anchors": list(sweep.anchors),
            "seeds": list(sweep.seeds),
            "base_config": dataclasses.asdict(sweep.base),
            **provenance,
            "criteria": CRITERIA,
            "failed_runs": failures,
            "passed": not failures,
            "files": files,
            "runs": rows,
        },
    )
