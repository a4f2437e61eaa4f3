"""Rendering of the verification report: outcomes in, markdown (README.md, the project README's table) or JSON out.

Rendering is pure; `write_report` and `update_readme` are the only functions that write files
(atomically, through `simulate.cli`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from proofs_checks.report_outcomes import EMPIRICAL_METRICS, ERROR, Outcome, counts, exit_code, summary_line
from simulate.cli import plain

README_START = "<!-- verdicts:start -->"
README_END = "<!-- verdicts:end -->"
FIGURE_FOLDER = "figures"

HOW_TO_READ = (
    "Each row is one claim of Paper A, Paper B or the summary of Paper B, checked by the routes listed (exact: "
    "sympy derivations and closed forms; free optimisation: minimisation over free unit embeddings; "
    "certificate: a convex program over the Gram matrix, which gives the global minimum; empirical: networks "
    "trained on images). Verdicts: **holds** — every check agrees with the claim; **fails** — the suite found "
    "the claim false and gives the counterexample (a result, not a bug); *inconclusive* — a route did not "
    "settle (an optimiser not converged, routes disagreeing), with the reason: nothing is judged; *not run* — "
    "the check needs something this machine lacks, with the reason; **error** — the check itself crashed: a "
    'defect of the suite, not a verdict on the claim. "Suite asserts" is the verdict `pytest proofs_checks` '
    "expects; a measured verdict that differs from it is flagged. Key figures are the first numbers the check "
    "measured; each claim's section lists all of them, with its figures. Every quantity and formula the "
    "statements use is defined in the repository's docs/ (docs/claims.md links each claim to its definitions; "
    "the verdicts: docs/verdicts.md)."
)


# Values: JSON-ready and short text
# ---------------------------------------------------------------------------


def format_value(value, width: int = 80) -> str:
    """A short human reading of a measured figure: floats to 4 significant digits, long lists cut."""
    return _shorten(_format(plain(value)), width)


def _format(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_format(item) for item in value[:6])
        return f"[{shown}{', …' if len(value) > 6 else ''}]"
    if isinstance(value, dict):
        items = list(value.items())
        shown = "; ".join(f"{key}: {_format(item)}" for key, item in items[:4])
        return f"{{{shown}{'; …' if len(items) > 4 else ''}}}"
    return str(value)


def _shorten(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def escape(text: str) -> str:
    """Markdown-safe text for a table cell, on one line: pipes, emphasis and code marks, tag openings escaped."""
    text = " ".join(str(text).split())
    for mark in ("\\", "|", "*", "_", "`"):
        text = text.replace(mark, "\\" + mark)
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)  # only what could open an HTML tag


def key_figures(figures: dict, count: int = 3, width: int = 70) -> str:
    """The first `count` measured figures as 'name = value', each cut to `width` characters."""
    items = list(figures.items())
    shown = [_shorten(f"{name} = {format_value(value, width)}", width) for name, value in items[:count]]
    more = f" (+{len(items) - count} more)" if len(items) > count else ""
    return "; ".join(shown) + more


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def anchor(claim_id: str) -> str:
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")


def verdict_text(outcome: Outcome, width: int = 220) -> str:
    """The verdict cell: the status, its counterexample / reason / error, and a flag if unexpected."""
    label = {
        "holds": "**holds**",
        "fails": "**fails**",
        "inconclusive": "*inconclusive*",
        "not run": "*not run*",
        ERROR: "**error**",
    }[outcome.status]
    text = label + (f": {escape(_shorten(outcome.detail, width))}" if outcome.detail else "")
    if outcome.unexpected:
        text += f" (the suite asserts *{outcome.expect}*)"
    return text


def verdict_table(outcomes: list[Outcome], link: bool = True, figures_column: bool = True) -> str:
    """Markdown table: id, source, statement, verdict, key figures, routes (one row per outcome)."""
    header = ["id", "source", "statement", "verdict", *(["key figures"] if figures_column else []), "routes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for o in outcomes:
        claim_id = f"[{escape(o.id)}](#{anchor(o.id)})" if link else escape(o.id)
        cells = [claim_id, escape(o.source), escape(o.statement), verdict_text(o)]
        if figures_column:
            cells.append(escape(key_figures(o.figures)))
        cells.append(escape(", ".join(o.routes)) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claim_section(outcome: Outcome, figures: list, out_dir: Path | None = None) -> str:
    """One claim: heading, provenance, statement, verdict detail, all measured figures, its images."""
    o = outcome
    lines = [
        f'<a id="{anchor(o.id)}"></a>',
        f"### {escape(o.id)} — {o.status}",
        "",
        f"**Source:** {escape(o.source)} · **Routes:** {escape(', '.join(o.routes)) or '—'} · "
        f"**Suite asserts:** {o.expect or '—'} · **Time:** {o.seconds:.1f} s",
        "",
        escape(o.statement),
        "",
    ]
    if o.status == "fails":
        lines += [f"**Counterexample:** {escape(o.detail)}", ""]
    elif o.status in ("not run", "inconclusive"):
        lines += [f"**{o.status.capitalize()}:** {escape(o.detail)}", ""]
    elif o.status == ERROR:
        lines += [
            "**Error** (the check raised; see `report.json` for the traceback):",
            "",
            "```text",
            _shorten(o.detail, 2000),
            "```",
            "",
        ]
    if o.unexpected:
        lines += [
            f"**Note:** measured *{o.status}* but the suite asserts *{o.expect}*: "
            f"`pytest proofs_checks` fails on this claim.",
            "",
        ]
    if o.figures:
        lines += ["| measured figure | value |", "|---|---|"]
        lines += [f"| {escape(name)} | {escape(format_value(value, 400))} |" for name, value in o.figures.items()]
        lines.append("")
    lines += [_image_link(path, f"figure written by the check: {Path(path).name}", out_dir) for path in o.images]
    for made in figures:
        lines += figure_markdown(made)
    return "\n".join(lines).rstrip() + "\n"


def _image_link(path: str, caption: str, out_dir: Path | None) -> str:
    target = Path(path)
    if out_dir is not None and target.is_absolute():
        target = Path(os.path.relpath(target, out_dir))
    return f"![{escape(caption)}]({target.as_posix()})\n"


def figure_markdown(made) -> list[str]:
    """Image and caption of a drawn figure, or the error that stopped it."""
    if made.error:
        return [f"*Figure `{made.name}` could not be drawn:* `{_shorten(made.error, 300)}`", ""]
    return [f"![{escape(made.caption)}]({FIGURE_FOLDER}/{made.name}.png)", "", f"*{escape(made.caption)}*", ""]


def render_readme(
    outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict, out_dir: Path | None = None
) -> str:
    """The whole report as markdown: header, how to read, verdict table, a section per claim, extras."""
    reported = {o.id for o in outcomes}
    lines = [
        "# Verification report",
        "",
        f"Generated by `{metadata.get('command', 'python -m proofs_checks')}` at {metadata.get('time_utc', '?')} "
        f"(git {metadata.get('git_revision') or 'unknown'}).",
        "",
        f"**Summary:** {escape(summary_line(outcomes, figures, metadata.get('seconds')))}",
        "",
        "## How to read this report",
        "",
        HOW_TO_READ,
        "",
        "## Verdicts",
        "",
        verdict_table(outcomes),
        "",
        "## Claims",
        "",
    ]
    for o in outcomes:
        lines.append(claim_section(o, [f for f in figures if o.id in f.claims], out_dir))
    if empirical:
        lines += ["## Empirical results", ""] + [empirical_markdown(entry, out_dir) for entry in empirical]
    loose = [f for f in figures if f.claims and not reported.intersection(f.claims)]
    if loose:
        lines += [
            "## Further figures",
            "",
            "Figures whose claims are not in this report (renamed or not selected).",
            "",
        ]
        for made in loose:
            lines += figure_markdown(made)
    return "\n".join(lines).rstrip() + "\n"


def readme_block(outcomes: list[Outcome]) -> str:
    """The project README's verdict block (between the markers): summary and table, no figures."""
    return "\n".join(
        [
            f"_Regenerated by `python -m proofs_checks --update-readme`, not typed: {escape(summary_line(outcomes))}. "
            "Full report with figures: `report/README.md`._",
            "",
            verdict_table(outcomes, link=False, figures_column=False),
        ]
    )


