"""`python -m simulate.phase_diagram`: Paper B's collapse phase diagram, closed form vs free embeddings.

For every (alpha, tau) of the grid: the closed-form SSEM optimum (theory) and, unless
--no-simulate, the minimum over free unit embeddings (all grid points optimised in one
batch). Writes phase_diagram.json (config, points, alpha*(tau), summary), phase_diagram.csv
and phase_diagram.png (theory and simulation side by side, alpha*(tau) drawn on both).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulate import cli, phase
from simulate.cli import option
from theory import ssem
from theory.arguments import TAU_RANGE, VARIANTS, require_alpha, require_tau

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

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


def option_check(parse_text: Callable[[str], object], name: str) -> Callable[[str], None]:
    """An option check from a parser raising 'NAME must ...': the message without the repeated name."""

    def check(text: str) -> None:
        try:
            parse_text(text)
        except ValueError as error:
            raise ValueError(str(error).removeprefix(f"{name} ")) from None

    return check


_check_bytes = option_check(lambda text: cli.parse_bytes(text, name="--max-memory"), "--max-memory")


@dataclass(frozen=True)
class Config:
    """Paper B's collapse phase diagram: closed form against free-embedding minima."""

    m: tuple[int, ...] = option((4,), "classes, a comma list sweeps sizes", check=cli.each(cli.at_least(2)), sweep=True)
    n: tuple[int, ...] = option(
        (4,),
        "instances per class, a comma list sweeps sizes (every m with every n)",
        check=cli.each(cli.at_least(2)),
        sweep=True,
    )
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
    certify: bool = option(False, "add the certified minimum at every point (simulate.exchangeable, any size)")
    out: str = option("results/phase_diagram", "output folder (replaced as one set)")

    def sizes(self) -> list[tuple[int, int]]:
        """Every (m, n) of the sweep."""
        return [(m, n) for m in _as_tuple(self.m) for n in _as_tuple(self.n)]

    def validate(self) -> None:
        """The checks across options, before any work (raises ValueError naming the option)."""
        if self.variant == "supcon" and self.p < 2:
            raise ValueError(f"--p {self.p}: must be >= 2 for --variant supcon")
        largest = max(m * n for m, n in self.sizes())
        if self.dim is not None and self.dim < largest - 1:
            raise ValueError(f"--dim {self.dim}: must be >= m*n - 1 = {largest - 1} (SSEM needs it)")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is "
                    "False); use --device cpu"
                )


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


#: Free optimisation runs for a size of at most this many vectors m n p, or, larger, where --max-memory
#: is given and the memory estimate fits it; elsewhere it is skipped and the output says so.
FREE_MAX_VECTORS = 64
#: Certified minimum against the closed form (instance variant) and free minima against it: relative.
CERTIFIED_REL_TOL = 1e-9


def at_size(config: Config, m: int, n: int) -> Config:
    """The configuration of one (m, n) of the sweep (m and n single integers)."""
    return replace(config, m=m, n=n)


def parse(argv: Sequence[str] | None = None) -> Config:
    """The validated configuration; bad input exits 2 with one line naming the flag, before any work."""
    return cli.parse_config(Config, argv, PROG, Config.__doc__)


class GridOptions(Protocol):
    """A command's grid options as typed (`Config` here, `simulate.bench.Config`): START:STOP:COUNT texts."""

    @property
    def alphas(self) -> str: ...

    @property
    def taus(self) -> str: ...


def alpha_grid(config: GridOptions) -> np.ndarray:
    return alphas_from(config.alphas)


def tau_grid(config: GridOptions) -> np.ndarray:
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


def torch_dtype(config: Config) -> torch.dtype:
    import torch

    return getattr(torch, DTYPES[config.dtype])


def sizing(config: Config, available: int | None = None) -> dict:
    """Memory and time estimate of the simulation, before it starts: the memory first
    (`simulate.optimise.estimate_memory`, refused by `check_memory` before anything is allocated),
    then one probed loss evaluation times the typical number of evaluations."""
    from simulate import losses, optimise

    n_points = len(alpha_grid(config)) * len(tau_grid(config))
    n_vectors, dim = config.m * config.n * config.p, config.dim or config.m * config.n
    configurations = n_points * config.restarts
    memory = optimise.estimate_memory(configurations, n_vectors, dim, dtype=torch_dtype(config))
    size = {"bytes": memory, "configurations": configurations, "n_vectors": n_vectors, "dim": dim}
    check_memory(config, size, available)
    labels, instances = losses.balanced_layout(config.m, config.n, config.p, device=config.device)
    probe = optimise.random_start(
        (min(configurations, 64),), n_vectors, dim, seed=config.seed, dtype=torch_dtype(config), device=config.device
    )
    per_evaluation = optimise.seconds_per_evaluation(
        lambda z: losses.combined_loss(z, labels, instances, 0.5, 1.0, config.variant), probe
    )
    seconds = per_evaluation * max(1.0, configurations / len(probe)) * optimise.typical_evaluations(config.max_iter)
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


