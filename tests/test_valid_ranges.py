"""Temperatures outside theory.arguments.TAU_RANGE are refused, never answered with a wrong number."""

import numpy as np
import pytest

from simulate import certify_command, exchangeable
from theory import ssem
from theory.arguments import TAU_RANGE


@pytest.mark.parametrize("tau", [1e-17, 1e-4, 1e4, 1e16])
def test_closed_forms_refuse_tau_outside_the_exact_range(tau):
    # Outside the range restricted_loss returned 0.0 (tau = 1e-17) and optimal_beta read collapse
    # at alpha = 1 (tau = 1e16, where tau*(1) is infinite): now a ValueError names the range.
    with pytest.raises(ValueError, match=r"tau must lie in \[0.001, 1000\]"):
        ssem.restricted_loss(0.5, 0.5, tau, 3, 4)
    with pytest.raises(ValueError, match="tau must lie in"):
        ssem.optimal_beta(1.0, tau, 3, 4)
    with pytest.raises(ValueError, match="tau must lie in"):
        exchangeable.certify_supcon((3, 3), tau)


@pytest.mark.parametrize("tau", TAU_RANGE)
def test_the_ends_of_the_range_are_exact(tau):
    # At the ends the closed form still agrees with the exchangeable certificate.
    beta = float(ssem.optimal_beta(0.6, tau, 3, 4))
    closed = float(ssem.restricted_loss(beta, 0.6, tau, 3, 4))
    assert np.isfinite(closed)
    assert exchangeable.certify_combined(0.6, tau, 3, 4, 2).minimum == pytest.approx(closed, rel=1e-9)


def test_command_line_refuses_tau_outside_the_range(capsys):
    with pytest.raises(SystemExit) as exit_info:
        certify_command.parse(["supcon", "--class-sizes", "3,3", "--tau", "1e-4"])
    assert exit_info.value.code == 2
    assert "--tau '1e-4': must lie in [0.001, 1000.0]" in capsys.readouterr().err
