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

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from simulate import certify, cli, exchangeable, metrics
from theory import simplex
from theory.compositions import COMPOSITIONS, cifar10_composition

METHODS = ("exchangeable", "full")
COMMAND = "python -m simulate.certify"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--class-sizes must be comma-separated integers, e.g. 5000,5000,50, got {text!r}") from None


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for required options (which have none)."""

    def _get_help_string(self, action):
        return action.help if action.required or action.default is None else super()._get_help_string(action)


def parser() -> cli.ArgumentParser:
    main = cli.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0], formatter_class=_DefaultsShown)
    common = cli.ArgumentParser(add_help=False)
    common.add_argument("--tau", type=float, required=True, help="temperature, > 0")
    common.add_argument("--method", choices=METHODS, default="exchangeable",
                        help="exchangeable: reduced by symmetry, any size; full: the Gram of all vectors (small sizes)")
    common.add_argument("--out", default="results/certify", help="output folder")
    commands = main.add_subparsers(dest="loss", required=True, metavar="{combined,supcon,prototype}")
    defaults = {"formatter_class": _DefaultsShown, "parents": [common]}
    combined = commands.add_parser("combined", help="Paper B's combined loss, balanced classes", **defaults)
    combined.add_argument("--m", type=int, required=True, help="classes, >= 2")
    combined.add_argument("--n", type=int, required=True, help="instances per class, >= 2")
    combined.add_argument("--p", type=int, default=2, help="views per instance, >= 1 (>= 2 for supcon)")
    combined.add_argument("--variant", choices=("instance", "supcon"), default="instance",
                          help="instance: anchor kept in its denominator (authors' CIFAR code); supcon: removed")
    combined.add_argument("--alpha", type=float, required=True, help="weight of the self-supervised term, in [0, 1]")
    for name, text in (("supcon", "per-anchor SCL, any class sizes"), ("prototype", "prototype SCL (Paper A)")):
        sub = commands.add_parser(name, help=text, **defaults)
        sizes = sub.add_mutually_exclusive_group(required=True)
        sizes.add_argument("--class-sizes", type=str, help="samples per class, comma-separated (e.g. 5000,5000,50)")
        sizes.add_argument("--cifar10-R", type=float, dest="cifar10_R",
                           help="Paper A's step-imbalanced CIFAR-10 at imbalance R >= 1 (instead of --class-sizes)")
        sub.add_argument("--composition", choices=COMPOSITIONS, default="full",
                         help="with --cifar10-R: the full training set, or one batch's expected class counts")
        sub.add_argument("--batch-size", type=int, default=1024, help="with --composition batch")
        if name == "prototype":
            sub.add_argument("--n-proto", type=int, required=True, help="copies n_w of each prototype, >= 0")
            sub.add_argument("--geometry", default="etf",
                             help="prototype geometry: etf | orthogonal | minority-spread:S | gram:FILE.npy")
            sub.add_argument("--anchors", choices=certify.ANCHOR_MODES, default="data",
                             help="data: batch samples anchor; all: prototype copies too")
    return main


def _class_sizes(args) -> tuple[int, ...]:
    if args.cifar10_R is not None:
        return cifar10_composition(args.cifar10_R, args.composition, args.batch_size)
    return _sizes(args.class_sizes)


def _prototype_gram(geometry: str, n_classes: int) -> np.ndarray:
    from simulate.prototypes import prototype_vectors  # the one reader of geometry specs

    vectors = prototype_vectors(geometry, n_classes, n_classes)
    return simplex.check_gram(vectors @ vectors.T)


def plan(args) -> dict:
    """The validated configuration: loss, sizes, target Gram and a function that certifies it."""
    method = args.method
    if args.loss == "combined":
        m, n, p = args.m, args.n, args.p
        call = exchangeable.certify_combined if method == "exchangeable" else certify.certify_combined
        run = lambda: call(args.alpha, args.tau, m, n, p, args.variant)  # noqa: E731
        sizes, views, target = (n,) * m, p, simplex.etf_gram(m) if m >= 2 else None
        vectors = m * n * p
    else:
        sizes, views = _class_sizes(args), 1
        if len(sizes) < 2:
            raise ValueError(f"--class-sizes must name at least 2 classes, got {sizes}")
        if args.loss == "supcon":
            call = exchangeable.certify_supcon if method == "exchangeable" else certify.certify_supcon
            run = lambda: call(sizes, args.tau)  # noqa: E731
            target, vectors = simplex.etf_gram(len(sizes)), sum(sizes)
        else:
            target = _prototype_gram(args.geometry, len(sizes))
            call = exchangeable.certify_prototype if method == "exchangeable" else certify.certify_prototype
            run = lambda: call(sizes, target, args.n_proto, args.tau, args.anchors)  # noqa: E731
            vectors = sum(sizes) + len(sizes)
    if method == "full" and vectors > certify.MAX_VECTORS:
        raise ValueError(f"--method full solves a Gram of all {vectors} vectors: at most {certify.MAX_VECTORS}; "
                         f"use --method exchangeable (any size)")
    return {"run": run, "sizes": sizes, "views": views, "target": target}


def require_writable_folder(out: str) -> Path:
    """--out as a folder that can be created and written, checked without creating anything."""
    if not out:
        raise ValueError("--out must name a folder, got an empty string")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out must be a folder, but {out!r} is a file")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out!r} cannot be created: {str(existing)!r} is not a writable folder")
    return path


def _rank(certificate) -> int:
    if isinstance(certificate, exchangeable.ExchangeableCertificate):
        return certificate.rank
    eigenvalues = np.linalg.eigvalsh(certificate.gram)
    return int((eigenvalues > exchangeable.RANK_TOL * eigenvalues.max()).sum())


def result_record(certificate, sizes, views: int, target: np.ndarray, seconds: float) -> dict:
    """The JSON result of a certificate of either method."""
    gram = certificate.class_mean_gram()
    present = [i for i, size in enumerate(sizes) if size >= 1]
    variances = metrics.variances_from_class_mean_gram(gram[np.ix_(present, present)],
                                                       [sizes[i] * views for i in present])
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
        "delta_g": float(metrics.delta_g(torch.as_tensor(gram[np.ix_(present, present)]), target[np.ix_(present, present)])),
        "total": float(variances.total),
        "within": float(variances.within),
        "between": float(variances.between),
        "variables": certificate.variables if exchangeable_method else None,
    }


def figure(result: dict, title: str):
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
    return (f"{config['loss']} certified by {result['method']} in {result['seconds']:.2f} s: minimum "
            f"{result['minimum']:.10g} (gap {result['gap']:.1e}, {result['status']}), DeltaG* to target "
            f"{result['delta_g']:.4f}, W {result['within']:.4g}, rank {result['rank']} -> {out / 'certificate.json'}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        plan_ = plan(args)
        out = require_writable_folder(args.out)
        start = time.perf_counter()
        certificate = plan_["run"]()
    except (ValueError, certify.CertificateError) as error:
        cli.fail(COMMAND, str(error))
    result = result_record(certificate, plan_["sizes"], plan_["views"], plan_["target"], time.perf_counter() - start)
    config = {key: value for key, value in vars(args).items()}
    config["class_sizes"] = list(plan_["sizes"])
    cli.write_json(out / "certificate.json", {"config": config, "metadata": cli.run_metadata(), "result": result})
    cli.save_figure(figure(result, f"{args.loss}, tau = {args.tau:g}"), out / "certificate.png")
    print(summary_line(config, result, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