def replace_marked_block(text: str, block: str) -> str:
    """Replace what lies between README_START and README_END (each present exactly once, in order)."""
    starts, ends = text.count(README_START), text.count(README_END)
    if starts != 1 or ends != 1 or text.index(README_START) > text.index(README_END):
        raise ValueError(
            f"the README must contain {README_START!r} then {README_END!r}, once each (found {starts} and {ends})"
        )
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    return f"{head}{README_START}\n{block.strip()}\n{README_END}{tail}"


def report_json(outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict, config: dict) -> dict:
    """The report for machines: the same content as README.md."""
    return {
        "config": plain(config),
        "metadata": plain(metadata),
        "summary": {
            **counts(outcomes),
            "claims": len(outcomes),
            "exit_code": exit_code(outcomes),
            "unexpected": [o.id for o in outcomes if o.unexpected],
            "errors": [o.id for o in outcomes if o.status == ERROR],
            "line": summary_line(outcomes, figures, metadata.get("seconds")),
        },
        "claims": [
            {
                "id": o.id,
                "source": o.source,
                "statement": o.statement,
                "routes": list(o.routes),
                "expect": o.expect,
                "verdict": o.status,
                "unexpected": o.unexpected,
                "detail": o.detail,
                "figures": plain(o.figures),
                "seconds": o.seconds,
                "traceback": o.traceback,
                "images": list(o.images)
                + [f"{FIGURE_FOLDER}/{f.name}.png" for f in figures if o.id in f.claims and not f.error],
            }
            for o in outcomes
        ],
        "figures": [
            {
                "name": f.name,
                "file": None if f.error else f"{FIGURE_FOLDER}/{f.name}.png",
                "claims": list(f.claims),
                "caption": f.caption,
                "error": f.error,
                "seconds": f.seconds,
            }
            for f in figures
        ],
        "empirical": [{key: value for key, value in entry.items() if not key.startswith("_")} for entry in empirical],
    }


