"""Tests of the batched Riemannian L-BFGS (simulate.optimise) and the phase-diagram command."""

import inspect
import itertools
import json
import math
import re
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import cli, losses, optimise, phase, phase_diagram, sphere
from theory import ssem


def combined_loss_of(alphas, taus, m, n, p):
    """The combined loss of the balanced (m, n, p) layout, one configuration per (alpha, tau), and its closed-form
    minimum (the SSEM at beta*) per configuration."""
    labels, instances = losses.balanced_layout(m, n, p)

    def loss_fn(z):
        return losses.combined_loss(z, labels, instances, alphas, taus)

    beta = ssem.optimal_beta(alphas.numpy(), taus.numpy(), m, n)
    return loss_fn, ssem.restricted_loss(beta, alphas.numpy(), taus.numpy(), m, n, p)


def test_batched_configurations_are_independent_and_reach_the_closed_form():
    m, n, p = 2, 3, 2
    alphas = torch.tensor([0.1, 0.6, 0.9], dtype=torch.float64)
    taus = torch.tensor([0.5, 0.3, 1.0], dtype=torch.float64)
    loss_fn, closed_form = combined_loss_of(alphas, taus, m, n, p)
    together = optimise.minimise_with_restarts(loss_fn, (3,), m * n * p, m * n, restarts=2, seed=1)
    assert together.converged.all()
    np.testing.assert_allclose(together.loss.numpy(), closed_form, rtol=1e-9)
    assert (together.loss.numpy() >= closed_form - 1e-12).all()
    np.testing.assert_allclose(together.z.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    # the Riemannian gradient really is small at the returned point
    z = together.z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(z).sum(), z)
    riemannian = grad - (grad * z).sum(-1, keepdim=True) * z
    assert riemannian.flatten(1).norm(dim=-1).max() <= 1e-8


def test_indexed_mode_equals_full_batch_mode():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    taus = torch.tensor([0.2, 1.0], dtype=torch.float64)
    x0 = optimise.random_start((2,), 6, 4, seed=3)
    full = optimise.minimise_on_sphere(lambda z: losses.supcon_loss(z, labels, taus), x0)
    indexed = optimise.minimise_on_sphere(lambda z, i: losses.supcon_loss(z, labels, taus[i]), x0, indexed=True)
    np.testing.assert_allclose(full.loss.numpy(), indexed.loss.numpy(), rtol=1e-12)
    assert full.converged.all() and indexed.converged.all()


def test_unconverged_configurations_are_flagged():
    labels = torch.tensor([0, 0, 1, 1])
    x0 = optimise.random_start((2,), 4, 3, seed=0)
    result = optimise.minimise_on_sphere(lambda z: losses.supcon_loss(z, labels, 0.1), x0, max_iter=1)
    assert result.iterations == 1 and not result.converged.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"history": 0}, "history must be an integer >= 1"),
        ({"grad_tol": -1.0}, "grad_tol must be > 0"),
    ],
)
def test_bad_options_raise(kwargs, message):
    x0 = optimise.random_start((1,), 4, 3, seed=0)
    with pytest.raises(ValueError, match=message):
        optimise.minimise_on_sphere(lambda z: losses.supcon_loss(z, torch.tensor([0, 0, 1, 1]), 1.0), x0, **kwargs)


def test_loss_with_wrong_shape_is_refused():
    x0 = optimise.random_start((2,), 4, 3, seed=0)
    with pytest.raises(ValueError, match="one loss per configuration"):
        optimise.minimise_on_sphere(lambda z: z.sum(), x0)


def test_phase_grid_agrees_with_theory_on_a_small_grid():
    alphas, taus = np.array([0.0, 0.5, 1.0]), np.array([0.2, 1.0])
    theory = phase.theory_grid(alphas, taus, 2, 3, 2)
    simulated = phase.simulated_grid(alphas, taus, 2, 3, 2, seed=0)
    summary, violations = phase.compare(alphas, taus, theory, simulated, ssem.alpha_star(taus, 2, 3))
    assert violations == [] and summary["passes"]
    assert summary["max_ssem_residual"] < 1e-4  # minimisers lie in SSEM


