"""Claim A6 (this suite's criterion, Paper A's CIFAR-10 setting in free embeddings): with ETF prototypes, m = 10
classes and step imbalance R = 100, DeltaG* to the prototype Gram at n_w = 100 is at least ten times smaller
than at n_w = 0.

Route: free optimisation (`simulate.prototypes.minimise_cells`, full batch, anchors="data",
majority classes 100 samples, minority classes 1 sample (N = 505), dim 16, float64,
Riemannian gradient <= 1e-9) at two temperatures: tau = 0.1 (the usual SCL temperature)
and tau = 0.2. The statement names no temperature, so one temperature where the ratio
is below 10 makes it false as stated; the figures give the ratio at each.
"""

from proofs_checks.registry import Result, assert_claim, claim
from proofs_checks.test_a3_etf_geometry import delta_g_by_n_proto
from simulate import prototypes as sweep
from theory import simplex

TAUS = (0.1, 0.2)
N_PROTO = (0, 100)
REQUIRED = 10.0


@claim(
    "A6",
    source="this suite's criterion, on Paper A's CIFAR-10 setting",
    statement="ETF prototypes, m=10, R=100 (majority 100, minority 1): DeltaG*(n_w=100) <= DeltaG*(n_w=0) / 10.",
    routes=("free optimisation",),
    expect="fails",
)
def check() -> Result:
    sizes = sweep.class_sizes(10, 100, 100)
    W = simplex.etf(10, 16)
    figures, short, unconverged = {"class sizes": sizes}, [], []
    for tau in TAUS:
        values, within, converged = delta_g_by_n_proto(sizes, W, N_PROTO, tau)
        ratio = values[0] / values[1]
        figures[f"tau={tau}: DeltaG* at n_w=0, n_w=100, ratio"] = (float(f"{values[0]:.5g}"), float(f"{values[1]:.5g}"),
                                                                  float(f"{ratio:.4g}"))
        figures[f"tau={tau}: within-class variance at n_w=0, 100"] = (float(within[0]), float(within[1]))
        if not converged.all():
            unconverged.append(f"tau={tau}")
        if ratio < REQUIRED:
            short.append(f"tau={tau}: DeltaG* {values[0]:.4g} (n_w=0) -> {values[1]:.4g} (n_w=100), only {ratio:.3g}x")
    if unconverged:
        return Result("not run", figures, reason=f"free minimisation did not converge at {', '.join(unconverged)}")
    if short:
        return Result("fails", figures, counterexample="; ".join(short))
    return Result("holds", figures)


def test_A6_tenfold_reduction_at_n_proto_100():
    assert_claim(check)
