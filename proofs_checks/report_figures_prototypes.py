"""Figures of Paper A's claims in the report: prototype SCL, its n_w -> infinity limit, imbalance.

Each function takes the report's `FigureInputs` (the prototype sweep is shared) and returns a matplotlib
Figure; the catalogue that attaches them to claims is `proofs_checks.report.FIGURES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from proofs_checks.report_figures import new_figure

if TYPE_CHECKING:
    from proofs_checks.report_figures import FigureInputs


def prototype_limit_figure(_: FigureInputs):
    """|mean loss - log n_w - limit| against n_w, both anchor modes, with |c1|/n_w and the proven C/n_w."""
    import torch

    from simulate.losses import prototype_supcon_loss
    from theory import prototypes, simplex

    rng = np.random.default_rng(0)
    sizes, tau = (6, 6, 2, 1), 0.5
    labels = np.repeat(np.arange(4), sizes)
    z = rng.standard_normal((len(labels), 6))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    W = simplex.etf(4, 6, seed=1)
    n_w = np.unique(np.round(np.logspace(0, 5, 21)).astype(int))
    figure, axes = new_figure(11.5, 4.4, 2)
    for ax, anchors in zip(axes, ("data", "all")):
        loss = np.array(
            [
                float(
                    prototype_supcon_loss(torch.tensor(z), torch.tensor(labels), torch.tensor(W), int(k), tau, anchors)
                )
                for k in n_w
            ]
        )
        limit = prototypes.limit_value(z, labels, W, tau, anchors)
        ax.loglog(
            n_w,
            np.maximum(np.abs(loss - np.log(n_w) - limit), 1e-300),
            "o-",
            ms=4,
            label="|mean loss - log n_w - limit| (simulate.losses)",
        )
        ax.loglog(
            n_w,
            abs(prototypes.first_order_coefficient(z, labels, W, tau, anchors)) / n_w,
            "--",
            label=r"$|c_1| / n_w$ (derived first-order term)",
        )
        ax.loglog(
            n_w,
            prototypes.gap_bound_constant(z, labels, W, tau, anchors) / n_w,
            ":",
            lw=2,
            label=r"proven bound $C / n_w$",
        )
        extra = prototypes.extra_term(z, labels, W, tau, anchors)
        target = "mean CE" if anchors == "data" else rf"$\bar K$ (extra term $\bar K$ - mean CE = {extra:.3f} survives)"
        ax.set_title(f'anchors="{anchors}": limit = {target}', fontsize=9)
        ax.set(xlabel=r"prototype copies per class $n_w$", ylabel="distance to the limit")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    figure.suptitle(
        r"Prototype SCL tends to CE with a fixed classifier at rate $1/n_w$ "
        rf"(m=4 ETF prototypes, class sizes {sizes}, random unit embeddings, $\tau$={tau:g})",
        fontsize=10,
    )
    return figure


def _sweep_title(config: dict) -> str:
    return (
        f"m={config['n_classes']}, majority {config['majority_size']}, d={config['dim']}, tau={config['tau']:g}, "
        f"anchors={config['anchors']}, prototypes {config['geometry']}, full batch"
    )


def prototype_delta_g_figure(inputs: FigureInputs):
    from simulate import prototypes

    figure = prototypes.delta_g_figure(inputs.prototype_sweep)
    figure.axes[0].set_title(
        "ETF prototypes: DeltaG* of the free-embedding minimiser against n_w\n"
        + _sweep_title(inputs.prototype_sweep["config"]),
        fontsize=9,
    )
    return figure


def prototype_gram_figure(inputs: FigureInputs):
    from simulate import prototypes

    figure = prototypes.gram_figure(inputs.prototype_sweep)
    m = inputs.prototype_sweep["config"]["n_classes"]
    for ax in figure.axes[:-1]:  # the last axes is the colour bar
        ax.set_xticks(range(m)), ax.set_yticks(range(m))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("class c'", fontsize=7)
        ax.set_ylabel("class c", fontsize=7)
    figure.suptitle(
        "Class-mean Gram <mu_c, mu_c'>: target | no prototypes | most prototypes "
        "(classes 0-1 majority, 2-3 minority)\n" + _sweep_title(inputs.prototype_sweep["config"]),
        fontsize=9,
    )
    return figure


def custom_geometry_figure(_: FigureInputs):
    """DeltaG* against n_w for ETF and two non-ETF prototype geometries, with each n_w -> inf prediction."""
    from simulate import prototypes
    from simulate.prototypes_command import Config

    figure, (ax,) = new_figure(7.0, 4.6)
    for index, geometry in enumerate(("etf", "orthogonal", "minority-spread:0.5")):
        result = prototypes.run(
            Config(
                n_classes=4,
                majority_size=10,
                imbalance=(10.0,),
                dim=8,
                tau=0.5,
                n_proto=(0, 1, 10, 100, 1000, 10000),
                geometry=geometry,
                certify_max_vectors=0,
            )
        )
        entry = result["summary"]["per_imbalance"][0]
        ax.plot(
            entry["n_proto"],
            np.maximum(entry["delta_g"], 1e-12),
            "o-",
            color=f"C{index}",
            label=f"{geometry}: free minimiser",
        )
        limit = result["theory"]["limit_delta_g"]
        if limit > 1e-9:
            ax.axhline(limit, color=f"C{index}", ls="--", lw=1, label=rf"{geometry}: theory $n_w \to \infty$")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.2, 2e4)
    ax.set_yscale("log")
    ax.set(xlabel=r"prototype copies per class $n_w$ (symlog; 0 at left)", ylabel=r"$\Delta G^*$ to the prototype Gram")
    ax.set_title(
        "Non-ETF prototypes: DeltaG* stops at the limit's value, not 0\n(m=4, R=10, majority 10, d=8, "
        "tau=0.5, anchors=data; ETF limit is 0)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return figure


def certified_imbalance_figure(_: FigureInputs):
    """DeltaG* of the certified SCL minimiser's class means to the ETF Gram against R (m=3, no prototypes)."""
    import torch

    from simulate import certify, metrics
    from simulate.prototypes import class_sizes
    from theory import simplex

    m, ratios = 3, (1, 2, 5, 10)
    figure, (ax,) = new_figure(6.4, 4.4)
    for index, tau in enumerate((0.2, 1.0)):
        values = []
        for ratio in ratios:
            cert = certify.certify_supcon(class_sizes(m, 10, ratio), tau).require_ok()
            values.append(
                float(metrics.delta_g(torch.as_tensor(cert.class_mean_gram()), torch.as_tensor(simplex.etf_gram(m))))
            )
        ax.plot(ratios, values, "o-", color=f"C{index}", label=rf"$\tau$ = {tau:g}")
    ax.set_xscale("log")
    ax.set_xticks(ratios, [str(r) for r in ratios])
    ax.set(xlabel="imbalance R = majority / minority size", ylabel=r"$\Delta G^*$ to the ETF Gram")
    ax.set_title(
        "No prototypes: class means of the certified SCL minimiser vs the ETF\n(m=3, majority 10, minority 10/R)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return figure
