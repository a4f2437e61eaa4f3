"""One tolerance table per dtype for the tests that compare two computations of the same quantity.

float64 agrees to ~1e-10 after the log-sum-exps and Gram products of the suite (a few hundred ulps of
quantities of order 1); float32 resolves ~1e-7 per operation, so 1e-5 after the same chains.
"""

import torch

#: keyword arguments for `torch.testing.assert_close`, by dtype
BY_DTYPE = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
}
