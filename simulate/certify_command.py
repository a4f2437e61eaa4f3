"""`python -m simulate.certify`: one configuration, certified, from the command line.

    python -m simulate.certify combined --m 10 --n 5000 --p 2 --variant instance --alpha 0.5 --tau 0.3
    python -m simulate.certify supcon --class-sizes 5000,5000,50,50 --tau 0.1
    python -m simulate.certify prototype --cifar10-R 100 --composition batch --n-proto 100 --geometry etf --tau 0.1

Writes `certificate.json` (config, metadata, result) and `certificate.png` (the certified
class-mean Gram beside its target: the prototype Gram, or the ETF Gram without prototypes)
under --out, and prints one summary line. `--method exchangeable` (default) certifies any
size (docs/certificates.md); `--method full` solves the full Gram program, refused above
`simulate.certify.MAX_VECTORS` vectors. Bad input: exit 2 and one line, nothing written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simulate import certify, cli, exchangeable, metrics
from simulate.cli import option
from theory import simplex
from theory.arguments import TAU_RANGE
from theory.compositions import COMPOSITIONS, cifar10_composition

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("exchangeable", "full")
COMMAND = "python -m simulate.certify"
VARIANTS = ("instance", "supcon")
GEOMETRY_HELP = "prototype geometry: etf | orthogonal | minority-spread:S | gram:FILE.npy"


@dataclass(frozen=True)
class Common:
    tau: float = option(
        0.1, "temperature, in [1e-3, 1e3] (where the numerics are exact)", check=cli.between(*TAU_RANGE)
    )
    method: str = option(
        "exchangeable",
        "exchangeable: reduced by symmetry, any size; full: the Gram of all vectors (small sizes)",
        choices=METHODS,
    )
    out: str = option("results/certify", "output folder")


@dataclass(frozen=True)
class Combined(Common):
    """Paper B's combined loss on balanced classes."""

    m: int = option(10, "classes", check=cli.at_least(2))
    n: int = option(5000, "instances per class", check=cli.at_least(2))
    p: int = option(2, "views per instance (>= 2 for the supcon variant)", check=cli.at_least(1))
    variant: str = option(
        "instance", "instance: anchor kept in its denominator (authors' CIFAR code); supcon: removed", choices=VARIANTS
    )
    alpha: float = option(0.5, "weight of the self-supervised term", check=cli.between(0, 1))

    def validate(self):
        if self.variant == "supcon" and self.p < 2:
            raise ValueError(f"--p {self.p}: the supcon variant needs n_views >= 2")


@dataclass(frozen=True)
class Sized(Common):
    class_sizes: tuple[int, ...] | None = option(
        None, "samples per class, comma-separated (e.g. 5000,5000,50)", check=cli.each(cli.at_least(0))
    )
    cifar10_R: float | None = option(
        None,
        "Paper A's step-imbalanced CIFAR-10 at imbalance R (instead of --class-sizes)",
        check=cli.at_least(1),
        flag="--cifar10-R",
    )
    composition: str = option(
        "full", "with --cifar10-R: the full training set, or one batch's expected class counts", choices=COMPOSITIONS
    )
    batch_size: int = option(1024, "with --composition batch", check=cli.at_least(1))

    def validate(self):
        if (self.class_sizes is None) == (self.cifar10_R is None):
            raise ValueError("--class-sizes or --cifar10-R: give exactly one of them")
        if self.class_sizes is not None and len(self.class_sizes) < 2:
            raise ValueError(f"--class-sizes {self.class_sizes}: name at least 2 classes")

    def sizes(self) -> tuple[int, ...]:
        if self.cifar10_R is not None:
            return cifar10_composition(self.cifar10_R, self.composition, self.batch_size)
        return self.class_sizes


@dataclass(frozen=True)
class Supcon(Sized):
    """Per-anchor SCL, any class sizes."""


@dataclass(frozen=True)
class Prototype(Sized):
    """Prototype SCL (Paper A) with fixed prototypes."""

    n_proto: int = option(100, "copies n_w of each prototype", check=cli.at_least(0))
    geometry: str = option("etf", GEOMETRY_HELP)
    anchors: str = option("data", "data: batch samples anchor; all: prototype copies too", choices=certify.ANCHOR_MODES)


LOSSES = {"combined": Combined, "supcon": Supcon, "prototype": Prototype}


