"""`python -m proofs_checks`: the verification report — every claim with its verdict, figures and numbers.

Runs the checks of the claims registry (the functions `pytest proofs_checks` runs) and writes
DIR/README.md (verdict table, a section per claim with its figures), DIR/report.json (the same
for machines) and DIR/figures/*.png. `--update-readme` also regenerates the verdict table of
the project README. Exit code: 0 when every check ran, whatever its verdict; 1 if a check
raised (or a claim module did not import); 2 for bad arguments.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from proofs_checks import report
from simulate import cli

PROG = "python -m proofs_checks"
PROJECT_README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Config:
    out: str = "report"
    claims: tuple | None = None  # None: every registered claim
    figures: bool = True
    empirical_results: str | None = None
    update_readme: bool = False
    readme: str = str(PROJECT_README)


def parse(argv=None) -> Config:
    defaults = Config()
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out, help="output folder (default report/)")
    parser.add_argument("--claims", default=None, help="comma-separated claim ids, e.g. A1,B2 (default: every claim)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="numbers and verdicts only")
    parser.add_argument("--empirical-results", default=None, metavar="DIR",
                        help="output of python -m empirical.cifar (DIR/summary.json or DIR/*/summary.json)")
    parser.add_argument("--update-readme", action="store_true",
                        help="also rewrite the verdict table between the markers of the project README")
    parser.add_argument("--readme", default=defaults.readme, help="README whose verdict block --update-readme rewrites")
    args = parser.parse_args(argv)
    try:
        claims = None if args.claims is None else report.parse_claim_ids(args.claims)
        config = Config(args.out, claims, args.figures, args.empirical_results, args.update_readme, args.readme)
        validate(config)
    except ValueError as error:
        cli.fail(PROG, str(error))
    return config


def validate(config: Config) -> None:
    """Every check of the arguments that needs no claim to run (raises ValueError)."""
    if config.empirical_results is not None:
        for path in report.find_empirical_summaries(config.empirical_results):
            report.empirical_summary(path)
    if config.update_readme:
        if config.claims is not None:
            raise ValueError("--update-readme rewrites the table of every claim: drop --claims")
        try:
            text = Path(config.readme).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"--readme {config.readme} cannot be read: {error.strerror}") from None
        report.replace_marked_block(text, "")


def main(argv=None) -> int:
    config = parse(argv)
    # The checks' tensors are tiny: extra torch threads only spin (10x slower on a shared machine).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    started = time.perf_counter()
    claims, broken = report.load_claims()
    try:
        selected = report.select_claims(claims, config.claims)
    except ValueError as error:
        cli.fail(PROG, str(error))
    outcomes = list(broken)
    with tqdm(selected.values(), desc="claims", unit="claim") as bar:
        for claim in bar:
            bar.set_postfix_str(claim.id)
            outcomes.append(report.run_claim(claim))
    outcomes.sort(key=lambda outcome: report.claim_order(outcome.id))
    out = Path(config.out)
    empirical = [report.empirical_summary(path) for path in
                 (report.find_empirical_summaries(config.empirical_results) if config.empirical_results else [])]
    figures = draw_figures(config, selected, empirical, out) if config.figures else []
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    metadata = {**cli.run_metadata(), "command": command, "seconds": time.perf_counter() - started}
    report.write_report(out, outcomes, figures, empirical, metadata, asdict(config))
    if config.update_readme:
        report.update_readme(config.readme, outcomes)
    print(report.summary_line(outcomes, figures if config.figures else None, metadata["seconds"],
                              str(out / "README.md")))
    return report.exit_code(outcomes)


def draw_figures(config: Config, selected: dict, empirical: list[dict], out: Path) -> list:
    from tqdm import tqdm

    specs = report.figure_specs(None if config.claims is None else tuple(selected))
    inputs = report.FigureInputs()
    figures = []
    with tqdm(specs, desc="figures", unit="figure") as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            figures.append(report.draw_figure(spec, inputs, out))
    for index, entry in enumerate(empirical):
        entry["_figure"] = report.draw_empirical(entry, report.empirical_claims(selected), out, index)
        figures.append(entry["_figure"])
    return figures


if __name__ == "__main__":
    sys.exit(main())
