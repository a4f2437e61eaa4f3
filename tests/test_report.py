"""Tests of the verification report (`proofs_checks.report`, `python -m proofs_checks`).

A fake registry of three claims (one holds, one fails, one raises) stands in for the real
claims, so no real check runs here; the real figures are exercised only for the cheap,
closed-form ones.
"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_checks import __main__ as command
from proofs_checks import report
from proofs_checks.registry import Claim, Result

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CALLS = []


def _holds():
    CALLS.append("X1")
    return Result("holds", {"max error": np.float64(1.5e-9), "points": np.int64(12), "grid": (0.1, 0.2)})


def _fails():
    CALLS.append("X2")
    return Result("fails", {"margin": -0.25}, counterexample="m=3, n=4, alpha=0.26 collapses")


def _raises():
    CALLS.append("X3")
    raise RuntimeError("solver exploded | badly")


FAKE = {
    "X1": Claim("X1", "Paper X §1", "a statement with a | pipe and alpha*(tau)", ("exact",), _holds),
    "X2": Claim("X2", "summary of Paper X", "a guideline", ("certificate",), _fails, expect="fails"),
    "X3": Claim("X3", "Paper X §3", "a claim whose check crashes", ("free optimisation",), _raises),
}


@pytest.fixture
def fake_registry(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(report, "load_claims", lambda: (dict(FAKE), []))
    return FAKE


def _cells(row: str) -> list[str]:
    """Cells of a markdown table row, splitting on unescaped pipes only."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _outcomes():
    return [report.run_claim(claim) for claim in FAKE.values()]


# ---------------------------------------------------------------------------
# Running claims
# ---------------------------------------------------------------------------


def test_each_verdict_and_the_error_are_kept_with_their_details():
    holds, fails, raises = _outcomes()
    assert (holds.status, fails.status, raises.status) == ("holds", "fails", "error")
    assert fails.detail == "m=3, n=4, alpha=0.26 collapses"
    assert raises.detail == "RuntimeError: solver exploded | badly"
    assert "_raises" in raises.traceback
    assert holds.detail is None and not any(o.unexpected for o in (holds, fails, raises))


def test_a_check_that_returns_something_else_is_an_error():
    claim = Claim("Y1", "s", "t", ("exact",), lambda: {"verdict": "holds"})
    outcome = report.run_claim(claim)
    assert outcome.status == "error" and "not a registry.Result" in outcome.detail


def test_a_verdict_other_than_the_asserted_one_is_flagged():
    claim = Claim("Y2", "s", "t", ("exact",), lambda: Result("fails", {}, counterexample="c"), expect="holds")
    outcome = report.run_claim(claim)
    assert outcome.unexpected
    assert "the suite asserts *holds*" in report.verdict_text(outcome)
    assert "differs from the suite's assertion: Y2" in report.summary_line([outcome])


def test_exit_code_is_one_exactly_when_a_claim_errored():
    outcomes = _outcomes()
    assert report.exit_code(outcomes) == 1
    assert report.exit_code(outcomes[:2]) == 0
    assert report.counts(outcomes) == {"holds": 1, "fails": 1, "inconclusive": 0, "not run": 0, "error": 1}


def test_a_module_that_does_not_import_becomes_an_error(monkeypatch):
    def import_module(name):
        if name.endswith("test_b7_guideline"):
            raise SyntaxError("invalid syntax (test_b7_guideline.py, line 3)")

    monkeypatch.setattr(report.importlib, "import_module", import_module)
    _, failed = report.load_claims()
    assert [o.id for o in failed] == ["test_b7_guideline"]
    assert failed[0].status == "error" and failed[0].detail.startswith("SyntaxError: invalid syntax")


def test_claims_are_ordered_by_letter_then_number_and_selected_by_id():
    assert sorted(["B10", "A2", "B9", "A10", "B1"], key=report.claim_order) == ["A2", "A10", "B1", "B9", "B10"]
    assert report.parse_claim_ids(" x1, X3,x1 ") == ("X1", "X3")
    assert list(report.select_claims(FAKE, ("X3", "X1"))) == ["X1", "X3"]
    with pytest.raises(ValueError, match="Z9"):
        report.select_claims(FAKE, ("X1", "Z9"))
    with pytest.raises(ValueError, match="--claims"):
        report.parse_claim_ids(" , ")


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def test_table_has_one_row_per_claim_with_six_columns_and_the_verdicts():
    table = report.verdict_table(_outcomes())
    header, rule, *rows = table.splitlines()
    assert _cells(header) == ["id", "source", "statement", "verdict", "key figures", "routes"]
    assert len(rows) == 3 and all(len(_cells(row)) == 6 for row in rows)  # the '|' in X1's statement is escaped
    by_id = {re.search(r"X\d", row).group(): _cells(row) for row in rows}
    assert by_id["X1"][3] == "**holds**" and "max error = 1.5e-09" in by_id["X1"][4]
    assert by_id["X2"][3].startswith("**fails**") and "alpha=0.26 collapses" in by_id["X2"][3]
    assert by_id["X3"][3].startswith("**error**") and "RuntimeError: solver exploded" in by_id["X3"][3]
    assert by_id["X3"][5] == "free optimisation"


