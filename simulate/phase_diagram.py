"""`python -m simulate.phase_diagram`: Paper B's collapse phase diagram, closed form vs free embeddings.

For every (alpha, tau) of the grid: the closed-form SSEM optimum (theory) and, unless
--no-simulate, the minimum over free unit embeddings (all grid points optimised in one
batch). Writes phase_diagram.json (config, points, alpha*(tau), summary), phase_diagram.csv
and phase_diagram.png (theory and simulation side by side, alpha*(tau) drawn on both).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from simulate import cli, phase
from simulate.cli import option
from theory import ssem
from theory.arguments import TAU_RANGE, VARIANTS, require_alpha, require_tau

PROG = "python -m simulate.phase_diagram"
DTYPES = {"float64": "float64", "float32": "float32"}
#: Runs estimated longer than this print their estimate before starting.
LONG_RUN_SECONDS = 60.0


def alphas_from(text: str) -> np.ndarray:
    """The alpha grid of `--alphas START:STOP:COUNT` (linear, within [0, 1]); ValueError naming the flag."""
    start, stop, count = cli.parse_range(text, name="--alphas")
    alphas = np.linspace(start, stop, count)
    try:
        require_alpha(alphas)
    except ValueError:
        raise ValueError(f"--alphas must lie in [0, 1], got {text}") from None
    return alphas


def taus_from(text: str) -> np.ndarray:
    """The tau grid of `--taus START:STOP:COUNT` (log-spaced, within theory.arguments.TAU_RANGE)."""
    start, stop, count = cli.parse_range(text, name="--taus")
    try:
        require_tau([start, stop])
    except ValueError:
        raise ValueError(f"--taus must be > 0 (log-spaced), got {text}") from None
    if not (TAU_RANGE[0] <= start and stop <= TAU_RANGE[1]):
        raise ValueError(
            f"--taus must lie in [{TAU_RANGE[0]:g}, {TAU_RANGE[1]:g}] (where the numerics are exact), got {text}"
        )
    return np.geomspace(start, stop, count)


def option_check(parse_text, name: str):
    """An option check from a parser raising 'NAME must ...': the message without the repeated name."""

    def check(text):
        try:
            parse_text(text)
        except ValueError as error:
            raise ValueError(str(error).removeprefix(f"{name} ")) from None

    return check


_check_bytes = option_check(lambda text: cli.parse_bytes(text, name="--max-memory"), "--max-memory")


@dataclass(frozen=True)
class Config:
    """Paper B's collapse phase diagram: closed form against free-embedding minima."""

    m: int = option(4, "classes", check=cli.at_least(2))
    n: int = option(4, "instances per class", check=cli.at_least(2))
    p: int = option(2, "views per instance (>= 2 for the supcon variant)", check=cli.at_least(1))
    dim: int | None = option(None, "embedding dimension (none: m*n; at least m*n - 1)", check=cli.at_least(1))
    variant: str = option(
        "instance", "instance: anchor kept in its denominator (authors' CIFAR code); supcon: removed", choices=VARIANTS
    )
    alphas: str = option(
        "0:1:11", "alpha grid START:STOP:COUNT, linear, within [0, 1]", check=option_check(alphas_from, "--alphas")
    )
    taus: str = option(
        "0.05:5:9",
        f"tau grid START:STOP:COUNT, log-spaced, within [{TAU_RANGE[0]:g}, {TAU_RANGE[1]:g}] (where the numerics "
        "are exact)",
        check=option_check(taus_from, "--taus"),
    )
    seed: int = option(0, "random seed of the starting points", check=cli.between(0, 2**32 - 1))
    restarts: int = option(1, "random starts per point, best kept", check=cli.at_least(1))
    max_iter: int = option(
        1000, "iteration cap per point (L-BFGS and Newton iterations together)", check=cli.at_least(1)
    )
    threads: int = option(
        1, "torch CPU threads (the tensors are small: extra threads mostly wait)", check=cli.at_least(1)
    )
    simulate: bool = option(True, "minimise free embeddings too (--no-simulate: closed form only, fine grids)")
    device: str = option(
        "cpu", "where the minimisation runs (cuda only where a GPU is present)", choices=("cpu", "cuda")
    )
    dtype: str = option(
        "float64", "float32 is judged by coarser tolerances (simulate.phase.CRITERIA)", choices=tuple(DTYPES)
    )
    max_memory: str | None = option(
        None, "refuse runs estimated above this, e.g. 4G (none: the memory free now)", check=_check_bytes
    )
    out: str = option("results/phase_diagram", "output folder (replaced as one set)")

    def validate(self) -> None:
        """The checks across options, before any work (raises ValueError naming the option)."""
        if self.variant == "supcon" and self.p < 2:
            raise ValueError(f"--p {self.p}: must be >= 2 for --variant supcon")
        if self.dim is not None and self.dim < self.m * self.n - 1:
            raise ValueError(f"--dim {self.dim}: must be >= m*n - 1 = {self.m * self.n - 1} (SSEM needs it)")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is "
                    "False); use --device cpu"
                )


