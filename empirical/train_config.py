"""The configuration of one training run (`TrainConfig`), validated when built, and its prototype geometry.

`TrainConfig` checks every field on construction and raises ValueError naming the field, so a command can
build every run's config before anything is loaded. `prototypes` and `prototype_gram` give the fixed
prototypes of the configured geometry (`theory.simplex`) and their Gram, the target of DeltaG*.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from empirical.data import AUGMENTATIONS, DATASETS, N_CLASSES, PROFILES, require_imbalance
from empirical.models import MODELS
from theory import simplex
from theory.arguments import (
    require_alpha,
    require_choice,
    require_int,
    require_positive_real,
    require_tau,
    require_variant,
)

LOSSES = ("prototype", "combined")
ANCHORS = ("data", "all")
GEOMETRIES = ("etf", "orthogonal", "minority_spread")
AUGMENTATION_CHOICES = ("auto", *AUGMENTATIONS)
#: Config fields that may change between a checkpoint and the run that resumes from it.
RESUMABLE_CHANGES = ("device", "data_dir", "download", "compile")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run. The defaults are a small CPU run on digits.

    dataset, data_dir, download: which images (`empirical.data.DATASETS`) and where.
    imbalance (R >= 1), profile ("step" | "exp"), subset_seed: the imbalanced training subset.
    loss ("prototype" | "combined"); n_proto, anchors, geometry, spread: prototype SCL;
    alpha, variant: the combined loss; tau: temperature of either.
    model ("resnet18" | "small_cnn"), width (small_cnn), dim (embedding d), final_relu.
    augmentation: "auto" | "supcon" | "crop_flip" | "digits" (`empirical.data.AUGMENTATIONS`).
    epochs, batch_size (global), lr (peak), momentum, weight_decay, warmup_epochs: SGD
    with linear warm-up then cosine decay, per step.
    seed: network initialisation, batch order and augmentation. device: "cpu", "cuda", "cuda:k".
    eval_every: evaluate the geometry every this many epochs (and after the last).
    compile: train through torch.compile (same maths; may be switched on or off on resume).
    """

    dataset: str = "digits"
    data_dir: str = "data"
    download: bool = False
    imbalance: float = 1.0
    profile: str = "step"
    subset_seed: int = 0
    loss: str = "prototype"
    n_proto: int = 0
    anchors: str = "data"
    geometry: str = "etf"
    spread: float = 0.5
    alpha: float = 0.0
    variant: str = "instance"
    tau: float = 0.1
    model: str = "small_cnn"
    width: int = 16
    dim: int = 32
    final_relu: bool = False
    augmentation: str = "auto"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 1
    compile: bool = False

    def __post_init__(self):
        require_choice("dataset", self.dataset, DATASETS)
        require_choice("profile", self.profile, PROFILES)
        require_choice("loss", self.loss, LOSSES)
        require_choice("anchors", self.anchors, ANCHORS)
        require_choice("geometry", self.geometry, GEOMETRIES)
        require_choice("model", self.model, MODELS)
        require_choice("augmentation", self.augmentation, AUGMENTATION_CHOICES)
        require_variant(self.variant, 2)
        require_imbalance(self.imbalance)
        require_alpha(self.alpha)
        require_tau(self.tau)
        spread = require_positive_real("spread", self.spread, allow_zero=True)
        if spread > 1:
            raise ValueError(f"spread must lie in [0, 1], got {self.spread}")
        for name, minimum in [
            ("subset_seed", 0),
            ("n_proto", 0),
            ("width", 1),
            ("dim", 1),
            ("epochs", 1),
            ("batch_size", 2),
            ("warmup_epochs", 0),
            ("seed", 0),
            ("eval_every", 1),
        ]:
            require_int(name, getattr(self, name), minimum)
        require_positive_real("lr", self.lr)
        require_positive_real("weight_decay", self.weight_decay, allow_zero=True)
        if not 0 <= require_positive_real("momentum", self.momentum, allow_zero=True) < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        for name in ("download", "final_relu", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean, got {getattr(self, name)!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}") from None
        require_choice("device type", device.type, ("cpu", "cuda"))
        m = N_CLASSES[self.dataset]
        if self.loss == "prototype" and self.n_proto > 0:
            prototypes(self, m)  # the prototypes must fit in dim: ValueError naming dim otherwise
        if self.loss == "combined" and self.batch_size <= m:
            raise ValueError(
                f"batch_size must exceed the number of classes ({m}) for the combined loss, so that "
                f"every batch holds two images of one class (L_sup needs a pair), got {self.batch_size}"
            )

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def augmentation_name(self) -> str:
        """The recipe used: the configured one, or for "auto" "digits" on digits and "supcon" otherwise."""
        if self.augmentation != "auto":
            return self.augmentation
        return "digits" if self.dataset.startswith("digits") else "supcon"


def prototypes(config: TrainConfig, n_classes: int) -> np.ndarray:
    """The fixed prototypes w_c as rows, (m, dim), in the configured geometry."""
    if config.geometry == "etf":
        return simplex.etf(n_classes, config.dim)
    if config.geometry == "orthogonal":
        return simplex.orthogonal_frame(n_classes, config.dim)
    return simplex.minority_spread(n_classes, config.dim, config.spread)


def prototype_gram(config: TrainConfig, n_classes: int) -> np.ndarray:
    """The Gram W^T W of the configured prototype geometry, (m, m): the target of DeltaG* (needs no dim)."""
    if config.geometry == "etf":
        return simplex.etf_gram(n_classes)
    if config.geometry == "orthogonal":
        return np.eye(n_classes)
    return simplex.minority_spread_gram(n_classes, config.spread)
