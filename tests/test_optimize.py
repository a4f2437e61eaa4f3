"""Tests of the batched Riemannian L-BFGS (simulate.optimize) and the phase-diagram command."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from simulate import losses, optimize, phase, phase_diagram
from theory import ssem


def test_batched_configurations_are_independent_and_reach_the_closed_form():
    m, n, p = 2, 3, 2
    alphas = torch.tensor([0.1, 0.6, 0.9], dtype=torch.float64)
    taus = torch.tensor([0.5, 0.3, 1.0], dtype=torch.float64)
    labels, instances = losses.balanced_layout(m, n, p)

    def loss_fn(z):
        return losses.combined_loss(z, labels, instances, alphas, taus)

    together = optimize.minimize_with_restarts(loss_fn, (3,), m * n * p, m * n, restarts=2, seed=1)
    beta = ssem.optimal_beta(alphas.numpy(), taus.numpy(), m, n)
    closed_form = ssem.restricted_loss(beta, alphas.numpy(), taus.numpy(), m, n, p)
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
    x0 = optimize.random_start((2,), 6, 4, seed=3)
    full = optimize.minimize_on_sphere(lambda z: losses.supcon_loss(z, labels, taus), x0)
    indexed = optimize.minimize_on_sphere(lambda z, i: losses.supcon_loss(z, labels, taus[i]), x0, indexed=True)
    np.testing.assert_allclose(full.loss.numpy(), indexed.loss.numpy(), rtol=1e-12)
    assert full.converged.all() and indexed.converged.all()


def test_unconverged_configurations_are_flagged():
    labels = torch.tensor([0, 0, 1, 1])
    x0 = optimize.random_start((2,), 4, 3, seed=0)
    result = optimize.minimize_on_sphere(lambda z: losses.supcon_loss(z, labels, 0.1), x0, max_iter=1)
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
    x0 = optimize.random_start((1,), 4, 3, seed=0)
    with pytest.raises(ValueError, match=message):
        optimize.minimize_on_sphere(lambda z: losses.supcon_loss(z, torch.tensor([0, 0, 1, 1]), 1.0), x0, **kwargs)


def test_loss_with_wrong_shape_is_refused():
    x0 = optimize.random_start((2,), 4, 3, seed=0)
    with pytest.raises(ValueError, match="one loss per configuration"):
        optimize.minimize_on_sphere(lambda z: z.sum(), x0)


def test_phase_grid_agrees_with_theory_on_a_small_grid():
    alphas, taus = np.array([0.0, 0.5, 1.0]), np.array([0.2, 1.0])
    theory = phase.theory_grid(alphas, taus, 2, 3, 2)
    simulated = phase.simulated_grid(alphas, taus, 2, 3, 2, seed=0)
    summary, violations = phase.compare(alphas, taus, theory, simulated, ssem.alpha_star(taus, 2, 3))
    assert violations == [] and summary["passes"]
    assert summary["max_ssem_residual"] < 1e-4  # minimisers lie in SSEM


def _run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "simulate.phase_diagram", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--m", "1"], "--m must be >= 2"),
        (["--alphas", "0:2:5"], "--alphas must lie in [0, 1]"),
        (["--taus", "-1:1:3"], "--taus must be > 0"),
        (["--dim", "3"], "--dim must be >= m*n - 1 = 15"),
        (["--alphas", "0:1"], "--alphas must be START:STOP:COUNT"),
        (["--taus", "1:x:3"], "--taus must be START:STOP:COUNT"),
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
    assert len((out / "phase_diagram.csv").read_text().splitlines()) == 7
    assert (out / "phase_diagram.png").stat().st_size > 10_000
    assert "points in" in done.stdout
