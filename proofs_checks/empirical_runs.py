"""What the empirical claims (A7, B11) share: deterministic seeded runs, their convergence, intervals, and an
independent re-measurement of each trained network (docs/verdicts.md#converged-training).

* `train_runs` trains one network per config on the CPU, one thread, with torch's deterministic
  algorithms, and keeps each run's final network in a checkpoint only long enough to re-measure it.
* `remeasure` is the independent route of the measurement: it rebuilds the network from the
  checkpoint, embeds the un-augmented training images in one pass and computes the class means,
  DeltaG* and W with numpy from their formulas in docs/metrics.md (no `empirical.evaluation`, no `simulate.metrics`).
* `interval_order` compares mean +- 2 std intervals over seeds; `unsettled_runs` applies the
  convergence rule (`empirical.evaluation.training_settled`) to every run.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from empirical.checkpoint import load_checkpoint
from empirical.data import channel_stats, imbalanced, load_dataset, standardise
from empirical.evaluation import SETTLING_TOLERANCES, training_settled
from empirical.models import build_model
from empirical.train import TrainConfig, prototype_gram, run
from proofs_checks.registry import Result, verdict
from simulate.optimise import single_thread

#: A re-measured DeltaG* or W against the training's own float32 measurement: the two embed the same network
#: in float32 (in chunks there, in one pass here) and differ by float32 rounding, ~1e-6.
REMEASURE_TOLERANCE = 1e-4


@contextlib.contextmanager
def deterministic_cpu():
    """One CPU thread and torch's deterministic algorithms inside the block; both restored after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with single_thread():
            yield
    finally:
        torch.use_deterministic_algorithms(previous)


def remeasure(config: TrainConfig, checkpoint) -> dict:
    """DeltaG* to the config's target Gram and W of the checkpointed network's un-augmented training embeddings."""
    train_set, _ = load_dataset(config.dataset, config.data_dir, False)
    train_set = imbalanced(train_set, config.imbalance, config.profile, seed=config.subset_seed)
    mean, std = channel_stats(train_set.images)
    network = build_model(config.model, train_set.images.shape[1], config.dim, config.final_relu, config.width)
    network.load_state_dict(load_checkpoint(checkpoint)["model"])
    network.eval()
    with torch.no_grad():
        z = network(standardise(train_set.images, mean, std)).double().numpy()  # (N, d)
    labels, m = train_set.labels.numpy(), train_set.n_classes
    means = np.stack([z[labels == c].mean(axis=0) for c in range(m)])  # (m, d), not re-normalised
    gram, target = means @ means.T, prototype_gram(config, m)  # (m, m)
    weights = np.bincount(labels, minlength=m) / len(labels)  # N_c / N
    return {
        "delta_g": float(np.linalg.norm(gram / np.linalg.norm(gram) - target / np.linalg.norm(target))),
        "within_var": float(np.sum(weights * (1 - np.sum(means**2, axis=1)))),
    }


def train_runs(configs) -> list[dict]:
    """Train each config deterministically; each result gets "remeasured" (`remeasure` of its final network)."""
    results = []
    with deterministic_cpu(), tempfile.TemporaryDirectory() as folder:
        for index, config in enumerate(configs):
            checkpoint = Path(folder) / f"run{index}.pt"
            result = run(config, checkpoint=checkpoint, checkpoint_every=math.inf)  # written after the last epoch
            results.append({**result, "remeasured": remeasure(config, checkpoint)})
    return results


def interval_order(low: tuple, high: tuple) -> str:
    """How the mean +- 2 std intervals of two `over_seeds` results lie: "below" (the first entirely under the second),
    "above", or "overlap" (the seeds do not decide)."""
    (m_a, s_a, _), (m_b, s_b, _) = low, high
    if m_a + 2 * s_a < m_b - 2 * s_b:
        return "below"
    if m_b + 2 * s_b < m_a - 2 * s_a:
        return "above"
    return "overlap"


def unsettled_runs(results: list[dict], key: str, judged: str) -> list[str]:
    """One reason per run that has not converged by `training_settled` in its loss and the ``judged`` quantity
    (the one the claim reads), naming its swept value and seed."""
    tolerances = {name: SETTLING_TOLERANCES[name] for name in ("loss", judged)}
    reasons = []
    for result in results:
        settling = training_settled(result["log"], tolerances)
        if not settling.settled:
            config = result["config"]
            reasons.append(f"run {key}={config[key]:g} seed {config['seed']} not converged: {settling.reason}")
    return reasons


def by_value(results: list[dict], key: str, metric: str) -> dict:
    """{swept value: [final ``metric`` per seed]} in increasing order of the value."""
    grouped = {}
    for result in results:
        grouped.setdefault(result["config"][key], []).append(result["final"][metric])
    return dict(sorted(grouped.items()))


def at_least(name: str, value: float, floor: float):
    """A pin that ``value`` >= ``floor``, as an `Agreement` of its shortfall max(floor - value, 0) with 0."""
    from proofs_checks.registry import Agreement

    return Agreement(f"{name} >= {floor:g}: shortfall", max(float(floor) - float(value), 0.0), 0.0, 0.0)


def remeasure_pins(results: list[dict], key: str, metric: str) -> list:
    """Per swept value: the largest |re-measured - training's| final ``metric`` over its seeds, pinned to 0."""
    from proofs_checks.registry import Agreement

    gaps = {}
    for result in results:
        value = result["config"][key]
        gaps.setdefault(value, []).append(abs(result["remeasured"][metric] - result["final"][metric]))
    return [
        Agreement(
            f"{key}={value:g}: final {metric}, re-measured from the saved network (numpy) vs training's, "
            f"largest |diff| over seeds",
            float(np.max(gap)),
            0.0,
            REMEASURE_TOLERANCE,
        )  # NaN: broken
        for value, gap in sorted(gaps.items())
    ]


def training_verdict(
    figures: dict, failures: list[str], undecided: list[str], unsettled: list[str], agreements: list
) -> Result:
    """The verdict of an empirical claim (docs/verdicts.md#converged-training).

    Runs that have not settled decide nothing: inconclusive, with their reasons. Settled runs fail on a
    separated counterexample (`failures`); otherwise overlapping intervals (`undecided`) leave the claim
    inconclusive, and with neither it holds.
    """
    reasons = unsettled or ([] if failures else undecided)
    return verdict(figures, [] if unsettled else failures, unsettled=reasons, agreements=agreements)
