"""Parts of the Newton finish that its convergence alone cannot pin down: the shifted CG solve, which of a
trial point and its second-order correction is kept, and how the exact Hessian is built (in chunks of a memory
budget, once per step, for the "matrix" route only). The optimiser converges with any of these wrong; these
tests do not pass.
"""

import math

import numpy as np
import pytest
import torch
from combined_problems import indexed_combined_problem

from simulate import losses, newton, optimise, phase, sphere

# Binary fractions, so the comparisons at the boundaries are exact.
TRIAL = (torch.tensor([1.0]), torch.tensor([0.5]))  # loss, gradient norm
REGULARISER = torch.tensor([0.25])


@pytest.mark.parametrize(
    "corrected_loss, corrected_norm, wins",
    [
        (0.5, 0.75, True),  # lower beyond the regulariser: wins whatever its gradient
        (0.75, 0.75, False),  # lower by exactly the regulariser: level, and a larger gradient loses
        (0.75, 0.25, True),  # ... and a smaller gradient wins
        (1.0, 0.25, True),  # equal loss, smaller gradient
        (1.0, 0.5, False),  # equal loss, equal gradient: the trial stays
        (1.25, 0.25, True),  # higher by exactly the regulariser is still level
        (1.125, 0.75, False),  # level, larger gradient
        (1.5, 0.25, False),  # higher beyond the regulariser: loses whatever its gradient
    ],
)
def test_a_correction_wins_by_loss_or_by_gradient_at_level_loss(corrected_loss, corrected_norm, wins):
    corrected = (torch.tensor([corrected_loss]), torch.tensor([corrected_norm]))
    assert newton.correction_wins(TRIAL, corrected, REGULARISER).tolist() == [wins]


def _problem_and_point(k=2, n_vectors=4, dim=3):
    labels, instances = losses.balanced_layout(2, 2, 1)  # N = 4 vectors
    alpha = torch.linspace(0.2, 0.8, k, dtype=torch.float64)
    tau = torch.linspace(0.3, 1.0, k, dtype=torch.float64)

    def loss_fn(z):
        return losses.combined_loss(z, labels, instances, alpha, tau)

    problem = sphere.SphereProblem(loss_fn, (k, n_vectors, dim), indexed=False)
    z = sphere.normalise(sphere.random_start((k,), n_vectors, dim, seed=7)).reshape(k, -1)
    return problem, z


