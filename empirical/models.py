"""Networks of the empirical route: a backbone, a two-layer projector, unit-norm output.

* `resnet18_backbone`: torchvision's ResNet-18 with the CIFAR stem (3x3 first
  convolution, stride 1, no max-pool) and no classifier; features (N, 512).
* `small_cnn_backbone`: three convolution blocks for 8x8 digits (or any small image);
  features (N, 4 width).
* `Projector`: Linear(in, hidden) -> BatchNorm -> ReLU -> Linear(hidden, dim).
* `ContrastiveNet`: z = normalise(projector(backbone(x))), optionally with a ReLU before
  the normalisation (the setting of arXiv 2306.07960, where embeddings are non-negative).
* `CrossProcessBatchNorm`: BatchNorm over the global batch of all processes on any
  backend (torch's SyncBatchNorm is GPU-only), so a multi-process CPU run normalises
  exactly as one process does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18

from theory.arguments import require_choice, require_int

MODELS = ("resnet18", "small_cnn")


def resnet18_backbone(in_channels: int = 3) -> nn.Module:
    """ResNet-18 for 32x32 images: (N, C, H, W) -> (N, 512).

    The ImageNet stem (7x7 stride-2 convolution, max-pool) would shrink a 32x32 image
    to 8x8 before the first block; the CIFAR stem keeps 32x32.
    """
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(
        require_int("in_channels", in_channels, 1), 64, kernel_size=3, stride=1, padding=1, bias=False
    )
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def small_cnn_backbone(in_channels: int = 1, width: int = 32) -> nn.Module:
    """A small CNN: (N, C, H, W) -> (N, 4 width); conv blocks at width, 2 width, 4 width,
    a 2x2 max-pool after the first two, global average pooling at the end."""
    c = require_int("in_channels", in_channels, 1)
    w = require_int("width", width, 1)
    return nn.Sequential(
        _conv_block(c, w),
        _conv_block(w, 2 * w),
        nn.MaxPool2d(2),
        _conv_block(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class Projector(nn.Sequential):
    """Two-layer projection head: Linear(in, hidden) -> BN -> ReLU -> Linear(hidden, dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, dim: int):
        super().__init__(
            nn.Linear(require_int("in_dim", in_dim, 1), require_int("hidden_dim", hidden_dim, 1)),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, require_int("dim", dim, 1)),
        )


class ContrastiveNet(nn.Module):
    """Backbone, projector and L2 normalisation: x (N, C, H, W) -> z (N, dim) unit rows, float32.

    With ``final_relu`` the projector's output passes a ReLU before normalisation, so
    every z lies in the non-negative orthant. The normalisation runs in float32 so that
    a bf16 forward still returns unit vectors to float32 precision.
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, final_relu: bool = False):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.final_relu = bool(final_relu)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_embedding(x)[1]

    def features_and_embedding(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(h, z): the backbone features h (N, F) and the embedding z (N, dim) of `forward`, from one pass."""
        h = self.backbone(x)  # (N, F)
        p = self.projector(h)  # (N, dim)
        if self.final_relu:
            p = F.relu(p)
        return h, F.normalize(p.float(), dim=-1)


def build_model(
    name: str, in_channels: int, dim: int = 128, final_relu: bool = False, width: int = 32
) -> ContrastiveNet:
    """`ContrastiveNet` with the named backbone.

    resnet18: 512 -> 512 -> BN -> ReLU -> dim projector (Paper A's). small_cnn (width w):
    4w -> 4w -> BN -> ReLU -> dim projector. Parameters are initialised from torch's
    global generator: seed it (or fork it) before calling for a reproducible network.
    """
    require_choice("model", name, MODELS)
    if name == "resnet18":
        backbone, features = resnet18_backbone(in_channels), 512
    else:
        backbone, features = small_cnn_backbone(in_channels, width), 4 * require_int("width", width, 1)
    return ContrastiveNet(backbone, Projector(features, features, dim), final_relu)


def feature_dim(model: ContrastiveNet) -> int:
    """Output dimension d of the network's embeddings."""
    return model.projector[-1].out_features


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _SumOverProcesses(torch.autograd.Function):
    """y = sum over processes of x (all-reduce); its gradient is again the sum over processes.

    Each process's loss depends on y, so d(sum of losses)/dx on one process is the sum of
    every process's dL/dy.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1d or 2d) whose training statistics are those of the global batch across processes.

    In training, with a process group of more than one process: per channel,
    mean = sum x / N and var = sum x^2 / N - mean^2 over the N values of all processes
    (one differentiable all-reduce of [sum x, sum x^2, count]), y = (x - mean) / sqrt(var + eps)
    scaled and shifted; running statistics updated with the unbiased variance, as
    torch's BatchNorm. The all-reduce's backward sums the statistics' gradients over
    processes, so with DDP the gradient equals the one-process gradient. Otherwise it
    is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"CrossProcessBatchNorm expects input (N, C, ...), got shape {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = xf.new_full((1,), x.numel() // channels)
        stats = _SumOverProcesses.apply(torch.cat([xf.sum(dims), xf.square().sum(dims), count]))  # (2 C + 1,)
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels : 2 * channels] / total - mean.square()  # biased, as BatchNorm normalises
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * total / (total - 1), self.momentum)
        return y.to(x.dtype)


def cross_process_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by a `CrossProcessBatchNorm` sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CrossProcessBatchNorm):
        if module.momentum is None:
            raise ValueError("BatchNorm momentum must be a number (the cumulative average is not supported), got None")
        replacement = CrossProcessBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        module.add_module(name, cross_process_batchnorm(child))
    return module
