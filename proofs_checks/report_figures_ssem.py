"""Figures of Paper B's claims in the report: closed forms of SSEM, the collapse threshold, certificates.

Each function takes the report's `FigureInputs` (unused here: these figures share no data) and returns a
matplotlib Figure; the catalogue that attaches them to claims is `proofs_checks.report.FIGURES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from proofs_checks.report_figures import new_figure

if TYPE_CHECKING:
    from proofs_checks.report_figures import FigureInputs


def phase_figure(_: FigureInputs):
    """Closed-form W* over (alpha, log tau), the alpha*(tau) curve, and free-embedding minima on a coarse grid."""
    from theory import ssem

    m, n, p = 4, 4, 2
    alphas, taus = np.linspace(0, 1, 201), np.geomspace(0.03, 8, 161)
    within, _ = ssem.optimal_variances(alphas[:, None], taus[None, :], m, n, p)
    figure, (ax,) = new_figure(7.2, 5.0)
    mesh = ax.pcolormesh(alphas, taus, within.T, shading="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.plot(
        ssem.alpha_star(taus, m, n, p),
        taus,
        color="white",
        lw=2.2,
        label=r"$\alpha^*(\tau)$ (closed form): collapse iff $\alpha \leq \alpha^*$",
    )
    summary = _phase_points(ax, m, n, p)
    ax.set_yscale("log")
    ax.set(
        xlim=(0, 1),
        ylim=(taus[0], taus[-1]),
        xlabel=r"$\alpha$ (weight of the self-supervised term)",
        ylabel=r"temperature $\tau$ (log scale)",
    )
    ax.text(0.04, 3.0, "collapse\n(W = 0)", color="white", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    figure.colorbar(mesh, ax=ax, label=r"within-class variance $W^* = 1 - \beta^*$")
    ax.set_title(
        f"Paper B phase diagram, m={m}, n={n}, p={p}, variant instance\n"
        f"max loss gap free vs closed form {_gap(summary)}, "
        f"collapse agreement {summary['agreement']:.0%}",
        fontsize=10,
    )
    return figure


def _phase_points(ax, m: int, n: int, p: int) -> dict:
    """Free-embedding minima on a coarse (alpha, tau) grid drawn on `ax`, circled where the collapse verdict
    differs from the closed form; returns `simulate.phase.compare`'s agreement summary."""
    from simulate import phase
    from theory import ssem

    coarse_alphas, coarse_taus = np.linspace(0, 1, 6), np.geomspace(0.05, 5, 5)
    theory = phase.theory_grid(coarse_alphas, coarse_taus, m, n, p)
    # The settings of `python -m simulate.phase_diagram --alphas 0:1:6 --taus 0.05:5:5` (dim m n, 1000 iterations).
    simulated = phase.simulated_grid(coarse_alphas, coarse_taus, m, n, p, m * n, seed=0, restarts=1, max_iter=1000)
    summary, _ = phase.compare(coarse_alphas, coarse_taus, theory, simulated, ssem.alpha_star(coarse_taus, m, n, p))
    a, t = np.meshgrid(coarse_alphas, coarse_taus, indexing="ij")
    ax.scatter(
        a,
        t,
        c=simulated["within"],
        cmap="viridis",
        vmin=0,
        vmax=1,
        s=70,
        edgecolors="black",
        linewidths=1.2,
        label="free-embedding minimum (colour = its W)",
        zorder=3,
    )
    disagree = simulated["collapsed"] != theory["collapsed"]
    if disagree.any():
        ax.scatter(
            a[disagree],
            t[disagree],
            s=160,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label="collapse verdict differs from theory",
            zorder=4,
        )
    return summary


def guideline_figure(_: FigureInputs):
    """Left: where the summarised guideline meets the collapse region (m=3, n=4). Right: its gap over (m, n)."""

    m, n = 3, 4
    figure, (left, right) = new_figure(12.0, 4.8, 2)
    _guideline_region_panel(left, m, n)
    _guideline_gap_panel(figure, right)
    figure.suptitle("The summarised guideline does not prevent collapse (Paper B summary, claim B7)")
    return figure


