"""The verification report: run the registered claims, render README.md, report.json and figures.

Library side of `python -m proofs_checks` (docs/commands.md#python-m-proofs-checks). It reads the same
registry as `pytest proofs_checks` (`proofs_checks.registry`): every claim's check is run
once, and its outcome is one of

* a verdict of the check: "holds", "fails" (with its counterexample), "not run" (with the reason);
* "error": the check raised (or its module failed to import). The message is kept and
  reported; an error is a defect of the suite, never a verdict on the claim.

This module loads the claims and is the one place the command line imports from; the work lives by kind in

* `report_outcomes`: running the claims and collecting their verdicts, empirical summaries;
* `report_render`: markdown and JSON (pure), the project README's verdict table, writing the report;
* `report_figures` (drawing and saving), `report_figures_ssem` (Paper B) and `report_figures_prototypes`
  (Paper A): the figures, drawn from library calls with small settings. `FIGURES` below attaches each to
  the claims it illustrates; a figure is drawn only when one of them is reported.
"""

from __future__ import annotations

import importlib
import pkgutil

from proofs_checks import registry
from proofs_checks.registry import Claim
from proofs_checks.report_figures import (
    METRIC_LABELS,
    FigureInputs,
    FigureSpec,
    MadeFigure,
    draw_empirical,
    draw_figure,
    empirical_figure,
)
from proofs_checks.report_figures_prototypes import (
    certified_imbalance_figure,
    custom_geometry_figure,
    prototype_delta_g_figure,
    prototype_gram_figure,
    prototype_limit_figure,
)
from proofs_checks.report_figures_ssem import (
    certificate_figure,
    guideline_figure,
    phase_figure,
    restricted_loss_figure,
    supcon_map_figure,
    within_variance_figure,
)
from proofs_checks.report_outcomes import (
    EMPIRICAL_METRICS,
    ERROR,
    STATUSES,
    Outcome,
    claim_order,
    counts,
    empirical_claims,
    empirical_summary,
    error_outcome,
    exit_code,
    find_empirical_summaries,
    order_claims,
    parse_claim_ids,
    run_claim,
    select_claims,
    summary_line,
)
from proofs_checks.report_render import (
    FIGURE_FOLDER,
    HOW_TO_READ,
    README_END,
    README_START,
    anchor,
    claim_section,
    empirical_markdown,
    escape,
    figure_markdown,
    format_value,
    key_figures,
    plain,
    readme_block,
    render_readme,
    replace_marked_block,
    report_json,
    update_readme,
    verdict_table,
    verdict_text,
    write_report,
)

__all__ = [
    "EMPIRICAL_METRICS",
    "ERROR",
    "FIGURES",
    "FIGURE_FOLDER",
    "HOW_TO_READ",
    "METRIC_LABELS",
    "README_END",
    "README_START",
    "STATUSES",
    "FigureInputs",
    "FigureSpec",
    "MadeFigure",
    "Outcome",
    "anchor",
    "certificate_figure",
    "certified_imbalance_figure",
    "claim_order",
    "claim_section",
    "counts",
    "custom_geometry_figure",
    "draw_empirical",
    "draw_figure",
    "empirical_claims",
    "empirical_figure",
    "empirical_markdown",
    "empirical_summary",
    "error_outcome",
    "escape",
    "exit_code",
    "figure_markdown",
    "figure_specs",
    "find_empirical_summaries",
    "format_value",
    "guideline_figure",
    "key_figures",
    "load_claims",
    "order_claims",
    "parse_claim_ids",
    "phase_figure",
    "plain",
    "prototype_delta_g_figure",
    "prototype_gram_figure",
    "prototype_limit_figure",
    "readme_block",
    "render_readme",
    "replace_marked_block",
    "report_json",
    "restricted_loss_figure",
    "run_claim",
    "select_claims",
    "summary_line",
    "supcon_map_figure",
    "update_readme",
    "verdict_table",
    "verdict_text",
    "within_variance_figure",
    "write_report",
]


def load_claims() -> tuple[dict[str, Claim], list[Outcome]]:
    """Import every claim module (`proofs_checks/test_*.py`) and return the registered claims.

    A module that fails to import does not stop the others: it becomes an "error" outcome named after
    the module, with the import error.
    Returns (claims by id in claim order, outcomes of the modules that failed).
    """
    import proofs_checks

    failed = []
    for module in sorted(pkgutil.iter_modules(proofs_checks.__path__), key=lambda info: info.name):
        if not module.name.startswith("test_"):
            continue
        try:
            importlib.import_module(f"proofs_checks.{module.name}")
        except Exception as error:  # a broken module is reported, not fatal
            failed.append(
                error_outcome(
                    module.name, f"module proofs_checks.{module.name}", "(did not import)", (), None, error, 0.0
                )
            )
    return order_claims(registry.CLAIMS), failed


