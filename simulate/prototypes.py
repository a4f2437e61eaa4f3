"""Class geometry under prototype SCL over imbalance R x n_w: the sweep and its figures (docs/commands.md).

For each imbalance R (majority classes: the first ceil(m/2) ids, `majority_size` samples
each; minority classes: max(1, floor(majority_size / R)) each) and each number of prototype
copies n_w, the free unit embeddings of all samples are optimised under prototype SCL
with fixed prototypes W of the chosen geometry — full batch (all n_w of one R share one
batched L-BFGS call of `simulate.optimise`) or, with a batch size B, a first-order loop
on batches redrawn every step. Per cell: the minimiser's loss and convergence, DeltaG*
of its class-mean Gram to the prototype Gram W W^T (and to the ETF Gram), within-class
variance, nearest-class-centre accuracy of majority and minority classes, the gap
loss - log n_w - limit of `theory.prototypes`, and, when N + m is small enough, the
certified global minimum of `simulate.certify.certify_prototype` with its class-mean
geometry. The theory's n_w -> infinity class-mean Gram (`theory.prototypes.limit_gram`)
gives the DeltaG* the sweep should tend to (0 only if the limit minimisers are the prototypes).

With route "certificate" no embedding is optimised: every cell is the exchangeable
certificate of `simulate.exchangeable.certify_prototype` (the certified global minimum and
its class-mean geometry, exact at any size, e.g. majority size 5000), so the nearest-centre
accuracies and the limit gap (which need embeddings) are not computed; the record says so.
Free optimisation refuses sizes above `OPTIMISE_MAX_VECTORS` vectors.

Everything here is pure (no printing, no files): the figure functions (`simulate.prototypes_figures`,
re-exported here, like the certified cells of `simulate.prototypes_certified`) return figures. The command
line `python -m simulate.prototypes` (its options, files and exit codes) lives in `simulate.prototypes_command`."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from simulate import metrics, optimise
from simulate.losses import prototype_supcon_loss
from simulate.prototypes_certified import certified_cell, exchangeable_cell
from simulate.prototypes_figures import delta_g_figure, gram_figure, limit_figure  # noqa: F401 (re-exported)
from theory import prototypes as theory_prototypes
from theory import simplex
from theory.arguments import require_choice, require_int, require_positive_real
from theory.compositions import step_class_sizes

if TYPE_CHECKING:
    from simulate.prototypes_command import Config

GEOMETRY_HELP = "etf | orthogonal | minority-spread:<spread in [0, 1]> | gram:<file.npy>"

#: Largest N + m for which a cell is certified by default (simulate.certify's interior-point
#: cost grows fast: measured about a second per cell at 24 vectors, about a minute at its limit of 64).
CERTIFY_MAX_VECTORS = 24

#: Routes of the sweep: free optimisation (with small-size full certificates) or exchangeable certificates only.
ROUTES = ("optimise", "certificate")

#: Largest number of data vectors N the free-optimisation route accepts (one (B, N, N) similarity
#: tensor per L-BFGS evaluation; beyond this a cell takes minutes and gigabytes).
OPTIMISE_MAX_VECTORS = 2000

#: Per-cell geometry figures copied into the JSON/CSV (see `geometry_measures`).
MEASURES = ("delta_g", "delta_g_etf", "within", "ncc_majority", "ncc_minority")


# ---------------------------------------------------------------------------
# Problem set-up
# ---------------------------------------------------------------------------


def class_sizes(n_classes: int, majority_size: int, imbalance: float) -> tuple[int, ...]:
    """Step imbalance by the project's one rule (`theory.compositions.step_class_sizes`): the first
    ceil(m/2) ids keep majority_size, the others max(1, floor(majority_size / R)); R >= 1."""
    return step_class_sizes(n_classes, majority_size, imbalance)


def prototype_vectors(geometry: str, n_classes: int, dim: int, seed: int | None = None) -> np.ndarray:
    """Prototypes W (m, dim) from a geometry spec: etf | orthogonal | minority-spread:<s> | gram:<file.npy>.

    Raises ValueError (with the reason) for an unknown spec, an infeasible dimension or
    spread, or a Gram file that is unreadable, of the wrong shape, not symmetric psd with
    unit diagonal, or of rank > dim.
    """
    m = require_int("n_classes", n_classes, 2)
    dim = require_int("dim", dim, 1)
    kind, _, value = str(geometry).partition(":")
    if kind == "etf" and not value:
        return simplex.etf(m, dim, seed=seed)
    if kind == "orthogonal" and not value:
        return simplex.orthogonal_frame(m, dim, seed=seed)
    if kind == "minority-spread" and value:
        try:
            spread = float(value)
        except ValueError:
            raise ValueError(f"geometry minority-spread needs a number in [0, 1], got {value!r}") from None
        return simplex.minority_spread(m, dim, spread, seed=seed)
    if kind == "gram" and value:
        return simplex.from_gram(_load_gram(value, m), dim, seed=seed)
    raise ValueError(f"geometry must be {GEOMETRY_HELP}, got {geometry!r}")


def _load_gram(path: str, n_classes: int) -> np.ndarray:
    try:
        gram = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"geometry gram file {path!r} cannot be read as a .npy array: {error}") from None
    if gram.shape != (n_classes, n_classes):
        raise ValueError(
            f"geometry gram file {path!r} must hold an ({n_classes}, {n_classes}) matrix, got shape {gram.shape}"
        )
    try:
        return simplex.check_gram(gram)
    except ValueError as error:
        raise ValueError(f"geometry gram file {path!r}: {error}") from None


def sample_labels(sizes: Sequence[int]) -> torch.Tensor:
    """Class-major labels (N,) int64 for the given class sizes."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes))


