"""Claim B6 (Paper B): the SSEM(beta) construction has Gram entries 1 within an instance,
s_w = (n beta - 1)/(n - 1) within a class and s_b = -beta/(m - 1) across classes, and variances
T = 1, B = beta, W = 1 - beta — measured through `simulate.metrics`, the functions every route uses.

Routes: exact. The construction (`theory.ssem.embeddings`) is measured by `simulate.metrics`
(variances, class-mean Gram, distance to the SSEM family) and its Gram is compared entrywise with the
formulas typed here independently, to 1e-12, over sizes, beta in [0, 1], the smallest admissible
dimension mn - 1 and a larger randomly rotated one.
"""

import numpy as np
import torch

from proofs_checks.registry import Agreement, Result, assert_claim, claim, verdict
from simulate import losses, metrics
from theory import simplex, ssem

SIZES = [(2, 2, 1), (2, 3, 2), (3, 4, 2), (5, 3, 3), (10, 4, 2)]
BETAS = [0.0, 0.25, 0.5, 0.9, 1.0]
TOLERANCE = 1e-12


def _expected_gram(m: int, n: int, p: int, beta: float) -> np.ndarray:
    """SSEM Gram (docs/ssem.md) of the m n p views, class-major, then instance, then view; (N, N)."""
    instance = np.arange(m * n * p) // p
    label = instance // n
    same_instance = instance[:, None] == instance[None, :]
    same_class = label[:, None] == label[None, :]
    return np.where(same_instance, 1.0, np.where(same_class, (n * beta - 1) / (n - 1), -beta / (m - 1)))


def _errors(m: int, n: int, p: int, beta: float, dim: int, seed) -> dict:
    """Largest deviation of each measured quantity from its formula, one construction."""
    z = torch.from_numpy(ssem.embeddings(m, n, p, dim, beta, seed=seed).reshape(m * n * p, dim))
    labels, instances = losses.balanced_layout(m, n, p)
    variance = metrics.variances(z, labels, m)
    beta_hat, residual = metrics.ssem_distance(z, labels, instances, m)
    means = metrics.class_mean_gram(z, labels, m).numpy()
    return {
        "Gram entries": float(np.abs((z @ z.T).numpy() - _expected_gram(m, n, p, beta)).max()),
        "T - 1": abs(float(variance.total) - 1.0),
        "B - beta": abs(float(variance.between) - beta),
        "W - (1 - beta)": abs(float(variance.within) - (1.0 - beta)),
        "class-mean Gram - beta ETF": float(np.abs(means - beta * simplex.etf_gram(m)).max()),
        "fitted beta - beta": abs(float(beta_hat) - beta),
        "SSEM residual": float(residual),
    }


@claim(
    "B6",
    source="Paper B: the SSEM construction",
    statement="The SSEM(beta) construction has Gram entries 1 / (n beta - 1)/(n - 1) / -beta/(m - 1) and "
    "variances T = 1, B = beta, W = 1 - beta, to 1e-12, as measured by simulate.metrics.",
    routes=("exact",),
)
def check() -> Result:
    worst: dict[str, float] = {}
    worst_case: dict[str, tuple] = {}
    for m, n, p in SIZES:
        for beta in BETAS:
            for dim, seed in ((m * n - 1, None), (m * n + 3, 7)):
                for name, error in _errors(m, n, p, beta, dim, seed).items():
                    if error >= worst.get(name, -1.0):
                        worst[name], worst_case[name] = error, (m, n, p, beta, dim)
    figures = {f"max |{name}|": value for name, value in worst.items()}
    figures["constructions"] = len(SIZES) * len(BETAS) * 2
    # Each figure is the largest gap between simulate.metrics' measurement and the formula: pinned to 0.
    agreements = [
        Agreement(
            f"{name}: largest |measured - formula|, at (m, n, p, beta, dim) = {worst_case[name]}", value, 0.0, TOLERANCE
        )
        for name, value in worst.items()
    ]
    wrong = [name for name, value in worst.items() if value > TOLERANCE]
    failures = [f"{name} off by {worst[name]:.3g} at (m, n, p, beta, dim) = {worst_case[name]}" for name in wrong]
    return verdict(figures, failures, agreements=agreements)


def test_B6_ssem_construction_gram_and_variances():
    assert_claim(check)
