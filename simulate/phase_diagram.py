"""`python -m simulate.phase_diagram`: Paper B's collapse phase diagram, closed form vs free embeddings.

For every (alpha, tau) of the grid: the closed-form SSEM optimum (theory) and, unless
--no-simulate, the minimum over free unit embeddings (all grid points optimised in one
batch). Writes phase_diagram.json (config, points, alpha*(tau), summary), phase_diagram.csv
and phase_diagram.png (theory and simulation side by side, alpha*(tau) drawn on both).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simulate import cli, phase
from theory import ssem
from theory.arguments import VARIANTS, require_alpha, require_tau

PROG = "python -m simulate.phase_diagram"


@dataclass(frozen=True)
class Config:
    m: int = 4
    n: int = 4
    p: int = 2
    dim: int | None = None  # default m * n
    variant: str = "instance"
    alphas: str = "0:1:11"  # linear
    taus: str = "0.05:5:9"  # log-spaced
    seed: int = 0
    restarts: int = 1
    max_iter: int = 1000
    threads: int = 1
    simulate: bool = True
    device: str = "cpu"
    dtype: str = "float64"
    max_memory: str | None = None  # default: what the machine can spare now
    out: str = "results/phase_diagram"


DTYPES = {"float64": "float64", "float32": "float32"}
#: Runs estimated longer than this print their estimate before starting.
LONG_RUN_SECONDS = 60.0


def parse(argv=None) -> Config:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    defaults = Config()
    parser.add_argument("--m", type=int, default=defaults.m, help="classes (>= 2)")
    parser.add_argument("--n", type=int, default=defaults.n, help="instances per class (>= 2)")
    parser.add_argument("--p", type=int, default=defaults.p, help="views per instance (>= 1; >= 2 for supcon)")
    parser.add_argument("--dim", type=int, default=None, help="embedding dimension (default m*n; >= m*n - 1)")
    parser.add_argument("--variant", choices=VARIANTS, default=defaults.variant)
    parser.add_argument("--alphas", default=defaults.alphas, help="START:STOP:COUNT, linear, within [0, 1]")
    parser.add_argument("--taus", default=defaults.taus, help="START:STOP:COUNT, log-spaced, START > 0")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--restarts", type=int, default=defaults.restarts, help="random starts per point, best kept")
    parser.add_argument("--max-iter", type=int, default=defaults.max_iter,
                        help="iteration cap per point (L-BFGS and Newton iterations together)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="torch CPU threads (default 1: the tensors are small, extra threads mostly wait)")
    parser.add_argument("--no-simulate", dest="simulate", action="store_false", help="closed form only (fine grids)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device,
                        help="where the minimisation runs (cuda only where a GPU is present)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=defaults.dtype,
                        help="float64 (default) or float32 (coarser tolerances: simulate.phase.CRITERIA)")
    parser.add_argument("--max-memory", default=None,
                        help="refuse runs estimated above this (e.g. 4G; default: the memory free now)")
    parser.add_argument("--out", default=defaults.out, help="output folder")
    config = Config(**vars(parser.parse_args(cli.attach_range_values(sys.argv[1:] if argv is None else argv,
                                                                     ("--alphas", "--taus")))))
    try:
        validate(config)
    except ValueError as error:
        cli.fail(PROG, str(error))
    return config


def alpha_grid(config: Config) -> np.ndarray:
    start, stop, count = cli.parse_range(config.alphas, name="--alphas")
    alphas = np.linspace(start, stop, count)
    try:
        require_alpha(alphas)
    except ValueError:
        raise ValueError(f"--alphas must lie in [0, 1], got {config.alphas}") from None
    return alphas


def tau_grid(config: Config) -> np.ndarray:
    start, stop, count = cli.parse_range(config.taus, name="--taus")
    try:
        require_tau([start, stop])
    except ValueError:
        raise ValueError(f"--taus must be > 0 (log-spaced), got {config.taus}") from None
    return np.geomspace(start, stop, count)


def validate(config: Config) -> None:
    """Every check that can fail, before any work or any file is written."""
    for name, value, minimum in (("--m", config.m, 2), ("--n", config.n, 2), ("--p", config.p, 1),
                                 ("--restarts", config.restarts, 1), ("--max-iter", config.max_iter, 1),
                                 ("--threads", config.threads, 1)):
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if config.variant == "supcon" and config.p < 2:
        raise ValueError(f"--p must be >= 2 for --variant supcon, got {config.p}")
    if config.dim is not None and config.dim < config.m * config.n - 1:
        raise ValueError(f"--dim must be >= m*n - 1 = {config.m * config.n - 1} (SSEM needs it), got {config.dim}")
    alpha_grid(config), tau_grid(config)
    if config.max_memory is not None:
        cli.parse_bytes(config.max_memory, name="--max-memory")
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                             "use --device cpu")


def torch_dtype(config: Config):
    import torch

    return getattr(torch, DTYPES[config.dtype])


def sizing(config: Config) -> dict:
    """Memory and time estimate of the simulation, before it starts (`simulate.optimize.estimate_memory`,
    and one probed loss evaluation times the typical number of evaluations)."""
    import torch

    from simulate import losses, optimize

    n_points = len(alpha_grid(config)) * len(tau_grid(config))
    n_vectors, dim = config.m * config.n * config.p, config.dim or config.m * config.n
    configurations = n_points * config.restarts
    memory = optimize.estimate_memory(configurations, n_vectors, dim, dtype=torch_dtype(config))
    labels, instances = losses.balanced_layout(config.m, config.n, config.p, device=config.device)
    probe = optimize.random_start((min(configurations, 64),), n_vectors, dim, seed=config.seed,
                                  dtype=torch_dtype(config), device=config.device)
    per_evaluation = optimize.seconds_per_evaluation(
        lambda z: losses.combined_loss(z, labels, instances, 0.5, 1.0, config.variant), probe)
    seconds = per_evaluation * max(1.0, configurations / len(probe)) * optimize.typical_evaluations(config.max_iter)
    return {"bytes": memory, "seconds": seconds, "configurations": configurations, "n_vectors": n_vectors, "dim": dim}


def check_memory(config: Config, size: dict, available: int | None) -> None:
    """Refuse (ValueError, one line) a run whose estimated memory exceeds --max-memory or, by default,
    what the machine can spare."""
    limit = cli.parse_bytes(config.max_memory, name="--max-memory") if config.max_memory else available
    if limit is not None and size["bytes"] > limit:
        source = "--max-memory" if config.max_memory else "the memory free now"
        raise ValueError(
            f"needs about {cli.format_bytes(size['bytes'])} ({size['configurations']} configurations of "
            f"N = {size['n_vectors']} vectors in d = {size['dim']}, Newton finish), more than {source} "
            f"({cli.format_bytes(limit)}); use a smaller grid, fewer restarts or a larger --max-memory")


def estimate_line(size: dict) -> str:
    return (f"estimate: about {cli.format_bytes(size['bytes'])} and roughly {size['seconds'] / 60:.0f} min on this "
            f"machine ({size['configurations']} configurations of N = {size['n_vectors']} vectors in d = {size['dim']})")


def run(config: Config, progress=None) -> dict:
    """Compute theory (and simulation) on the grid; returns the JSON-ready result."""
    alphas, taus = alpha_grid(config), tau_grid(config)
    dim = config.dim or config.m * config.n
    sizes = (config.m, config.n, config.p)
    started = time.perf_counter()
    theory = phase.theory_grid(alphas, taus, *sizes, config.variant)
    threshold = ssem.alpha_star(taus, *sizes, config.variant)
    simulated = summary = violations = None
    if config.simulate:
        dtype = torch_dtype(config)
        simulated = phase.simulated_grid(
            alphas, taus, *sizes, dim, config.variant, seed=config.seed, restarts=config.restarts,
            max_iter=config.max_iter, progress=progress, dtype=dtype, device=config.device,
        )
        summary, violations = phase.compare(alphas, taus, theory, simulated, threshold, phase.CRITERIA[dtype])
    summary = {**(summary or {}), "seconds": time.perf_counter() - started}
    return {
        "config": {**asdict(config), "dim": dim, "alpha_values": alphas.tolist(), "tau_values": taus.tolist()},
        "metadata": cli.run_metadata(),
        "points": _points(alphas, taus, theory, simulated),
        "alpha_star": [{"tau": float(t), "alpha_star": float(a)} for t, a in zip(taus, threshold)],
        "summary": summary,
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
                keys = ("within", "between", "total", "loss", "collapsed", "converged", "grad_norm", "ssem_residual",
                        "iterations", "newton_iterations", "seconds", "route")
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
    public = {key: value for key, value in result.items() if not key.startswith("_")}
    written = [
        cli.write_json(out / "phase_diagram.json", public),
        cli.write_csv(out / "phase_diagram.csv", csv_rows(result["points"])),
    ]
    fig = figure(result)
    written.append(cli.save_figure(fig, out / "phase_diagram.png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return written


def summary_line(result: dict, out: Path) -> str:
    s = result["summary"]
    n_points = len(result["points"])
    if "max_rel_loss_gap" not in s:
        return f"theory only: {n_points} points in {s['seconds']:.1f} s -> {out}"
    verdict = "all criteria met" if s["passes"] else f"{len(result['violations'])} violations (see JSON)"
    return (
        f"{n_points} points in {s['seconds']:.1f} s: max |W_sim - W*| = {s['max_abs_within_error']:.2e} (tau >= 0.05), "
        f"max rel loss gap = {s['max_rel_loss_gap']:.2e}, collapse agreement = {s['agreement']:.3f}, "
        f"converged {s['converged_fraction']:.0%} (max gradient {s['max_grad_norm']:.1e}); {verdict} -> {out}"
    )


def main(argv=None) -> int:
    config = parse(argv)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    if config.simulate:
        try:
            size = sizing(config)
            check_memory(config, size, cli.available_memory(config.device))
        except ValueError as error:
            cli.fail(PROG, str(error))
        if size["seconds"] > LONG_RUN_SECONDS:
            print(estimate_line(size), flush=True)

    with tqdm(total=config.max_iter, desc="iterations", disable=not config.simulate, leave=False) as bar:
        def progress(iteration, converged):
            bar.update(iteration - bar.n)
            bar.set_postfix(converged=converged)

        result = run(config, progress)
    out = Path(config.out)
    write(result, out)
    print(summary_line(result, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