def cell_losses(
    labels: torch.Tensor, prototypes: torch.Tensor, n_protos: Sequence[int], tau: float, anchors: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """loss_fn z (..., B, N, d) -> (..., B): configuration b uses n_w = n_protos[b]."""

    def loss_fn(z: torch.Tensor) -> torch.Tensor:
        cells = [
            prototype_supcon_loss(z[..., b, :, :], labels, prototypes, n_w, tau, anchors)
            for b, n_w in enumerate(n_protos)
        ]
        return torch.stack(cells, dim=-1)

    return loss_fn


# ---------------------------------------------------------------------------
# Minimisation
# ---------------------------------------------------------------------------


STARTS = ("uniform", "clustered")


def starting_points(
    labels: torch.Tensor,
    batch_shape: Sequence[int],
    dim: int,
    *,
    start: str = "uniform",
    seed: int = 0,
    spread: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Starting parameters x0 (*batch, N, dim) for the free-embedding minimisation.

    "uniform": every vector uniform on the sphere (`simulate.optimise.random_start`).
    "clustered": one Gaussian random centre per class and configuration (isotropic, so
    it carries no information about the prototypes) plus `spread` times Gaussian noise
    per sample: it skips the initial within-class gathering, which is most of the
    iterations at large N; the optimiser is free to pull class members apart.
    """
    require_choice("start", start, STARTS)
    batch_shape = tuple(batch_shape)
    if start == "uniform":
        return optimise.random_start(batch_shape, len(labels), dim, seed=seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    n_classes = int(labels.max()) + 1
    centres = torch.randn((*batch_shape, n_classes, dim), generator=generator, dtype=dtype)
    noise = torch.randn((*batch_shape, len(labels), dim), generator=generator, dtype=dtype)
    return optimise.normalise(centres)[..., labels, :] + spread * noise


def minimise_full_batch(
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    n_protos: Sequence[int],
    tau: float,
    anchors: str,
    *,
    start: str = "uniform",
    seed: int = 0,
    restarts: int = 1,
    max_iter: int = 3000,
    grad_tol: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> optimise.OptimResult:
    """Free-embedding minimiser of every n_w cell of one class-size vector, in one batched L-BFGS.

    All restarts of all cells are one flat (restarts * B, N, d) batch of
    `simulate.optimise.minimise_on_sphere` (indexed mode: converged cells drop out of the
    loss evaluations); each cell keeps its best restart.

    Args:
        labels: (N,) int64; prototypes: (m, d) float tensor (its dtype is used); n_protos: B ints >= 0;
        start: "uniform" | "clustered" (`starting_points`).
    Returns:
        `simulate.optimise.OptimResult` with z (B, N, d).
    """
    restarts = require_int("restarts", restarts, 1)
    n_protos = list(n_protos)
    n_cells = len(n_protos)
    x0 = starting_points(
        labels, (restarts * n_cells,), prototypes.shape[-1], start=start, seed=seed, dtype=prototypes.dtype
    )  # flat index = restart * B + cell

    def running_losses(z, index):
        # Only the configurations still running are passed (optimise's indexed mode).
        cells = [n_protos[i % n_cells] for i in index.tolist()]
        return cell_losses(labels, prototypes, cells, tau, anchors)(z)

    result = optimise.minimise_on_sphere(
        running_losses, x0, max_iter=max_iter, grad_tol=grad_tol, indexed=True, progress=progress
    )
    loss = result.loss.reshape(restarts, n_cells)
    best = loss.argmin(0) * n_cells + torch.arange(n_cells)  # flat index of each cell's best restart
    return optimise.OptimResult(
        z=result.z[best],
        loss=result.loss[best],
        grad_norm=result.grad_norm[best],
        converged=result.converged[best],
        iterations=result.iterations,
    )


def draw_batch(generator: torch.Generator, labels: torch.Tensor, batch_size: int, need_pair: bool) -> torch.Tensor:
    """Indices of a uniform batch without replacement; redrawn until some class appears twice if need_pair.

    (With n_w = 0 and no repeated class no anchor has a positive and the loss is undefined.)
    """
    while True:
        index = torch.randperm(len(labels), generator=generator)[:batch_size]
        if not need_pair or len(torch.unique(labels[index])) < batch_size:
            return index


def minimise_stochastic(
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    n_protos: Sequence[int],
    tau: float,
    anchors: str,
    *,
    batch_size: int,
    steps: int = 2000,
    lr: float = 0.05,
    start: str = "uniform",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> optimise.OptimResult:
    """Minimise the expected batch loss: Adam on x (z = x/|x|), a fresh batch of `batch_size` samples per step.

    Every cell sees the same batches; the prototypes are in every batch.
    The learning rate decays as a cosine to 0 over `steps`. `loss`/`grad_norm` of the
    result are those of the full-batch loss at the end (the stochastic objective differs,
    so `converged` is all False: no convergence is claimed).
    """
    n_samples = len(labels)
    batch_size = require_int("batch_size", batch_size, 2)
    if batch_size > n_samples:
        raise ValueError(f"batch_size must be <= the number of samples N = {n_samples}, got {batch_size}")
    steps = require_int("steps", steps, 1)
    lr = require_positive_real("lr", lr)
    n_protos = list(n_protos)
    x = starting_points(labels, (len(n_protos),), prototypes.shape[-1], start=start, seed=seed, dtype=prototypes.dtype)
    x.requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        index = draw_batch(generator, labels, batch_size, need_pair=0 in n_protos)
        loss_fn = cell_losses(labels[index], prototypes, n_protos, tau, anchors)
        optimiser.zero_grad(set_to_none=True)
        loss_fn(optimise.normalise(x[:, index])).sum().backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, 0)
    z = optimise.normalise(x.detach())
    loss, grad_norm = full_batch_loss_and_grad_norm(cell_losses(labels, prototypes, n_protos, tau, anchors), z)
    return optimise.OptimResult(
        z=z, loss=loss, grad_norm=grad_norm, converged=torch.zeros_like(loss, dtype=torch.bool), iterations=steps
    )


def full_batch_loss_and_grad_norm(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (B,) and Riemannian gradient norm (B,) at unit z (B, N, d)."""
    z = z.detach().requires_grad_(True)
    loss = loss_fn(z)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    riemannian = grad - (grad * z).sum(-1, keepdim=True) * z
    return loss.detach(), riemannian.flatten(1).norm(dim=-1).detach()


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def geometry_measures(z: torch.Tensor, labels: torch.Tensor, prototype_gram: torch.Tensor, n_classes: int) -> dict:
    """Per configuration of z (B, N, d): DeltaG* to the prototype and ETF Grams, within-class variance,
    NCC accuracy (train = test: free embeddings have no held-out set); each (B,), Gram (B, m, m)."""
    G = metrics.class_mean_gram(z, labels, n_classes)  # (B, m, m)
    etf = torch.as_tensor(simplex.etf_gram(n_classes), dtype=z.dtype)
    ncc = metrics.ncc_accuracy(z, labels, z, labels, n_classes)
    return {
        "class_mean_gram": G,
        "delta_g": metrics.delta_g(G, prototype_gram),
        "delta_g_etf": metrics.delta_g(G, etf),
        "within": metrics.variances(z, labels, n_classes).within,
        "ncc_majority": ncc["majority"],
        "ncc_minority": ncc["minority"],
    }


def limit_convergence(
    z: np.ndarray,
    labels: np.ndarray,
    prototypes: np.ndarray,
    tau: float,
    anchors: str,
    n_values: ArrayLike | None = None,
) -> dict[str, Any]:
    """|loss - log n_w - limit| over n_w for fixed embeddings, with its 1/n_w term c1 and proven bound C (theory)."""
    n_values = np.unique(np.round(np.logspace(0, 5, 26)).astype(int)) if n_values is None else np.asarray(n_values)
    gaps = theory_prototypes.gap(z, labels, prototypes, n_values, tau, anchors)
    return {
        "n_proto": n_values.tolist(),
        "abs_gap": np.abs(gaps).tolist(),
        "first_order": theory_prototypes.first_order_coefficient(z, labels, prototypes, tau, anchors),
        "bound_constant": theory_prototypes.gap_bound_constant(z, labels, prototypes, tau, anchors),
    }


def minimise_cells(
    sizes: Sequence[int],
    prototypes: ArrayLike,
    n_protos: Sequence[int],
    tau: float,
    anchors: str = "data",
    *,
    batch_size: int | None = None,
    steps: int = 2000,
    lr: float = 0.05,
    start: str = "uniform",
    seed: int = 0,
    restarts: int = 1,
    max_iter: int = 3000,
    grad_tol: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[optimise.OptimResult, torch.Tensor, dict[str, torch.Tensor]]:
    """Minimise every n_w cell for one class-size vector and measure its geometry.

    Full batch (`minimise_full_batch`) unless batch_size is given (`minimise_stochastic`).

    Args:
        sizes: m class sizes; prototypes: (m, d) array (float64 is used); n_protos: B ints >= 0.
    Returns:
        (result, labels, measures): the `OptimResult` (z (B, N, d)), labels (N,) and
        `geometry_measures` of z against the prototype Gram.
    """
    W = torch.as_tensor(np.asarray(prototypes), dtype=torch.float64)
    labels = sample_labels(sizes)
    if batch_size is None:
        result = minimise_full_batch(
            labels,
            W,
            n_protos,
            tau,
            anchors,
            start=start,
            seed=seed,
            restarts=restarts,
            max_iter=max_iter,
            grad_tol=grad_tol,
            progress=progress,
        )
    else:
        result = minimise_stochastic(
            labels,
            W,
            n_protos,
            tau,
            anchors,
            batch_size=batch_size,
            steps=steps,
            lr=lr,
            start=start,
            seed=seed,
            progress=progress,
        )
    return result, labels, geometry_measures(result.z, labels, W @ W.T, len(sizes))


def theory_limit(prototypes: ArrayLike, tau: float, anchors: str = "data") -> tuple[np.ndarray, float]:
    """The n_w -> infinity class-mean Gram of `theory.prototypes.limit_gram` and its DeltaG* to W W^T."""
    W = np.asarray(prototypes, dtype=float)
    gram = theory_prototypes.limit_gram(W, tau, anchors)
    return gram, float(metrics.delta_g(torch.as_tensor(gram), torch.as_tensor(W @ W.T)))


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def _cells_for(config, ratio, sizes, labels, prototypes, result, certified, measured) -> list[dict]:
    cells = []
    z = result.z
    for b, n_w in enumerate(config.n_proto):
        cell = {
            "imbalance": ratio,
            "class_sizes": list(sizes),
            "n_proto": n_w,
            "loss": float(result.loss[b]),
            "grad_norm": float(result.grad_norm[b]),
            "converged": bool(result.converged[b]),
            "iterations": result.iterations,
            **{key: float(measured[key][b]) for key in MEASURES},
            "limit_gap": None,
            "certified": certified[b],
        }
        if n_w >= 1:
            limit = theory_prototypes.limit_value(
                z[b].numpy(), labels.numpy(), prototypes.numpy(), config.tau, config.anchors
            )
            cell["limit_gap"] = cell["loss"] - math.log(n_w) - limit
        cells.append(cell)
    return cells


def run(config: Config, progress: Callable[[int, float, int, int], None] | None = None) -> dict[str, Any]:
    """The whole sweep; returns the JSON-ready record plus the arrays figures need (keys starting with '_').

    config: a `simulate.prototypes_command.Config` (the command line's declaration of every parameter).

    progress: optional callback(index of R, R, iteration, number of converged cells).
    """
    if config.route == "certificate":
        return run_certificates(config, progress)
    started = time.perf_counter()
    W = prototype_vectors(config.geometry, config.n_classes, config.dim, seed=config.seed)
    prototypes = torch.as_tensor(W, dtype=torch.float64)
    prototype_gram = W @ W.T
    cells, convergence, grams = [], {}, {}
    for index, ratio in enumerate(config.imbalance):
        sizes = class_sizes(config.n_classes, config.majority_size, ratio)
        report = None if progress is None else (lambda it, done, i=index, r=ratio: progress(i, r, it, done))
        result, labels, measured = minimise_cells(
            sizes,
            W,
            config.n_proto,
            config.tau,
            config.anchors,
            batch_size=config.batch_size,
            steps=config.steps,
            lr=config.lr,
            start=config.start,
            seed=config.seed + index,
            restarts=config.restarts,
            max_iter=config.max_iter,
            grad_tol=config.grad_tol,
            progress=report,
        )
        certified = [
            certified_cell(sizes, prototype_gram, n_w, config.tau, config.anchors, config.certify_max_vectors)
            for n_w in config.n_proto
        ]
        cells += _cells_for(config, ratio, sizes, labels, prototypes, result, certified, measured)
        largest = int(np.argmax(config.n_proto))
        if config.n_proto[largest] >= 1:
            convergence[str(ratio)] = limit_convergence(
                result.z[largest].numpy(), labels.numpy(), W, config.tau, config.anchors
            )
        grams[ratio] = measured["class_mean_gram"].numpy()
    limit_gram, limit_delta_g = theory_limit(W, config.tau, config.anchors)
    return {
        "config": asdict(config),
        "prototype_gram": prototype_gram.tolist(),
        "theory": {"limit_class_mean_gram": limit_gram.tolist(), "limit_delta_g": limit_delta_g},
        "cells": cells,
        "limit_convergence": convergence,
        "summary": summarise(config, cells, limit_delta_g, time.perf_counter() - started),
        "_grams": grams,
        "_target": prototype_gram,
    }


def run_certificates(config: Config, progress: Callable[[int, float, int, int], None] | None = None) -> dict[str, Any]:
    """The sweep by exchangeable certificates only (--route certificate): one certificate per cell."""
    started = time.perf_counter()
    W = prototype_vectors(config.geometry, config.n_classes, config.dim, seed=config.seed)
    prototype_gram = W @ W.T
    cells, grams = [], {}
    for index, ratio in enumerate(config.imbalance):
        sizes = class_sizes(config.n_classes, config.majority_size, ratio)
        certified = []
        for done, n_w in enumerate(config.n_proto):
            certified.append(exchangeable_cell(sizes, prototype_gram, n_w, config.tau, config.anchors))
            if progress is not None:
                progress(index, ratio, done + 1, done + 1)
        grams[ratio] = np.stack([cell.pop("class_mean_gram") for cell in certified])
        cells += [
            {
                "imbalance": ratio,
                "class_sizes": list(sizes),
                "n_proto": n_w,
                "loss": cell["minimum"],
                "grad_norm": None,
                "converged": cell["optimal"] and cell["polished"],
                "iterations": None,
                "delta_g": cell["delta_g"],
                "delta_g_etf": cell["delta_g_etf"],
                "within": cell["within"],
                "ncc_majority": None,
                "ncc_minority": None,
                "limit_gap": None,
                "certified": cell,
            }
            for n_w, cell in zip(config.n_proto, certified)
        ]
    limit_gram, limit_delta_g = theory_limit(W, config.tau, config.anchors)
    summary = summarise(config, cells, limit_delta_g, time.perf_counter() - started)
    summary["not_computed"] = "nearest-centre accuracies and the limit gap need embeddings: --route optimise"
    summary["max_relative_gap_to_certified"] = None  # the loss is the certificate: nothing to compare
    return {
        "config": asdict(config),
        "prototype_gram": prototype_gram.tolist(),
        "theory": {"limit_class_mean_gram": limit_gram.tolist(), "limit_delta_g": limit_delta_g},
        "cells": cells,
        "limit_convergence": {},
        "summary": summary,
        "_grams": grams,
        "_target": prototype_gram,
    }


def summarise(config: Config, cells: list[dict[str, Any]], limit_delta_g: float, seconds: float) -> dict[str, Any]:
    """Per R: DeltaG* at the smallest and largest n_w, their ratio, monotone decrease; overall convergence."""
    order = np.argsort(config.n_proto)
    per_ratio = []
    for ratio in config.imbalance:
        rows = [c for c in cells if c["imbalance"] == ratio]
        values = np.array([rows[i]["delta_g"] for i in order])
        entry = {
            "imbalance": ratio,
            "n_proto": [int(config.n_proto[i]) for i in order],
            "delta_g": values.tolist(),
            "first_over_last": float(values[0] / values[-1]) if values[-1] > 0 else math.inf,
            "non_increasing": bool(np.all(np.diff(values) <= 1e-6)),
        }
        by_n = {c["n_proto"]: c["delta_g"] for c in rows}
        if 0 in by_n and 100 in by_n:
            entry["ratio_n0_over_n100"] = by_n[0] / by_n[100] if by_n[100] > 0 else math.inf
        per_ratio.append(entry)
    certified = [c["certified"] for c in cells if c["certified"] is not None]
    return {
        "per_imbalance": per_ratio,
        "theory_limit_delta_g": limit_delta_g,
        "converged": sum(c["converged"] for c in cells),
        "cells": len(cells),
        "certified_cells": len(certified),
        "max_relative_gap_to_certified": max(
            (
                abs(c["loss"] - c["certified"]["minimum"]) / abs(c["certified"]["minimum"])
                for c in cells
                if c["certified"] is not None and c["certified"]["optimal"]
            ),
            default=None,
        ),
        "seconds": seconds,
    }


if __name__ == "__main__":  # python -m simulate.prototypes: the command line lives in simulate.prototypes_command
    from simulate import cli
    from simulate.prototypes_command import COMMAND, main

    sys.exit(cli.run_command(COMMAND, main))
