"""The verification report: run the registered claims, render README.md, report.json and figures.

Library side of `python -m proofs_checks` (docs/commands.md#python-m-proofs-checks). It reads the same
registry as `pytest proofs_checks` (`proofs_checks.registry`): every claim's check is run
once, and its outcome is one of

* a verdict of the check: "holds", "fails" (with its counterexample), "not run" (with the reason);
* "error": the check raised (or its module failed to import). The message is kept and
  reported; an error is a defect of the suite, never a verdict on the claim.

Rendering is pure (outcomes in, markdown or JSON-ready dicts out). The figures are drawn
from library calls with small settings (the checks return numbers, not pictures); each
figure belongs to the claims it illustrates and is drawn only when one of them is reported.
Writing files is left to `write_report` and the command line.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from proofs_checks import registry
from proofs_checks.registry import Claim, Result

ERROR = "error"
STATUSES = (*registry.VERDICTS, ERROR)
README_START = "<!-- verdicts:start -->"
README_END = "<!-- verdicts:end -->"
FIGURE_FOLDER = "figures"

HOW_TO_READ = (
    "Each row is one claim of Paper A, Paper B or the summary of Paper B, checked by the routes listed "
    "(exact: sympy derivations and closed forms; free optimisation: minimisation over free unit embeddings; "
    "certificate: a convex program over the Gram matrix, which gives the global minimum; empirical: networks "
    "trained on images). Verdicts: **holds** — every check agrees with the claim; **fails** — the suite found "
    "the claim false and gives the counterexample (a result, not a bug); *inconclusive* — a route did not settle "
    "(an optimiser not converged, routes disagreeing), with the reason: nothing is judged; *not run* — the check needs something "
    "this machine lacks, with the reason; **error** — the check itself crashed: a defect of the suite, not a "
    "verdict on the claim. \"Suite asserts\" is the verdict `pytest proofs_checks` expects; a measured verdict "
    "that differs from it is flagged. Key figures are the first numbers the check measured; each claim's "
    "section lists all of them, with its figures. Every quantity and formula the statements use is defined in the "
    "repository's docs/ (docs/claims.md links each claim to its definitions; the verdicts: docs/verdicts.md)."
)


# ---------------------------------------------------------------------------
# Outcomes: one per claim
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What running one claim gave.

    status: a verdict of `registry.VERDICTS`, or "error" (the check raised, or its
    module did not import); detail: the counterexample ("fails"), the reason ("not run")
    or "ExceptionType: message" ("error"); expect: the verdict the suite asserts (None
    when unknown, as for a module that did not import).
    """

    id: str
    source: str
    statement: str
    routes: tuple
    expect: str | None
    status: str
    figures: dict = field(default_factory=dict)
    detail: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    images: tuple = ()

    @property
    def unexpected(self) -> bool:
        """A measured verdict that differs from the one the suite asserts (errors excluded)."""
        return self.status != ERROR and self.expect is not None and self.status != self.expect


def claim_order(claim_id: str) -> tuple:
    """Sort key: A2 before A10, all A before B; unusual ids last, alphabetically."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", claim_id)
    return (0, match.group(1).upper(), int(match.group(2))) if match else (1, claim_id, 0)


def load_claims() -> tuple[dict[str, Claim], list[Outcome]]:
    """Import every claim module (`proofs_checks/test_*.py`) and return the registered claims.

    Unlike `registry.load_all`, a module that fails to import does not stop the others:
    it becomes an "error" outcome named after the module, with the import error.
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
            failed.append(_error_outcome(module.name, f"module proofs_checks.{module.name}", "(did not import)",
                                         (), None, error, 0.0))
    return order_claims(registry.CLAIMS), failed


def order_claims(claims: dict[str, Claim]) -> dict[str, Claim]:
    return dict(sorted(claims.items(), key=lambda item: claim_order(item[0])))


def parse_claim_ids(text: str) -> tuple[str, ...]:
    """'a1, B2' -> ('A1', 'B2'): comma-separated, upper-cased, duplicates dropped; ValueError if empty."""
    ids = tuple(dict.fromkeys(token.strip().upper() for token in str(text).split(",") if token.strip()))
    if not ids:
        raise ValueError(f"--claims needs comma-separated claim ids such as A1,B2, got {text!r}")
    return ids


def select_claims(claims: dict[str, Claim], ids=None) -> dict[str, Claim]:
    """The claims named by `ids` (all when None), in claim order; ValueError naming unknown ids."""
    if ids is None:
        return order_claims(claims)
    by_upper = {claim_id.upper(): claim_id for claim_id in claims}
    unknown = [claim_id for claim_id in ids if claim_id.upper() not in by_upper]
    if unknown:
        known = ", ".join(order_claims(claims))
        raise ValueError(f"--claims: unknown claim id(s) {', '.join(unknown)}; known: {known}")
    return order_claims({by_upper[i.upper()]: claims[by_upper[i.upper()]] for i in ids})


def run_claim(claim: Claim) -> Outcome:
    """Run one check; an exception (or a return value that is not a `Result`) becomes an "error" outcome."""
    started = time.perf_counter()
    try:
        result = claim.check()
        if not isinstance(result, Result):
            raise TypeError(f"the check returned {type(result).__name__}, not a registry.Result")
    except Exception as error:  # reported as the claim's error, with its message
        return _error_outcome(claim.id, claim.source, claim.statement, claim.routes, claim.expect, error,
                              time.perf_counter() - started)
    detail = {"fails": result.counterexample, "not run": result.reason, "inconclusive": result.reason}.get(result.verdict)
    return Outcome(claim.id, claim.source, claim.statement, tuple(claim.routes), claim.expect, result.verdict,
                   dict(result.figures), detail, None, time.perf_counter() - started, tuple(map(str, result.images)))


