"""Tests of empirical/models.py: the CIFAR ResNet-18 stem, the projector, unit-norm outputs."""

import pytest
import torch
from torch import nn

from empirical import models


def test_resnet18_has_the_cifar_stem_and_no_classifier():
    backbone = models.resnet18_backbone()
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, nn.Identity) and isinstance(backbone.fc, nn.Identity)
    backbone.eval()
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 512)
        # The stem keeps 32x32 into the first residual stage.
        stem = backbone.relu(backbone.bn1(backbone.conv1(torch.randn(1, 3, 32, 32))))
        assert backbone.layer1(backbone.maxpool(stem)).shape == (1, 64, 32, 32)


def test_resnet18_model_projects_to_unit_vectors():
    torch.manual_seed(0)
    model = models.build_model("resnet18", in_channels=3, dim=128)
    layers = list(model.projector)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (512, 512, 128)
    z = model(torch.randn(4, 3, 32, 32))
    assert z.shape == (4, 128) and models.feature_dim(model) == 128
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-6)
    # About 11.2M backbone parameters plus the 512-512-128 projector.
    assert 11_100_000 < models.count_parameters(model) < 11_600_000


@pytest.mark.parametrize("final_relu", [False, True])
def test_small_cnn_on_digits(final_relu):
    torch.manual_seed(0)
    model = models.build_model("small_cnn", in_channels=1, dim=16, final_relu=final_relu, width=8)
    z = model(torch.randn(6, 1, 8, 8))
    assert z.shape == (6, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(6), atol=1e-6)
    # Without the final ReLU some coordinates are negative; with it none are.
    assert bool((z >= 0).all()) == final_relu


def test_bf16_forward_returns_float32_unit_vectors():
    torch.manual_seed(0)
    model = models.build_model("small_cnn", in_channels=3, dim=8, width=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model(torch.randn(4, 3, 16, 16))
    assert z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-6)


def test_bad_model_arguments_are_rejected_by_name():
    with pytest.raises(ValueError, match="model"):
        models.build_model("vgg", in_channels=3)
    with pytest.raises(ValueError, match="width"):
        models.build_model("small_cnn", in_channels=1, width=0)
    with pytest.raises(ValueError, match="dim"):
        models.build_model("small_cnn", in_channels=1, dim=0)
