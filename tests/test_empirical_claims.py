"""Fast tests of how the empirical claims (A7, B11) judge their runs: intervals, convergence, verdicts, pins.

The claims' own runs take minutes (proofs_checks, marked slow); here their checks read synthetic runs
(`measure` patched), and the independent re-measurement is compared on a tiny fixture run.
"""

import numpy as np
import pytest

from empirical import data, train
from empirical.evaluation import over_seeds
from proofs_checks import empirical_runs
from proofs_checks import test_a7_digits_prototypes as a7
from proofs_checks import test_b11_digits_alpha as b11


def synthetic_run(key, value, seed, final, metric):
    """A run result with a flat 30-epoch log (converged by the rule) that ends at ``final``."""
    log = [{"epoch": epoch, "loss": 1.0, "delta_g": final, "within_var": final} for epoch in range(1, 31)]
    return {"config": {key: value, "seed": seed}, "final": {metric: final}, "remeasured": {metric: final}, "log": log}


def runs_of(key, metric, means, spread=0.001):
    """Five seeds per swept value, at mean + spread x (-2 .. 2)."""
    return tuple(
        synthetic_run(key, value, seed, mean + spread * (seed - 2), metric)
        for value, mean in means.items()
        for seed in range(5)
    )


def test_interval_order():
    assert empirical_runs.interval_order((0.1, 0.01, 5), (0.5, 0.01, 5)) == "below"
    assert empirical_runs.interval_order((0.5, 0.01, 5), (0.1, 0.01, 5)) == "above"
    assert empirical_runs.interval_order((0.1, 0.1, 5), (0.3, 0.01, 5)) == "overlap"  # 0.1 + 0.2 > 0.3 - 0.02


def test_at_least_pins_a_floor():
    assert empirical_runs.at_least("x", 0.3, 0.0).holds and empirical_runs.at_least("x", 1e-6, 1e-6).holds
    assert not empirical_runs.at_least("x", -0.01, 0.0).holds
    assert not empirical_runs.at_least("x", float("nan"), 0.0).holds


@pytest.mark.parametrize(
    "means, expected",
    [
        ({0: 1.0, 10: 0.6, 100: 0.3}, "holds"),
        ({0: 1.0, 10: 0.3, 100: 0.6}, "fails"),  # rises from 10 to 100, intervals separated
        ({0: 1.0, 10: 0.5, 100: 0.5002}, "inconclusive"),  # 10 and 100 overlap
    ],
)
def test_a7_verdict_follows_the_intervals(monkeypatch, means, expected):
    monkeypatch.setattr(a7, "measure", lambda: runs_of("n_proto", "delta_g", means))
    result = a7.check()
    assert result.verdict == expected and not result.broken
    if expected == "fails":
        assert "n_w=10 to n_w=100" in result.counterexample


def test_a7_unconverged_runs_are_inconclusive_whatever_the_intervals(monkeypatch):
    runs = list(runs_of("n_proto", "delta_g", {0: 1.0, 10: 0.3, 100: 0.6}))
    for epoch, record in enumerate(runs[0]["log"], start=1):
        record["delta_g"] = 1.0 + 0.01 * epoch  # still rising by 0.06 over the last 6 epochs
    monkeypatch.setattr(a7, "measure", lambda: tuple(runs))
    result = a7.check()
    assert result.verdict == "inconclusive" and "n_proto=0 seed 0 not converged: delta_g moved" in result.reason


def test_a7_pins_break_when_n_proto_has_no_effect(monkeypatch):
    same = runs_of("n_proto", "delta_g", {0: 1.0, 10: 0.4, 100: 0.4})  # n_w = 10 and 100 identical per seed
    monkeypatch.setattr(a7, "measure", lambda: same)
    broken = [a.name for a in a7.check().broken]
    assert broken == ["smallest per-seed |DeltaG*(n_w=10) - DeltaG*(n_w=100)| >= 1e-06: shortfall"]
    no_effect = runs_of("n_proto", "delta_g", {0: 0.5, 10: 0.45, 100: 0.5 + 1e-4}, spread=0.01)
    monkeypatch.setattr(a7, "measure", lambda: no_effect)
    assert any(
        name.startswith("|mean DeltaG*(n_w=0) - mean DeltaG*(n_w=100)|") for name in [a.name for a in a7.check().broken]
    )