def _error_outcome(claim_id, source, statement, routes, expect, error: BaseException, seconds: float) -> Outcome:
    message = f"{type(error).__name__}: {error}".strip()
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return Outcome(claim_id, source, statement, tuple(routes), expect, ERROR, {}, message, trace, seconds)


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Number of outcomes per status (every status present, zeros included)."""
    return {status: sum(o.status == status for o in outcomes) for status in STATUSES}


def exit_code(outcomes: list[Outcome]) -> int:
    """1 if any claim errored (check raised or module did not import), else 0."""
    return int(any(o.status == ERROR for o in outcomes))


def summary_line(outcomes: list[Outcome], figures: list | None = None, seconds: float | None = None,
                 out: str | None = None) -> str:
    """One line: counts per verdict, unexpected verdicts, errors, figures, time and where the report is."""
    tally = counts(outcomes)
    parts = [f"{len(outcomes)} claims: " + ", ".join(f"{tally[s]} {s}" for s in STATUSES)]
    unexpected = [o.id for o in outcomes if o.unexpected]
    if unexpected:
        parts.append(f"differs from the suite's assertion: {', '.join(unexpected)}")
    errored = [o.id for o in outcomes if o.status == ERROR]
    if errored:
        parts.append(f"errors: {', '.join(errored)}")
    if figures is not None:
        failed = [f.name for f in figures if f.error]
        parts.append(f"{len(figures) - len(failed)} figures" + (f" ({len(failed)} failed: {', '.join(failed)})"
                                                               if failed else ""))
    if seconds is not None:
        parts.append(f"{seconds:.0f} s")
    return "; ".join(parts) + (f" -> {out}" if out else "")


# ---------------------------------------------------------------------------
# Values: JSON-ready and short text
# ---------------------------------------------------------------------------


def plain(value):
    """JSON-ready copy: numpy scalars and arrays to python, tuples to lists, other objects to str."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value)


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
    label = {"holds": "**holds**", "fails": "**fails**", "inconclusive": "*inconclusive*", "not run": "*not run*",
             ERROR: "**error**"}[outcome.status]
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
    lines = [f'<a id="{anchor(o.id)}"></a>', f"### {escape(o.id)} — {o.status}", "",
             f"**Source:** {escape(o.source)} · **Routes:** {escape(', '.join(o.routes)) or '—'} · "
             f"**Suite asserts:** {o.expect or '—'} · **Time:** {o.seconds:.1f} s", "", escape(o.statement), ""]
    if o.status == "fails":
        lines += [f"**Counterexample:** {escape(o.detail)}", ""]
    elif o.status in ("not run", "inconclusive"):
        lines += [f"**{o.status.capitalize()}:** {escape(o.detail)}", ""]
    elif o.status == ERROR:
        lines += ["**Error** (the check raised; see `report.json` for the traceback):", "", "```text",
                  _shorten(o.detail, 2000), "```", ""]
    if o.unexpected:
        lines += [f"**Note:** measured *{o.status}* but the suite asserts *{o.expect}*: "
                  f"`pytest proofs_checks` fails on this claim.", ""]
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


def render_readme(outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict,
                  out_dir: Path | None = None) -> str:
    """The whole report as markdown: header, how to read, verdict table, a section per claim, extras."""
    reported = {o.id for o in outcomes}
    lines = ["# Verification report", "",
             f"Generated by `{metadata.get('command', 'python -m proofs_checks')}` at {metadata.get('time_utc', '?')} "
             f"(git {metadata.get('git_revision') or 'unknown'}).", "",
             f"**Summary:** {escape(summary_line(outcomes, figures, metadata.get('seconds')))}", "",
             "## How to read this report", "", HOW_TO_READ, "",
             "## Verdicts", "", verdict_table(outcomes), "", "## Claims", ""]
    for o in outcomes:
        lines.append(claim_section(o, [f for f in figures if o.id in f.claims], out_dir))
    if empirical:
        lines += ["## Empirical results", ""] + [empirical_markdown(entry, out_dir) for entry in empirical]
    loose = [f for f in figures if f.claims and not reported.intersection(f.claims)]
    if loose:
        lines += ["## Further figures", "", "Figures whose claims are not in this report (renamed or not selected).",
                  ""]
        for made in loose:
            lines += figure_markdown(made)
    return "\n".join(lines).rstrip() + "\n"


def readme_block(outcomes: list[Outcome]) -> str:
    """The project README's verdict block (between the markers): summary and table, no figures."""
    return "\n".join([
        f"_Regenerated by `python -m proofs_checks --update-readme`, not typed: {escape(summary_line(outcomes))}. "
        "Full report with figures: `report/README.md`._", "",
        verdict_table(outcomes, link=False, figures_column=False),
    ])


def replace_marked_block(text: str, block: str) -> str:
    """Replace what lies between README_START and README_END (each present exactly once, in order)."""
    starts, ends = text.count(README_START), text.count(README_END)
    if starts != 1 or ends != 1 or text.index(README_START) > text.index(README_END):
        raise ValueError(f"the README must contain {README_START!r} then {README_END!r}, once each "
                         f"(found {starts} and {ends})")
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    return f"{head}{README_START}\n{block.strip()}\n{README_END}{tail}"


