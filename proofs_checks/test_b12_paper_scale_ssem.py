"""Claim B12 (Paper B, at CIFAR sizes): for variant "instance" the global minimum of the combined loss is
the SSEM minimum min_beta L(beta), with within-class variance W* = 1 - beta*, at CIFAR-10 size
(m = 10 classes, n = 5000 instances, p = 2 views) and CIFAR-100 size (m = 100, n = 500, p = 2), over an
alpha x tau grid. For variant "supcon" the map of where the views of an instance separate is reported.

Routes:
* exact: beta* and L(beta*) from the closed form (`theory.ssem`, docs/ssem.md);
* certificate: `simulate.exchangeable.certify_combined`, the convex program over the Gram of all
  m n p vectors reduced by symmetry (docs/certificates.md), exact at these sizes where the full program
  stops near 48 vectors.
The two routes must agree to 1e-9 relative on the minimum, and the certificate's W (from its
class-mean Gram, `variances()`) must equal 1 - beta* to 1e-8. The claim fails where the certified
minimum falls below the SSEM minimum by more than 1e-9 relative (an embedding better than SSEM).

Variant "supcon": the views of an instance separate where the certificate's view similarity a0 is
below 1 - 1e-6. Two-sided there too: where the views do not separate the minimiser lies in SSEM, so
the certified minimum must equal the "supcon" SSEM minimum to 1e-9 relative; where they separate it must
lie below it. The map is reported (and drawn), not judged: Paper B states no threshold for it.

A certificate not polished, or with |minimum - dual lower bound| > 1e-7 relative, leaves the claim
inconclusive.
"""

from __future__ import annotations

import functools
import time

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import exchangeable
from theory import ssem

SIZES = {"CIFAR-10": (10, 5000, 2), "CIFAR-100": (100, 500, 2)}
ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.95)
TAUS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: The supcon map is finer at small alpha, where views can separate (B10 at small sizes).
SUPCON_ALPHAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
SUPCON_TAUS = (0.03, 0.05, 0.1, 0.2, 0.5)
RELATIVE = 1e-9  # certified minimum against the closed form
WITHIN_TOLERANCE = 1e-8  # certificate's W against 1 - beta*
GAP_RELATIVE = 1e-7
SEPARATED = 1e-6  # views separate where a0 < 1 - SEPARATED


def _unsettled(cert, where: str) -> str | None:
    if not cert.ok or not cert.polished:
        return f"{where}: status {cert.status!r}, polished {cert.polished}"
    relative_gap = abs(cert.gap) / abs(cert.minimum)
    return f"{where}: gap {relative_gap:.3g} relative" if relative_gap > GAP_RELATIVE else None


def _point(name: str, alpha: float, tau: float, variant: str) -> dict:
    m, n, p = SIZES[name]
    beta = float(ssem.optimal_beta(alpha, tau, m, n, p, variant))
    closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p, variant))
    cert = exchangeable.certify_combined(alpha, tau, m, n, p, variant, strict=False)
    where = f"{name} (m, n, p) = {(m, n, p)}, {variant}, alpha = {alpha:g}, tau = {tau:g}"
    return {
        "size": name,
        "alpha": alpha,
        "tau": tau,
        "beta": beta,
        "where": where,
        "seconds": cert.seconds,
        "below": (closed - cert.minimum) / abs(closed),
        "relative": abs(cert.minimum - closed) / abs(closed),
        "within": cert.variances()["within"],
        "view": cert.variables["a0"],
        "unsettled": _unsettled(cert, where),
    }


@functools.cache
def measure() -> dict:
    """{"instance": [...], "supcon": [...]}: one record per size and grid point (cached for the figure)."""
    return {
        "instance": [_point(name, a, t, "instance") for name in SIZES for a in ALPHAS for t in TAUS],
        "supcon": [_point(name, a, t, "supcon") for name in SIZES for a in SUPCON_ALPHAS for t in SUPCON_TAUS],
    }


def _worst(records: list[dict], key) -> dict:
    return max(records, key=key)


def _agreements(worst: dict, worst_within: dict, joined: list[dict]) -> list:
    """The instance-variant worst cases against the closed forms, and the supcon points whose views do not
    separate against the SSEM minimum."""
    agreements = [
        Agreement(
            f"certified - SSEM minimum, relative, instance, worst at {worst['where']}", worst["relative"], 0.0, RELATIVE
        ),
        Agreement(
            f"W of the certificate vs 1 - beta*, instance, worst at {worst_within['where']}",
            worst_within["within"],
            1 - worst_within["beta"],
            WITHIN_TOLERANCE,
        ),
    ]
    if joined:
        worst_joined = _worst(joined, lambda r: r["relative"])
        agreements.append(
            Agreement(
                f"certified - SSEM minimum, relative, supcon where views do not separate, worst at "
                f"{worst_joined['where']}",
                worst_joined["relative"],
                0.0,
                RELATIVE,
            )
        )
    return agreements