FIGURES = (
    FigureSpec(
        "phase_diagram",
        ("B2", "B3", "B8"),
        "Paper B phase diagram: closed-form within-class variance W* over (alpha, tau), the collapse threshold "
        "alpha*(tau), and free-embedding minima on a coarse grid in the same colours (m=4, n=4, p=2).",
        phase_figure,
    ),
    FigureSpec(
        "restricted_loss",
        ("B1", "B4"),
        "The restricted loss L(beta) is convex with minimiser beta*; beta* does not depend on the number of "
        "views p for variant instance (it does for supcon).",
        restricted_loss_figure,
    ),
    FigureSpec(
        "within_variance",
        ("B5",),
        "W* against tau: the small-tau asymptote and the alpha = 1 value m(n-1)/(mn-1).",
        within_variance_figure,
    ),
    FigureSpec(
        "guideline",
        ("B7",),
        "The summarised guideline (alpha >= 1/n, tau <= 1/log m) against the exact collapse region; right: "
        "how wide the collapsing alpha range inside the guideline is, for every (m, n) of the audit.",
        guideline_figure,
    ),
    FigureSpec(
        "certificates",
        ("B8",),
        "Convex certificates against the closed form on small sizes: relative loss difference and largest "
        "entry of certified Gram minus SSEM Gram at beta*.",
        certificate_figure,
    ),
    FigureSpec(
        "supcon_map",
        ("B10",),
        'Variant "supcon": where the certified global minimum falls below the SSEM minimum (views separate).',
        supcon_map_figure,
    ),
    FigureSpec(
        "prototype_limit",
        ("A1",),
        "Prototype SCL minus log n_w approaches its limit (mean CE for anchors=data, Kbar for anchors=all) "
        "like 1/n_w, within the proven bound.",
        prototype_limit_figure,
    ),
    FigureSpec(
        "prototype_delta_g",
        ("A3", "A5"),
        "ETF prototypes: DeltaG* of the free-embedding minimiser to the prototype Gram against n_w, one curve "
        "per imbalance R (n_w = 0 is plain SCL).",
        prototype_delta_g_figure,
    ),
    FigureSpec(
        "prototype_grams",
        ("A3", "A5"),
        "Target prototype Gram and learnt class-mean Grams at n_w = 0 and the largest n_w, per imbalance R.",
        prototype_gram_figure,
    ),
    FigureSpec(
        "custom_geometry",
        ("A4",),
        "DeltaG* against n_w for ETF, orthogonal and minority-spread prototypes with the n_w -> infinity "
        "prediction of theory.prototypes.",
        custom_geometry_figure,
    ),
    FigureSpec(
        "certified_imbalance",
        ("A5", "A8"),
        "Without prototypes: DeltaG* of the certified SCL minimiser's class means to the ETF Gram against the "
        "imbalance R.",
        certified_imbalance_figure,
    ),
    FigureSpec(
        "paper_scale_prototypes",
        ("A9",),
        "CIFAR-10 compositions, ETF prototypes: certified DeltaG* against n_w (tau = 0.1) and the n_w needed "
        "for DeltaG* <= 0.05 and <= 0.01 against tau, per composition and R.",
        lambda inputs: _claim_figure("test_a9_paper_scale_prototypes", inputs),
    ),
    FigureSpec(
        "paper_scale_imbalance",
        ("A10",),
        "CIFAR-10 full training set, no prototypes: certified DeltaG* to the ETF Gram against R, per tau.",
        lambda inputs: _claim_figure("test_a10_paper_scale_imbalance", inputs),
    ),
    FigureSpec(
        "paper_scale_supcon_views",
        ("B12",),
        'CIFAR-10 and CIFAR-100 sizes, variant "supcon": view similarity a0 of the certified minimiser over '
        "(alpha, tau); crosses where the views separate.",
        lambda inputs: _claim_figure("test_b12_paper_scale_ssem", inputs),
    ),
    FigureSpec(
        "digits_prototypes_curves",
        ("A7",),
        "Digits, step R = 10: per-epoch training loss, DeltaG* to the ETF, within-class variance W and test "
        "nearest-class-centre accuracy of every run of A7, coloured by n_w.",
        lambda inputs: _claim_figure("test_a7_digits_prototypes", inputs),
    ),
    FigureSpec(
        "digits_alpha_curves",
        ("B11",),
        "Balanced digits, combined loss: per-epoch training loss, DeltaG*, within-class variance W and test "
        "nearest-class-centre accuracy of every run of B11, coloured by alpha.",
        lambda inputs: _claim_figure("test_b11_digits_alpha", inputs),
    ),
)


def _claim_figure(module: str, inputs: FigureInputs):
    """A figure drawn by a claim module's own `figure` function (it reuses the check's cached measurement)."""
    return importlib.import_module(f"proofs_checks.{module}").figure(inputs)


def figure_specs(claim_ids=None) -> tuple[FigureSpec, ...]:
    """The figures to draw: all (claim_ids None), else those illustrating one of the given claims."""
    if claim_ids is None:
        return FIGURES
    wanted = set(claim_ids)
    return tuple(spec for spec in FIGURES if wanted.intersection(spec.claims))