def _guideline_region_panel(left, m: int, n: int) -> None:
    """Collapse region of the closed form, the guideline's region and where they overlap, with the counterexample."""
    from theory import ssem

    alphas, taus = np.linspace(0, 1, 301), np.geomspace(0.05, 5, 201)
    collapsed = ssem.optimal_beta(alphas[:, None], taus[None, :], m, n) == 1.0
    guideline = (alphas[:, None] >= 1 / n) & (taus[None, :] <= 1 / np.log(m))
    regions = collapsed.astype(float) + 2 * (collapsed & guideline)  # 0 no collapse, 1 collapse, 3 both
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    left.pcolormesh(
        alphas,
        taus,
        regions.T,
        shading="nearest",
        vmin=0,
        vmax=3,
        cmap=ListedColormap(["#f4f4f4", "#9ecae1", "#9ecae1", "#d7301f"]),
    )
    (curve,) = left.plot(ssem.alpha_star(taus, m, n), taus, "k-", lw=1.5, label=r"$\alpha^*(\tau)$")
    (box,) = left.plot(
        [1 / n, 1 / n, 1],
        [taus[0], 1 / np.log(m), 1 / np.log(m)],
        "k--",
        lw=1.5,
        label="guideline region (below, right)",
    )
    (star,) = left.plot(
        0.26,
        1 / np.log(3),
        marker="*",
        ls="none",
        ms=16,
        color="gold",
        mec="black",
        label=r"counterexample $\alpha$=0.26, $\tau$=1/log 3",
    )
    left.set_yscale("log")
    left.set(
        xlabel=r"$\alpha$ (weight of the self-supervised term)", ylabel=r"temperature $\tau$ (log scale)", xlim=(0, 1)
    )
    left.set_title(r"m=3, n=4: guideline $\alpha \geq 1/n$ and $\tau \leq 1/\log m$", fontsize=10)
    left.legend(
        handles=[
            Patch(color="#9ecae1", label=r"collapse ($\beta^* = 1$)"),
            Patch(color="#d7301f", label="inside the guideline, yet collapses"),
            Patch(color="#f4f4f4", label="no collapse"),
            curve,
            box,
            star,
        ],
        fontsize=8,
        loc="lower right",
        framealpha=0.9,
    )


def _guideline_gap_panel(figure, right) -> None:
    """alpha*(1/log m) - 1/n over (m, n) = 2..10: how wide the collapsing alpha range the guideline admits is."""
    from theory import ssem

    sizes = np.arange(2, 11)
    gap = np.array([[ssem.alpha_star(1 / np.log(mm), mm, nn) - 1 / nn for mm in sizes] for nn in sizes])
    image = right.imshow(gap, origin="lower", cmap="Reds", extent=(1.5, 10.5, 1.5, 10.5), vmin=0)
    for i, nn in enumerate(sizes):
        for j, mm in enumerate(sizes):
            right.text(mm, nn, f"{gap[i, j]:.2f}", ha="center", va="center", fontsize=7)
    right.set(xlabel="classes m", ylabel="instances per class n", xticks=sizes, yticks=sizes)
    right.set_title(r"collapsing $\alpha$ range allowed by the guideline at $\tau = 1/\log m$", fontsize=10)
    figure.colorbar(image, ax=right, label=r"$\alpha^*(1/\log m) - 1/n$ (> 0: guideline admits collapse)")