def write_report(
    out_dir, outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict, config: dict
) -> list[Path]:
    """Write README.md and report.json atomically into out_dir (figures are written by `make_figures`)."""
    from simulate import cli

    out_dir = Path(out_dir)
    return [
        cli.write_text(out_dir / "README.md", render_readme(outcomes, figures, empirical, metadata, out_dir.resolve())),
        cli.write_json(out_dir / "report.json", report_json(outcomes, figures, empirical, metadata, config)),
    ]


def update_readme(path, outcomes: list[Outcome]) -> Path:
    """Rewrite the verdict block of the README at `path` in place (atomically)."""
    from simulate import cli

    path = Path(path)
    return cli.write_text(path, replace_marked_block(path.read_text(encoding="utf-8"), readme_block(outcomes)))


def _mean_std_text(stat: dict | None) -> str:
    if not stat:
        return "—"
    if stat["n"] == 1:
        return f"{stat['mean']:.4g} (1 seed)"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g} ({stat['n']})"


def empirical_markdown(entry: dict, out_dir: Path | None = None) -> str:
    """Table of mean ± std (n seeds) per swept value, the report's figure and links to the run's own figures."""
    metrics = [m for m in EMPIRICAL_METRICS if any(m in row for row in entry["rows"])]
    lines = [
        f"### {escape(entry['dataset'] or '?')}, {escape(entry['loss'] or '?')} loss, sweep over "
        f"{escape(entry['sweep'])} (R = {entry['imbalance']}, tau = {entry['tau']}, {entry['epochs']} epochs)",
        "",
        f"From `{entry['path']}`: {entry['finished']} of {entry['runs']} runs finished; mean ± std over seeds (n).",
        "",
        "| " + " | ".join([escape(entry["sweep"]), *map(escape, metrics)]) + " |",
        "|" + "---|" * (len(metrics) + 1),
    ]
    for row in entry["rows"]:
        cells = [format_value(row[entry["sweep"]])]
        for metric in metrics:
            stat = row.get(metric)
            cells.append(_mean_std_text(stat))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if entry.get("_figure"):
        lines += figure_markdown(entry["_figure"])
    if entry["pictures"]:
        lines += [
            "The run's own figures: "
            + ", ".join(
                f"[{Path(p).name}]({Path(os.path.relpath(p, out_dir) if out_dir else p).as_posix()})"
                for p in entry["pictures"]
            ),
            "",
        ]
    return "\n".join(lines) + "\n"
