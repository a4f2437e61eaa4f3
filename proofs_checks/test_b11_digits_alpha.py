"""Claim B11 (Paper B, on real images): on balanced digits trained with the combined loss
(1 - alpha) L_sup + alpha L_self, the within-class variance W of the learnt embeddings increases across
alpha in {0, 0.5, 1}, and alpha = 0 (supervised only) is near collapse.

Route: empirical (`empirical.train.run`). What is run, per (alpha, seed): a small CNN of width `WIDTH`
(d = 32), the combined loss of variant "instance" (the two views of an image form one instance),
tau = 0.1, `EPOCHS` epochs, batch `BATCH`, SGD lr `LR` with warm-up and cosine decay, all digits training
images (R = 1); every other setting is the library's digits default. W = sum_c (N_c/N)(1 - |mu_c|^2)
(docs/metrics.md#variances) of the un-augmented training images, measured every `EVAL_EVERY` epochs.

Verdict (docs/verdicts.md#converged-training): every run must have converged by
`empirical.evaluation.training_settled`, else "inconclusive". Each criterion is decided by the
mean +- 2 std interval over `SEEDS` (sample std, ddof = 1):
* increase: for consecutive alphas the intervals are separated, the smaller alpha below;
* near collapse: the interval of W at alpha = 0 lies below NEAR_COLLAPSE = 0.05. For unit vectors W is the
  mean squared distance of an embedding to its class mean, between 0 (every class a point) and about 1:
  W < 0.05 is the collapsed twentieth of that range, |mu_c|^2 > 0.95 on average. Fixed before measuring.
A criterion whose interval lies on the wrong side is a counterexample ("fails"); all met: "holds";
otherwise (an interval straddling) "inconclusive".

Two-sided pins: each run's final W re-measured from its saved network by an independent numpy pipeline
(`proofs_checks.empirical_runs.remeasure`), and from the returned class-mean Gram and class sizes
(`simulate.metrics.variances_from_class_mean_gram`, a second formula); alpha = 0 and alpha = 1 differ by
more than the sum of their spreads (the self-supervised term acts). A larger batch and learning rate than
the library's default settle W at alpha = 1 within the epochs (measured before fixing them); the runs are
deterministic on a given machine (one thread, deterministic algorithms).
"""

import functools
import time

import pytest
import torch

from empirical.curves import curves_figure
from empirical.evaluation import over_seeds
from empirical.train import TrainConfig
from proofs_checks.empirical_runs import (
    REMEASURE_TOLERANCE,
    at_least,
    by_value,
    interval_order,
    remeasure_pins,
    train_runs,
    training_verdict,
    unsettled_runs,
)
from proofs_checks.registry import Agreement, Result, assert_claim, claim
from simulate import metrics

ALPHAS = (0.0, 0.5, 1.0)
SEEDS = (0, 1, 2, 3, 4)
NEAR_COLLAPSE = 0.05
WIDTH = 8
EPOCHS = 30
BATCH = 128
LR = 0.3
EVAL_EVERY = 3


def config(alpha: float, seed: int) -> TrainConfig:
    """The balanced digits run of one (alpha, seed): library defaults except the module's settings."""
    return TrainConfig(
        imbalance=1,
        loss="combined",
        alpha=alpha,
        seed=seed,
        width=WIDTH,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        eval_every=EVAL_EVERY,
    )


@functools.cache
def measure() -> tuple:
    """One result of `train_runs` per (alpha, seed) (cached: the check and its figure share the runs)."""
    return tuple(train_runs([config(a, seed) for a in ALPHAS for seed in SEEDS]))