def restricted_loss_figure(_: FigureInputs):
    """Left: L(beta) - min L for several alpha (convex, minimiser marked). Right: beta*(alpha) for several p."""
    from theory import ssem

    m, n, tau = 3, 4, 0.5
    figure, (left, right) = new_figure(11.5, 4.4, 2)
    beta = np.linspace(0, 1, 401)
    for alpha in (0.0, 0.35, 0.5, 0.8, 1.0):
        loss = ssem.restricted_loss(beta, alpha, tau, m, n, 2)
        best = float(ssem.optimal_beta(alpha, tau, m, n, 2))
        (line,) = left.plot(
            beta, loss - ssem.restricted_loss(best, alpha, tau, m, n, 2), label=rf"$\alpha$ = {alpha:g}"
        )
        left.plot(best, 0, "o", color=line.get_color(), ms=7)
    left.set(
        xlabel=r"$\beta$ (between-class variance of SSEM($\beta$))",
        ylabel=r"$L(\beta) - \min_\beta L$",
        ylim=(-0.02, None),
    )
    left.set_title(
        rf"restricted loss, m={m}, n={n}, p=2, $\tau$={tau:g} (dots: $\beta^*$; $\alpha^*$ = "
        f"{float(ssem.alpha_star(tau, m, n)):.3f})",
        fontsize=9,
    )
    left.legend(fontsize=8)
    alphas = np.linspace(0, 1, 201)
    for p, style, colour, width in ((1, "-", "#9ecae1", 6), (2, "--", "C0", 2.5), (4, ":", "black", 1.5)):
        right.plot(
            alphas, ssem.optimal_beta(alphas, tau, m, n, p), style, color=colour, lw=width, label=f"instance, p = {p}"
        )
    for p, colour in ((2, "C3"), (4, "C1")):
        right.plot(
            alphas,
            ssem.optimal_beta(alphas, tau, m, n, p, "supcon"),
            "-",
            color=colour,
            lw=1.2,
            label=f"supcon, p = {p}",
        )
    right.set(xlabel=r"$\alpha$", ylabel=r"$\beta^*$ (1 = class collapse)")
    right.set_title(r'$\beta^*$ is the same for every p with variant "instance", not with "supcon"', fontsize=9)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure


