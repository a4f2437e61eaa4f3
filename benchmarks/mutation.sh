#!/usr/bin/env bash
# Mutation testing (issue 12; not part of CI): mutmut over the modules that carry the science (theory/ssem.py,
# theory/prototypes.py, simulate/losses.py, simulate/metrics.py, the optimiser simulate/optimise.py with its
# geometry simulate/sphere.py and Newton finish simulate/newton.py, and the certificates simulate/certify.py and
# simulate/exchangeable.py) at a committed revision, each mutant run against the fast tests that cover it (slow tests and the command-line
# tests, which start a subprocess, are left out).
#
#   benchmarks/mutation.sh [REVISION] [WORKDIR] [MUTANT ...]     (defaults: HEAD, /tmp/scl-mutation, all)
#
# Named mutants (e.g. the survivors of an earlier run, from `mutmut results`) are the only ones run.
# RESUME=1 keeps WORKDIR/mutants from an earlier run: mutmut re-runs only what changed.
# MODULES="simulate/newton.py theory/ssem.py" mutates those modules alone (default: all of the above).
#
# The revision is exported into WORKDIR (git archive), so the working tree is never touched. One
# worker by default (the machines are shared); CHILDREN=2 runs two. Results: `mutmut results` in WORKDIR
# lists the survivors; `mutmut show NAME` prints one. Equivalent mutants are listed in docs/mutation.md
# with a one-line reason each.
set -euo pipefail
revision="${1:-HEAD}"
workdir="${2:-/tmp/scl-mutation}"
mutants=("${@:3}")
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
if [ "${RESUME:-0}" != 1 ]; then rm -rf "$workdir"; fi
mkdir -p "$workdir"
git -C "$root" archive "$revision" | tar -x -C "$workdir"
cd "$workdir"
modules=(${MODULES:-simulate/losses.py simulate/loss_derivatives.py simulate/optimise.py simulate/sphere.py simulate/newton.py
    simulate/certify.py simulate/exchangeable.py simulate/metrics.py theory/ssem.py theory/prototypes.py})
for module in "${modules[@]}"; do
    if [ ! -f "$module" ]; then echo "mutation.sh: no module $module at $revision" >&2; exit 2; fi
done
only_mutate="$(printf '"%s", ' "${modules[@]}")"
cat >> pyproject.toml <<TOML

[tool.mutmut]
source_paths = ["simulate/", "theory/"]
only_mutate = [$only_mutate]
also_copy = ["proofs_checks/", "empirical/", "conftest.py"]
# torch is not fork-safe after it has computed: workers come from a fork server that has only collected
# the tests, not from mutmut's main process, which ran them.
process_isolation = "forkserver"
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not slow", "-k", "not test_cli"]
pytest_add_cli_args_test_selection = [
    "tests/test_ssem.py", "tests/test_simplex.py", "tests/test_prototypes_theory.py", "tests/test_metrics.py",
    "tests/test_losses.py", "tests/test_optimise.py", "tests/test_optimise_restarts.py", "tests/test_certify.py",
    "tests/test_exchangeable.py", "tests/test_optimise_sizing.py", "tests/test_properties.py", "tests/test_losses_training.py",
    "tests/test_loss_derivatives.py", "tests/test_newton_parts.py", "tests/test_book.py",
    "tests/test_certify_mutants.py", "tests/test_exchangeable_mutants.py", "tests/test_theory_mutants.py",
    "proofs_checks/test_b1_closed_forms.py", "proofs_checks/test_b2_alpha_star_limits.py",
    "proofs_checks/test_b3_tau_star.py", "proofs_checks/test_b4_beta_independent_of_views.py",
    "proofs_checks/test_b5_within_variance.py", "proofs_checks/test_b6_ssem_construction.py",
    "proofs_checks/test_b7_guideline.py", "proofs_checks/test_a1_limit.py",
]
TOML
export HYPOTHESIS_PROFILE=ci
"$root/.venv/bin/mutmut" run --max-children "${CHILDREN:-1}" "${mutants[@]}"
"$root/.venv/bin/mutmut" results
