"""Tests of the convergence rule (`empirical.evaluation.training_settled`) and the curves (`empirical.curves`)."""

import csv
import math

import pytest
from matplotlib.figure import Figure

from empirical import curves
from empirical.evaluation import SETTLING_TOLERANCES, training_settled


def log_of(epochs=10, eval_every=1, **series):
    """A synthetic epoch log: series[name](epoch) gives each quantity; geometry only on evaluated epochs."""
    records = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "lr": 0.1, "loss": series.get("loss", lambda e: 1.0)(epoch)}
        if epoch % eval_every == 0 or epoch == epochs:
            record.update({name: series.get(name, lambda e: 0.5)(epoch) for name in ("delta_g", "within_var")})
        records.append(record)
    return records


def test_constant_curves_have_settled():
    settling = training_settled(log_of())
    assert settling.settled and settling.reason is None
    assert settling.changes == {name: 0.0 for name in SETTLING_TOLERANCES}
    assert (settling.first_epoch, settling.last_epoch) == (8, 10)  # the last 20 % of 10 epochs


@pytest.mark.parametrize("name", sorted(SETTLING_TOLERANCES))
def test_a_quantity_moving_in_the_last_fifth_has_not_settled(name):
    step = 2 * SETTLING_TOLERANCES[name]
    settling = training_settled(log_of(**{name: lambda e: step * (e >= 9)}))
    assert not settling.settled and settling.reason.startswith(f"{name} moved by")
    assert settling.changes[name] == pytest.approx(step)


def test_batch_averaged_loss_is_judged_by_its_drift_and_the_geometry_by_its_range():
    swing = 0.8 * SETTLING_TOLERANCES["loss"]  # +- swing around 1: a range of 1.6 x the tolerance, no drift
    noisy = training_settled(log_of(loss=lambda e: 1 + swing * (-1) ** e))
    assert noisy.settled and noisy.changes["loss"] < SETTLING_TOLERANCES["loss"]
    # 30 epochs: window 24-30, 7 values, halves 24-26 and 28-30, whose means are 4 epochs apart.
    drifting = training_settled(log_of(epochs=30, loss=lambda e: 1 - 0.03 * e))
    assert not drifting.settled and drifting.changes["loss"] == pytest.approx(0.12)
    swinging_geometry = training_settled(log_of(delta_g=lambda e: 0.5 + 0.015 * (-1) ** e))
    assert not swinging_geometry.settled and swinging_geometry.changes["delta_g"] == pytest.approx(0.03)


def test_only_the_named_quantities_are_judged():
    moving_w = log_of(within_var=lambda e: 0.1 * e)
    assert not training_settled(moving_w).settled
    assert training_settled(moving_w, {"loss": 0.05, "delta_g": 0.02}).settled


def test_change_before_the_window_and_within_tolerance_are_settled():
    moved_early = log_of(delta_g=lambda e: 1.0 if e < 8 else 0.3)  # changes at epoch 8, the window's start
    assert training_settled(moved_early).settled
    within = log_of(within_var=lambda e: 0.5 + SETTLING_TOLERANCES["within_var"] * 0.9 * (e == 10))
    assert training_settled(within).settled
    moved_into_window = log_of(delta_g=lambda e: 1.0 if e < 9 else 0.3)
    assert not training_settled(moved_into_window).settled


def test_sparse_evaluations_use_the_value_before_the_window():
    # Evaluated at 5 and 10 only: the window 8-10 starts from the value at epoch 5.
    settling = training_settled(log_of(eval_every=5, delta_g=lambda e: 0.5 if e < 10 else 0.45))
    assert not settling.settled and settling.changes["delta_g"] == pytest.approx(0.05)
    single = training_settled(log_of(epochs=10, eval_every=20))  # evaluated only at the last epoch
    assert not single.settled and "delta_g not logged at or before epoch 8" in single.reason


def test_nan_has_not_settled_and_bad_arguments_are_refused():
    assert not training_settled(log_of(loss=lambda e: math.nan)).settled
    with pytest.raises(ValueError, match="need a non-empty log"):
        training_settled([])
    with pytest.raises(ValueError, match="need a non-empty log and tail in"):
        training_settled(log_of(), tail=0)


def test_curve_rows_have_every_column_and_none_where_not_evaluated():
    rows = curves.curve_rows(log_of(epochs=4, eval_every=2))
    assert [tuple(row) for row in rows] == [curves.CURVE_COLUMNS] * 4
    assert [row["delta_g"] for row in rows] == [None, 0.5, None, 0.5]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]


def test_write_curves_saves_the_table_and_the_figure(tmp_path):
    log = log_of(epochs=4, eval_every=2, loss=lambda e: 2.0 / e)
    result = {"config": {"dataset": "digits", "seed": 0, "epochs": 4, "loss": "prototype", "n_proto": 10}, "log": log}
    csv_path, png_path = curves.write_curves(result, tmp_path / "runs", "seed0.curves")
    assert (csv_path.name, png_path.name) == ("seed0.curves.csv", "seed0.curves.png")
    with open(csv_path) as stream:
        table = list(csv.DictReader(stream))
    assert [float(row["loss"]) for row in table] == [2.0, 1.0, 2.0 / 3, 0.5]
    assert [row["delta_g"] for row in table] == ["", "0.5", "", "0.5"]
    assert png_path.stat().st_size > 0


def test_curves_figure_has_one_panel_per_quantity_and_one_line_per_run():
    results = [{"config": {"alpha": a, "seed": s}, "log": log_of(epochs=3)} for a in (0.0, 1.0) for s in (0, 1)]
    figure = curves.curves_figure(results, "alpha", "title")
    assert isinstance(figure, Figure) and len(figure.axes) == len(curves.PANELS)
    assert all(len(ax.lines) == 4 for ax in figure.axes)
