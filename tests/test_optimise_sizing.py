"""Sizing a run before it starts (`simulate.optimise`): the memory model, the typical number of evaluations and
the timing probe. Each expected value is worked out here from the model the docstring states."""

import time

import pytest
import torch

from simulate import optimise


def documented_memory(n_configs, n_vectors, dim, *, element, method, exact_hessian, history):
    """The model of `estimate_memory`'s docstring, term by term."""
    variables = n_vectors * dim
    lbfgs_and_work = (2 * history + 12) * n_configs * variables * element
    graph_tensors = 40 if method == "newton" else 12
    similarities = graph_tensors * n_configs * n_vectors * max(n_vectors, dim) * element
    total = lbfgs_and_work + similarities
    if method == "newton":
        total += 8 * n_configs * variables * element  # the CG vectors
        if exact_hessian:
            total += n_configs * variables**2 * element + optimise.HESSIAN_CHUNK_BYTES
    return total


@pytest.mark.parametrize(
    ("n_configs", "n_vectors", "dim", "dtype", "method", "hessian", "history", "exact"),
    [
        (3, 5, 30, torch.float64, "newton", "hvp", 10, False),  # N < d
        (3, 30, 5, torch.float64, "newton", "hvp", 10, False),  # N > d
        (2, 30, 5, torch.float32, "newton", "hvp", 4, False),
        (3, 5, 30, torch.float64, "lbfgs", "auto", 7, False),
        (3, 5, 30, torch.float64, "newton", "matrix", 10, True),
        (3, 4, 5, torch.float64, "newton", "auto", 10, True),  # 20 variables: auto builds the exact Hessian
        (3, 11, 10, torch.float64, "newton", "auto", 10, False),  # 110 variables: auto uses products
    ],
)
def test_memory_estimate_is_the_documented_model(n_configs, n_vectors, dim, dtype, method, hessian, history, exact):
    element = torch.empty((), dtype=dtype).element_size()
    expected = documented_memory(
        n_configs, n_vectors, dim, element=element, method=method, exact_hessian=exact, history=history
    )
    options = {"dtype": dtype, "method": method, "hessian": hessian, "history": history}
    assert optimise.estimate_memory(n_configs, n_vectors, dim, **options) == expected


def test_memory_estimate_switches_to_the_exact_hessian_at_the_documented_size():
    limit = optimise.EXACT_HESSIAN_MAX_VARIABLES
    at_limit, above = optimise.estimate_memory(1, 1, limit), optimise.estimate_memory(1, 1, limit + 1)
    exact_hessian = limit**2 * 8 + optimise.HESSIAN_CHUNK_BYTES
    assert at_limit - optimise.estimate_memory(1, 1, limit, hessian="hvp") == exact_hessian
    assert above == optimise.estimate_memory(1, 1, limit + 1, hessian="hvp")


def test_memory_estimate_defaults_are_a_history_of_ten_in_float64():
    expected = documented_memory(3, 11, 10, element=8, method="newton", exact_hessian=False, history=10)
    assert optimise.estimate_memory(3, 11, 10) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 4, 3), "^n_configs must"),
        ((2, 0, 3), "^n_vectors must"),
        ((2, 4, 0), "^dim must"),
        ((2.5, 4, 3), "^n_configs must"),
    ],
)
def test_memory_estimate_refuses_bad_sizes(arguments, message):
    with pytest.raises(ValueError, match=message):
        optimise.estimate_memory(*arguments)


def test_memory_estimate_refuses_unknown_method_or_hessian():
    with pytest.raises(ValueError, match="^method must be one of"):
        optimise.estimate_memory(2, 4, 3, method="adam")
    with pytest.raises(ValueError, match="^hessian must be one of"):
        optimise.estimate_memory(2, 4, 3, hessian="exact")


@pytest.mark.parametrize("max_iter", [1, 7, optimise.LBFGS_BUDGET, 5 * optimise.LBFGS_BUDGET])
def test_typical_evaluations_is_the_documented_count(max_iter):
    # L-BFGS: ~1.2 evaluations per iteration; Newton: L-BFGS up to its budget, then ~30 steps of ~25 products
    assert optimise.typical_evaluations(max_iter, "lbfgs") == int(1.2 * max_iter)
    assert optimise.typical_evaluations(max_iter) == int(1.2 * min(optimise.LBFGS_BUDGET, max_iter) + 30 * 25)


def test_typical_evaluations_refuses_bad_arguments():
    with pytest.raises(ValueError, match="^max_iter must be an integer >= 1"):
        optimise.typical_evaluations(0)
    with pytest.raises(ValueError, match="^method must be one of"):
        optimise.typical_evaluations(10, "adam")


class RecordingLoss:
    """A loss that records its calls (the vectors' norms and the index it was given) and sleeps `delays[k]`
    seconds on its k-th call."""

    def __init__(self, delays=()):
        self.delays, self.norms, self.indices = list(delays), [], []

    def __call__(self, z, index=None):
        self.norms.append(z.detach().norm(dim=-1))
        self.indices.append(index)
        if len(self.norms) <= len(self.delays):
            time.sleep(self.delays[len(self.norms) - 1])
        return (z[..., 0] * z[..., 1]).sum(-1)


def test_evaluation_probe_is_the_fastest_of_its_repeats_at_unit_vectors():
    loss = RecordingLoss(delays=[0.3])
    x0 = 3.0 * optimise.random_start((2,), 4, 3, seed=0)
    seconds = optimise.seconds_per_evaluation(loss, x0, repeats=3)
    assert len(loss.norms) == 3
    assert 0 < seconds < 0.15  # the slow first call is not the one reported
    for norms in loss.norms:
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_evaluation_probe_defaults_to_two_plain_calls():
    loss = RecordingLoss()
    optimise.seconds_per_evaluation(loss, optimise.random_start((3,), 4, 3, seed=0))
    assert len(loss.norms) == 2 and loss.indices == [None, None]


def test_evaluation_probe_passes_the_index_in_indexed_mode():
    loss = RecordingLoss()
    optimise.seconds_per_evaluation(loss, optimise.random_start((3,), 4, 3, seed=0), indexed=True, repeats=1)
    assert len(loss.norms) == 1 and loss.indices[0].tolist() == [0, 1, 2]
    assert loss.norms[0].shape == (3, 4)


def test_evaluation_probe_refuses_zero_repeats():
    with pytest.raises(ValueError, match="^repeats must be an integer >= 1"):
        optimise.seconds_per_evaluation(RecordingLoss(), optimise.random_start((1,), 4, 3, seed=0), repeats=0)