@pytest.mark.parametrize("budget_directions, expected_chunk", [(5, 5), (0, 1), (100, 12)])
def test_the_exact_hessian_is_built_in_chunks_of_the_memory_budget(monkeypatch, budget_directions, expected_chunk):
    """One backward pass per chunk of coordinate directions, as many as HESSIAN_CHUNK_BYTES allows at the stated
    8 k N max(N, d) bytes-per-element per direction (at least one, at most all N d = 12); the same matrix
    whatever the chunk."""
    problem, z = _problem_and_point()
    k, n_vectors, dim = 2, 4, 3
    per_direction = 8 * k * n_vectors * max(n_vectors, dim) * z.element_size()
    zk = z.reshape(k, n_vectors, dim).clone().requires_grad_(True)
    (egrad,) = torch.autograd.grad(problem.loss_fn(zk).sum(), zk, create_graph=True)
    reference = sphere.hessian_matrix(egrad, zk)  # the default budget: every direction in one pass
    chunks = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            chunks.append(kwargs["grad_outputs"].shape[0])
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(sphere, "HESSIAN_CHUNK_BYTES", budget_directions * per_direction + per_direction // 2)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    matrix = sphere.hessian_matrix(egrad, zk)
    full, rest = divmod(12, expected_chunk)
    assert chunks == [expected_chunk] * full + ([rest] if rest else [])
    torch.testing.assert_close(matrix, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hessian, builds", [("matrix", 1), ("hvp", 0)])
def test_only_the_matrix_route_builds_the_exact_hessian(monkeypatch, hessian, builds):
    problem, z = _problem_and_point()
    built = []
    real_hessian_matrix = sphere.hessian_matrix

    def counting(egrad, zk):
        built.append(zk.shape)
        return real_hessian_matrix(egrad, zk)

    monkeypatch.setattr(sphere, "hessian_matrix", counting)
    *_, hess = problem.second_order(z, torch.ones(2, dtype=torch.bool), hessian)
    v = sphere.tangent_projection(z.reshape(2, 4, 3), torch.ones(2, 4, 3, dtype=torch.float64)).reshape(2, -1)
    hess(v)
    hess(v[1:], torch.tensor([1]))
    assert len(built) == builds  # once per step, not per product


def test_shifted_cg_solves_the_shifted_system_in_as_many_products_as_distinct_eigenvalues():
    """CG's finite termination: (H + shift I) with two distinct eigenvalues is solved in exactly two products,
    to rounding; H s comes back with s; configurations not running, or with a zero gradient, get s = 0 and are
    not reported as having met non-positive curvature."""
    eigenvalues = torch.tensor([1.0, 1.0, 1.0, 100.0, 100.0, 100.0], dtype=torch.float64)
    products = []

    def hess(v, part):
        products.append(part.tolist())
        return v * eigenvalues

    gradient = torch.tensor(
        [[3.0, -1.0, 2.0, 0.5, -2.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0] * 6], dtype=torch.float64
    )
    shift = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    running = torch.tensor([True, False, True])
    s, hs, negative = newton.shifted_cg(hess, gradient, shift, running)
    assert products == [[0], [0]]
    torch.testing.assert_close(s[0], -gradient[0] / (eigenvalues + 0.5), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(hs, s * eigenvalues, rtol=1e-12, atol=1e-14)
    assert s[1:].abs().max() == 0 and negative.tolist() == [False, False, False]


def _diagonal(eigenvalues):
    """H = diag(eigenvalues) as CG's operator, and the sizes of the parts it is asked for, in order."""
    calls = []

    def hess(v, part):
        calls.append(len(part))
        return v * eigenvalues

    return hess, calls


def test_shifted_cg_stops_after_max_products_at_the_minimiser_over_the_krylov_space():
    """Truncated after k products, CG's iterate minimises the model <g, s> + <s, A s>/2 (A = H + shift I) over
    span{g, A g, ..., A^(k-1) g}: checked against that minimiser solved directly, with 6 distinct eigenvalues."""
    eigenvalues = torch.tensor([1.0, 2.0, 5.0, 10.0, 50.0, 100.0], dtype=torch.float64)
    gradient = torch.tensor([[1.0, -2.0, 1.5, 0.5, -1.0, 2.0]], dtype=torch.float64)
    shift = torch.tensor([0.25], dtype=torch.float64)
    for products in (1, 2, 3):
        hess, calls = _diagonal(eigenvalues)
        s, hs, _ = newton.shifted_cg(hess, gradient, shift, torch.tensor([True]), products)
        a, g = torch.diag(eigenvalues + shift), gradient[0]
        basis = torch.stack([torch.linalg.matrix_power(a, j) @ g for j in range(products)], dim=1)  # (6, k)
        expected = -basis @ torch.linalg.solve(basis.T @ a @ basis, basis.T @ g)
        assert calls == [1] * products
        torch.testing.assert_close(s[0], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(hs, s * eigenvalues, rtol=1e-12, atol=1e-14)


def _krylov_residual_norms(a, g, k_max):
    """|A s_k + g| for s_k the minimiser of <g, s> + <s, A s>/2 over the first k Krylov directions, k = 1..k_max
    (an orthonormal basis built by Arnoldi with full reorthogonalisation)."""
    basis, norms = [g / g.norm()], []
    for _ in range(k_max):
        q = torch.stack(basis, dim=1)
        s = -q @ torch.linalg.solve(q.T @ a @ q, q.T @ g)
        norms.append(float((a @ s + g).norm()))
        w = a @ basis[-1]
        for _ in range(2):
            w = w - q @ (q.T @ w)
        basis.append(w / w.norm())
    return norms


def test_shifted_cg_stops_at_the_first_residual_within_a_tenth_of_the_gradient():
    """CG stops at the first iterate with |r| <= 0.1 |g|, checked against the Krylov minimisers' residuals; with
    |g| = 3 the rule on |r|^2 differs from the same rule on any other power of it."""
    eigenvalues = torch.linspace(1, 30, 20, dtype=torch.float64)  # well conditioned: CG in floats is CG
    gradient = torch.full((1, 20), 3 / math.sqrt(20), dtype=torch.float64)
    shift = torch.tensor([1e-3], dtype=torch.float64)
    hess, calls = _diagonal(eigenvalues)
    residuals = _krylov_residual_norms(torch.diag(eigenvalues + shift), gradient[0], 19)
    expected = next(k for k, r in enumerate(residuals, start=1) if r <= 0.1 * 3)
    newton.shifted_cg(hess, gradient, shift, torch.tensor([True]))
    assert 2 < expected < 19 and len(calls) == expected


def test_shifted_cg_makes_at_most_30_products_by_default():
    """A spectrum over 8 decades (40 eigenvalues) is far from solved to |r| <= |g| / 10 in 30 products."""
    hess, calls = _diagonal(torch.logspace(-4, 4, 40, dtype=torch.float64))
    gradient = torch.ones(1, 40, dtype=torch.float64)
    newton.shifted_cg(hess, gradient, torch.tensor([1e-8], dtype=torch.float64), torch.tensor([True]))
    assert len(calls) == 30


def test_the_second_order_corrections_solve_with_3_products_at_most():
    """The Newton finish caps the CG of each correction at 3 products and not its main solve: over a small grid
    at small tau, every capped solve makes at most 3 products (some exactly 3), the others up to more."""
    solves = []
    shifted_cg = newton.shifted_cg

    def spy(hess, gradient, shift, running, *cap):
        made = []

        def counted(v, part=None):
            made.append(len(part))
            return hess(v, part)

        result = shifted_cg(counted, gradient, shift, running, *cap)
        solves.append((cap, len(made)))
        return result

    alpha = torch.linspace(0.3, 0.9, 6, dtype=torch.float64)
    tau = torch.full((6,), 0.08, dtype=torch.float64)
    loss_fn, derivatives = indexed_combined_problem(alpha, tau, 3, 5, 2)
    x0 = sphere.random_start((6,), 30, 8, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(newton, "shifted_cg", spy)
        optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=derivatives)
    corrections = [made for cap, made in solves if cap]
    assert {cap for cap, _ in solves} == {(), (3,)}
    assert max(corrections) == 3 and max(made for cap, made in solves if not cap) > 3


def test_shifted_cg_at_non_positive_curvature_keeps_its_iterate_or_takes_the_gradient_step():
    """Where (H + shift I) has curvature <= 0 along the first direction (exactly 0, or negative), CG returns the
    regularised gradient step -g / shift; where it meets it later, the iterate reached so far. Either way the
    configuration is reported."""
    eigenvalues = torch.tensor(
        [[-0.5] * 6, [-2.0] * 6, [1.0, 1.0, 1.0, -4.0, -4.0, -4.0]], dtype=torch.float64
    )  # with shift 0.5: curvature exactly 0; negative; positive along g, then negative

    def hess(v, part):
        return v * eigenvalues[part]

    gradient = torch.tensor(
        [[3.0, -1.0, 2.0, 0.5, -2.0, 1.0], [1.0, -1.0, 1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, 0.1, 0.1, 0.1]],
        dtype=torch.float64,
    )
    shift = torch.full((3,), 0.5, dtype=torch.float64)
    s, hs, negative = newton.shifted_cg(hess, gradient, shift, torch.ones(3, dtype=torch.bool))
    first_step = (gradient[2] @ gradient[2]) / (gradient[2] @ ((eigenvalues[2] + 0.5) * gradient[2]))
    expected = torch.stack([-gradient[0] / 0.5, -gradient[1] / 0.5, -first_step * gradient[2]])
    torch.testing.assert_close(s, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(hs, s * eigenvalues, rtol=1e-12, atol=1e-14)
    assert negative.tolist() == [True, True, True]


def test_updated_lambda_is_nielsens_rule():
    """Taken: x max(1/3, 1 - (2 rho - 1)^3), rho clamped to [0, 1]; refused: x4, x16 when the loss rose (rho < 0);
    non-positive curvature: x4 after the first rule; not running: unchanged."""
    lam = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.002, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    ratio = torch.tensor(
        [1.0, 0.75, 0.5, 0.25, 2.0, 1.0, 1.0, 0.5, 0.05, -1.0, -0.5, 0.0, -0.5, -0.5], dtype=torch.float64
    )
    accepted = torch.tensor([True] * 7 + [False, False, True, False, False, True, False])
    running = torch.tensor([True] * 8 + [False] + [True] * 4 + [False])
    negative = torch.tensor([False] * 6 + [True] + [False] * 5 + [True, False])
    expected = [1 / 3, 0.875, 1.0, 1.125, 1 / 3, 1e-3, 4 / 3, 4.0, 1.0, 2.0, 16.0, 4.0, 8.0, 1.0]
    updated = newton.updated_lambda(lam, ratio, accepted, running, negative)
    torch.testing.assert_close(updated, torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=0)


def test_the_step_is_capped_and_judged_by_the_quadratic_model():
    s = torch.tensor([[0.3, 0.4], [3.0, 4.0]], dtype=torch.float64)  # 0.5 and 5 long
    hs = torch.tensor([[1.0, 2.0], [10.0, 20.0]], dtype=torch.float64)
    capped, capped_hs = newton.capped_step(s, hs, 1.0)
    torch.testing.assert_close(capped, torch.tensor([[0.3, 0.4], [0.6, 0.8]], dtype=torch.float64))
    torch.testing.assert_close(capped_hs, torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    gradient = torch.tensor([[1.0, 0.0], [0.0, -2.0]], dtype=torch.float64)
    step = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    step_hs = torch.tensor([[-4.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # H = 4 I, then I
    # -(<g, s> + <s, Hs>/2): -(-1 + 2) = -1 (the model predicts an increase), -(-2 + 0.5) = 1.5
    assert newton.model_decrease(gradient, step, step_hs).tolist() == [-1.0, 1.5]


def test_the_decrease_ratio_counts_changes_at_rounding_level():
    eps = torch.finfo(torch.float64).eps
    slack = newton.rounding_slack(torch.tensor([0.5, -4.0], dtype=torch.float64), eps)
    assert slack.tolist() == [1e3 * eps, 4e3 * eps]  # ulps of max(1, |loss|)
    loss = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    trial = torch.tensor([0.5, 0.75, 1.25, 0.5], dtype=torch.float64)
    predicted = torch.tensor([0.75, 0.75, 0.5, -1.0], dtype=torch.float64)
    ratio, decisive = newton.decrease_ratio(loss, trial, predicted, torch.full((4,), 0.25, dtype=torch.float64))
    # (actual + slack) / (max(predicted, 0) + slack); decisive: actual decrease beyond the slack
    assert ratio.tolist() == [0.75, 0.5, 0.0, 3.0]
    assert decisive.tolist() == [True, False, False, True]


def test_a_correction_goes_to_active_configurations_whose_gradient_grew():
    active = torch.tensor([True, True, False, True])
    gradient = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # 1, 3, 1, 2
    trial_norm = torch.tensor([2.0, 2.5, 5.0, 2.0], dtype=torch.float64)
    assert newton.off_the_valley(active, trial_norm, gradient).tolist() == [True, False, False, False]


def test_a_step_is_taken_on_a_good_ratio_and_a_decisive_decrease_or_a_lower_gradient():
    ratio = torch.tensor([0.5, 0.5, 0.5, 0.05, 0.1, 0.5, 2.0], dtype=torch.float64)
    decisive = torch.tensor([True, False, False, True, True, False, False])
    trial_norm = torch.tensor([9.0, 0.5, 2.0, 0.5, 0.5, 1.0, 0.5], dtype=torch.float64)
    grad_norm = torch.ones(7, dtype=torch.float64)
    taken = newton.step_taken(ratio, decisive, trial_norm, grad_norm)
    assert taken.tolist() == [True, True, False, False, False, False, True]


def test_the_route_says_newton_exactly_when_newton_steps_were_taken():
    """Just below the gradient at which L-BFGS hands over, some configurations pass the test at their first look
    in the Newton finish (route "lbfgs", no Newton step), the others after Newton steps (route "newton")."""
    tolerance = 0.9 * optimise.NEWTON_SWITCH_TOL[torch.float64]
    grid = phase.simulated_grid(np.linspace(0, 1, 6), np.geomspace(0.05, 2, 6), 2, 2, 2, seed=0, grad_tol=tolerance)
    assert grid["converged"].all()
    newton_steps = grid["newton_iterations"] > 0
    assert newton_steps.any() and not newton_steps.all()
    assert ((grid["route"] == "newton") == newton_steps).all()
    assert ((grid["route"] == "lbfgs") == ~newton_steps).all()


@pytest.mark.parametrize("extra", [1, 2, 3, 5])
def test_a_capped_run_reports_the_loss_and_gradient_of_the_points_it_returns(extra):
    """Stopped by the iteration cap right after Newton steps, the reported loss and gradient norm are those at
    the returned points (re-evaluated there), for every configuration."""
    loss_fn, derivatives = indexed_combined_problem(
        torch.linspace(0.2, 0.8, 4, dtype=torch.float64), torch.linspace(0.1, 1.0, 4, dtype=torch.float64), 2, 2, 2
    )
    x0 = sphere.random_start((4,), 8, 4, seed=3)
    free = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=derivatives)
    lbfgs_steps = free.config_iterations - free.newton_iterations
    cap = int(lbfgs_steps.min()) + extra
    capped = optimise.minimise_on_sphere(loss_fn, x0, indexed=True, derivatives=derivatives, max_iter=cap)
    z = capped.z.reshape(4, -1)
    again = sphere.SphereProblem(loss_fn, x0.shape, indexed=True).evaluate(z, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(capped.loss, again[0], rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(capped.grad_norm, again[2], rtol=1e-9, atol=1e-15)


def test_settling_needs_a_small_gradient_and_a_last_change_small_relative_to_the_loss():
    """Book.settle: gradient norm <= grad_tol and |last decrease| <= step_tol max(1, |loss|)."""
    z = torch.zeros(4, 2, dtype=torch.float64)
    book = sphere.Book(None, z, grad_tol=1e-9, step_tol=1e-12, max_iter=10, progress=None)
    book.last_decrease = torch.tensor([3e-12, 1.5e-12, 4e-12, 0.0], dtype=torch.float64)  # 4e-12 = 1e-12 x 4 exactly
    loss = torch.tensor([4.0, 0.5, -4.0, 4.0], dtype=torch.float64)
    grad_norm = torch.tensor([1e-9, 1e-10, 1e-10, 2e-9], dtype=torch.float64)
    done = book.settle(torch.ones(4, dtype=torch.bool), loss, grad_norm)
    assert done.tolist() == [True, False, True, False]
    assert book.settled.tolist() == [True, False, True, False]


def _refusing_problem(scales):
    """Configurations of one vector on the circle whose every Newton step is refused: the loss is constant (no
    decrease is ever decisive) and the gradient, of norm scale exp(-theta) along the circle, grows along every
    step (-g / shift moves theta down). The Hessian is 0 (the gradient is tangent, so no curvature term)."""
    scales = torch.as_tensor(scales, dtype=torch.float64)

    def derivatives(z, index):
        x, y = z[..., 0], z[..., 1]
        size = (scales[index][:, None] * torch.exp(-torch.atan2(y, x)))[..., None]
        return z.new_zeros(len(index)), size * torch.stack((-y, x), dim=-1), lambda v, rows=None: torch.zeros_like(v)

    def loss_fn(z, index):
        return z.new_zeros(len(index))

    return sphere.SphereProblem(loss_fn, (len(scales), 1, 2), indexed=True, derivatives=derivatives)


def test_a_configuration_whose_every_step_is_refused_stalls_once_its_shift_passes_one_over_eps():
    """lambda starts at 1 and grows x4 per refused step; the run stops a configuration (stalled, not moved) at the
    first refusal with shift lambda |g| > 1/eps = 2^52. |g| = 1: lambda 4^26 = 2^52 is not beyond, 4^27 is (step
    28); |g| = 2: 2 x 4^26 = 2^53 is (step 27). A configuration not running is left alone."""
    problem = _refusing_problem([1.0, 2.0, 1.0])
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # theta = 0: |g| = 1, 2
    book = sphere.Book(problem, z, grad_tol=1e-9, step_tol=1e-12, max_iter=100, progress=None)
    running = torch.tensor([True, True, False])
    z_end, loss, grad_norm, stalled = newton.newton_finish(problem, z, running, book, hessian="hvp")
    assert stalled.tolist() == [True, True, False]
    assert book.newton_counts.tolist() == [28, 27, 0]
    assert book.counts.tolist() == [28, 27, 0]
    torch.testing.assert_close(z_end, z, rtol=0, atol=0)
    assert grad_norm.tolist() == [1.0, 2.0, 0.0] and loss.tolist() == [0.0, 0.0, 0.0]


def test_a_step_taken_at_a_shift_beyond_one_over_eps_does_not_stall():
    """Only a refused step can stall: the linear loss -2^53 <a, z> from z orthogonal to a has |g| = 2^53, so its
    first shift (lambda = 1) is beyond 1/eps, and its first step (-g / |g|, 45 degrees) is taken."""
    scale, a = 2.0**53, torch.tensor([1.0, 0.0], dtype=torch.float64)

    def derivatives(z, index):
        return -scale * (z @ a)[:, 0], (-scale * a).expand_as(z), lambda v, rows=None: torch.zeros_like(v)

    problem = sphere.SphereProblem(None, (1, 1, 2), indexed=True, derivatives=derivatives)
    z = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    book = sphere.Book(problem, z, grad_tol=1e-9, step_tol=1e-12, max_iter=1, progress=None)
    z_end, _, _, stalled = newton.newton_finish(problem, z, torch.tensor([True]), book, hessian="hvp")
    assert stalled.tolist() == [False]
    assert book.last_decrease.item() > 0.5 * scale and z_end[0, 0] > 0.5
