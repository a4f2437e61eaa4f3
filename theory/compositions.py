"""Step-imbalanced class sizes and Paper A's compositions (docs/notation.md, docs/prototypes.md).

One rule for minority sizes everywhere: with imbalance ratio R >= 1, the majority classes
(the first ceil(m/2) class ids) keep `majority` samples and every minority class keeps
max(1, floor(majority / R)).

Paper A's prototypes act per batch, so its claims are checked at two compositions of
step-imbalanced CIFAR-10 (m = 10, majority 5000):
* "full": the whole training set, 5000 and floor(5000 / R) per class;
* "batch": a batch of `batch_size` drawn from it holds in expectation batch_size N_c / N
  images of class c; rounded to the nearest integer and at least 1 (R = 100, 1024: 203 and 2;
  R = 10: 186 and 19).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from theory.arguments import require_choice, require_int, require_positive_real
from theory.simplex import majority_classes

COMPOSITIONS = ("full", "batch")

#: CIFAR-10 as Paper A uses it: 10 classes, 5000 training images per majority class.
CIFAR10_CLASSES, CIFAR10_MAJORITY = 10, 5000


def minority_size(majority: int, imbalance: float) -> int:
    """max(1, floor(majority / R)) for R >= 1."""
    majority = require_int("majority", majority, 1)
    ratio = require_positive_real("imbalance", imbalance)
    if ratio < 1:
        raise ValueError(f"imbalance R must be >= 1 (majority / minority size), got {imbalance}")
    return max(1, math.floor(majority / ratio))


def step_class_sizes(n_classes: int, majority: int, imbalance: float) -> tuple[int, ...]:
    """Class sizes of a step imbalance: `majority` for the first ceil(m/2) ids, `minority_size` for the rest."""
    m = require_int("n_classes", n_classes, 2)
    sizes = np.full(m, minority_size(majority, imbalance))
    sizes[majority_classes(m)] = majority
    return tuple(int(size) for size in sizes)


def batch_composition(class_sizes: Sequence[int], batch_size: int) -> tuple[int, ...]:
    """Expected class counts of a batch drawn from a set: round(batch_size N_c / N), at least 1."""
    sizes = [require_int(f"class_sizes[{c}]", size, 1) for c, size in enumerate(class_sizes)]
    batch_size = require_int("batch_size", batch_size, 1)
    total = sum(sizes)
    return tuple(max(1, round(batch_size * size / total)) for size in sizes)


def cifar10_composition(imbalance: float, composition: str = "full", batch_size: int = 1024) -> tuple[int, ...]:
    """Paper A's CIFAR-10 class sizes at R: the full training set or one batch's expected counts."""
    require_choice("composition", composition, COMPOSITIONS)
    sizes = step_class_sizes(CIFAR10_CLASSES, CIFAR10_MAJORITY, imbalance)
    return sizes if composition == "full" else batch_composition(sizes, batch_size)