def within_variance_figure(_: FigureInputs):
    """W*(tau) for several alpha with the small-tau asymptote, and the alpha = 1 value."""
    from theory import ssem

    m, n = 3, 4
    taus = np.geomspace(1e-3, 2, 200)
    figure, (ax,) = new_figure(6.8, 4.6)
    for index, alpha in enumerate((0.4, 0.6, 0.8)):
        within, _ = ssem.optimal_variances(alpha, taus, m, n)
        ax.loglog(taus, within, color=f"C{index}", lw=2, label=rf"$W^*$, $\alpha$ = {alpha:g}")
        ax.loglog(
            taus,
            ssem.small_tau_within(alpha, taus, n),
            "--",
            color=f"C{index}",
            lw=1,
            label=r"asymptote $\frac{n-1}{n}\tau\log\frac{(n-1)\alpha}{1-\alpha}$" if index == 0 else None,
        )
    within, _ = ssem.optimal_variances(1.0, taus, m, n)
    ax.loglog(taus, within, color="C3", lw=2, label=r"$W^*$, $\alpha$ = 1")
    ax.axhline(m * (n - 1) / (m * n - 1), color="k", ls=":", label=r"$m(n-1)/(mn-1)$")
    ax.set(xlabel=r"temperature $\tau$", ylabel=r"within-class variance $W^*$ at the optimum", ylim=(1e-4, 1.5))
    ax.set_title(f"Small-tau asymptote and alpha = 1 value (m={m}, n={n}, instance)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return figure


def certificate_figure(_: FigureInputs):
    """Certified minimum vs closed-form SSEM minimum, and certified Gram vs SSEM Gram, on small sizes."""
    from simulate import certify
    from theory import ssem

    sizes = ((2, 2, 2), (3, 2, 2), (2, 3, 2), (3, 3, 1))
    alphas, taus = (0.0, 0.3, 0.6, 1.0), (0.2, 0.5, 1.0, 2.0)
    figure, (left, right) = new_figure(11.5, 4.4, 2)
    markers = "osD^"
    for index, (m, n, p) in enumerate(sizes):
        loss_gap, gram_gap, tau_of = [], [], []
        for alpha in alphas:
            for tau in taus:
                cert = certify.certify_combined(alpha, tau, m, n, p)
                beta = float(ssem.optimal_beta(alpha, tau, m, n, p))
                closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p))
                loss_gap.append(abs(cert.minimum - closed) / abs(closed))
                gram_gap.append(np.abs(cert.gram - ssem.ssem_view_gram(beta, m, n, p)).max())
                tau_of.append(tau * (1 + 0.04 * (index - 1.5)))  # small offsets keep the sizes apart
        style = dict(marker=markers[index], ls="none", ms=6, alpha=0.8, label=f"(m, n, p) = ({m}, {n}, {p})")
        left.plot(tau_of, np.maximum(loss_gap, 1e-16), **style)
        right.plot(tau_of, np.maximum(gram_gap, 1e-16), **style)
    left.axhline(1e-6, color="k", ls="--", lw=1, label="tolerance 1e-6 (routes must agree)")
    right.axhline(1e-4, color="k", ls="--", lw=1, label="tolerance 1e-4 (claim B8)")
    left.set(
        xscale="log",
        yscale="log",
        xlabel=r"temperature $\tau$ ($\alpha \in \{0, 0.3, 0.6, 1\}$ at each)",
        ylabel=r"$|L_{cert} - L_{SSEM}(\beta^*)| / |L_{SSEM}|$",
    )
    right.set(
        xscale="log", yscale="log", xlabel=r"temperature $\tau$", ylabel=r"$\max_{ab} |G_{cert} - G_{SSEM}(\beta^*)|$"
    )
    left.set_title("minimum: convex certificate vs closed form", fontsize=10)
    right.set_title("minimiser: certified Gram vs SSEM Gram at the closed-form beta*", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(taus, [f"{tau:g}" for tau in taus])
        ax.minorticks_off()
        ax.set_yscale("log")  # minorticks_off also drops the y minor ticks; the log scale keeps its labels
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    figure.suptitle('Certified global minima of the combined loss (variant "instance") lie in SSEM', fontsize=11)
    return figure


def supcon_map_figure(_: FigureInputs):
    """Variant "supcon", m=n=p=2: relative drop of the certified minimum below the SSEM minimum over (alpha, tau)."""
    from simulate import certify
    from theory import ssem

    m, n, p = 2, 2, 2
    alphas, taus = np.linspace(0, 1, 9), np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    drop = np.zeros((len(alphas), len(taus)))
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            beta = ssem.optimal_beta(alpha, tau, m, n, p, "supcon")
            closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p, "supcon"))
            drop[i, j] = (closed - certify.certify_combined(alpha, tau, m, n, p, "supcon").minimum) / abs(closed)
    figure, (ax,) = new_figure(6.8, 4.8)
    mesh = ax.pcolormesh(alphas, np.arange(len(taus)), np.maximum(drop, 0).T, shading="nearest", cmap="magma_r", vmin=0)
    below = drop > 1e-6
    a, t = np.meshgrid(alphas, np.arange(len(taus)), indexing="ij")
    ax.plot(
        a[below],
        t[below],
        "x",
        color="deepskyblue",
        ms=8,
        mew=2,
        label="certified minimum < SSEM minimum (rel. > 1e-6)",
    )
    fine = np.geomspace(taus[0], taus[-1], 200)
    ax.plot(
        ssem.alpha_star(fine, m, n, p, "supcon"),
        np.interp(np.log(fine), np.log(taus), np.arange(len(taus))),
        color="C0",
        lw=2,
        label=r'$\alpha^*(\tau)$ of SSEM, variant "supcon"',
    )
    ax.set_yticks(np.arange(len(taus)), [f"{t:g}" for t in taus])
    ax.set(xlabel=r"$\alpha$", ylabel=r"temperature $\tau$")
    ax.set_title('Variant "supcon", m=n=p=2: views separate at small alpha and tau', fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    figure.colorbar(mesh, ax=ax, label=r"$(L_{SSEM} - L_{cert}) / |L_{SSEM}|$")
    return figure


def _gap(summary: dict) -> str:
    """The largest loss gap: relative where the closed form is away from 0 (`simulate.phase.compare`), else absolute."""
    if summary.get("max_rel_loss_gap") is not None:
        return f"{summary['max_rel_loss_gap']:.1e} relative"
    return f"{summary['max_abs_loss_gap']:.1e} absolute"
