"""Claim B7 (a summary of Paper B): "alpha >= 1/n and tau <= 1/log m prevents collapse".

Route: exact. The guideline audit (theory.ssem.guideline_audit) searches a grid of (m, n) for points inside the
guideline's region that collapse. The suite's verdict is that the guideline is NOT sufficient; the exact
condition is alpha > alpha*(tau) (equivalently tau < tau*(alpha)).
"""

import numpy as np

from proofs_checks.registry import Result, assert_claim, claim
from theory import ssem


@claim(
    "B7",
    source="summary of Paper B",
    statement="alpha >= 1/n and tau <= 1/log m prevent class collapse.",
    routes=("exact",),
    expect="fails",
)
def check() -> Result:
    counterexamples = ssem.guideline_audit(range(2, 11), range(2, 11))
    design_example = float(ssem.optimal_beta(0.26, 1 / np.log(3), 3, 4))
    figures = {
        "grid": "m = 2..10, n = 2..10",
        "collapsing (m, n) pairs inside the guideline": len(counterexamples),
        "beta* at m=3, n=4, alpha=0.26, tau=1/log 3": design_example,
    }
    if not counterexamples:
        return Result("holds", figures)
    first = counterexamples[0]
    example = (
        f"m=3, n=4, alpha=0.26 (>= 1/4), tau=1/log 3 collapses (beta* = {design_example}); e.g. also "
        f"m={first.n_classes}, n={first.n_per_class}, alpha={first.alpha:.4f}, tau={first.tau:.4f} with "
        f"alpha*={first.alpha_star:.4f}. Exact condition: alpha > alpha*(tau)."
    )
    return Result("fails", figures, counterexample=example)


def test_B7_summarised_guideline_is_not_sufficient():
    assert_claim(check)