def free_plan(config: Config, available: int | None) -> tuple[bool, str]:
    """Whether free optimisation runs at this size (config at one size), and why not.
    Raises ValueError (exit 2) where a small size needs more memory than allowed."""
    n_vectors = config.m * config.n * config.p
    if not config.simulate:
        return False, "--no-simulate"
    if n_vectors > FREE_MAX_VECTORS and config.max_memory is None:
        return False, f"m n p = {n_vectors} > {FREE_MAX_VECTORS} vectors (give --max-memory to allow larger)"
    try:
        sizing(config, available)
    except ValueError:
        if n_vectors <= FREE_MAX_VECTORS:
            raise
        return False, f"m n p = {n_vectors}: memory estimate above --max-memory"
    return True, ""


def certified_grid(
    alphas: Sequence[float] | np.ndarray, taus: Sequence[float] | np.ndarray, m: int, n: int, p: int, variant: str
) -> dict[str, np.ndarray]:
    """`simulate.exchangeable.certify_combined` at every grid point: minimum, gap, polished, W."""
    from simulate import exchangeable

    shape = (len(alphas), len(taus))
    grid = {key: np.empty(shape) for key in ("minimum", "gap", "within")}
    grid["polished"] = np.empty(shape, bool)
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            certificate = exchangeable.certify_combined(float(alpha), float(tau), m, n, p, variant)
            grid["minimum"][i, j], grid["gap"][i, j] = certificate.minimum, certificate.gap
            grid["polished"][i, j] = bool(certificate.polished)
            grid["within"][i, j] = certificate.variances()["within"]
    return grid


def certified_violations(
    alphas: Sequence[float] | np.ndarray,
    taus: Sequence[float] | np.ndarray,
    theory: Mapping[str, np.ndarray],
    certified: Mapping[str, np.ndarray],
    simulated: Mapping[str, Any] | None,
    variant: str,
) -> list[dict[str, Any]]:
    """Certified minimum = closed form within CERTIFIED_REL_TOL (instance variant); free minima never below it."""
    found = []
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            minimum = certified["minimum"][i, j]
            allowed = CERTIFIED_REL_TOL * abs(minimum)
            where = {"alpha": float(alpha), "tau": float(tau)}
            if variant == "instance" and abs(minimum - theory["loss"][i, j]) > allowed:
                found.append(
                    {
                        **where,
                        "criterion": "certified minimum equals the closed form",
                        "certified": float(minimum),
                        "closed_form": float(theory["loss"][i, j]),
                    }
                )
            if simulated is not None and simulated["loss"][i, j] < minimum - allowed:
                found.append(
                    {
                        **where,
                        "criterion": "free minimum not below the certified minimum",
                        "certified": float(minimum),
                        "free": float(simulated["loss"][i, j]),
                    }
                )
    return found


def run(
    config: Config, progress: Callable[[int, int], None] | None = None, available: int | None = None
) -> dict[str, Any]:
    """Every (m, n) of the sweep (`run_size`), merged: points and violations carry their m and n."""
    started = time.perf_counter()
    runs = [run_size(at_size(config, m, n), progress, available) for m, n in config.sizes()]
    first = runs[0]
    summary = {"seconds": time.perf_counter() - started, "passes": all(r["summary"]["passes"] for r in runs)}
    for key in ("max_abs_within_error", "max_rel_loss_gap", "max_abs_loss_gap", "max_grad_norm"):
        values = [r["summary"].get(key) for r in runs if r["summary"].get(key) is not None]
        if any(key in r["summary"] for r in runs):
            summary[key] = max(values) if values else None
    for key in ("agreement", "converged_fraction"):
        if any(key in r["summary"] for r in runs):
            summary[key] = min(r["summary"][key] for r in runs if key in r["summary"])
    summary["free_optimisation"] = [{"m": r["m"], "n": r["n"], **r["free"]} for r in runs]
    if config.certify:
        summary["max_certified_gap"] = max(max(abs(p["certified"]["gap"]) for p in r["points"]) for r in runs)
    return {
        "config": {
            **asdict(config),
            "m": list(_as_tuple(config.m)),
            "n": list(_as_tuple(config.n)),
            "dim": first["dim"],
            "alpha_values": first["_grids"]["alphas"].tolist(),
            "tau_values": first["_grids"]["taus"].tolist(),
        },
        "metadata": cli.run_metadata(),
        "points": [{"m": r["m"], "n": r["n"], **point} for r in runs for point in r["points"]],
        "alpha_star": [{"m": r["m"], "n": r["n"], **row} for r in runs for row in r["alpha_star"]],
        "criteria": {**first["criteria"], "certified_rel_tol": CERTIFIED_REL_TOL, "free_max_vectors": FREE_MAX_VECTORS},
        "summary": summary,
        "violations": [{"m": r["m"], "n": r["n"], **v} for r in runs for v in r["violations"]],
        "_runs": runs,
    }


