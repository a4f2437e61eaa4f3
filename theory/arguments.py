"""Validation of public arguments, shared by every layer.

Each check raises ``ValueError`` whose message names the argument, the value
received and the range that is allowed, and returns the value in
the form the caller computes with.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike

VARIANTS = ("instance", "supcon")

#: Anchor modes of prototype SCL: the batch samples only, or the prototype copies too (docs/losses.md#prototype-scl).
ANCHOR_MODES = ("data", "all")


def require_int(name: str, value: object, minimum: int) -> int:
    """An integer ``>= minimum`` (bools are refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _as_float_array(name: str, value: ArrayLike) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number or an array of them, got {value!r}") from None
    return array


def require_alpha(alpha: ArrayLike) -> np.ndarray:
    """alpha (scalar or array) in [0, 1], returned as a float array."""
    array = _as_float_array("alpha", alpha)
    bad = ~((array >= 0.0) & (array <= 1.0))  # also catches NaN
    if bad.any():
        raise ValueError(f"alpha must lie in [0, 1], got {float(array[bad].flat[0])!r}")
    return array


def require_tau(tau: ArrayLike) -> np.ndarray:
    """tau (scalar or array) finite and > 0, returned as a float array."""
    array = _as_float_array("tau", tau)
    bad = ~(np.isfinite(array) & (array > 0.0))
    if bad.any():
        raise ValueError(f"tau must be finite and > 0, got {float(array[bad].flat[0])!r}")
    return array


#: Temperatures where the suite's closed forms, losses and certificates are exact in float64
#: (docs/notation.md#valid-ranges). Below 1e-3 the O(1/tau) terms of a loss cancel to rounding
#: (`theory.ssem.restricted_loss` returned 0.0 at tau = 1e-17); above 1e3 the differences between
#: candidate optima, O(1/tau), fall below rounding (`optimal_beta` read collapse at alpha = 1,
#: tau = 1e16, where no finite tau collapses). Outside it: ValueError, never a silently wrong number.
TAU_RANGE = (1e-3, 1e3)


def require_tau_in_range(tau: ArrayLike) -> np.ndarray:
    """tau (scalar or array) in `TAU_RANGE`, returned as a float array."""
    array = require_tau(tau)
    low, high = TAU_RANGE
    bad = (array < low) | (array > high)
    if bad.any():
        raise ValueError(
            f"tau must lie in [{low:g}, {high:g}] (where the numerics are exact), got {float(array[bad].flat[0])!r}"
        )
    return array


def require_positive_real(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite real scalar > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return float(value)


def require_choice(name: str, value: object, choices: Collection[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def require_variant(variant: str, n_views: int) -> str:
    """A loss variant of Paper B's combined loss (docs/losses.md); ``"supcon"`` needs at least two views."""
    require_choice("variant", variant, VARIANTS)
    if variant == "supcon" and n_views < 2:
        raise ValueError(f"n_views must be >= 2 for variant 'supcon', got {n_views}")
    return variant


def require_balanced_sizes(n_classes: int, n_per_class: int, n_views: int = 1) -> tuple[int, int, int]:
    """(m, n, p) with m >= 2, n >= 2, p >= 1."""
    return (
        require_int("n_classes", n_classes, 2),
        require_int("n_per_class", n_per_class, 2),
        require_int("n_views", n_views, 1),
    )


def require_class_sizes(class_sizes: object, minimum: int) -> tuple[int, ...]:
    """A non-empty sequence of integers >= minimum (samples per class), as a tuple."""
    if isinstance(class_sizes, (str, bytes)) or not hasattr(class_sizes, "__len__"):
        raise ValueError(f"class_sizes must be a sequence of integers, got {class_sizes!r}")
    if len(class_sizes) < 1:
        raise ValueError("class_sizes must name at least one class, got an empty sequence")
    return tuple(require_int(f"class_sizes[{c}]", size, minimum) for c, size in enumerate(class_sizes))


def require_scalar(name: str, value: np.ndarray) -> float:
    """A validated alpha or tau array that must be one number (one program per value), as a float."""
    if value.ndim != 0:
        raise ValueError(f"{name} must be a scalar (one program per value), got an array of shape {value.shape}")
    return float(value)