def parse(argv=None) -> Config:
    """The validated configuration; bad input exits 2 with one line naming the flag, before any work."""
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


def alpha_grid(config) -> np.ndarray:
    return alphas_from(config.alphas)


def tau_grid(config) -> np.ndarray:
    return taus_from(config.taus)


def validate(config: Config) -> None:
    """Every check of `parse` on a Config built in code (raises ValueError naming the option)."""
    for field_ in fields(config):
        value, check = getattr(config, field_.name), field_.metadata.get("check")
        if check is not None and value is not None and not isinstance(value, bool):
            try:
                check(value)
            except ValueError as error:
                raise ValueError(f"{cli.flag_name(field_)} {value!r}: {error}") from None
    config.validate()


def torch_dtype(config: Config):
    import torch

    return getattr(torch, DTYPES[config.dtype])


def sizing(config: Config, available: int | None = None) -> dict:
    """Memory and time estimate of the simulation, before it starts: the memory first
    (`simulate.optimize.estimate_memory`, refused by `check_memory` before anything is allocated),
    then one probed loss evaluation times the typical number of evaluations."""
    import torch

    from simulate import losses, optimize

    n_points = len(alpha_grid(config)) * len(tau_grid(config))
    n_vectors, dim = config.m * config.n * config.p, config.dim or config.m * config.n
    configurations = n_points * config.restarts
    memory = optimize.estimate_memory(configurations, n_vectors, dim, dtype=torch_dtype(config))
    size = {"bytes": memory, "configurations": configurations, "n_vectors": n_vectors, "dim": dim}
    check_memory(config, size, available)
    labels, instances = losses.balanced_layout(config.m, config.n, config.p, device=config.device)
    probe = optimize.random_start(
        (min(configurations, 64),), n_vectors, dim, seed=config.seed, dtype=torch_dtype(config), device=config.device
    )
    per_evaluation = optimize.seconds_per_evaluation(
        lambda z: losses.combined_loss(z, labels, instances, 0.5, 1.0, config.variant), probe
    )
    seconds = per_evaluation * max(1.0, configurations / len(probe)) * optimize.typical_evaluations(config.max_iter)
    return {**size, "seconds": seconds}


def check_memory(config: Config, size: dict, available: int | None) -> None:
    """Refuse (ValueError, one line naming the flags) a run whose estimated memory exceeds --max-memory or,
    by default, what the machine can spare."""
    limit = cli.parse_bytes(config.max_memory, name="--max-memory") if config.max_memory else available
    if limit is not None and size["bytes"] > limit:
        source = "--max-memory" if config.max_memory else "the memory free now"
        raise ValueError(
            f"--m {config.m} --n {config.n} --p {config.p}: needs about {cli.format_bytes(size['bytes'])} "
            f"({size['configurations']} configurations of N = {size['n_vectors']} vectors in d = {size['dim']}, "
            f"Newton finish), more than {source} ({cli.format_bytes(limit)}); use a smaller size or grid, fewer "
            f"restarts, --no-simulate or a larger --max-memory"
        )


def estimate_line(size: dict) -> str:
    return (
        f"estimate: about {cli.format_bytes(size['bytes'])} and roughly {size['seconds'] / 60:.0f} min on this "
        f"machine ({size['configurations']} configurations of N = {size['n_vectors']} vectors in d = {size['dim']})"
    )


def run(config: Config, progress=None) -> dict:
    """Compute theory (and simulation) on the grid; returns the JSON-ready result."""
    alphas, taus = alpha_grid(config), tau_grid(config)
    dim = config.dim or config.m * config.n
    sizes = (config.m, config.n, config.p)
    started = time.perf_counter()
    theory = phase.theory_grid(alphas, taus, *sizes, config.variant)
    threshold = ssem.alpha_star(taus, *sizes, config.variant)
    simulated = summary = violations = None
    dtype = torch_dtype(config)
    if config.simulate:
        simulated = phase.simulated_grid(
            alphas,
            taus,
            *sizes,
            dim,
            config.variant,
            seed=config.seed,
            restarts=config.restarts,
            max_iter=config.max_iter,
            progress=progress,
            dtype=dtype,
            device=config.device,
        )
        summary, violations = phase.compare(alphas, taus, theory, simulated, threshold, phase.CRITERIA[dtype])
    summary = {**(summary or {}), "seconds": time.perf_counter() - started}
    return {
        "config": {**asdict(config), "dim": dim, "alpha_values": alphas.tolist(), "tau_values": taus.tolist()},
        "metadata": cli.run_metadata(),
        "points": _points(alphas, taus, theory, simulated),
        "alpha_star": [{"tau": float(t), "alpha_star": float(a)} for t, a in zip(taus, threshold)],
        "criteria": asdict(phase.CRITERIA[dtype]) if config.simulate else {},
        "summary": {**summary, "passes": bool(summary.get("passes", True))},
        "violations": violations or [],
        "_grids": {"theory": theory, "simulated": simulated, "alphas": alphas, "taus": taus},
    }