def test_readme_has_a_section_per_claim_with_all_figures_and_the_error_message():
    text = report.render_readme(_outcomes(), [], [], {"command": "python -m proofs_checks", "seconds": 1.0})
    for claim_id in FAKE:
        assert f'<a id="claim-{claim_id.lower()}"></a>' in text and f"### {claim_id} — " in text
    assert "| points | 12 |" in text and "| grid | [0.1, 0.2] |" in text
    assert "**Counterexample:** m=3, n=4, alpha=0.26 collapses" in text
    assert "RuntimeError: solver exploded | badly" in text  # in a code block: verbatim
    assert "1 holds, 1 fails, 0 inconclusive, 0 not run, 1 error" in text


def test_report_json_holds_the_same_verdicts_and_is_valid_json():
    outcomes = _outcomes()
    data = json.loads(json.dumps(report.report_json(outcomes, [], [], {"seconds": 2.0}, {"out": "x"})))
    assert [(c["id"], c["verdict"]) for c in data["claims"]] == [("X1", "holds"), ("X2", "fails"), ("X3", "error")]
    assert data["claims"][0]["figures"] == {"max error": 1.5e-9, "points": 12, "grid": [0.1, 0.2]}
    assert data["summary"]["exit_code"] == 1 and data["summary"]["errors"] == ["X3"]


def test_plain_makes_numpy_and_odd_values_json_ready():
    value = report.plain(
        {"a": np.float32(1.5), 2: (1, np.int64(2)), "c": np.array([[1.0]]), "d": object(), "e": np.bool_(True)}
    )
    assert json.loads(json.dumps(value))["a"] == 1.5
    assert value["2"] == [1, 2] and value["c"] == [[1.0]] and isinstance(value["d"], str) and value["e"] is True


def test_escape_keeps_table_cells_whole():
    assert report.escape("a | b") == "a \\| b"
    assert report.escape("DeltaG* and n_w") == "DeltaG\\* and n\\_w"
    assert report.escape("<script> x <= y") == "&lt;script> x <= y"
    assert report.escape("two\nlines") == "two lines"


# ---------------------------------------------------------------------------
# The README's verdict block
# ---------------------------------------------------------------------------


def test_marked_block_is_replaced_and_nothing_else_changes():
    text = f"# Title\n\nintro\n\n{report.README_START}\nold table\n{report.README_END}\n\nafter\n"
    updated = report.replace_marked_block(text, "new table")
    assert updated == f"# Title\n\nintro\n\n{report.README_START}\nnew table\n{report.README_END}\n\nafter\n"
    assert report.replace_marked_block(updated, "new table") == updated


@pytest.mark.parametrize(
    "text",
    [
        "no markers",
        f"{report.README_END}\n{report.README_START}",
        f"{report.README_START}{report.README_START}{report.README_END}",
    ],
)
def test_marked_block_needs_both_markers_once_in_order(text):
    with pytest.raises(ValueError, match="verdicts:start"):
        report.replace_marked_block(text, "x")


def test_project_readme_has_the_verdict_block():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(report.README_START) == 1 and text.count(report.README_END) == 1
    assert text.index("## Current verdicts") < text.index(report.README_START)


# ---------------------------------------------------------------------------
# The command line, on the fake registry
# ---------------------------------------------------------------------------


def test_command_reports_the_error_writes_files_and_exits_1(fake_registry, tmp_path, capsys):
    out = tmp_path / "report"
    assert command.main(["--out", str(out), "--no-figures"]) == 1
    assert CALLS == ["X1", "X2", "X3"]
    data = json.loads((out / "report.json").read_text())
    assert [c["verdict"] for c in data["claims"]] == ["holds", "fails", "error"]
    assert data["config"]["figures"] is False
    assert "RuntimeError: solver exploded" in (out / "README.md").read_text()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "errors: X3" in lines[0] and "1 error" in lines[0]