@pytest.mark.parametrize(
    "means, expected",
    [
        ({0.0: 0.01, 0.5: 0.2, 1.0: 0.7}, "holds"),
        ({0.0: 0.2, 0.5: 0.3, 1.0: 0.7}, "fails"),  # alpha = 0 not near collapse
        ({0.0: 0.01, 0.5: 0.7, 1.0: 0.3}, "fails"),  # W decreases from 0.5 to 1
        ({0.0: 0.049, 0.5: 0.2, 1.0: 0.7}, "inconclusive"),  # alpha = 0's interval straddles 0.05
    ],
)
def test_b11_verdict_follows_the_intervals(monkeypatch, means, expected):
    runs = runs_of("alpha", "within_var", means)
    for run in runs:
        run.update(gram=[[1 - run["final"]["within_var"]] * 2] * 2, class_sizes=[3, 3])  # W of this Gram = final
    monkeypatch.setattr(b11, "measure", lambda: runs)
    result = b11.check()
    assert result.verdict == expected and not result.broken


def test_b11_gram_pin_breaks_when_the_returned_gram_disagrees(monkeypatch):
    runs = runs_of("alpha", "within_var", {0.0: 0.01, 0.5: 0.2, 1.0: 0.7})
    for run in runs:
        run.update(gram=[[0.5, 0.0], [0.0, 0.5]], class_sizes=[3, 3])  # W = 0.5 for every run
    monkeypatch.setattr(b11, "measure", lambda: runs)
    assert [a.name.startswith("final W from the class-mean Gram") for a in b11.check().broken] == [True]


def test_remeasure_agrees_with_the_training_on_a_tiny_run(tmp_path):
    data.write_cifar_fixture(tmp_path, n_train_per_class=4, n_test_per_class=2, seed=0)
    config = train.TrainConfig(
        dataset="fixture", data_dir=str(tmp_path), imbalance=2, width=4, dim=12, epochs=1, batch_size=8, n_proto=10
    )
    (result,) = empirical_runs.train_runs([config])
    for metric in ("delta_g", "within_var"):
        assert abs(result["remeasured"][metric] - result["final"][metric]) <= empirical_runs.REMEASURE_TOLERANCE
    assert result["remeasured"]["delta_g"] != result["remeasured"]["within_var"]


@pytest.mark.parametrize("module, key, metric", [(a7, "n_proto", "delta_g"), (b11, "alpha", "within_var")])
def test_claim_figures_draw_the_curves_of_the_check_runs(monkeypatch, module, key, metric):
    runs = runs_of(key, metric, {0: 0.5, 1: 0.4})
    monkeypatch.setattr(module, "measure", lambda: runs)
    figure = module.figure()
    assert len(figure.axes) == 4 and all(len(ax.lines) == len(runs) for ax in figure.axes)


@pytest.mark.parametrize(
    "failures, undecided, unsettled, expected",
    [
        ([], [], [], "holds"),
        (["separated the other way"], ["overlap"], [], "fails"),  # a separated counterexample decides
        ([], ["overlap"], [], "inconclusive"),  # settled runs, overlapping intervals
        (["separated the other way"], [], ["seed 3 still moving"], "inconclusive"),  # unsettled runs judge nothing
    ],
)
def test_training_verdict_rule(failures, undecided, unsettled, expected):
    result = empirical_runs.training_verdict({}, failures, undecided, unsettled, [])
    assert result.verdict == expected
    if expected == "inconclusive":
        assert (unsettled or undecided)[0] in result.reason


def test_over_seeds_is_mean_sample_std_and_count():
    values = [0.25, 0.5, 1.75, 3.0]
    mean, std, n = over_seeds(values)
    assert n == 4 and mean == pytest.approx(np.mean(values), rel=1e-15)
    assert std == pytest.approx(np.std(values, ddof=1), rel=1e-14)
    assert over_seeds([0.7]) == (0.7, 0.0, 1)
    with pytest.raises(ValueError, match="at least one"):
        over_seeds([])