def run_size(
    config: Config, progress: Callable[[int, int], None] | None = None, available: int | None = None
) -> dict[str, Any]:
    """Compute theory (and simulation, certificates) on the grid at one (m, n)."""
    alphas, taus = alpha_grid(config), tau_grid(config)
    dim = config.dim or config.m * config.n
    sizes = (config.m, config.n, config.p)
    started = time.perf_counter()
    theory = phase.theory_grid(alphas, taus, *sizes, config.variant)
    threshold = ssem.alpha_star(taus, *sizes, config.variant)
    simulated = summary = violations = certified = None
    dtype = torch_dtype(config)
    free, reason = free_plan(config, available)
    if free:
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
    violations = list(violations or [])
    if config.certify:
        certified = certified_grid(alphas, taus, *sizes, config.variant)
        violations += certified_violations(alphas, taus, theory, certified, simulated, config.variant)
    summary = {**(summary or {}), "seconds": time.perf_counter() - started}
    return {
        "m": config.m,
        "n": config.n,
        "dim": dim,
        "free": {"ran": free, "reason": reason},
        "points": _points(alphas, taus, theory, simulated, certified),
        "alpha_star": [{"tau": float(t), "alpha_star": float(a)} for t, a in zip(taus, threshold)],
        "criteria": asdict(phase.CRITERIA[dtype]) if free else {},
        "summary": {**summary, "passes": bool(summary.get("passes", True)) and not violations},
        "violations": violations,
        "_grids": {"theory": theory, "simulated": simulated, "certified": certified, "alphas": alphas, "taus": taus},
    }