def test_claims_option_runs_only_the_selected_claims_and_exits_0(fake_registry, tmp_path):
    out = tmp_path / "report"
    assert command.main(["--out", str(out), "--claims", "x2,X1"]) == 0
    assert CALLS == ["X1", "X2"]
    data = json.loads((out / "report.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["X1", "X2"] and data["figures"] == []


def test_update_readme_rewrites_only_the_block(fake_registry, tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Project\n\n## Current verdicts\n\n", "\n\n## Later\nkept\n"
    readme.write_text(f"{before}{report.README_START}\nstale\n{report.README_END}{after}")
    assert command.main(["--out", str(tmp_path / "r"), "--no-figures", "--update-readme", "--readme", str(readme)]) == 1
    text = readme.read_text()
    assert text.startswith(before + report.README_START) and text.endswith(report.README_END + after)
    block = text.split(report.README_START)[1].split(report.README_END)[0]
    assert "stale" not in block
    rows = [line for line in block.splitlines() if line.startswith("| X")]
    assert len(rows) == 3 and "**error**" in rows[2]


def _exits_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        command.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m proofs_checks: error:")
    return err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--claims", ""], "--claims"),
        (["--claims", " , "], "--claims"),
        (["--claims", "X1", "--update-readme"], "drop --claims"),
        (["--empirical-results", "/nonexistent/folder"], "--empirical-results"),
        (["--update-readme", "--readme", "/nonexistent/README.md"], "--readme"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, says, tmp_path, capsys, fake_registry):
    out = tmp_path / "report"
    assert says in _exits_2(["--out", str(out), *argv], capsys)
    assert not out.exists() and CALLS == []


@pytest.mark.parametrize("case", ["file", "under a file", "empty", "proc"])
def test_an_unwritable_out_exits_2_before_any_check(case, tmp_path, capsys, fake_registry):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"file": str(blocker), "under a file": str(blocker / "sub"), "empty": "", "proc": "/proc/x"}[case]
    assert "--out" in _exits_2(["--out", out, "--no-figures"], capsys)
    assert CALLS == [] and [p.name for p in tmp_path.iterdir()] == ["file"] and blocker.read_text() == "x"


def test_help_shows_every_default_in_input_syntax(capsys):
    with pytest.raises(SystemExit) as stop:
        command.parse(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--out OUT output folder (replaced as one set) (default: report)",
        "(default: none)",
        "--no-figures",
        "(default: on)",
        "(default: off)",
        f"(default: {command.PROJECT_README})",
    ):
        assert shown in text
    assert text.count("(default:") == len(command.Config.__dataclass_fields__)


def test_a_report_replaces_the_folder_as_one_set_and_says_its_exit_code(fake_registry, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_text("from another report")
    assert command.main(["--out", str(out), "--claims", "X1", "--no-figures"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "report.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging or retired folder left
    line = capsys.readouterr().out.strip()
    assert "exit 0 (every check ran)" in line and line.endswith(str(out / "README.md"))
    data = json.loads((out / "report.json").read_text())
    assert data["metadata"]["exit_code"] == 0 and data["metadata"]["exit_rule"] == command.EXIT_RULE
    assert data["config"]["claims"] == ["X1"]


FUZZ_FLAGS = ["--claims", "--no-figures", "--empirical-results", "--update-readme", "--readme", "--bogus"]
FUZZ_VALUES = ["", ",", "X1", "x1,X2", "Z9", "A1,,B2", "none", "/nonexistent", "/proc/x", "README.md", "-1"]


@settings(max_examples=100, deadline=None)
@given(tokens=st.lists(st.sampled_from(FUZZ_FLAGS + FUZZ_VALUES), max_size=6))
def test_fuzzed_command_lines_exit_0_or_2_and_write_nothing(tmp_path_factory, tokens):
    out = tmp_path_factory.mktemp("fuzz") / "never"
    try:
        command.parse([*tokens, "--out", str(out)])  # validation only: no claim runs
    except SystemExit as stop:
        assert stop.code == 2
    assert not out.exists() and not list(out.parent.iterdir())


def test_unknown_claim_id_exits_2_naming_it_and_the_known_ones(fake_registry, tmp_path, capsys):
    err = _exits_2(["--out", str(tmp_path / "r"), "--claims", "X1,Z9"], capsys)
    assert "Z9" in err and "X1, X2, X3" in err and CALLS == []


def test_readme_without_markers_exits_2(fake_registry, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert "verdicts:start" in _exits_2(["--update-readme", "--readme", str(readme)], capsys)


def test_the_module_entry_point_exits_2_without_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "proofs_checks", "--claims", ","],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------
# Empirical summaries
# ---------------------------------------------------------------------------


def _write_summary(folder: Path) -> Path:
    runs = [
        {"status": "finished", "n_proto": n_w, "seed": seed, "delta_g": value, "test_acc_minority": 0.5}
        for (n_w, seed, value) in ((0, 0, 1.0), (0, 1, 3.0), (10, 0, 0.5), (10, 1, 0.7))
    ]
    runs.append({"status": "interrupted", "n_proto": 10, "seed": 2, "delta_g": 100.0})
    folder.mkdir(parents=True)
    path = folder / "summary.json"
    path.write_text(
        json.dumps(
            {
                "sweep": "n_proto",
                "base_config": {"dataset": "digits", "imbalance": 10.0, "loss": "prototype", "tau": 0.1, "epochs": 3},
                "runs": runs,
            }
        )
    )
    return path


def test_empirical_summary_gives_mean_and_sample_std_over_finished_seeds(tmp_path):
    entry = report.empirical_summary(_write_summary(tmp_path / "digits"))
    first, second = entry["rows"]
    assert first["n_proto"] == 0 and first["delta_g"]["mean"] == 2.0 and first["delta_g"]["n"] == 2
    assert math.isclose(first["delta_g"]["std"], math.sqrt(2.0))
    assert math.isclose(second["delta_g"]["mean"], 0.6) and math.isclose(second["delta_g"]["std"], math.sqrt(0.02))
    assert entry["finished"] == 4 and entry["runs"] == 5
    assert "| 0 | 2 ± 1.4 (2) | 0.5 ± 0 (2) |" in report.empirical_markdown(entry)


def test_empirical_summaries_are_found_in_the_folder_or_its_subfolders(tmp_path):
    path = _write_summary(tmp_path / "runs" / "digits")
    assert report.find_empirical_summaries(tmp_path / "runs") == [path]
    assert report.find_empirical_summaries(path.parent) == [path]
    with pytest.raises(ValueError, match="no summary.json"):
        report.find_empirical_summaries(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a summary"):
        report.empirical_summary(tmp_path / "bad" / "summary.json")


def test_command_draws_the_empirical_figure_for_empirical_claims(monkeypatch, tmp_path):
    claims = {"E1": Claim("E1", "Paper A", "digits", ("empirical",), lambda: Result("not run", reason="no data"))}
    monkeypatch.setattr(report, "load_claims", lambda: (claims, []))
    _write_summary(tmp_path / "emp")
    out = tmp_path / "report"
    assert command.main(["--out", str(out), "--claims", "E1", "--empirical-results", str(tmp_path / "emp")]) == 0
    assert (out / "figures" / "empirical_0.png").stat().st_size > 0
    data = json.loads((out / "report.json").read_text())
    assert data["claims"][0]["images"] == ["figures/empirical_0.png"] and data["empirical"][0]["rows"][0]["seeds"] == 2
    assert "## Empirical results" in (out / "README.md").read_text()


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def test_a_figure_that_fails_is_reported_not_raised(tmp_path):
    def broken(_):
        raise ValueError("no data for this figure")

    made = report.draw_figure(report.FigureSpec("broken", ("X1",), "caption", broken), report.FigureInputs(), tmp_path)
    assert made.path is None and made.error == "ValueError: no data for this figure"
    text = report.render_readme(_outcomes()[:1], [made], [], {})
    assert "could not be drawn" in text and "no data for this figure" in text


@pytest.mark.parametrize("name", ["restricted_loss", "within_variance", "guideline"])
def test_closed_form_figures_are_labelled_and_saved(name, tmp_path):
    spec = next(spec for spec in report.FIGURES if spec.name == name)
    figure = spec.draw(report.FigureInputs())
    for axes in figure.axes:
        if axes.get_label() == "<colorbar>":
            continue
        assert axes.get_xlabel() and axes.get_ylabel() and (axes.get_title() or figure._suptitle)
    from simulate import cli

    assert cli.save_figure(figure, tmp_path / f"{name}.png").stat().st_size > 10_000


def test_figures_are_chosen_by_the_claims_they_illustrate():
    assert report.figure_specs(None) == report.FIGURES
    assert [spec.name for spec in report.figure_specs(("B7",))] == ["guideline"]
    assert report.figure_specs(("X1",)) == ()
