"""Hypothesis profiles: deterministic and bounded on CI, a little wider locally.

Select with HYPOTHESIS_PROFILE=<name>; CI=true selects "ci".
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,  # the same examples every run: a red CI is reproducible
    max_examples=25,
    deadline=None,  # first calls pay for torch/sympy warm-up
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev"))

# The suite's tensors are small: with two intra-op threads torch mostly waits (and spins when the
# machine is shared, measured 10-16x slower). One thread is faster here and deterministic.
import torch  # noqa: E402

torch.set_num_threads(1)