def _run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "simulate.phase_diagram", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--m", "1"], "--m '1': must be >= 2"),
        (["--alphas", "0:2:5"], "--alphas '0:2:5': must lie in [0, 1]"),
        (["--taus", "-1:1:3"], "--taus '-1:1:3': must be > 0"),
        (["--dim", "3"], "--dim 3: must be >= m*n - 1 = 15"),
        (["--alphas", "0:1"], "--alphas '0:1': must be START:STOP:COUNT"),
        (["--taus", "1:x:3"], "--taus '1:x:3': must be START:STOP:COUNT"),
        (["--alphas", "0:1:0"], "COUNT >= 1"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        phase_diagram.main([*args, "--out", str(out)])  # in-process: parsing fails before any work
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1 and message in stderr
    assert not out.exists()


def test_cli_bad_input_from_a_shell_exits_2_without_traceback(tmp_path):
    done = _run_cli("--taus", "-1:1:3", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_cli_writes_json_csv_png(tmp_path):
    out = tmp_path / "pd"
    done = _run_cli("--m", "2", "--n", "2", "--alphas", "0:1:3", "--taus", "0.2:2:2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "phase_diagram.json").read_text())
    assert {"config", "points", "alpha_star", "summary", "metadata"} <= set(result)
    assert len(result["points"]) == 6 and result["summary"]["passes"]
    point = result["points"][0]
    assert set(point["theory"]) == {"beta", "within", "loss", "collapsed"}
    assert {"within", "between", "total", "loss", "collapsed", "converged"} <= set(point["simulated"])
    simulated = [point["simulated"] for point in result["points"]]
    assert all(s["converged"] == (s["route"] in ("lbfgs", "newton")) for s in simulated)
    assert all(0 <= s["newton_iterations"] <= s["iterations"] <= 1000 and s["seconds"] > 0 for s in simulated)
    assert len((out / "phase_diagram.csv").read_text().splitlines()) == 7
    assert (out / "phase_diagram.png").stat().st_size > 10_000
    assert "points in" in done.stdout


# --- Newton finish, honest flags, sizing ---------------------------------------------------------------------


def _riemannian_gradient_norm(loss_fn, z):
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(z).sum(), z)
    return (grad - (grad * z).sum(-1, keepdim=True) * z).flatten(1).norm(dim=-1)


def test_newton_finish_reaches_a_tight_gradient_at_small_tau():
    m, n, p = 2, 3, 2
    alphas = torch.tensor([0.2, 0.5, 0.9, 0.9], dtype=torch.float64)
    taus = torch.tensor([0.05, 0.05, 0.05, 0.1], dtype=torch.float64)
    loss_fn, closed_form = combined_loss_of(alphas, taus, m, n, p)

    result = optimise.minimise_on_sphere(loss_fn, optimise.random_start((4,), m * n * p, m * n, seed=0), max_iter=1000)
    assert result.converged.all()
    assert (_riemannian_gradient_norm(loss_fn, result.z) <= 1e-9).all()  # recomputed, not the optimiser's figure
    assert (result.newton_iterations > 0).any() and set(result.route_names()) <= {"lbfgs", "newton"}
    assert (result.config_iterations <= 1000).all() and result.iterations == int(result.config_iterations.max())
    np.testing.assert_allclose(result.loss.numpy(), closed_form, rtol=1e-10)


def test_newton_finish_follows_a_curved_valley_in_few_steps():
    # Measured at these points (m = 3, n = 5, p = 2, tau = 0.0872, this seed): without the second-order
    # correction the Newton finish needs 1064 and 1089 steps (its long steps along the weak directions leave
    # the valley of the stiff ones and are refused, or raise the gradient 100-1000 times); with one correction
    # per step 135 and 203, with up to two 82 and 96.
    m, n, p, tau = 3, 5, 2, 0.02 * 250 ** (4 / 15)
    alphas = torch.tensor([0.4, 0.533], dtype=torch.float64)
    labels, instances = losses.balanced_layout(m, n, p)

    def loss_fn(z):
        return losses.combined_loss(z, labels, instances, alphas, tau)

    result = optimise.minimise_on_sphere(loss_fn, optimise.random_start((2,), m * n * p, m * n, seed=0))
    assert result.converged.all()
    assert (_riemannian_gradient_norm(loss_fn, result.z) <= 1e-9).all()
    assert (result.newton_iterations <= 150).all()


def test_backtracking_steps_to_the_minimum_of_the_interpolating_quadratic_within_bounds():
    # Losses along the line f(t) = 2 - t + c t^2 (slope -1 at 0), each refused at t = 1: the quadratic through
    # f(0), f'(0) and f(1) is f itself, so the next step is its minimiser 1 / (2c), kept within [0.1, 0.5].
    curvature = torch.tensor([1.25, 2.0, 50.0, 1.0, 1.0], dtype=torch.float64)
    step, loss, slope = torch.ones(5, dtype=torch.float64), torch.full((5,), 2.0, dtype=torch.float64), -torch.ones(5)
    trial_loss = 2 - 1 + curvature
    trial_loss[3], trial_loss[4] = math.nan, math.inf
    expected = torch.tensor([0.4, 0.25, 0.1, 0.1, 0.1], dtype=torch.float64)
    torch.testing.assert_close(optimise.backtracked_step(step, loss, slope.double(), trial_loss), expected)
    # A refusal just above the Armijo line asks for the longest allowed step, half the refused one.
    near_line = optimise.backtracked_step(
        step[:1] * 0.8, loss[:1], -torch.ones(1, dtype=torch.float64), loss[:1] - 0.79
    )
    torch.testing.assert_close(near_line, torch.tensor([0.4], dtype=torch.float64))
    # The same along a refused step of 2: the minimiser 1 / (2c), now kept within [0.2, 1].
    curvature = torch.tensor([1.25, 0.6, 50.0, 1.0], dtype=torch.float64)
    trial_loss = 2 - 2 + 4 * curvature
    trial_loss[3] = math.nan
    longer = optimise.backtracked_step(2 * step[:4], loss[:4], slope[:4].double(), trial_loss)
    torch.testing.assert_close(longer, torch.tensor([0.4, 1 / 1.2, 0.2, 0.2], dtype=torch.float64))


def test_a_tolerance_above_the_newton_switch_is_settled_by_lbfgs_alone():
    alphas = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64)
    taus = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    loss_fn, closed_form = combined_loss_of(alphas, taus, 2, 3, 2)
    tol = optimise.NEWTON_SWITCH_TOL[torch.float64]
    result = optimise.minimise_on_sphere(loss_fn, optimise.random_start((3,), 12, 6, seed=0), grad_tol=tol)
    assert result.converged.all() and result.route_names() == ["lbfgs"] * 3
    assert (result.newton_iterations == 0).all()
    recomputed = _riemannian_gradient_norm(loss_fn, result.z)
    assert (recomputed <= tol).all()
    torch.testing.assert_close(result.grad_norm, recomputed, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(result.loss, loss_fn(result.z), rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(result.loss.numpy(), closed_form, rtol=1e-5)


@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_converged_flag_and_route_agree_with_the_gradient(method):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    taus = torch.tensor([0.1, 0.3, 1.0], dtype=torch.float64)

    def loss_fn(z):
        return losses.supcon_loss(z, labels, taus)

    result = optimise.minimise_on_sphere(
        loss_fn, optimise.random_start((3,), 6, 4, seed=1), method=method, max_iter=2000
    )
    routes = result.route_names()
    assert result.converged.tolist() == [route in ("lbfgs", "newton") for route in routes]
    assert result.converged.all() and set(routes) <= {"lbfgs", method}
    assert (result.grad_norm[result.converged] <= 1e-9).all()
    assert torch.allclose(result.grad_norm, _riemannian_gradient_norm(loss_fn, result.z), rtol=1e-6, atol=1e-15)
    assert (result.seconds > 0).all() and (result.seconds <= result.seconds.max()).all()
    if method == "lbfgs":
        assert (result.newton_iterations == 0).all()


def test_riemannian_hessian_matches_second_differences_and_the_exact_matrix():
    labels, instances = losses.balanced_layout(2, 2, 2)
    alpha, tau = torch.tensor([0.3, 0.8], dtype=torch.float64), torch.tensor([0.2, 0.7], dtype=torch.float64)

    def loss_fn(z):
        return losses.combined_loss(z, labels, instances, alpha, tau)

    def loss_fn_at(z, index=None):  # indexed mode: only the configurations `index`
        chosen = slice(None) if index is None else index
        return losses.combined_loss(z, labels, instances, alpha[chosen], tau[chosen])

    problem = optimise.SphereProblem(loss_fn, (2, 8, 3), indexed=False)
    z = optimise.normalise(optimise.random_start((2,), 8, 3, seed=4)).reshape(2, -1)
    rows = torch.ones(2, dtype=torch.bool)
    v = optimise.tangent_projection(
        z.reshape(2, 8, 3), torch.randn(2, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ).reshape(2, -1)
    *_, hess_hvp = problem.second_order(z, rows, "hvp")
    *_, hess_matrix = problem.second_order(z, rows, "matrix")
    torch.testing.assert_close(hess_matrix(v), hess_hvp(v), rtol=1e-10, atol=1e-12)
    # The normalising retraction is second order: d^2/dt^2 f(R(z + t v)) at 0 is <v, Hess v>.
    t = 1e-4

    def along(step):
        return problem.evaluate(optimise.normalise((z + step * v).reshape(2, 8, 3)).reshape(2, -1), rows)[0]

    second_difference = (along(t) - 2 * along(0.0) + along(-t)) / t**2
    torch.testing.assert_close((v * hess_hvp(v)).sum(-1), second_difference, rtol=1e-5, atol=1e-6)
    # The operator of a subset of the configurations acts on their rows alone, in order, in both modes; so
    # does the operator restricted to a part of its rows (as the conjugate gradients call it).
    second = torch.tensor([False, True])
    for indexed in (False, True):
        subset = optimise.SphereProblem(loss_fn_at, (2, 8, 3), indexed=indexed)
        for hessian in ("hvp", "matrix"):
            *_, hess_second = subset.second_order(z, second, hessian)
            torch.testing.assert_close(hess_second(v[1:]), hess_hvp(v)[1:], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(hess_second(v[1:], torch.tensor([0])), hess_hvp(v)[1:], rtol=1e-10, atol=1e-12)
            *_, hess_both = subset.second_order(z, torch.ones(2, dtype=torch.bool), hessian)
            torch.testing.assert_close(hess_both(v[1:], torch.tensor([1])), hess_hvp(v)[1:], rtol=1e-10, atol=1e-12)


def test_bad_method_or_hessian_is_refused():
    x0 = optimise.random_start((1,), 4, 3, seed=0)
    with pytest.raises(ValueError, match="method"):
        optimise.minimise_on_sphere(lambda z: z.sum((-1, -2)), x0, method="adam")
    with pytest.raises(ValueError, match="hessian"):
        optimise.minimise_on_sphere(lambda z: z.sum((-1, -2)), x0, hessian="exact")


def test_loss_gap_has_an_absolute_floor_for_minima_near_zero():
    alphas, taus = np.array([1.0]), np.array([0.05])
    theory = {"loss": np.array([[8.2e-9]]), "within": np.array([[0.0]]), "collapsed": np.array([[True]])}
    simulated = {
        "loss": theory["loss"] + 5.6e-12,
        "within": np.array([[0.0]]),
        "collapsed": np.array([[True]]),
        "converged": np.array([[True]]),
        "grad_norm": np.array([[1e-10]]),
        "ssem_residual": np.array([[0.0]]),
    }
    summary, violations = phase.compare(alphas, taus, theory, simulated, np.array([0.5]))
    assert violations == []  # 6.8e-4 relative, 5.6e-12 absolute: no alarm
    # near a loss of 0 the summary reports the absolute gap, not a relative one that means nothing
    assert summary["max_rel_loss_gap"] is None and summary["max_abs_loss_gap"] == pytest.approx(5.6e-12, rel=1e-3)
    simulated["loss"] = theory["loss"] + 1e-9  # a real gap still counts
    assert [v["problem"] for v in phase.compare(alphas, taus, theory, simulated, np.array([0.5]))[1]] == [
        "loss gap above tolerance"
    ]


def test_single_view_grid_has_no_false_alarm():
    alphas, taus = np.array([0.5, 0.9, 1.0]), np.array([0.05, 0.3])
    theory = phase.theory_grid(alphas, taus, 2, 3, 1)
    simulated = phase.simulated_grid(alphas, taus, 2, 3, 1, max_iter=1000)
    summary, violations = phase.compare(alphas, taus, theory, simulated, ssem.alpha_star(taus, 2, 3, 1))
    assert violations == [] and simulated["converged"].all()


def test_float32_grid_meets_its_own_criteria():
    alphas, taus = np.array([0.0, 0.6, 1.0]), np.array([0.2, 1.0])
    theory = phase.theory_grid(alphas, taus, 2, 3, 2)
    simulated = phase.simulated_grid(alphas, taus, 2, 3, 2, dtype=torch.float32)
    summary, violations = phase.compare(
        alphas, taus, theory, simulated, ssem.alpha_star(taus, 2, 3), phase.CRITERIA[torch.float32]
    )
    assert violations == [] and simulated["converged"].all()
    assert (simulated["grad_norm"] <= optimise.GRAD_TOL[torch.float32]).all()


def test_cli_refuses_a_run_above_max_memory(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        phase_diagram.main(["--max-memory", "1M", "--out", str(out)])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(stderr.strip().splitlines()) == 1
    assert "more than --max-memory (1.0 MiB)" in stderr and not out.exists()


def test_cli_refuses_cuda_without_a_gpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        phase_diagram.main(["--device", "cuda", "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(stderr.strip().splitlines()) == 1 and "no CUDA GPU" in stderr


@pytest.mark.parametrize("size", ["0", "-1G", "lots", "nanG"])
def test_bad_max_memory_is_refused(size):
    with pytest.raises(ValueError, match="--max-memory"):
        phase_diagram.validate(phase_diagram.Config(max_memory=size))


# --- one command-line pattern -------------------------------------------------------------------------------


def test_cli_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        phase_diagram.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for field_ in fields(phase_diagram.Config):
        if field_.type != "bool":
            assert f"(default: {cli.input_syntax(field_.default)})" in text, field_.name
    assert "--no-simulate" in text and "(default: on)" in text


def _existing_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("keep")
    return str(path)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--out", "/proc/x"], "--out"),
        (["--out", "EXISTING_FILE"], "--out"),
        (["--out", "EXISTING_FILE/under"], "--out"),
        (["--out", ""], "--out"),
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--no-simulate", "--taus", "1e-300:1e300:7"], "--taus"),
        (["--taus", "1e-4:1:3"], "--taus"),
        (["--m", "2,2"], "--m"),
        (["--variant", "supcon", "--p", "1"], "--p"),
        (["--max-memory", "lots"], "--max-memory"),
    ],
)
def test_issue_13_bad_inputs_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, args, flag):
    args = [arg.replace("EXISTING_FILE", _existing_file(tmp_path)) for arg in args]
    before = sorted(tmp_path.iterdir())
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        phase_diagram.main([*args, *out])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(stderr.strip().splitlines()) == 1 and flag in stderr and "Traceback" not in stderr
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    assert (tmp_path / "a_file").read_text() == "keep" if (tmp_path / "a_file").exists() else True


def test_cli_single_tau_at_the_edge_of_the_range_runs(tmp_path):
    """`--taus 1e-3:1e-3:1` is valid: it runs and its summary says W is not judged there (tau < 0.05)."""
    out = tmp_path / "pd"
    done = _run_cli(
        "--m", "2", "--n", "2", "--alphas", "0:1:2", "--taus", "1e-3:1e-3:1", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
    result = json.loads((out / "phase_diagram.json").read_text())
    assert result["config"]["tau_values"] == [1e-3] and result["summary"]["max_abs_within_error"] is None
    assert "max |W_sim - W*| = n/a" in done.stdout
    assert (f"exit {done.returncode}") in done.stdout
    assert result["criteria"]["within_abs"] == phase.CRITERIA[torch.float64].within_abs


def test_cli_exit_code_1_when_its_criteria_fail(tmp_path):
    """A run stopped after one iteration breaks the agreement criteria: exit 1, said in the summary line."""
    out = tmp_path / "pd"
    done = _run_cli(
        "--m",
        "2",
        "--n",
        "2",
        "--alphas",
        "0:1:2",
        "--taus",
        "0.2:2:2",
        "--max-iter",
        "1",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    result = json.loads((out / "phase_diagram.json").read_text())
    assert not result["summary"]["passes"] and result["violations"]
    assert done.returncode == 1 and "criteria FAIL" in done.stdout and "exit 1" in done.stdout


def test_cli_closed_form_only_exits_0_and_says_nothing_was_judged(tmp_path):
    out = tmp_path / "pd"
    assert phase_diagram.main(["--no-simulate", "--alphas", "0:1:3", "--taus", "1e-3:1e3:5", "--out", str(out)]) == 0
    result = json.loads((out / "phase_diagram.json").read_text())
    assert len(result["points"]) == 15 and result["summary"]["passes"]
    assert sorted(path.name for path in out.iterdir()) == [
        "phase_diagram.csv",
        "phase_diagram.json",
        "phase_diagram.png",
    ]


PHASE_FLAGS = [
    "--m",
    "--n",
    "--p",
    "--dim",
    "--variant",
    "--alphas",
    "--taus",
    "--seed",
    "--restarts",
    "--max-iter",
    "--threads",
    "--device",
    "--dtype",
    "--max-memory",
    "--no-simulate",
    "--certify",
    "--bogus",
]
PHASE_VALUES = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "1000",
    "0.5",
    "x",
    "",
    "none",
    "nan",
    "inf",
    "1e300",
    "99999999999999999999999",
    "0:1:3",
    "0:2:3",
    "1:0:3",
    "0:1",
    "0:1:0",
    "-1:1:3",
    "1e-3:1e-3:1",
    "1e-300:1e300:7",
    "0.05:5:9",
    "2,3",
    "2,2",
    "4,x",
    "instance",
    "supcon",
    "cpu",
    "float32",
    "float64",
    "4G",
    "lots",
]


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(PHASE_FLAGS), st.sampled_from(PHASE_VALUES)), max_size=6))
def test_fuzzed_phase_diagram_command_lines_parse_or_exit_2(tmp_path_factory, pairs):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    argv = [
        token
        for flag, value in pairs
        for token in ((flag,) if flag in ("--no-simulate", "--certify") else (flag, value))
    ]
    try:
        config = phase_diagram.parse([*argv, "--out", str(out)])
    except SystemExit as exit_info:
        assert exit_info.code == 2
    else:
        assert isinstance(config, phase_diagram.Config)
        phase_diagram.validate(config)  # what parse accepted, the library accepts
    assert not out.exists()


# --- certified route and (m, n) sweeps ----------------------------------------------------------------------


def test_cli_certify_sweeps_sizes_and_agrees_with_the_closed_form(tmp_path):
    out = tmp_path / "pd"
    done = _run_cli(
        "--m", "2,3", "--n", "2", "--alphas", "0:1:3", "--taus", "0.1:2:2", "--certify", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "phase_diagram.json").read_text())
    assert {(point["m"], point["n"]) for point in result["points"]} == {(2, 2), (3, 2)}
    assert len(result["points"]) == 12 and result["violations"] == []
    for point in result["points"]:
        certified, closed_form, free = (
            point["certified"]["minimum"],
            point["theory"]["loss"],
            point["simulated"]["loss"],
        )
        assert abs(certified - closed_form) <= 1e-9 * abs(closed_form)
        assert free >= certified - 1e-9 * abs(certified)
        assert 0 <= point["certified"]["within"] <= 1 and isinstance(point["certified"]["polished"], bool)
        # the certified within-class variance matches the closed form's W* away from the threshold
        assert abs(point["certified"]["within"] - point["theory"]["within"]) < 1e-3
    assert {row["m"] for row in result["alpha_star"]} == {2, 3}
    assert result["criteria"]["certified_rel_tol"] == 1e-9 and "certified at every point" in done.stdout


def test_cli_large_size_skips_free_optimisation_and_says_so(tmp_path):
    out = tmp_path / "pd"
    done = _run_cli("--m", "1000", "--alphas", "0:1:2", "--taus", "0.1:1:2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "phase_diagram.json").read_text())
    assert result["summary"]["free_optimisation"] == [
        {"m": 1000, "n": 4, "ran": False, "reason": "m n p = 8000 > 64 vectors (give --max-memory to allow larger)"}
    ]
    assert "free optimisation skipped at m=1000,n=4" in done.stdout
    assert all("simulated" not in point for point in result["points"])


def test_certified_criteria_catch_a_wrong_minimum_and_a_free_minimum_below_it():
    alphas, taus = np.array([0.0, 1.0]), np.array([0.5])
    theory = phase.theory_grid(alphas, taus, 2, 2, 2)
    certified = {"minimum": theory["loss"].copy()}
    assert phase_diagram.certified_violations(alphas, taus, theory, certified, None, "instance") == []
    certified["minimum"][0, 0] *= 1 + 1e-8
    simulated = {"loss": theory["loss"] - 1e-6}
    found = phase_diagram.certified_violations(alphas, taus, theory, certified, simulated, "instance")
    assert [v["criterion"] for v in found].count("certified minimum equals the closed form") == 1
    assert [v["criterion"] for v in found].count("free minimum not below the certified minimum") == 2
    # the supcon variant has no closed form to compare the certificate with
    assert phase_diagram.certified_violations(alphas, taus, theory, certified, None, "supcon") == []


def test_two_loop_is_the_bfgs_inverse_hessian_of_the_pairs_oldest_to_newest():
    """-H g with H built from gamma I by the BFGS inverse update H <- V H V^T + rho s s^T, V = I - rho s y^T, of each
    stored pair from the oldest to the newest of the ring (newest slot 1 of 3: slots 2, 0, 1); a slot with rho = 0
    is skipped."""
    generator = torch.Generator().manual_seed(0)
    n_configs, memory, dim = 2, 3, 5
    S = torch.randn(n_configs, memory, dim, generator=generator, dtype=torch.float64)
    Y = S + 0.3 * torch.randn(n_configs, memory, dim, generator=generator, dtype=torch.float64)
    rho = 1 / (S * Y).sum(-1)
    assert (rho > 0).all()
    rho[1, 0] = 0.0
    gamma = torch.tensor([0.7, 1.3], dtype=torch.float64)
    gradient = torch.randn(n_configs, dim, generator=generator, dtype=torch.float64)
    direction = optimise.two_loop(gradient, S, Y, rho, gamma, newest=1)
    eye = torch.eye(dim, dtype=torch.float64)
    for b in range(n_configs):
        inverse = gamma[b] * eye
        for i in (2, 0, 1):
            if rho[b, i] != 0:
                v = eye - rho[b, i] * torch.outer(S[b, i], Y[b, i])
                inverse = v @ inverse @ v.T + rho[b, i] * torch.outer(S[b, i], S[b, i])
        torch.testing.assert_close(direction[b], -inverse @ gradient[b], rtol=1e-12, atol=1e-13)


def _linear_on_the_circle(loss_scales, gradient_scales):
    """Configurations of one vector on the circle with the loss c <a, z>, a = (1, 0), and the closed-form
    "derivatives" gradient k a and Hessian 0, (c, k) per configuration: true where k = c, lying elsewhere."""
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    c, k = (torch.tensor(scales, dtype=torch.float64) for scales in (loss_scales, gradient_scales))

    def loss_fn(z, index):
        return c[index] * (z @ a)[:, 0]

    def derivatives(z, index):
        gradient = k[index][:, None, None] * a.expand_as(z)
        return loss_fn(z, index), gradient, lambda v, rows=None: torch.zeros_like(v)

    return loss_fn, derivatives


def test_lbfgs_reports_a_failed_line_search_as_stalled_and_a_capped_run_as_capped():
    """method="lbfgs": a configuration whose every step goes uphill (the lying gradient -10^6 a, so steep that each
    backtrack only halves the step and 30 halvings still rise far above rounding) fails its line search and is
    reported stalled after that one iteration (not retried up to max_iter); an honest one from the same start
    converges; a run stopped by max_iter while still moving is reported at the iteration cap, not stalled."""
    x0 = torch.tensor([[[0.6, 0.8]], [[0.6, 0.8]]], dtype=torch.float64)
    loss_fn, derivatives = _linear_on_the_circle([1.0, 1.0], [1.0, -1e6])
    result = optimise.minimise_on_sphere(
        loss_fn, x0, indexed=True, derivatives=derivatives, method="lbfgs", max_iter=50
    )
    assert result.route_names() == ["lbfgs", "stalled"] and result.converged.tolist() == [True, False]
    assert result.config_iterations[1] == 1 and result.config_iterations[0] < 50
    torch.testing.assert_close(result.z[0, 0], torch.tensor([-1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-9)
    loss_fn, derivatives = _linear_on_the_circle([1.0], [1.0])
    capped = optimise.minimise_on_sphere(
        loss_fn, x0[:1], indexed=True, derivatives=derivatives, method="lbfgs", max_iter=2
    )
    assert capped.route_names() == ["iteration cap"] and capped.converged.tolist() == [False]
    assert capped.iterations == 2


def _plane_book(n_configs):
    """A Book for configurations of one vector in R^3 at e3, where vectors in the (e1, e2) plane are tangent."""
    problem = sphere.SphereProblem(None, (n_configs, 1, 3), indexed=True)
    z = torch.tensor([[0.0, 0.0, 1.0]] * n_configs, dtype=torch.float64)
    return z, sphere.Book(problem, z, grad_tol=1e-9, step_tol=1e-12, max_iter=10, progress=None)


def test_lbfgs_memory_stores_each_pair_in_the_next_ring_slot_with_rho_one_over_sy_where_curvature_is_seen():
    """rho = 1 / <s, y> and gamma = <s, y> / <y, y> where the step moved and <s, y> > 1e-12 |s| |y|, else rho = 0
    and gamma kept; the newest slot advances by one per remembered step."""
    z, book = _plane_book(4)
    memory = optimise.LbfgsMemory(torch.zeros(4, 3, 3, dtype=torch.float64), 3)
    step = torch.tensor([[1.0, 0.0, 0.0]] * 4, dtype=torch.float64)
    y = torch.tensor([[0.5, 1.0, 0.0], [1e-9, 2e4, 0.0], [2e-8, 1e4, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    point, new_point = (z, None, torch.zeros_like(y), None), (z, None, y, None)  # y: tangent at e3, exact
    moved = torch.tensor([True, True, True, False])
    memory.remember(step, point, new_point, moved, book)
    assert memory.newest == 0
    torch.testing.assert_close(memory.Y[:, 0], y, rtol=1e-12, atol=0)
    # <s, y> = 0.5, 1e-9 (below 1e-12 x 2e4), 2e-8 (above 1e-12 x 1e4; not above 1e-12 x the whole batch's |s| |y|).
    assert memory.rho[:, 0].tolist() == [2.0, 0.0, 1 / 2e-8, 0.0]
    assert memory.gamma.tolist() == [0.5 / 1.25, 1.0, 2e-8 / (4e-16 + 1e8), 1.0]
    memory.remember(2 * step, point, new_point, moved, book)
    assert memory.newest == 1 and memory.S[0, 1, 0] == 2.0 and memory.S[0, 0, 0] == 1.0


def test_lbfgs_memory_falls_back_to_steepest_descent_and_forgets_where_its_direction_does_not_descend():
    """Where the two-loop direction is not one of descent (here: a negative initial scaling, and a zero gradient),
    the direction is -g, the memory of that configuration is forgotten and it is flagged as having no curvature
    information; elsewhere the two-loop direction and the memory stay."""
    z, book = _plane_book(3)
    memory = optimise.LbfgsMemory(torch.zeros(3, 2, 3, dtype=torch.float64), 2)
    memory.S[:, 0], memory.Y[:, 0] = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([2.0, 0.0, 0.0])
    memory.rho[:, 0] = 0.5
    memory.gamma = torch.tensor([-0.5, 1.0, 1.0], dtype=torch.float64)
    memory.newest = 0
    gradient = torch.tensor([[0.2, 0.6, 0.0], [0.2, 0.6, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    # Two-loop directions: (-0.1, 0.3) for the first, <d, g> = 0.16 > 0; (-0.1, -0.6) for the second.
    direction, no_curvature = memory.direction(book, (z, None, gradient, None))
    expected = torch.tensor([[-0.2, -0.6, 0.0], [-0.1, -0.6, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(direction, expected, rtol=1e-12, atol=1e-15)
    assert no_curvature.tolist() == [True, False, True]
    assert memory.rho.tolist() == [[0.0, 0.0], [0.5, 0.0], [0.0, 0.0]]


def test_the_line_search_first_step_and_armijo_test():
    """From z = (0, 1) on the circle, loss c <a, z> with the Euclidean gradient k a, a = (1, 0), along d = -s g:
    a first step (no curvature seen) is 0.1 / |d| capped at 1, a later one 1; a trial is taken when its loss is
    within 8 ulps of slack plus 1e-4 step <d, g> of the current one. (c, k, s, first) per configuration: (1, 1, 2,
    yes) steps 0.05; (1, 1, 0.05, yes) 1; (1, 1, 1, no) 1; a flat loss with a gradient of 1e-7 (0, 1e-7, 1, no)
    takes step 1 on the slack; the uphill -10^6 a (1, -1e6, 1, no) never passes and does not move; a shallow loss
    (0.01, 1, 2, yes) takes its first step 0.05: its decrease, about 1e-3, passes 1e-4 x 0.05 x 2 (and would fail
    a bound of 1e-4 x 2 / 0.05)."""
    _, derivatives = _linear_on_the_circle([1.0, 1.0, 1.0, 0.0, 1.0, 0.01], [1.0, 1.0, 1.0, 1e-7, -1e6, 1.0])
    scale = torch.tensor([2.0, 0.05, 1.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    problem = sphere.SphereProblem(None, (6, 1, 2), indexed=True, derivatives=derivatives)
    z = torch.tensor([[0.0, 1.0]] * 6, dtype=torch.float64)
    book = sphere.Book(problem, z, grad_tol=1e-9, step_tol=1e-12, max_iter=10, progress=None)
    loss, gradient, norm = problem.evaluate(z, torch.ones(6, dtype=torch.bool))
    direction = -scale[:, None] * gradient
    first = torch.tensor([True, True, False, False, False, True])
    new_point, step, moved = optimise.line_search(
        problem, z, torch.arange(6), (z, loss, gradient, norm), direction, first, book
    )
    assert moved.tolist() == [True, True, True, True, False, True]
    taken = torch.tensor([0, 1, 2, 3, 5])
    expected_steps = torch.tensor([0.05, 1.0, 1.0, 1.0, 0.05], dtype=torch.float64)
    torch.testing.assert_close(step[taken], expected_steps, rtol=1e-15, atol=0)
    expected = book.retract(z[taken] + step[taken, None] * direction[taken])
    torch.testing.assert_close(new_point[0][taken], expected, rtol=0, atol=0)
    assert new_point[0][4].tolist() == [0.0, 1.0] and new_point[1][4] == 0.0


@pytest.mark.parametrize(
    "n_vectors, dim, closed_form, expected",
    [(25, 4, False, "matrix"), (26, 4, False, "hvp"), (5, 4, True, "hvp")],
)
def test_auto_builds_the_exact_hessian_up_to_100_variables_without_closed_form_derivatives(
    monkeypatch, n_vectors, dim, closed_form, expected
):
    """hessian="auto": the exact matrix where N d <= EXACT_HESSIAN_MAX_VARIABLES (100) and no closed-form
    derivatives are given, Hessian-vector products otherwise."""
    used = []
    second_order = sphere.SphereProblem.second_order

    def spy(self, z, rows, hessian):
        used.append(hessian)
        return second_order(self, z, rows, hessian)

    monkeypatch.setattr(sphere.SphereProblem, "second_order", spy)
    a = torch.zeros(dim, dtype=torch.float64)
    a[0] = 1.0

    def loss_fn(z, index):
        return (z @ a).sum(-1)

    def derivatives(z, index):
        return (z @ a).sum(-1), a.expand_as(z), lambda v, rows=None: torch.zeros_like(v)

    x0 = optimise.random_start((3,), n_vectors, dim, seed=0)
    options = {"derivatives": derivatives} if closed_form else {}
    result = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, **options)
    assert result.converged.all() and set(used) == {expected}


def test_a_configuration_starting_at_its_minimum_takes_no_lbfgs_step():
    """Settled at the start (method "lbfgs"): no iteration. In Newton mode below the switch tolerance every
    configuration goes to the finish: one zero L-BFGS step, then settled at the finish's first look."""
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    def loss_fn(z):
        return (z @ a).sum(-1)

    x0 = torch.tensor([[[-1.0, 0.0, 0.0]] * 2] * 2, dtype=torch.float64)  # every vector at -a
    lbfgs = optimise.minimise_on_sphere(loss_fn, x0, method="lbfgs")
    assert lbfgs.converged.all() and lbfgs.config_iterations.tolist() == [0, 0]
    newton = optimise.minimise_on_sphere(loss_fn, x0)
    assert newton.converged.all() and newton.route_names() == ["lbfgs", "lbfgs"]
    assert newton.config_iterations.tolist() == [1, 1] and newton.newton_iterations.tolist() == [0, 0]


def test_lbfgs_hands_over_to_newton_after_its_budget_and_runs_on_alone(monkeypatch):
    """Newton mode: at most LBFGS_BUDGET L-BFGS iterations per configuration before the finish; method "lbfgs"
    has no such budget (only max_iter)."""
    monkeypatch.setattr(optimise, "LBFGS_BUDGET", 2)
    labels = torch.tensor([0, 0, 1, 1])

    def loss_fn(z):
        return losses.supcon_loss(z, labels, 0.5)

    x0 = optimise.random_start((3,), 4, 3, seed=2)
    newton = optimise.minimise_on_sphere(loss_fn, x0)
    assert newton.converged.all() and (newton.config_iterations - newton.newton_iterations).max() <= 2
    lbfgs = optimise.minimise_on_sphere(loss_fn, x0, method="lbfgs")
    assert lbfgs.converged.all() and lbfgs.config_iterations.min() > 2


def test_progress_is_reported_with_the_settled_count():
    reports = []
    labels = torch.tensor([0, 0, 1, 1])
    optimise.minimise_on_sphere(
        lambda z: losses.supcon_loss(z, labels, 0.5),
        optimise.random_start((2,), 4, 3, seed=2),
        progress=lambda iteration, settled: reports.append((iteration, settled)),
    )
    assert [iteration for iteration, _ in reports] == list(range(1, len(reports) + 1)) and len(reports) > 1
    settled = [count for _, count in reports]
    assert settled == sorted(settled) and settled[-1] <= 2


@pytest.mark.parametrize(
    "options, x0, message",
    [
        ({"method": "adam"}, torch.ones(1, 2, 2), "method must be one of 'newton', 'lbfgs', got 'adam'"),
        ({"hessian": "x"}, torch.ones(1, 2, 2), "hessian must be one of 'auto', 'matrix', 'hvp', got 'x'"),
        ({}, torch.ones(1, 2, 2, dtype=torch.long), "x0 must be a float32 or float64 tensor, got torch.int64"),
        ({}, torch.ones(1, 2, 2, dtype=torch.float16), "x0 must be a float32 or float64 tensor, got torch.float16"),
    ],
)
def test_bad_options_and_starts_are_refused_by_name(options, x0, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        optimise.minimise_on_sphere(lambda z: z.sum((-1, -2)), x0, **options)


@pytest.mark.parametrize("n_vectors, dim, name", [(0, 3, "n_vectors"), (2, 0, "dim")])
def test_random_start_refuses_empty_sizes_by_name(n_vectors, dim, name):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= 1, got 0$"):
        optimise.random_start((2,), n_vectors, dim, seed=0)


def test_random_start_of_one_dimension_is_a_sign_per_vector():
    x0 = optimise.random_start((2,), 3, 1, seed=0)
    assert x0.shape == (2, 3, 1) and (optimise.normalise(x0).abs() == 1).all()


def test_option_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"^x0 must have shape \(\*batch, N, d\) with at least one batch dimension"):
        optimise.minimise_on_sphere(lambda z: z.sum(), torch.ones(4, 3, dtype=torch.float64))
    message = r"^derivatives need indexed=True: they are called as derivatives\(z \(k, N, d\), index \(k,\)\)$"
    with pytest.raises(ValueError, match=message):
        optimise.minimise_on_sphere(
            lambda z: z.sum((-1, -2)), torch.ones(1, 4, 3, dtype=torch.float64), derivatives=lambda z, index: None
        )


def _endless_rotation():
    """One vector on the circle whose "loss" falls by 1 at every evaluation (a counter) and whose gradient is the
    unit tangent: every step is taken and nothing ever settles, so only the iteration cap stops a run."""
    evaluations = itertools.count()

    def derivatives(z, index):
        loss = z.new_full((len(index),), -float(next(evaluations)))
        return loss, torch.stack([-z[..., 1], z[..., 0]], -1), lambda v, rows=None: torch.zeros_like(v)

    return derivatives


def test_the_documented_defaults_of_the_optimiser():
    """The signature says max_iter 3000 and history 10, and the runs use them: a run that never settles stops at
    iteration 3000, and a default run is the run with history=10 to the last bit (history=11 differs)."""
    parameters = inspect.signature(optimise.minimise_on_sphere).parameters
    assert (parameters["max_iter"].default, parameters["history"].default) == (3000, 10)
    endless = _endless_rotation()
    x0 = torch.tensor([[[0.6, 0.8]]], dtype=torch.float64)
    capped = optimise.minimise_on_sphere(endless, x0, indexed=True, derivatives=endless, method="lbfgs")
    assert capped.route_names() == ["iteration cap"] and capped.iterations == 3000
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x0 = optimise.random_start((2,), 6, 4, seed=3)
    default, ten, eleven = (
        optimise.minimise_on_sphere(lambda z: losses.supcon_loss(z, labels, 0.3), x0, method="lbfgs", **options)
        for options in ({}, {"history": 10}, {"history": 11})
    )
    assert torch.equal(default.z, ten.z) and not torch.equal(default.z, eleven.z)