def _points(alphas, taus, theory, simulated) -> list[dict]:
    points = []
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            point = {
                "alpha": float(alpha),
                "tau": float(tau),
                "theory": {key: _plain(theory[key][i, j]) for key in ("beta", "within", "loss", "collapsed")},
            }
            if simulated is not None:
                keys = (
                    "within",
                    "between",
                    "total",
                    "loss",
                    "collapsed",
                    "converged",
                    "grad_norm",
                    "ssem_residual",
                    "iterations",
                    "newton_iterations",
                    "seconds",
                    "route",
                )
                point["simulated"] = {key: _plain(simulated[key][i, j]) for key in keys}
            points.append(point)
    return points


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return value if isinstance(value, str) else float(value)


def csv_rows(points: list[dict]) -> list[dict]:
    rows = []
    for point in points:
        row = {"alpha": point["alpha"], "tau": point["tau"]}
        row.update({f"theory_{key}": value for key, value in point["theory"].items()})
        row.update({f"simulated_{key}": value for key, value in point.get("simulated", {}).items()})
        rows.append(row)
    return rows


def figure(result: dict):
    """Within-class variance over (alpha, log tau): theory | simulation, alpha*(tau) on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = result["_grids"]
    alphas, taus = grids["alphas"], grids["taus"]
    config = result["config"]
    panels = [("closed form (SSEM optimum)", grids["theory"]["within"])]
    if grids["simulated"] is not None:
        panels.append(("free-embedding minimum", grids["simulated"]["within"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.2, 4.4), squeeze=False, sharey=True)
    fine_taus = np.geomspace(taus[0], taus[-1], 400)
    curve = ssem.alpha_star(fine_taus, config["m"], config["n"], config["p"], config["variant"])
    vmax = max(float(np.nanmax(values)) for _, values in panels) or 1.0
    for ax, (title, values) in zip(axes[0], panels):
        mesh = ax.pcolormesh(alphas, taus, values.T, shading="nearest", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.plot(curve, fine_taus, color="white", lw=2, label=r"$\alpha^*(\tau)$: collapse iff $\alpha \leq \alpha^*$")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\alpha$ (weight of the self-supervised term)")
        ax.set_title(title)
        if len(alphas) > 1:
            ax.set_xlim(alphas[0], alphas[-1])
    axes[0, 0].set_ylabel(r"temperature $\tau$ (log scale)")
    axes[0, 0].legend(loc="upper left", fontsize=8, framealpha=0.6)
    fig.colorbar(mesh, ax=axes[0].tolist(), label=r"within-class variance $W$")
    fig.suptitle(
        f"Paper B phase diagram: m={config['m']}, n={config['n']}, p={config['p']}, d={config['dim']}, "
        f"variant={config['variant']}"
    )
    return fig


def write(result: dict, out: Path) -> list[Path]:
    """Write the run's files into the folder `out` (the staging folder of `cli.publish`)."""
    import matplotlib.pyplot as plt

    public = {key: value for key, value in result.items() if not key.startswith("_")}
    written = [
        cli.write_json(out / "phase_diagram.json", public),
        cli.write_csv(out / "phase_diagram.csv", csv_rows(result["points"])),
    ]
    fig = figure(result)
    written.append(cli.save_figure(fig, out / "phase_diagram.png"))
    plt.close(fig)
    return written


def _number(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def summary_line(result: dict, out: Path) -> str:
    s = result["summary"]
    n_points = len(result["points"])
    if "max_rel_loss_gap" not in s:
        return f"closed form only: {n_points} points in {s['seconds']:.1f} s; no criteria to judge, exit 0 -> {out}"
    verdict = (
        "all criteria hold, exit 0"
        if s["passes"]
        else f"criteria FAIL ({len(result['violations'])} violations, see JSON), exit 1"
    )
    within_tau = result["criteria"].get("within_min_tau", phase.Criteria.within_min_tau)
    return (
        f"{n_points} points in {s['seconds']:.1f} s: max |W_sim - W*| = "
        f"{_number(s['max_abs_within_error'], '.2e')} (tau >= {within_tau:g}), "
        f"max rel loss gap = {_number(s['max_rel_loss_gap'], '.2e')}, collapse agreement = "
        f"{_number(s['agreement'], '.3f')}, converged {_number(s['converged_fraction'], '.0%')} "
        f"(max gradient {_number(s['max_grad_norm'], '.1e')}); {verdict} -> {out}"
    )


def main(argv=None) -> int:
    config = parse(argv)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    if config.simulate:
        try:
            size = sizing(config, cli.available_memory(config.device))
        except ValueError as error:
            cli.fail(PROG, str(error))
        if size["seconds"] > LONG_RUN_SECONDS:
            print(estimate_line(size), flush=True)

    with tqdm(total=config.max_iter, desc="iterations", disable=not config.simulate, leave=False) as bar:

        def progress(iteration, converged):
            bar.update(iteration - bar.n)
            bar.set_postfix(converged=converged)

        result = run(config, progress)
    out = cli.publish(config.out, lambda folder: write(result, folder))
    print(summary_line(result, out))
    return 0 if result["summary"]["passes"] else 1


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