@claim(
    "B12",
    source="Paper B: optimal embeddings lie in SSEM (at CIFAR-10 and CIFAR-100 sizes)",
    statement='Variant "instance" at (m, n, p) = (10, 5000, 2) and (100, 500, 2): the certified global minimum equals '
    'the closed-form SSEM minimum to 1e-9 relative and W* = 1 - beta* on an alpha x tau grid; variant "supcon": '
    "where the views separate is reported.",
    routes=("exact", "certificate"),
)
def check() -> Result:
    start = time.perf_counter()
    records = measure()
    instance, supcon = records["instance"], records["supcon"]
    separated = [r for r in supcon if r["view"] < 1 - SEPARATED]
    joined = [r for r in supcon if r["view"] >= 1 - SEPARATED]
    worst = _worst(instance, lambda r: r["relative"])
    worst_within = _worst(instance, lambda r: abs(r["within"] - (1 - r["beta"])))
    figures = {
        "instance points": len(instance),
        "max rel |certified - SSEM minimum|, instance": worst["relative"],
        "max |W_cert - (1 - beta*)|, instance": abs(worst_within["within"] - (1 - worst_within["beta"])),
        "collapsed points (beta* = 1), instance": {
            name: sum(r["beta"] == 1.0 for r in instance if r["size"] == name) for name in SIZES
        },
        "supcon: views separate at (alpha, tau, a0, relative drop below SSEM)": {
            name: [
                (r["alpha"], r["tau"], round(r["view"], 4), float(f"{r['below']:.3g}"))
                for r in separated
                if r["size"] == name
            ]
            or "nowhere on the grid"
            for name in SIZES
        },
        "supcon points": len(supcon),
        "slowest certificate by size (s)": {
            name: round(max(r["seconds"] for r in instance + supcon if r["size"] == name), 2) for name in SIZES
        },
    }
    agreements = _agreements(worst, worst_within, joined)
    unsettled = [r["unsettled"] for r in instance + supcon if r["unsettled"]]
    unsettled += [
        f"views separate but the certified minimum is not below SSEM at {r['where']}"
        for r in separated
        if r["below"] <= 0
    ]
    failures = [
        f"certified minimum {r['below']:.3g} relative below the SSEM minimum at {r['where']}"
        for r in instance
        if r["below"] > RELATIVE
    ]
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return verdict(figures, failures, unsettled=unsettled, agreements=agreements)


def figure(_inputs=None):
    """Per size, the supcon view similarity a0 of the certified minimiser over (alpha, tau); crosses: views separate."""
    from matplotlib.figure import Figure

    records = measure()["supcon"]
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    axes = fig.subplots(1, len(SIZES), squeeze=True)
    positions = {alpha: i for i, alpha in enumerate(SUPCON_ALPHAS)}
    for ax, name in zip(axes, SIZES):
        row = [r for r in records if r["size"] == name]
        x = [positions[r["alpha"]] for r in row]
        points = ax.scatter(
            x,
            [r["tau"] for r in row],
            c=[r["view"] for r in row],
            cmap="viridis",
            vmin=0,
            vmax=1,
            s=120,
            edgecolors="black",
        )
        apart = [r for r in row if r["view"] < 1 - SEPARATED]
        ax.scatter([positions[r["alpha"]] for r in apart], [r["tau"] for r in apart], marker="x", color="red", s=60)
        ax.set_yscale("log")
        ax.set_xticks(range(len(SUPCON_ALPHAS)), [f"{a:g}" for a in SUPCON_ALPHAS])
        ax.set_yticks(SUPCON_TAUS, [f"{t:g}" for t in SUPCON_TAUS])
        ax.yaxis.set_minor_formatter("")
        m, n, p = SIZES[name]
        ax.set(xlabel=r"$\alpha$", ylabel=r"$\tau$", title=f"{name} size: m={m}, n={n}, p={p}")
    fig.colorbar(points, ax=axes, label="a0: similarity of two views of one instance")
    fig.suptitle(
        'Variant "supcon": certified (exchangeable) minimiser; red crosses: the views separate (a0 < 1 - 1e-6)',
        fontsize=10,
    )
    return fig


def test_B12_paper_scale_ssem():
    assert_claim(check)
