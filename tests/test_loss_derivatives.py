"""The combined loss's closed-form derivatives (simulate.loss_derivatives.combined_loss_derivatives) against automatic
differentiation of `combined_loss`, and their use by the optimiser (simulate.optimise, `derivatives=`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from combined_problems import indexed_combined_problem
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import loss_derivatives, losses, optimise, phase
from theory import ssem


def layout(views_per_instance: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and instance ids from views_per_instance[class][instance] = number of views."""
    labels, instances = [], []
    for label, sizes in enumerate(views_per_instance):
        for views in sizes:
            labels += [label] * views
            instances += [len(set(instances))] * views
    return torch.tensor(labels), torch.tensor(instances)


def autograd_reference(z, labels, instances, alpha, tau, variant, v):
    """Loss, gradient and Hessian times v of `combined_loss` by automatic differentiation (double backward)."""
    z = z.clone().requires_grad_(True)
    loss = losses.combined_loss(z, labels, instances, alpha, tau, variant)
    (gradient,) = torch.autograd.grad(loss.sum(), z, create_graph=True)
    (hessian_v,) = torch.autograd.grad(gradient, z, grad_outputs=v)
    return loss.detach(), gradient.detach(), hessian_v


LAYOUTS = [
    pytest.param([[2, 2, 2], [2, 2, 2]], "instance", id="balanced-instance"),
    pytest.param([[2, 2, 2], [2, 2, 2]], "supcon", id="balanced-supcon"),
    pytest.param([[1, 1, 1], [1, 1], [1, 1, 1, 1]], "instance", id="one-view-unbalanced"),
    pytest.param([[3, 2], [2, 4, 2], [2]], "supcon", id="uneven-views-and-a-lonely-instance"),
    pytest.param([[3, 1], [1, 2, 2]], "instance", id="uneven-views-instance"),
]


@pytest.mark.parametrize("sizes, variant", LAYOUTS)
def test_value_gradient_and_hessian_match_automatic_differentiation(sizes, variant):
    labels, instances = layout(sizes)
    generator = torch.Generator().manual_seed(len(labels))
    n = len(labels)
    # Not on the sphere, with a batch of configurations of their own alpha and tau (tau down to 0.02).
    z = 0.8 * torch.randn(4, n, 5, dtype=torch.float64, generator=generator)
    v = torch.randn(4, n, 5, dtype=torch.float64, generator=generator)
    alpha = torch.tensor([0.0, 0.3, 0.75, 1.0], dtype=torch.float64)
    tau = torch.tensor([0.02, 0.1, 0.7, 3.0], dtype=torch.float64)
    loss, gradient, hess = loss_derivatives.combined_loss_derivatives(labels, instances, variant)(z, alpha, tau)
    loss_ref, gradient_ref, hessian_v_ref = autograd_reference(z, labels, instances, alpha, tau, variant, v)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient, gradient_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hess(v), hessian_v_ref, rtol=1e-9, atol=1e-9)
    # On a part of the batch, in the order asked for.
    rows = torch.tensor([3, 1])
    torch.testing.assert_close(hess(v[rows], rows), hessian_v_ref[rows], rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    alpha=st.floats(0.0, 1.0),
    tau=st.floats(0.05, 5.0),
    variant=st.sampled_from(["instance", "supcon"]),
)
def test_hessian_is_symmetric_and_matches_gradient_differences(seed, alpha, tau, variant):
    labels, instances = losses.balanced_layout(2, 2, 2)
    generator = torch.Generator().manual_seed(seed)
    z, u, v = (torch.randn(8, 3, dtype=torch.float64, generator=generator) for _ in range(3))
    derivatives = loss_derivatives.combined_loss_derivatives(labels, instances, variant)
    alpha_t, tau_t = torch.tensor(alpha, dtype=torch.float64), torch.tensor(tau, dtype=torch.float64)
    _, _, hess = derivatives(z, alpha_t, tau_t)
    torch.testing.assert_close((u * hess(v)).sum(), (v * hess(u)).sum(), rtol=1e-9, atol=1e-9)
    # Central differences of the closed-form gradient along v: the operator is its derivative.
    h = 1e-5
    forward, backward = derivatives(z + h * v, alpha_t, tau_t)[1], derivatives(z - h * v, alpha_t, tau_t)[1]
    torch.testing.assert_close(hess(v), (forward - backward) / (2 * h), rtol=1e-5, atol=1e-5 / tau)


@pytest.mark.parametrize(
    "labels, instances, variant, message",
    [
        (
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            "instance",
            "^labels/instances give no pair of the same class and different instances: L_sup is undefined$",
        ),
        ([0, 0, 1, 1], [0, 1, 1, 2], "instance", "^instances must not span classes"),
        ([0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 3], "supcon", "^n_views must be >= 2 for variant 'supcon', got 1$"),
        ([0, 0, 1, 1], [0, 1, 2, 3], "simclr", "^variant must be one of 'instance', 'supcon', got 'simclr'$"),
        ([0, 0, 1, 1], [0, 1, 2], "instance", r"^instances must have shape \(N,\) = \(4,\), got \(3,\)$"),
        ([0.0, 0.0, 1.0, 1.0], [0, 1, 2, 3], "instance", r"^labels must be an integer tensor of shape \(N,\) = \(4,\)"),
        ([[0, 0, 1, 1]], [0, 1, 2, 3], "instance", r"^labels must be an integer tensor of shape \(N,\), got tensor"),
    ],
)
def test_bad_layouts_are_refused_like_the_loss(labels, instances, variant, message):
    with pytest.raises(ValueError, match=message):
        loss_derivatives.combined_loss_derivatives(torch.tensor(labels), torch.tensor(instances), variant)