def report_json(outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict, config: dict) -> dict:
    """The report for machines: the same content as README.md."""
    return {
        "config": plain(config),
        "metadata": plain(metadata),
        "summary": {**counts(outcomes), "claims": len(outcomes), "exit_code": exit_code(outcomes),
                    "unexpected": [o.id for o in outcomes if o.unexpected],
                    "errors": [o.id for o in outcomes if o.status == ERROR],
                    "line": summary_line(outcomes, figures, metadata.get("seconds"))},
        "claims": [{
            "id": o.id, "source": o.source, "statement": o.statement, "routes": list(o.routes),
            "expect": o.expect, "verdict": o.status, "unexpected": o.unexpected, "detail": o.detail,
            "figures": plain(o.figures), "seconds": o.seconds, "traceback": o.traceback,
            "images": list(o.images) + [f"{FIGURE_FOLDER}/{f.name}.png" for f in figures
                                        if o.id in f.claims and not f.error],
        } for o in outcomes],
        "figures": [{"name": f.name, "file": None if f.error else f"{FIGURE_FOLDER}/{f.name}.png",
                     "claims": list(f.claims), "caption": f.caption, "error": f.error, "seconds": f.seconds}
                    for f in figures],
        "empirical": [{key: value for key, value in entry.items() if not key.startswith("_")} for entry in empirical],
    }


def write_report(out_dir, outcomes: list[Outcome], figures: list, empirical: list[dict], metadata: dict,
                 config: dict) -> list[Path]:
    """Write README.md and report.json atomically into out_dir (figures are written by `make_figures`)."""
    from simulate import cli

    out_dir = Path(out_dir)
    return [cli.write_text(out_dir / "README.md", render_readme(outcomes, figures, empirical, metadata,
                                                                   out_dir.resolve())),
            cli.write_json(out_dir / "report.json", report_json(outcomes, figures, empirical, metadata, config))]


def update_readme(path, outcomes: list[Outcome]) -> Path:
    """Rewrite the verdict block of the README at `path` in place (atomically)."""
    from simulate import cli

    path = Path(path)
    return cli.write_text(path, replace_marked_block(path.read_text(encoding="utf-8"), readme_block(outcomes)))


# ---------------------------------------------------------------------------
# Empirical summaries (output of `python -m empirical.cifar`)
# ---------------------------------------------------------------------------

EMPIRICAL_METRICS = ("delta_g", "within_var", "between_var", "nc1", "test_acc_majority", "test_acc_minority")
METRIC_LABELS = {"delta_g": r"$\Delta G^*$", "within_var": "within-class variance W",
                 "between_var": "between-class variance B", "test_acc_majority": "majority classes",
                 "test_acc_minority": "minority classes"}


def find_empirical_summaries(directory) -> list[Path]:
    """summary.json of `python -m empirical.cifar --out DIR`: in DIR itself, else in its direct subfolders.

    Raises ValueError if DIR is not a folder or holds none.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"--empirical-results must be a folder written by python -m empirical.cifar, got {directory}")
    found = [directory / "summary.json"] if (directory / "summary.json").is_file() else \
        sorted(directory.glob("*/summary.json"))
    if not found:
        raise ValueError(f"--empirical-results {directory}: no summary.json in it or its subfolders "
                         "(run python -m empirical.cifar --out DIR first)")
    return found


def empirical_summary(path) -> dict:
    """Mean, std (ddof 1) and count over seeds of each metric, per swept value, of one summary.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = data.get("sweep", "n_proto")
        runs = [run for run in data.get("runs", []) if run.get("status") == "finished"]
        values = sorted({run[key] for run in runs})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a summary of python -m empirical.cifar ({type(error).__name__}: {error})") \
            from None
    rows = []
    for value in values:
        group = [run for run in runs if run[key] == value]
        row = {key: value, "seeds": len(group)}
        for metric in EMPIRICAL_METRICS:
            values = np.array([run[metric] for run in group if run.get(metric) is not None], dtype=float)
            if len(values):
                row[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
                               else 0.0, "n": int(len(values))}
        rows.append(row)
    base = data.get("base_config", {})
    return {"path": str(path), "sweep": key, "dataset": base.get("dataset"), "imbalance": base.get("imbalance"),
            "loss": base.get("loss"), "tau": base.get("tau"), "epochs": base.get("epochs"),
            "runs": len(data.get("runs", [])), "finished": len(runs), "rows": rows,
            "pictures": sorted(str(p) for p in path.parent.glob("*.png"))}


def _mean_std_text(stat: dict | None) -> str:
    if not stat:
        return "—"
    if stat["n"] == 1:
        return f"{stat['mean']:.4g} (1 seed)"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g} ({stat['n']})"