def _judge(stats: dict) -> tuple[list, list]:
    """(failures, undecided) of the claim's criteria, from {alpha: summary}."""
    failures, undecided = [], []
    for low, high in zip(ALPHAS, ALPHAS[1:]):
        where = (
            f"alpha={low}: {stats[low][0]:.4f} +- 2 x {stats[low][1]:.4f}, alpha={high}: "
            f"{stats[high][0]:.4f} +- 2 x {stats[high][1]:.4f}"
        )
        order = interval_order(stats[low], stats[high])
        if order == "above":
            failures.append(f"W decreases from alpha={low} to alpha={high}, intervals separated ({where})")
        elif order == "overlap":
            undecided.append(f"W from alpha={low} to alpha={high}: intervals overlap ({where})")
    m0, s0, _ = stats[ALPHAS[0]]
    if m0 - 2 * s0 > NEAR_COLLAPSE:
        failures.append(f"alpha=0 is not near collapse: W = {m0:.4f} - 2 std {2 * s0:.4f} > {NEAR_COLLAPSE}")
    elif not m0 + 2 * s0 < NEAR_COLLAPSE:
        undecided.append(f"alpha=0: W interval {m0:.4f} +- {2 * s0:.4f} straddles {NEAR_COLLAPSE}")
    return failures, undecided


def _gram_route_gap(results: list[dict]) -> float:
    """Largest |W from the returned class-mean Gram and class sizes - training's W| over all runs."""
    gaps = [
        abs(
            float(
                metrics.variances_from_class_mean_gram(
                    torch.as_tensor(r["gram"], dtype=torch.float64), torch.as_tensor(r["class_sizes"])
                ).within
            )
            - r["final"]["within_var"]
        )
        for r in results
    ]
    return float(torch.tensor(gaps).max())


@claim(
    "B11",
    source="Paper B: within-class variance grows with alpha; this suite's criterion on digits",
    statement=f"On balanced digits with the combined loss (small CNN width {WIDTH}, {EPOCHS} epochs, batch {BATCH}, "
    f"lr {LR}, {len(SEEDS)} seeds, converged by the stated rule), within-class variance W increases across "
    f"alpha = 0, 0.5, 1 (mean +- 2 std separated) and alpha = 0 is near collapse (W + 2 std < {NEAR_COLLAPSE}).",
    routes=("empirical",),
)
def check() -> Result:
    start = time.perf_counter()
    results = list(measure())
    values = by_value(results, "alpha", "within_var")
    stats = {a: over_seeds(v) for a, v in values.items()}
    figures = {
        "setting": f"digits, balanced, small_cnn width {WIDTH}, {EPOCHS} epochs, batch {BATCH}, lr {LR}, "
        f"tau=0.1, instance variant, seeds {SEEDS}",
        "near-collapse threshold on W": NEAR_COLLAPSE,
    }
    for a, (mean, std, count) in stats.items():
        figures[f"W alpha={a} (mean, std, n)"] = (round(mean, 4), round(std, 4), count)
        figures[f"W alpha={a} per seed"] = [round(v, 4) for v in values[a]]
    unsettled = unsettled_runs(results, "alpha", "within_var")
    figures["runs converged"] = f"{len(results) - len(unsettled)}/{len(results)}"
    failures, undecided = _judge(stats)
    (m0, s0, _), (m1, s1, _) = stats[ALPHAS[0]], stats[ALPHAS[-1]]
    agreements = remeasure_pins(results, "alpha", "within_var") + [
        Agreement(
            "final W from the class-mean Gram and class sizes vs training's, largest |diff| over runs",
            _gram_route_gap(results),
            0.0,
            REMEASURE_TOLERANCE,
        ),
        at_least("|mean W(alpha=1) - mean W(alpha=0)| - (std0 + std1)", abs(m1 - m0) - (s0 + s1), 0.0),
    ]
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return training_verdict(figures, failures, undecided, unsettled, agreements)


def figure(_inputs=None):
    """Per-epoch loss, DeltaG*, W and test accuracy of every run of the check (its cached runs)."""
    return curves_figure(
        list(measure()),
        "alpha",
        f"B11: balanced digits, combined loss (instance, tau = 0.1), small CNN width {WIDTH}, "
        f"batch {BATCH}, lr {LR}; one line per seed",
    )


@pytest.mark.slow
def test_B11_digits_alpha_within_variance():
    assert_claim(check)
