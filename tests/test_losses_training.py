"""The training-loop losses of `simulate.losses` (`prototype_supcon_training_loss`, `combined_training_loss`):
their defaults and the checks they make once, when built. Values against the naive references of tests/naive.py
(plain loops over anchors and pairs, prototype copies written out)."""

import naive
import pytest
import torch

from simulate import losses

TAU = 0.4


def _unit(shape, seed):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1, keepdim=True)


def _batch(m=3, n=2, p=2, d=5):
    labels, instances = losses.balanced_layout(m, n, p)
    return _unit((m * n * p, d), seed=1), labels, instances


def test_prototype_training_loss_defaults_to_data_anchors():
    z, labels, _ = _batch()
    prototypes = _unit((3, 5), seed=2)
    value = losses.prototype_supcon_training_loss(prototypes, 4, TAU)(z, labels)
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), prototypes.tolist(), 4, TAU, "data")
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_prototype_training_loss_without_prototypes_is_plain_supcon():
    z, labels, _ = _batch()
    value = losses.prototype_supcon_training_loss(None, 0, TAU)(z, labels)
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), [], 0, TAU, "data")
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_prototype_training_loss_accepts_half_precision_prototypes():
    z, labels, _ = _batch()
    prototypes = _unit((3, 5), seed=2).to(torch.float16)
    value = losses.prototype_supcon_training_loss(prototypes, 2, TAU, "all")(z, labels)
    exact = prototypes.double().tolist()  # the half-precision values, read exactly
    expected = naive.prototype_supcon_loss(z.tolist(), labels.tolist(), exact, 2, TAU, "all")
    assert value.dtype == torch.float64 and value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "prototypes",
    [None, torch.ones(3), torch.ones(3, 5, dtype=torch.long), [[1.0, 0.0]]],
    ids=["none", "one-dimensional", "integer", "a list"],
)
def test_prototype_training_loss_refuses_bad_prototypes_when_built(prototypes):
    with pytest.raises(ValueError, match=r"^prototypes must be a floating tensor of shape \(m, d\), got "):
        losses.prototype_supcon_training_loss(prototypes, 1, TAU)


def test_prototype_training_loss_refuses_bad_arguments_by_name():
    prototypes = _unit((3, 5), seed=2)
    with pytest.raises(ValueError, match=r"^n_proto must be an integer >= 0, got -1"):
        losses.prototype_supcon_training_loss(prototypes, -1, TAU)
    with pytest.raises(ValueError, match=r"^anchors must be one of "):
        losses.prototype_supcon_training_loss(prototypes, 1, TAU, "both")


def test_combined_training_loss_defaults_to_the_instance_variant():
    z, labels, instances = _batch()
    value = losses.combined_training_loss(0.3, TAU)(z, labels, instances)
    expected = naive.combined_loss(z.tolist(), labels.tolist(), instances.tolist(), 0.3, TAU, "instance")
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_combined_training_loss_refuses_an_unknown_variant_by_name():
    with pytest.raises(ValueError, match=r"^variant must be one of "):
        losses.combined_training_loss(0.3, TAU, "views")