def _points(alphas, taus, theory, simulated, certified=None) -> list[dict]:
    points = []
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            point = {
                "alpha": float(alpha),
                "tau": float(tau),
                "theory": {key: cli.plain(theory[key][i, j]) for key in ("beta", "within", "loss", "collapsed")},
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
                point["simulated"] = {key: cli.plain(simulated[key][i, j]) for key in keys}
            if certified is not None:
                point["certified"] = {
                    key: cli.plain(certified[key][i, j]) for key in ("minimum", "gap", "polished", "within")
                }
            points.append(point)
    return points


def csv_rows(points: list[dict]) -> list[dict]:
    rows = []
    for point in points:
        row = {"m": point.get("m"), "n": point.get("n"), "alpha": point["alpha"], "tau": point["tau"]}
        row.update({f"theory_{key}": value for key, value in point["theory"].items()})
        row.update({f"simulated_{key}": value for key, value in point.get("simulated", {}).items()})
        row.update({f"certified_{key}": value for key, value in point.get("certified", {}).items()})
        rows.append(row)
    return rows


def figure(result: dict[str, Any]) -> Figure:
    """Within-class variance over (alpha, log tau): theory | simulation, alpha*(tau) on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["_runs"]
    grids = runs[0]["_grids"]
    alphas, taus = grids["alphas"], grids["taus"]
    config = {**result["config"], "m": runs[0]["m"], "n": runs[0]["n"], "dim": runs[0]["dim"]}
    panels = [("closed form (SSEM optimum)", grids["theory"]["within"])]
    if grids["simulated"] is not None:
        panels.append(("free-embedding minimum", grids["simulated"]["within"]))
    overlay = len(runs) > 1 or grids["certified"] is not None
    columns = len(panels) + overlay
    fig, axes = plt.subplots(1, columns, figsize=(5.2 * columns + 1.2, 4.4), squeeze=False, sharey=True)
    fine_taus = np.geomspace(taus[0], taus[-1], 400)
    curve = ssem.alpha_star(fine_taus, config["m"], config["n"], config["p"], config["variant"])
    if overlay:
        _overlay(axes[0, -1], runs, fine_taus, result["config"])
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
    fig.colorbar(mesh, ax=axes[0, : len(panels)].tolist(), label=r"within-class variance $W$")
    fig.suptitle(
        f"Paper B phase diagram: m={config['m']}, n={config['n']}, p={config['p']}, d={config['dim']}, "
        f"variant={config['variant']}"
    )
    return fig


def _overlay(ax, runs, fine_taus, config) -> None:
    """alpha*(tau) of every (m, n), with its certified points (filled: collapsed, W < 1e-6)."""
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    for index, run_ in enumerate(runs):
        colour = colours[index % len(colours)]
        curve = ssem.alpha_star(fine_taus, run_["m"], run_["n"], config["p"], config["variant"])
        ax.plot(curve, fine_taus, color=colour, lw=2, label=f"m={run_['m']}, n={run_['n']}")
        certified = run_["_grids"]["certified"]
        if certified is not None:
            a, t = np.meshgrid(run_["_grids"]["alphas"], run_["_grids"]["taus"], indexing="ij")
            collapsed = certified["within"] < phase.COLLAPSE_TOL
            ax.scatter(a[collapsed], t[collapsed], color=colour, s=18, zorder=3)
            ax.scatter(a[~collapsed], t[~collapsed], facecolors="none", edgecolors=colour, s=18, zorder=3)
    ax.set_yscale("log")
    ax.set_xlabel(r"$\alpha$")
    ax.set_title(r"$\alpha^*(\tau)$ per size; certified points (filled: collapsed)")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.6)


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


def _free_note(summary: dict) -> str:
    skipped = [f"m={s['m']},n={s['n']} ({s['reason']})" for s in summary["free_optimisation"] if not s["ran"]]
    return f"; free optimisation skipped at {', '.join(skipped)}" if skipped else ""


def summary_line(result: dict, out: Path) -> str:
    s = result["summary"]
    n_points = len(result["points"])
    note = _free_note(s)
    if "max_certified_gap" in s:
        note += f"; certified at every point (max gap {s['max_certified_gap']:.1e})"
    if "max_rel_loss_gap" not in s:
        verdict = (
            "criteria hold, exit 0"
            if s["passes"]
            else f"criteria FAIL ({len(result['violations'])} violations, see JSON), exit 1"
        )
        if "max_certified_gap" not in s:
            verdict = "no criteria to judge, exit 0"
        return f"closed form only: {n_points} points in {s['seconds']:.1f} s{note}; {verdict} -> {out}"
    verdict = (
        "all criteria hold, exit 0"
        if s["passes"]
        else f"criteria FAIL ({len(result['violations'])} violations, see JSON), exit 1"
    )
    within_tau = result["criteria"].get("within_min_tau", phase.Criteria.within_min_tau)
    return (
        f"{n_points} points in {s['seconds']:.1f} s: max |W_sim - W*| = "
        f"{_number(s['max_abs_within_error'], '.2e')} (tau >= {within_tau:g}), "
        f"max loss gap = {_number(s['max_rel_loss_gap'], '.2e')} relative, "
        f"{_number(s.get('max_abs_loss_gap'), '.1e')} absolute, collapse agreement = "
        f"{_number(s['agreement'], '.3f')}, converged {_number(s['converged_fraction'], '.0%')} "
        f"(max gradient {_number(s['max_grad_norm'], '.1e')}){note}; {verdict} -> {out}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    available = cli.available_memory(config.device) if config.simulate else None
    for m, n in config.sizes():
        try:
            free, _ = free_plan(at_size(config, m, n), available)
        except ValueError as error:
            cli.fail(PROG, str(error))
        size = sizing(at_size(config, m, n), available) if free else None
        if size and size["seconds"] > LONG_RUN_SECONDS:
            print(estimate_line(size), flush=True)

    with tqdm(total=config.max_iter, desc="iterations", disable=not config.simulate, leave=False) as bar:

        def progress(iteration: int, converged: int) -> None:
            bar.update(iteration - bar.n)
            bar.set_postfix(converged=converged)

        result = run(config, progress, available)
    out = cli.publish(config.out, lambda folder: write(result, folder))
    print(summary_line(result, out))
    return 0 if result["summary"]["passes"] else 1


if __name__ == "__main__":
    sys.exit(cli.run_command(PROG, main))