def test_labels_that_are_not_a_tensor_are_refused():
    with pytest.raises(ValueError, match=r"^labels must be an integer tensor of shape \(N,\), got \[0, 0, 1, 1\]$"):
        loss_derivatives.combined_loss_derivatives([0, 0, 1, 1], torch.tensor([0, 1, 2, 3]))


def test_sphere_problem_with_derivatives_gives_the_autograd_figures():
    alpha = torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64)
    tau = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    loss_fn, derivatives = indexed_combined_problem(alpha, tau)
    shape = (3, 12, 6)
    closed = optimise.SphereProblem(loss_fn, shape, indexed=True, derivatives=derivatives)
    automatic = optimise.SphereProblem(loss_fn, shape, indexed=True)
    z = optimise.normalise(optimise.random_start((3,), 12, 6, seed=2)).reshape(3, -1)
    rows = torch.tensor([True, False, True])
    for ours, reference in zip(closed.evaluate(z, rows), automatic.evaluate(z, rows)):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    index = torch.tensor([2, 0])
    for ours, reference in zip(closed.evaluate_at(z, index, z[index]), automatic.evaluate_at(z, index, z[index])):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    v = optimise.tangent_projection(z.reshape(shape), torch.randn(shape, dtype=torch.float64)).reshape(3, -1)[rows]
    *first, hess = closed.second_order(z, rows, "hvp")
    *first_ref, hess_ref = automatic.second_order(z, rows, "hvp")
    for ours, reference in zip(first, first_ref):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hess(v), hess_ref(v), rtol=1e-9, atol=1e-10)
    # Parts asked for in turn (the conjugate gradients keep one part until a configuration stops, and the
    # operators remember the last one): each product is that of its own rows, whatever part came before.
    first_part, second_part, reference = torch.tensor([0]), torch.tensor([1]), hess_ref(v)
    for part in (first_part, second_part, second_part, first_part, torch.tensor([1, 0]), torch.tensor([1])):
        torch.testing.assert_close(hess(v[part], part), reference[part], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(hess(v), reference, rtol=1e-9, atol=1e-10)  # the whole batch after a part


def test_minimisation_with_derivatives_reaches_the_closed_form_like_autograd():
    alpha = torch.tensor([0.1, 0.5, 0.9, 0.6], dtype=torch.float64)
    tau = torch.tensor([0.05, 0.2, 0.5, 2.0], dtype=torch.float64)
    loss_fn, derivatives = indexed_combined_problem(alpha, tau)
    x0 = optimise.random_start((4,), 12, 6, seed=0)
    closed = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=derivatives)
    automatic = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, hessian="hvp")
    assert closed.converged.all() and automatic.converged.all()
    beta = ssem.optimal_beta(alpha.numpy(), tau.numpy(), 2, 3)
    expected = ssem.restricted_loss(beta, alpha.numpy(), tau.numpy(), 2, 3, 2)
    np.testing.assert_allclose(closed.loss.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(closed.loss.numpy(), automatic.loss.numpy(), rtol=1e-10)
    # The gradient at the returned points, recomputed by automatic differentiation.
    z = closed.z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(z, torch.arange(4)).sum(), z)
    assert ((grad - (grad * z).sum(-1, keepdim=True) * z).flatten(1).norm(dim=-1) <= 1e-9).all()


def test_phase_grid_uses_the_closed_form_derivatives(monkeypatch):
    calls = []
    original = loss_derivatives.combined_loss_derivatives

    def counted(*args, **kwargs):
        derivatives = original(*args, **kwargs)

        def wrapped(*inner):
            calls.append(inner[0].shape[0])
            return derivatives(*inner)

        return wrapped

    monkeypatch.setattr(loss_derivatives, "combined_loss_derivatives", counted)
    result = phase.simulated_grid([0.3, 0.8], [0.4], 2, 2, 2, seed=0)
    assert calls and result["converged"].all()
    # With restarts, every start of a configuration gets that configuration's alpha and tau.
    calls.clear()
    restarted = phase.simulated_grid([0.3, 0.8], [0.4], 2, 2, 2, seed=0, restarts=3)
    assert calls and restarted["converged"].all()
    np.testing.assert_allclose(restarted["loss"], result["loss"], rtol=1e-9)


def test_derivatives_need_indexed_mode_and_the_right_shapes():
    alpha = torch.tensor([0.5], dtype=torch.float64)
    loss_fn, derivatives = indexed_combined_problem(alpha, alpha)
    x0 = optimise.random_start((1,), 12, 6, seed=0)
    with pytest.raises(ValueError, match="derivatives need indexed=True"):
        optimise.minimise_on_sphere(lambda z: loss_fn(z, torch.arange(1)), x0, derivatives=derivatives)

    def flat_gradient(z, index):
        loss, gradient, hess = derivatives(z, index)
        return loss, gradient.flatten(1), hess

    with pytest.raises(ValueError, match=r"derivatives must return a loss of shape \(1,\) and a gradient of shape"):
        optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=flat_gradient)


def test_with_derivatives_the_hvp_route_never_differentiates_the_loss():
    """Given closed-form derivatives, a run on the "hvp" route (the default above the exact-Hessian size) takes
    every value, gradient and Hessian product from them: the loss function is never called."""
    alpha = torch.tensor([0.3, 0.7], dtype=torch.float64)
    tau = torch.tensor([0.1, 0.5], dtype=torch.float64)
    _, derivatives = indexed_combined_problem(alpha, tau)

    def loss_fn(z, index):
        raise AssertionError("the loss function was called")

    x0 = optimise.random_start((2,), 12, 6, seed=1)
    result = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=derivatives, hessian="hvp")
    assert result.converged.all() and int(result.newton_iterations.max()) > 0