def empirical_markdown(entry: dict, out_dir: Path | None = None) -> str:
    """Table of mean ± std (n seeds) per swept value, the report's figure and links to the run's own figures."""
    metrics = [m for m in EMPIRICAL_METRICS if any(m in row for row in entry["rows"])]
    lines = [f"### {escape(entry['dataset'] or '?')}, {escape(entry['loss'] or '?')} loss, sweep over "
             f"{escape(entry['sweep'])} (R = {entry['imbalance']}, tau = {entry['tau']}, {entry['epochs']} epochs)", "",
             f"From `{entry['path']}`: {entry['finished']} of {entry['runs']} runs finished; mean ± std over seeds "
             "(n).", "", "| " + " | ".join([escape(entry["sweep"]), *map(escape, metrics)]) + " |",
             "|" + "---|" * (len(metrics) + 1)]
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
        lines += ["The run's own figures: " + ", ".join(
            f"[{Path(p).name}]({Path(os.path.relpath(p, out_dir) if out_dir else p).as_posix()})"
            for p in entry["pictures"]), ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: file stem, the claims it illustrates, its caption and how to draw it."""

    name: str
    claims: tuple
    caption: str
    draw: Callable  # (FigureInputs) -> matplotlib Figure


@dataclass(frozen=True)
class MadeFigure:
    name: str
    claims: tuple
    caption: str
    path: Path | None
    error: str | None
    seconds: float


class FigureInputs:
    """Data shared by several figures, computed at most once per report (a run-local cache)."""

    @cached_property
    def prototype_sweep(self) -> dict:
        """simulate.prototypes sweep, ETF prototypes: m=4, majority 20, R in {1, 5, 20}, n_w up to 1e4."""
        from simulate import prototypes
        from simulate.prototypes_command import Config

        config = Config(n_classes=4, majority_size=20, imbalance=(1.0, 5.0, 20.0),
                        n_proto=(0, 1, 10, 100, 1000, 10000), dim=8, tau=0.5, certify_max_vectors=0)
        return prototypes.run(config)


def _new_figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, axes


def phase_figure(_: FigureInputs):
    """Closed-form W* over (alpha, log tau), the alpha*(tau) curve, and free-embedding minima on a coarse grid."""
    from simulate import phase_diagram
    from theory import ssem

    m, n, p = 4, 4, 2
    simulated = phase_diagram.run(phase_diagram.Config(m=m, n=n, p=p, alphas="0:1:6", taus="0.05:5:5"))
    grids = simulated["_grids"]
    alphas, taus = np.linspace(0, 1, 201), np.geomspace(0.03, 8, 161)
    within, _ = ssem.optimal_variances(alphas[:, None], taus[None, :], m, n, p)
    figure, (ax,) = _new_figure(7.2, 5.0)
    mesh = ax.pcolormesh(alphas, taus, within.T, shading="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.plot(ssem.alpha_star(taus, m, n, p), taus, color="white", lw=2.2,
            label=r"$\alpha^*(\tau)$ (closed form): collapse iff $\alpha \leq \alpha^*$")
    a, t = np.meshgrid(grids["alphas"], grids["taus"], indexing="ij")
    ax.scatter(a, t, c=grids["simulated"]["within"], cmap="viridis", vmin=0, vmax=1, s=70, edgecolors="black",
               linewidths=1.2, label="free-embedding minimum (colour = its W)", zorder=3)
    disagree = grids["simulated"]["collapsed"] != grids["theory"]["collapsed"]
    if disagree.any():
        ax.scatter(a[disagree], t[disagree], s=160, facecolors="none", edgecolors="red", linewidths=2,
                   label="collapse verdict differs from theory", zorder=4)
    ax.set_yscale("log")
    ax.set(xlim=(0, 1), ylim=(taus[0], taus[-1]), xlabel=r"$\alpha$ (weight of the self-supervised term)",
           ylabel=r"temperature $\tau$ (log scale)")
    ax.text(0.04, 3.0, "collapse\n(W = 0)", color="white", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    figure.colorbar(mesh, ax=ax, label=r"within-class variance $W^* = 1 - \beta^*$")
    summary = simulated["summary"]
    ax.set_title(f"Paper B phase diagram, m={m}, n={n}, p={p}, variant instance\n"
                 f"max rel. loss gap free vs closed form {summary['max_rel_loss_gap']:.1e}, "
                 f"collapse agreement {summary['agreement']:.0%}", fontsize=10)
    return figure


def guideline_figure(_: FigureInputs):
    """Left: where the summarised guideline meets the collapse region (m=3, n=4). Right: its gap over (m, n)."""
    from theory import ssem

    m, n = 3, 4
    figure, (left, right) = _new_figure(12.0, 4.8, 2)
    alphas, taus = np.linspace(0, 1, 301), np.geomspace(0.05, 5, 201)
    collapsed = ssem.optimal_beta(alphas[:, None], taus[None, :], m, n) == 1.0
    guideline = (alphas[:, None] >= 1 / n) & (taus[None, :] <= 1 / np.log(m))
    regions = collapsed.astype(float) + 2 * (collapsed & guideline)  # 0 no collapse, 1 collapse, 3 both
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    left.pcolormesh(alphas, taus, regions.T, shading="nearest", vmin=0, vmax=3,
                    cmap=ListedColormap(["#f4f4f4", "#9ecae1", "#9ecae1", "#d7301f"]))
    curve, = left.plot(ssem.alpha_star(taus, m, n), taus, "k-", lw=1.5, label=r"$\alpha^*(\tau)$")
    box, = left.plot([1 / n, 1 / n, 1], [taus[0], 1 / np.log(m), 1 / np.log(m)], "k--", lw=1.5,
                     label="guideline region (below, right)")
    star, = left.plot(0.26, 1 / np.log(3), marker="*", ls="none", ms=16, color="gold", mec="black",
                      label=r"counterexample $\alpha$=0.26, $\tau$=1/log 3")
    left.set_yscale("log")
    left.set(xlabel=r"$\alpha$ (weight of the self-supervised term)", ylabel=r"temperature $\tau$ (log scale)",
             xlim=(0, 1))
    left.set_title(r"m=3, n=4: guideline $\alpha \geq 1/n$ and $\tau \leq 1/\log m$", fontsize=10)
    left.legend(handles=[Patch(color="#9ecae1", label=r"collapse ($\beta^* = 1$)"),
                         Patch(color="#d7301f", label="inside the guideline, yet collapses"),
                         Patch(color="#f4f4f4", label="no collapse"), curve, box, star],
                fontsize=8, loc="lower right", framealpha=0.9)
    sizes = np.arange(2, 11)
    gap = np.array([[ssem.alpha_star(1 / np.log(mm), mm, nn) - 1 / nn for mm in sizes] for nn in sizes])
    image = right.imshow(gap, origin="lower", cmap="Reds", extent=(1.5, 10.5, 1.5, 10.5), vmin=0)
    for i, nn in enumerate(sizes):
        for j, mm in enumerate(sizes):
            right.text(mm, nn, f"{gap[i, j]:.2f}", ha="center", va="center", fontsize=7)
    right.set(xlabel="classes m", ylabel="instances per class n", xticks=sizes, yticks=sizes)
    right.set_title(r"collapsing $\alpha$ range allowed by the guideline at $\tau = 1/\log m$", fontsize=10)
    figure.colorbar(image, ax=right, label=r"$\alpha^*(1/\log m) - 1/n$ (> 0: guideline admits collapse)")
    figure.suptitle("The summarised guideline does not prevent collapse (Paper B summary, claim B7)")
    return figure


def restricted_loss_figure(_: FigureInputs):
    """Left: L(beta) - min L for several alpha (convex, minimiser marked). Right: beta*(alpha) for several p."""
    from theory import ssem

    m, n, tau = 3, 4, 0.5
    figure, (left, right) = _new_figure(11.5, 4.4, 2)
    beta = np.linspace(0, 1, 401)
    for alpha in (0.0, 0.35, 0.5, 0.8, 1.0):
        loss = ssem.restricted_loss(beta, alpha, tau, m, n, 2)
        best = float(ssem.optimal_beta(alpha, tau, m, n, 2))
        line, = left.plot(beta, loss - ssem.restricted_loss(best, alpha, tau, m, n, 2), label=rf"$\alpha$ = {alpha:g}")
        left.plot(best, 0, "o", color=line.get_color(), ms=7)
    left.set(xlabel=r"$\beta$ (between-class variance of SSEM($\beta$))", ylabel=r"$L(\beta) - \min_\beta L$",
             ylim=(-0.02, None))
    left.set_title(rf"restricted loss, m={m}, n={n}, p=2, $\tau$={tau:g} (dots: $\beta^*$; $\alpha^*$ = "
                   f"{float(ssem.alpha_star(tau, m, n)):.3f})", fontsize=9)
    left.legend(fontsize=8)
    alphas = np.linspace(0, 1, 201)
    for p, style, colour, width in ((1, "-", "#9ecae1", 6), (2, "--", "C0", 2.5), (4, ":", "black", 1.5)):
        right.plot(alphas, ssem.optimal_beta(alphas, tau, m, n, p), style, color=colour, lw=width,
                   label=f"instance, p = {p}")
    for p, colour in ((2, "C3"), (4, "C1")):
        right.plot(alphas, ssem.optimal_beta(alphas, tau, m, n, p, "supcon"), "-", color=colour, lw=1.2,
                   label=f'supcon, p = {p}')
    right.set(xlabel=r"$\alpha$", ylabel=r"$\beta^*$ (1 = class collapse)")
    right.set_title(r'$\beta^*$ is the same for every p with variant "instance", not with "supcon"', fontsize=9)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure


def within_variance_figure(_: FigureInputs):
    """W*(tau) for several alpha with the small-tau asymptote, and the alpha = 1 value."""
    from theory import ssem

    m, n = 3, 4
    taus = np.geomspace(1e-3, 2, 200)
    figure, (ax,) = _new_figure(6.8, 4.6)
    for index, alpha in enumerate((0.4, 0.6, 0.8)):
        within, _ = ssem.optimal_variances(alpha, taus, m, n)
        ax.loglog(taus, within, color=f"C{index}", lw=2, label=rf"$W^*$, $\alpha$ = {alpha:g}")
        ax.loglog(taus, ssem.small_tau_within(alpha, taus, n), "--", color=f"C{index}", lw=1,
                  label=r"asymptote $\frac{n-1}{n}\tau\log\frac{(n-1)\alpha}{1-\alpha}$" if index == 0 else None)
    within, _ = ssem.optimal_variances(1.0, taus, m, n)
    ax.loglog(taus, within, color="C3", lw=2, label=r"$W^*$, $\alpha$ = 1")
    ax.axhline(m * (n - 1) / (m * n - 1), color="k", ls=":", label=r"$m(n-1)/(mn-1)$")
    ax.set(xlabel=r"temperature $\tau$", ylabel=r"within-class variance $W^*$ at the optimum", ylim=(1e-4, 1.5))
    ax.set_title(f"Small-tau asymptote and alpha = 1 value (m={m}, n={n}, instance)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return figure


def _ssem_gram(beta: float, m: int, n: int, p: int) -> np.ndarray:
    """Gram of SSEM(beta) in the certificate's row order (class, instance, view); (mnp, mnp)."""
    from theory import ssem

    s_w, s_b = (float(s) for s in ssem.ssem_gram_entries(beta, m, n))
    index = np.arange(m * n * p)
    instance, label = index // p, index // (n * p)
    return np.where(instance[:, None] == instance[None, :], 1.0,
                    np.where(label[:, None] == label[None, :], s_w, s_b))


def certificate_figure(_: FigureInputs):
    """Certified minimum vs closed-form SSEM minimum, and certified Gram vs SSEM Gram, on small sizes."""
    from simulate import certify
    from theory import ssem

    sizes = ((2, 2, 2), (3, 2, 2), (2, 3, 2), (3, 3, 1))
    alphas, taus = (0.0, 0.3, 0.6, 1.0), (0.2, 0.5, 1.0, 2.0)
    figure, (left, right) = _new_figure(11.5, 4.4, 2)
    markers = "osD^"
    for index, (m, n, p) in enumerate(sizes):
        loss_gap, gram_gap, tau_of = [], [], []
        for alpha in alphas:
            for tau in taus:
                cert = certify.certify_combined(alpha, tau, m, n, p)
                beta = float(ssem.optimal_beta(alpha, tau, m, n, p))
                closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p))
                loss_gap.append(abs(cert.minimum - closed) / abs(closed))
                gram_gap.append(np.abs(cert.gram - _ssem_gram(beta, m, n, p)).max())
                tau_of.append(tau * (1 + 0.04 * (index - 1.5)))  # small offsets keep the sizes apart
        style = dict(marker=markers[index], ls="none", ms=6, alpha=0.8, label=f"(m, n, p) = ({m}, {n}, {p})")
        left.plot(tau_of, np.maximum(loss_gap, 1e-16), **style)
        right.plot(tau_of, np.maximum(gram_gap, 1e-16), **style)
    left.axhline(1e-6, color="k", ls="--", lw=1, label="tolerance 1e-6 (routes must agree)")
    right.axhline(1e-4, color="k", ls="--", lw=1, label="tolerance 1e-4 (claim B8)")
    left.set(xscale="log", yscale="log", xlabel=r"temperature $\tau$ ($\alpha \in \{0, 0.3, 0.6, 1\}$ at each)",
             ylabel=r"$|L_{cert} - L_{SSEM}(\beta^*)| / |L_{SSEM}|$")
    right.set(xscale="log", yscale="log", xlabel=r"temperature $\tau$",
              ylabel=r"$\max_{ab} |G_{cert} - G_{SSEM}(\beta^*)|$")
    left.set_title("minimum: convex certificate vs closed form", fontsize=10)
    right.set_title("minimiser: certified Gram vs SSEM Gram at the closed-form beta*", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(taus, [f"{tau:g}" for tau in taus])
        ax.minorticks_off()
        ax.set_yscale("log")  # minorticks_off also drops the y minor ticks; the log scale keeps its labels
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    figure.suptitle('Certified global minima of the combined loss (variant "instance") lie in SSEM', fontsize=11)
    return figure


def supcon_map_figure(_: FigureInputs):
    """Variant "supcon", m=n=p=2: relative drop of the certified minimum below the SSEM minimum over (alpha, tau)."""
    from simulate import certify
    from theory import ssem

    m, n, p = 2, 2, 2
    alphas, taus = np.linspace(0, 1, 9), np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    drop = np.zeros((len(alphas), len(taus)))
    for i, alpha in enumerate(alphas):
        for j, tau in enumerate(taus):
            beta = ssem.optimal_beta(alpha, tau, m, n, p, "supcon")
            closed = float(ssem.restricted_loss(beta, alpha, tau, m, n, p, "supcon"))
            drop[i, j] = (closed - certify.certify_combined(alpha, tau, m, n, p, "supcon").minimum) / abs(closed)
    figure, (ax,) = _new_figure(6.8, 4.8)
    mesh = ax.pcolormesh(alphas, np.arange(len(taus)), np.maximum(drop, 0).T, shading="nearest", cmap="magma_r",
                         vmin=0)
    below = drop > 1e-6
    a, t = np.meshgrid(alphas, np.arange(len(taus)), indexing="ij")
    ax.plot(a[below], t[below], "x", color="deepskyblue", ms=8, mew=2,
            label="certified minimum < SSEM minimum (rel. > 1e-6)")
    fine = np.geomspace(taus[0], taus[-1], 200)
    ax.plot(ssem.alpha_star(fine, m, n, p, "supcon"), np.interp(np.log(fine), np.log(taus), np.arange(len(taus))),
            color="C0", lw=2, label=r'$\alpha^*(\tau)$ of SSEM, variant "supcon"')
    ax.set_yticks(np.arange(len(taus)), [f"{t:g}" for t in taus])
    ax.set(xlabel=r"$\alpha$", ylabel=r"temperature $\tau$")
    ax.set_title('Variant "supcon", m=n=p=2: views separate at small alpha and tau', fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    figure.colorbar(mesh, ax=ax, label=r"$(L_{SSEM} - L_{cert}) / |L_{SSEM}|$")
    return figure


def prototype_limit_figure(_: FigureInputs):
    """|mean loss - log n_w - limit| against n_w, both anchor modes, with |c1|/n_w and the proven C/n_w."""
    import torch

    from simulate.losses import prototype_supcon_loss
    from theory import prototypes, simplex

    rng = np.random.default_rng(0)
    sizes, tau = (6, 6, 2, 1), 0.5
    labels = np.repeat(np.arange(4), sizes)
    z = rng.standard_normal((len(labels), 6))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    W = simplex.etf(4, 6, seed=1)
    n_w = np.unique(np.round(np.logspace(0, 5, 21)).astype(int))
    figure, axes = _new_figure(11.5, 4.4, 2)
    for ax, anchors in zip(axes, ("data", "all")):
        loss = np.array([float(prototype_supcon_loss(torch.tensor(z), torch.tensor(labels), torch.tensor(W), int(k),
                                                     tau, anchors)) for k in n_w])
        limit = prototypes.limit_value(z, labels, W, tau, anchors)
        ax.loglog(n_w, np.maximum(np.abs(loss - np.log(n_w) - limit), 1e-300), "o-", ms=4,
                  label="|mean loss - log n_w - limit| (simulate.losses)")
        ax.loglog(n_w, abs(prototypes.first_order_coefficient(z, labels, W, tau, anchors)) / n_w, "--",
                  label=r"$|c_1| / n_w$ (derived first-order term)")
        ax.loglog(n_w, prototypes.gap_bound_constant(z, labels, W, tau, anchors) / n_w, ":", lw=2,
                  label=r"proven bound $C / n_w$")
        extra = prototypes.extra_term(z, labels, W, tau, anchors)
        target = "mean CE" if anchors == "data" else rf"$\bar K$ (extra term $\bar K$ - mean CE = {extra:.3f} survives)"
        ax.set_title(f'anchors="{anchors}": limit = {target}', fontsize=9)
        ax.set(xlabel=r"prototype copies per class $n_w$", ylabel="distance to the limit")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    figure.suptitle(r"Prototype SCL tends to CE with a fixed classifier at rate $1/n_w$ "
                    rf"(m=4 ETF prototypes, class sizes {sizes}, random unit embeddings, $\tau$={tau:g})", fontsize=10)
    return figure


def _sweep_title(config: dict) -> str:
    return (f"m={config['n_classes']}, majority {config['majority_size']}, d={config['dim']}, tau={config['tau']:g}, "
            f"anchors={config['anchors']}, prototypes {config['geometry']}, full batch")


def prototype_delta_g_figure(inputs: FigureInputs):
    from simulate import prototypes

    figure = prototypes.delta_g_figure(inputs.prototype_sweep)
    figure.axes[0].set_title("ETF prototypes: DeltaG* of the free-embedding minimiser against n_w\n"
                             + _sweep_title(inputs.prototype_sweep["config"]), fontsize=9)
    return figure


def prototype_gram_figure(inputs: FigureInputs):
    from simulate import prototypes

    figure = prototypes.gram_figure(inputs.prototype_sweep)
    m = inputs.prototype_sweep["config"]["n_classes"]
    for ax in figure.axes[:-1]:  # the last axes is the colour bar
        ax.set_xticks(range(m)), ax.set_yticks(range(m))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("class c'", fontsize=7)
        ax.set_ylabel("class c", fontsize=7)
    figure.suptitle("Class-mean Gram <mu_c, mu_c'>: target | no prototypes | most prototypes "
                    "(classes 0-1 majority, 2-3 minority)\n" + _sweep_title(inputs.prototype_sweep["config"]),
                    fontsize=9)
    return figure


def custom_geometry_figure(_: FigureInputs):
    """DeltaG* against n_w for ETF and two non-ETF prototype geometries, with each n_w -> inf prediction."""
    from simulate import prototypes
    from simulate.prototypes_command import Config

    figure, (ax,) = _new_figure(7.0, 4.6)
    for index, geometry in enumerate(("etf", "orthogonal", "minority-spread:0.5")):
        result = prototypes.run(Config(n_classes=4, majority_size=10, imbalance=(10.0,), dim=8, tau=0.5,
                                       n_proto=(0, 1, 10, 100, 1000, 10000), geometry=geometry,
                                       certify_max_vectors=0))
        entry = result["summary"]["per_imbalance"][0]
        ax.plot(entry["n_proto"], np.maximum(entry["delta_g"], 1e-12), "o-", color=f"C{index}",
                label=f"{geometry}: free minimiser")
        limit = result["theory"]["limit_delta_g"]
        if limit > 1e-9:
            ax.axhline(limit, color=f"C{index}", ls="--", lw=1, label=rf"{geometry}: theory $n_w \to \infty$")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.2, 2e4)
    ax.set_yscale("log")
    ax.set(xlabel=r"prototype copies per class $n_w$ (symlog; 0 at left)", ylabel=r"$\Delta G^*$ to the prototype Gram")
    ax.set_title("Non-ETF prototypes: DeltaG* stops at the limit's value, not 0\n(m=4, R=10, majority 10, d=8, "
                 "tau=0.5, anchors=data; ETF limit is 0)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return figure


def certified_imbalance_figure(_: FigureInputs):
    """DeltaG* of the certified SCL minimiser's class means to the ETF Gram against R (m=3, no prototypes)."""
    import torch

    from simulate import certify, metrics
    from simulate.prototypes import class_sizes
    from theory import simplex

    m, ratios = 3, (1, 2, 5, 10)
    figure, (ax,) = _new_figure(6.4, 4.4)
    for index, tau in enumerate((0.2, 1.0)):
        values = []
        for ratio in ratios:
            cert = certify.certify_supcon(class_sizes(m, 10, ratio), tau).require_ok()
            values.append(float(metrics.delta_g(torch.as_tensor(cert.class_mean_gram()),
                                                torch.as_tensor(simplex.etf_gram(m)))))
        ax.plot(ratios, values, "o-", color=f"C{index}", label=rf"$\tau$ = {tau:g}")
    ax.set_xscale("log")
    ax.set_xticks(ratios, [str(r) for r in ratios])
    ax.set(xlabel="imbalance R = majority / minority size", ylabel=r"$\Delta G^*$ to the ETF Gram")
    ax.set_title("No prototypes: class means of the certified SCL minimiser vs the ETF\n(m=3, majority 10, "
                 "minority 10/R)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return figure


def empirical_figure(entry: dict):
    """DeltaG* (and variances or accuracies) against the swept value: mean ± std over seeds."""
    key, rows = entry["sweep"], entry["rows"]
    second = ("within_var", "between_var") if key == "alpha" else ("test_acc_majority", "test_acc_minority")
    figure, (left, right) = _new_figure(11.0, 4.2, 2)
    positions = np.arange(len(rows))
    for ax, metrics in ((left, ("delta_g",)), (right, second)):
        for metric in metrics:
            stats = [row.get(metric) for row in rows]
            if all(stats):
                ax.errorbar(positions, [s["mean"] for s in stats], yerr=[s["std"] for s in stats], marker="o",
                            capsize=4, label=METRIC_LABELS.get(metric, metric))
        ax.set_xticks(positions, [format_value(row[key]) for row in rows])
        ax.set_xlabel({"n_proto": r"prototype copies per class $n_w$", "alpha": r"$\alpha$"}.get(key, key))
        ax.grid(alpha=0.3)
    left.set_ylabel(r"$\Delta G^*$ at the last epoch")
    left.set_title(r"$\Delta G^*$ of the learnt class means to the target Gram", fontsize=9)
    right.set_ylabel("variance" if key == "alpha" else "nearest-class-centre test accuracy")
    right.set_title("within / between-class variance" if key == "alpha" else "test accuracy by class group",
                    fontsize=9)
    right.legend(fontsize=8)
    seeds = "/".join(map(str, sorted({row["seeds"] for row in rows})))
    figure.suptitle(f"Empirical: {entry['dataset']}, R = {format_value(entry['imbalance'])}, {entry['loss']} loss, "
                    f"tau = {entry['tau']}, {entry['epochs']} epochs (mean ± std over {seeds} seed(s); bars: 1 std)",
                    fontsize=10)
    return figure


FIGURES = (
    FigureSpec("phase_diagram", ("B2", "B3", "B8"),
               "Paper B phase diagram: closed-form within-class variance W* over (alpha, tau), the collapse threshold "
               "alpha*(tau), and free-embedding minima on a coarse grid in the same colours (m=4, n=4, p=2).",
               phase_figure),
    FigureSpec("restricted_loss", ("B1", "B4"),
               "The restricted loss L(beta) is convex with minimiser beta*; beta* does not depend on the number of "
               "views p for variant instance (it does for supcon).", restricted_loss_figure),
    FigureSpec("within_variance", ("B5",),
               "W* against tau: the small-tau asymptote and the alpha = 1 value m(n-1)/(mn-1).",
               within_variance_figure),
    FigureSpec("guideline", ("B7",),
               "The summarised guideline (alpha >= 1/n, tau <= 1/log m) against the exact collapse region; right: "
               "how wide the collapsing alpha range inside the guideline is, for every (m, n) of the audit.",
               guideline_figure),
    FigureSpec("certificates", ("B8",),
               "Convex certificates against the closed form on small sizes: relative loss difference and largest "
               "entry of certified Gram minus SSEM Gram at beta*.", certificate_figure),
    FigureSpec("supcon_map", ("B10",),
               'Variant "supcon": where the certified global minimum falls below the SSEM minimum (views separate).',
               supcon_map_figure),
    FigureSpec("prototype_limit", ("A1",),
               "Prototype SCL minus log n_w approaches its limit (mean CE for anchors=data, Kbar for anchors=all) "
               "like 1/n_w, within the proven bound.", prototype_limit_figure),
    FigureSpec("prototype_delta_g", ("A3", "A5"),
               "ETF prototypes: DeltaG* of the free-embedding minimiser to the prototype Gram against n_w, one curve "
               "per imbalance R (n_w = 0 is plain SCL).", prototype_delta_g_figure),
    FigureSpec("prototype_grams", ("A3", "A5"),
               "Target prototype Gram and learnt class-mean Grams at n_w = 0 and the largest n_w, per imbalance R.",
               prototype_gram_figure),
    FigureSpec("custom_geometry", ("A4",),
               "DeltaG* against n_w for ETF, orthogonal and minority-spread prototypes with the n_w -> infinity "
               "prediction of theory.prototypes.", custom_geometry_figure),
    FigureSpec("certified_imbalance", ("A5", "A8"),
               "Without prototypes: DeltaG* of the certified SCL minimiser's class means to the ETF Gram against the "
               "imbalance R.", certified_imbalance_figure),
    FigureSpec("paper_scale_prototypes", ("A9",),
               "CIFAR-10 compositions, ETF prototypes: certified DeltaG* against n_w (tau = 0.1) and the n_w needed "
               "for DeltaG* <= 0.05 and <= 0.01 against tau, per composition and R.",
               lambda inputs: _claim_figure("test_a9_paper_scale_prototypes", inputs)),
    FigureSpec("paper_scale_imbalance", ("A10",),
               "CIFAR-10 full training set, no prototypes: certified DeltaG* to the ETF Gram against R, per tau.",
               lambda inputs: _claim_figure("test_a10_paper_scale_imbalance", inputs)),
    FigureSpec("paper_scale_supcon_views", ("B12",),
               'CIFAR-10 and CIFAR-100 sizes, variant "supcon": view similarity a0 of the certified minimiser over '
               "(alpha, tau); crosses where the views separate.",
               lambda inputs: _claim_figure("test_b12_paper_scale_ssem", inputs)),
    FigureSpec("digits_prototypes_curves", ("A7",),
               "Digits, step R = 10: per-epoch training loss, DeltaG* to the ETF, within-class variance W and test "
               "nearest-class-centre accuracy of every run of A7, coloured by n_w.",
               lambda inputs: _claim_figure("test_a7_digits_prototypes", inputs)),
    FigureSpec("digits_alpha_curves", ("B11",),
               "Balanced digits, combined loss: per-epoch training loss, DeltaG*, within-class variance W and test "
               "nearest-class-centre accuracy of every run of B11, coloured by alpha.",
               lambda inputs: _claim_figure("test_b11_digits_alpha", inputs)),
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


def draw_figure(spec: FigureSpec, inputs: FigureInputs, out_dir) -> MadeFigure:
    """Draw and save one figure as out_dir/figures/<name>.png; an exception is kept as the figure's error."""
    from simulate import cli

    started = time.perf_counter()
    path, error = None, None
    try:
        figure = spec.draw(inputs)
        path = cli.save_figure(figure, Path(out_dir) / FIGURE_FOLDER / f"{spec.name}.png")
        _close(figure)
    except Exception as failure:  # a figure that cannot be drawn is reported, the report goes on
        error = f"{type(failure).__name__}: {failure}"
    return MadeFigure(spec.name, spec.claims, spec.caption, path, error, time.perf_counter() - started)


def draw_empirical(entry: dict, claims: tuple, out_dir, index: int) -> MadeFigure:
    """The figure of one empirical summary, attached to the claims with the empirical route."""
    spec = FigureSpec(f"empirical_{index}", claims,
                      f"Empirical {entry['dataset']}: final DeltaG* and "
                      f"{'variances' if entry['sweep'] == 'alpha' else 'accuracies'} against {entry['sweep']} "
                      f"(mean ± std over seeds), from {entry['path']}.", lambda _: empirical_figure(entry))
    return draw_figure(spec, FigureInputs(), out_dir)


def _close(figure) -> None:
    """Release a figure made through pyplot (library figures of simulate); object-API figures need nothing."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def empirical_claims(claims: dict[str, Claim]) -> tuple:
    return tuple(claim_id for claim_id, c in claims.items() if "empirical" in c.routes)
