"""minimise_with_restarts keeps, for every configuration, the best of its restarts.

The loss has several local minima of different depths (wells around +-e_k on the sphere), so
random starts end in different wells; the expected best is recomputed independently: the same
starts run through `minimise_on_sphere` one restart at a time, the minimum taken with numpy.
"""

import numpy as np
import pytest
import torch

from simulate import optimise

DIM = 3
KAPPA = 8.0  # well width: neighbouring wells contribute e^{-8} at a well's centre
#: Well depths per configuration (3 configurations x 6 wells at +e1, -e1, +e2, -e2, +e3, -e3).
DEPTHS = torch.tensor(
    [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 1.0, 5.0, 2.0, 4.0, 3.0], [2.0, 2.5, 1.0, 4.5, 3.0, 1.5]],
    dtype=torch.float64,
)
WELLS = torch.cat([torch.eye(DIM), -torch.eye(DIM)]).reshape(2, DIM, DIM).transpose(0, 1).reshape(2 * DIM, DIM)
WELLS = WELLS.to(torch.float64)
RESTARTS, SEED = 8, 4


def wells_loss(z: torch.Tensor) -> torch.Tensor:
    """-sum_k a_k exp(kappa (<z, v_k> - 1)) for one vector per configuration: z (..., B, 1, d) -> (..., B)."""
    cosines = z[..., 0, :] @ WELLS.T  # (..., B, 6)
    return -(DEPTHS * torch.exp(KAPPA * (cosines - 1.0))).sum(-1)


def test_restarts_keep_each_configurations_best_run():
    best = optimise.minimise_with_restarts(wells_loss, (len(DEPTHS),), 1, DIM, restarts=RESTARTS, seed=SEED)
    starts = optimise.random_start((RESTARTS, len(DEPTHS)), 1, DIM, seed=SEED)
    per_restart = np.array([optimise.minimise_on_sphere(wells_loss, starts[r]).loss.numpy() for r in range(RESTARTS)])
    # The test can tell best from worst: every configuration's restarts end in different wells.
    assert (per_restart.max(0) - per_restart.min(0) > 0.5).all(), per_restart
    np.testing.assert_allclose(best.loss.numpy(), per_restart.min(0), rtol=1e-12)
    # The returned point, flag and gradient norm belong to that best run.
    np.testing.assert_allclose(wells_loss(best.z).numpy(), best.loss.numpy(), rtol=1e-12)
    assert best.converged.all()
    z = best.z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(wells_loss(z).sum(), z)
    riemannian = (grad - (grad * z).sum(-1, keepdim=True) * z).detach()
    np.testing.assert_allclose(riemannian.flatten(1).norm(dim=-1).numpy(), best.grad_norm.numpy(), atol=1e-12)


def test_restarts_indexed_mode_keeps_the_best_too():
    def indexed_loss(z, index):  # z (k, 1, d), index (k,) into the flattened configurations
        cosines = z[:, 0, :] @ WELLS.T
        return -(DEPTHS[index] * torch.exp(KAPPA * (cosines - 1.0))).sum(-1)

    indexed = optimise.minimise_with_restarts(
        indexed_loss, (len(DEPTHS),), 1, DIM, restarts=RESTARTS, seed=SEED, indexed=True
    )
    full = optimise.minimise_with_restarts(wells_loss, (len(DEPTHS),), 1, DIM, restarts=RESTARTS, seed=SEED)
    np.testing.assert_allclose(indexed.loss.numpy(), full.loss.numpy(), rtol=1e-12)
    # The deepest well of each configuration is found (8 restarts over 6 wells): loss ~ -max depth.
    np.testing.assert_allclose(full.loss.numpy(), -DEPTHS.max(-1).values.numpy(), rtol=1e-3)


def test_the_defaults_are_one_start_from_seed_0():
    default = optimise.minimise_with_restarts(wells_loss, (len(DEPTHS),), 1, DIM)
    explicit = optimise.minimise_with_restarts(wells_loss, (len(DEPTHS),), 1, DIM, restarts=1, seed=0)
    alone = optimise.minimise_on_sphere(wells_loss, optimise.random_start((1, len(DEPTHS)), 1, DIM, seed=0))
    torch.testing.assert_close(default.z, explicit.z, rtol=0, atol=0)
    torch.testing.assert_close(default.z, alone.z[0], rtol=0, atol=0)


@pytest.mark.parametrize("indexed", [False, True])
def test_options_reach_the_run_and_iterations_are_the_slowest_starts(indexed):
    """The options of `minimise_on_sphere` reach the run in both modes (here a cap of 3 iterations, far too
    few to converge), and `iterations` is the run's count, the slowest start's."""

    def indexed_loss(z, index):
        return -(DEPTHS[index] * torch.exp(KAPPA * (z[:, 0, :] @ WELLS.T - 1.0))).sum(-1)

    loss_fn = indexed_loss if indexed else wells_loss
    capped = optimise.minimise_with_restarts(
        loss_fn, (len(DEPTHS),), 1, DIM, restarts=2, seed=SEED, indexed=indexed, max_iter=3
    )
    assert not capped.converged.any()
    assert capped.iterations == 3
    assert capped.config_iterations.tolist() == [3, 3, 3]
    free = optimise.minimise_with_restarts(loss_fn, (len(DEPTHS),), 1, DIM, restarts=2, seed=SEED, indexed=indexed)
    assert free.converged.all() and free.iterations >= int(free.config_iterations.max()) > 3


def test_bad_restarts_are_refused():
    with pytest.raises(ValueError, match="^restarts must be an integer >= 1, got 0$"):
        optimise.minimise_with_restarts(wells_loss, (len(DEPTHS),), 1, DIM, restarts=0)