def parse(argv: Sequence[str] | None = None) -> tuple[str, Combined | Supcon | Prototype]:
    """The loss (first word) and its validated configuration; bad input exits 2 with one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        if argv:
            print(
                f"usage: {COMMAND} {{{','.join(LOSSES)}}} [options]  ({COMMAND} LOSS --help for each)\n\n"
                + __doc__.split("\n\n")[0]
            )
            raise SystemExit(0)
        cli.fail(COMMAND, f"name a loss first: one of {', '.join(LOSSES)}")
    if argv[0] not in LOSSES:
        cli.fail(COMMAND, f"unknown loss {argv[0]!r}: one of {', '.join(LOSSES)}")
    config_class = LOSSES[argv[0]]
    config = cli.parse_config(config_class, argv[1:], f"{COMMAND} {argv[0]}", config_class.__doc__)
    return argv[0], config


def _prototype_gram(geometry: str, n_classes: int) -> np.ndarray:
    from simulate.prototypes import prototype_vectors  # the one reader of geometry specs

    vectors = prototype_vectors(geometry, n_classes, n_classes)
    return simplex.check_gram(vectors @ vectors.T)


def plan(loss: str, config: Combined | Supcon | Prototype) -> dict[str, Any]:
    """Sizes, target Gram and a function that certifies the configuration (raises ValueError if invalid)."""
    full = config.method == "full"
    if loss == "combined":
        m, n, p = config.m, config.n, config.p
        call = certify.certify_combined if full else exchangeable.certify_combined
        run = lambda: call(config.alpha, config.tau, m, n, p, config.variant)  # noqa: E731
        sizes, views, target, vectors = (n,) * m, p, simplex.etf_gram(m), m * n * p
    else:
        sizes, views = config.sizes(), 1
        if loss == "supcon":
            call = certify.certify_supcon if full else exchangeable.certify_supcon
            run = lambda: call(sizes, config.tau)  # noqa: E731
            target, vectors = simplex.etf_gram(len(sizes)), sum(sizes)
        else:
            try:
                target = _prototype_gram(config.geometry, len(sizes))
            except ValueError as error:
                raise ValueError(f"--geometry {config.geometry!r}: {error}") from None
            call = certify.certify_prototype if full else exchangeable.certify_prototype
            run = lambda: call(sizes, target, config.n_proto, config.tau, config.anchors)  # noqa: E731
            vectors = sum(sizes) + len(sizes)
    if full and vectors > certify.MAX_VECTORS:
        raise ValueError(
            f"--method full solves a Gram of all {vectors} vectors: at most {certify.MAX_VECTORS}; "
            f"use --method exchangeable (any size)"
        )
    return {"run": run, "sizes": sizes, "views": views, "target": target}


def _rank(certificate) -> int:
    if isinstance(certificate, exchangeable.ExchangeableCertificate):
        return certificate.rank
    eigenvalues = np.linalg.eigvalsh(certificate.gram)
    return int((eigenvalues > exchangeable.RANK_TOL * eigenvalues.max()).sum())


def result_record(
    certificate: certify.Certificate | exchangeable.ExchangeableCertificate,
    sizes: Sequence[int],
    views: int,
    target: np.ndarray,
    seconds: float,
) -> dict[str, Any]:
    """The JSON result of a certificate of either method."""
    gram = certificate.class_mean_gram()
    present = [i for i, size in enumerate(sizes) if size >= 1]
    variances = metrics.variances_from_class_mean_gram(
        gram[np.ix_(present, present)], [sizes[i] * views for i in present]
    )
    exchangeable_method = isinstance(certificate, exchangeable.ExchangeableCertificate)
    return {
        "minimum": certificate.minimum,
        "lower_bound": certificate.lower_bound,
        "gap": certificate.gap,
        "status": certificate.status,
        "method": "exchangeable" if exchangeable_method else "full",
        "polished": getattr(certificate, "polished", None),
        "seconds": seconds,
        "rank": _rank(certificate),
        "class_mean_gram": gram.tolist(),
        "target_gram": target.tolist(),
        "delta_g": float(
            metrics.delta_g(torch.as_tensor(gram[np.ix_(present, present)]), target[np.ix_(present, present)])
        ),
        "total": float(variances.total),
        "within": float(variances.within),
        "between": float(variances.between),
        "variables": certificate.variables if exchangeable_method else None,
    }


def figure(result: Mapping[str, Any], title: str) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8), constrained_layout=True)
    for axis, key, name in zip(axes, ("class_mean_gram", "target_gram"), ("certified class-mean Gram", "target")):
        image = axis.imshow(np.array(result[key], dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
        axis.set_title(name)
        axis.set_xlabel("class")
        axis.set_ylabel("class")
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def summary_line(config: dict, result: dict, out: Path) -> str:
    return (
        f"{config['loss']} certified by {result['method']} in {result['seconds']:.2f} s: minimum "
        f"{result['minimum']:.10g} (gap {result['gap']:.1e}, {result['status']}), DeltaG* to target "
        f"{result['delta_g']:.4f}, W {result['within']:.4g}, rank {result['rank']} -> {out / 'certificate.json'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    loss, config = parse(argv)
    try:
        plan_ = plan(loss, config)
        start = time.perf_counter()
        certificate = plan_["run"]()
    except (ValueError, certify.CertificateError) as error:
        cli.fail(f"{COMMAND} {loss}", str(error))
    result = result_record(certificate, plan_["sizes"], plan_["views"], plan_["target"], time.perf_counter() - start)
    record = {
        "config": {"loss": loss, **asdict(config), "class_sizes": list(plan_["sizes"])},
        "metadata": cli.run_metadata(),
        "result": result,
    }

    def write(folder: Path) -> None:
        cli.write_json(folder / "certificate.json", record)
        cli.save_figure(figure(result, f"{loss}, tau = {config.tau:g}"), folder / "certificate.png")

    out = cli.publish(config.out, write)
    print(summary_line(record["config"], result, out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(COMMAND, main))
