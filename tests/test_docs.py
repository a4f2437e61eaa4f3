"""The documentation states what the code computes, and every docs link the code cites exists.

Formulas are read from the pages themselves (lines ``name = expression`` inside docs/*.md, parsed by
sympy), evaluated at a few points and compared with the library functions, so a formula edited in the
docs (or a function changed in the code) without the other fails here. Links: every ``docs/<page>.md``
and ``docs/<page>.md#<anchor>`` cited anywhere in the project's code and markdown, and every relative
link between the pages, must name an existing page and an existing heading (GitHub's anchor rule) or
``<a id="...">``.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch
from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

from simulate import losses
from theory import prototypes, simplex, ssem

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Where the project's own text lives (the virtual environment and outputs are not scanned).
SOURCE_DIRS = ("theory", "simulate", "empirical", "proofs_checks", "tests", "benchmarks", "docs")

SYMBOLS = {
    name: sp.Symbol(name, real=True)
    for name in ("m n p tau alpha beta r s_w s_b a b c a_i b_i c_ik x_ik n_i n_k n_maj R").split()
}
FUNCTIONS = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "max": sp.Max, "floor": sp.floor}


def stated(page: str, name: str) -> sp.Expr:
    """The expression of the one line ``name = expression`` of docs/<page>, parsed by sympy."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = re.findall(rf"^{re.escape(name)} = (.+)$", text, flags=re.MULTILINE)
    assert len(found) == 1, f"docs/{page} must state {name} = ... on exactly one line, found {len(found)}"
    return parse_expr(found[0], local_dict={**SYMBOLS, **FUNCTIONS})


def value(expr: sp.Expr, **point) -> float:
    return float(expr.subs({SYMBOLS[k]: v for k, v in point.items()}).evalf(30))


POINTS = [
    dict(m=3, n=4, p=2, alpha=0.3, tau=0.5),
    dict(m=2, n=3, p=3, alpha=0.8, tau=0.1),
    dict(m=5, n=2, p=1, alpha=0.55, tau=2.0),
]


# ---------------------------------------------------------------------------
# SSEM (docs/ssem.md)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("m, n, beta", [(3, 4, 0.3), (2, 3, 0.9), (4, 2, 0.0)])
def test_ssem_gram_entries_are_those_of_the_construction(m, n, beta):
    z = ssem.embeddings(m, n, 2, m * n + 1, beta, seed=0)  # (m, n, p, d)
    gram = np.einsum("ijvd,klwd->ijvklw", z, z)
    s_w, s_b = value(stated("ssem.md", "s_w"), n=n, beta=beta), value(stated("ssem.md", "s_b"), m=m, beta=beta)
    assert gram[0, 0, 0, 0, 1, 0] == pytest.approx(s_w, abs=1e-12)
    assert gram[0, 0, 0, 1, 0, 1] == pytest.approx(s_b, abs=1e-12)
    assert np.allclose(ssem.ssem_gram_entries(beta, m, n), (s_w, s_b), atol=1e-15)


def _restricted_loss(point: dict, beta: float) -> float:
    entries = {SYMBOLS["s_w"]: stated("ssem.md", "s_w"), SYMBOLS["s_b"]: stated("ssem.md", "s_b")}
    return value(stated("ssem.md", "L").subs(entries), beta=beta, **point)


@pytest.mark.parametrize("point", POINTS, ids=lambda p: f"m{p['m']}n{p['n']}p{p['p']}")
@pytest.mark.parametrize("beta", [0.2, 0.7, 1.0])
def test_restricted_loss_is_the_combined_loss_on_ssem(point, beta):
    stated_loss = _restricted_loss(point, beta)
    m, n, p = point["m"], point["n"], point["p"]
    theory_loss = ssem.restricted_loss(beta, point["alpha"], point["tau"], m, n, p)
    z = torch.from_numpy(ssem.embeddings(m, n, p, m * n, beta, seed=1).reshape(m * n * p, m * n))
    labels, instances = losses.balanced_layout(m, n, p)
    loss = losses.combined_loss(z, labels, instances, point["alpha"], point["tau"])  # losses.md, instance variant
    assert theory_loss == pytest.approx(stated_loss, rel=1e-12)
    assert float(loss) == pytest.approx(stated_loss, rel=1e-10)


@pytest.mark.parametrize("point", POINTS, ids=lambda p: f"m{p['m']}n{p['n']}p{p['p']}")
def test_collapse_thresholds(point):
    ratio = {SYMBOLS["r"]: stated("ssem.md", "r")}
    m, n, p, tau = point["m"], point["n"], point["p"], point["tau"]
    instance = value(stated("ssem.md", "alpha_star").subs(ratio), **point)
    assert ssem.alpha_star(tau, m, n) == pytest.approx(instance, rel=1e-12)
    if p >= 2:
        supcon = value(stated("ssem.md", "alpha_star_supcon").subs(ratio), **point)
        assert ssem.alpha_star(tau, m, n, p, "supcon") == pytest.approx(supcon, rel=1e-12)
    # The threshold is what the minimiser does: collapse just below it, none just above.
    assert ssem.optimal_beta(instance - 1e-6, tau, m, n, p) == 1.0
    assert ssem.optimal_beta(min(instance + 1e-6, 1.0), tau, m, n, p) < 1.0


@pytest.mark.parametrize("m, n, alpha", [(3, 4, 0.4), (2, 2, 0.9), (10, 5, 0.25)])
def test_critical_temperature(m, n, alpha):
    tau = value(stated("ssem.md", "tau_star"), m=m, n=n, alpha=alpha)
    assert ssem.tau_star(alpha, m, n) == pytest.approx(tau, rel=1e-12)
    assert ssem.optimal_beta(alpha, tau * (1 - 1e-6), m, n) < 1.0
    assert ssem.optimal_beta(alpha, tau * (1 + 1e-6), m, n) == 1.0


@pytest.mark.parametrize("m, n, alpha", [(3, 4, 0.6), (2, 5, 0.3)])
def test_within_class_variance_asymptotes(m, n, alpha):
    tau = 0.02
    small = value(stated("ssem.md", "W_small_tau"), n=n, tau=tau, alpha=alpha)
    assert ssem.optimal_variances(alpha, tau, m, n)[0] == pytest.approx(small, rel=1e-6)
    at_one = value(stated("ssem.md", "W_alpha_one"), m=m, n=n)
    for tau in (0.1, 1.0, 10.0):
        assert ssem.optimal_variances(1.0, tau, m, n)[0] == pytest.approx(at_one, rel=1e-9)


# ---------------------------------------------------------------------------
# Prototypes (docs/prototypes.md) and class imbalance (docs/notation.md)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("m, tau", [(3, 0.5), (10, 0.1), (4, 2.0)])
def test_etf_cross_entropy_minimum(m, tau):
    stated_minimum = value(stated("prototypes.md", "etf_ce_minimum"), m=m, tau=tau)
    W = torch.from_numpy(simplex.etf(m, m, seed=0))
    labels = torch.arange(m)
    at_prototypes = losses.fixed_classifier_ce(W, labels, W, tau)  # h_i = w_{y_i}
    assert prototypes.etf_ce_minimum(m, tau) == pytest.approx(stated_minimum, rel=1e-12)
    assert float(at_prototypes) == pytest.approx(stated_minimum, rel=1e-10)


def test_minority_size_rule():
    from empirical.data import kept_class_sizes
    from theory.compositions import minority_size, step_class_sizes

    rule = stated("notation.md", "minority_size")
    for majority, ratio in itertools.product((5, 50, 5000), (1, 2, 3, 10, 100, 10000)):
        expected = int(value(rule, n_maj=majority, R=ratio))
        assert minority_size(majority, ratio) == expected
        assert step_class_sizes(4, majority, ratio) == (majority, majority, expected, expected)
        assert kept_class_sizes([majority] * 4, ratio) == [majority, majority, expected, expected]


@pytest.mark.parametrize("ratio, majority, minority", [(100, 203, 2), (10, 186, 19)])
def test_paper_scale_batch_composition(ratio, majority, minority):
    from theory.compositions import cifar10_composition

    assert cifar10_composition(ratio, "batch", 1024) == (majority,) * 5 + (minority,) * 5
    full = cifar10_composition(ratio, "full")
    assert full == (5000,) * 5 + (5000 // ratio,) * 5
    text = (DOCS / "notation.md").read_text(encoding="utf-8")
    assert f"{majority} per majority" in text or f"{majority} and {minority}" in text
    assert f"{sum(full):,} images at R = {ratio}" in text


# ---------------------------------------------------------------------------
# Certificates (docs/certificates.md)
# ---------------------------------------------------------------------------


def _invariant_gram(sizes, p, a, b, c) -> np.ndarray:
    """Gram of views (class-major, instance, view) with one value per relation; (K, K)."""
    label = np.repeat(np.arange(len(sizes)), np.asarray(sizes) * p)
    instance = np.repeat(np.arange(sum(sizes)), p)
    G = c[label[:, None], label[None, :]]
    same_class = label[:, None] == label[None, :]
    G = np.where(same_class, b[label][:, None], G)
    G = np.where(instance[:, None] == instance[None, :], a[label][:, None], G)
    np.fill_diagonal(G, 1.0)
    return G


@pytest.mark.parametrize("m, n, p", [(3, 2, 2), (2, 3, 3), (4, 2, 1)])
def test_balanced_combined_gram_eigenvalues(m, n, p):
    rng = np.random.default_rng(m * 100 + n * 10 + p)
    a, b, c = rng.uniform(-0.3, 0.9, 3)
    G = _invariant_gram([n] * m, p, np.full(m, a), np.full(m, b), np.full((m, m), c))
    text = (DOCS / "certificates.md").read_text(encoding="utf-8")
    multiplicities = dict(re.findall(r"^\| (eig_\w+) \| ([^|]+?) \|", text, flags=re.MULTILINE))
    assert set(multiplicities) == {"eig_all", "eig_class", "eig_instance", "eig_view"}
    point = dict(m=m, n=n, p=p, a=a, b=b, c=c)
    expected = []
    for name, count in multiplicities.items():
        multiplicity = parse_expr(
            count,
            local_dict=SYMBOLS,  # written "m (n - 1)" in the table
            transformations=standard_transformations + (implicit_multiplication,),
        )
        expected += [value(stated("certificates.md", name), **point)] * int(value(multiplicity, **point))
    assert np.allclose(np.sort(expected), np.linalg.eigvalsh(G), atol=1e-12)


def test_gram_of_normalised_block_sums():
    sizes, p = (4, 2, 3), 2
    rng = np.random.default_rng(7)
    a, b = rng.uniform(-0.5, 0.9, 3), rng.uniform(-0.5, 0.9, 3)
    c = rng.uniform(-0.5, 0.5, (3, 3))
    c = (c + c.T) / 2
    x = rng.uniform(-0.9, 0.9, (3, 2))  # <view of class i, prototype k>, two prototypes
    G = _invariant_gram(sizes, p, a, b, c)
    label = np.repeat(np.arange(3), np.asarray(sizes) * p)
    sums = (label[:, None] == np.arange(3)[None, :]) / np.sqrt(np.asarray(sizes) * p)  # (K, m) normalised
    block = sums.T @ G @ sums
    border = sums.T @ x[label]  # rows of the prototypes' columns
    M_ii, M_ik, X_ik = (stated("certificates.md", name) for name in ("M_ii", "M_ik", "X_ik"))
    for i, k in itertools.product(range(3), range(3)):
        if i == k:
            assert block[i, i] == pytest.approx(value(M_ii, p=p, a_i=a[i], b_i=b[i], n_i=sizes[i]), rel=1e-12)
        else:
            assert block[i, k] == pytest.approx(value(M_ik, p=p, c_ik=c[i, k], n_i=sizes[i], n_k=sizes[k]), rel=1e-12)
    for i, k in itertools.product(range(3), range(2)):
        assert border[i, k] == pytest.approx(value(X_ik, p=p, x_ik=x[i, k], n_i=sizes[i]), rel=1e-12)


# ---------------------------------------------------------------------------
# Links and anchors
# ---------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.DOTALL), flags=re.MULTILINE)
    return {slug(h) for h in headings} | set(re.findall(r'<a id="([^"]+)"></a>', text))


def project_files():
    yield ROOT / "README.md"
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md") and "__pycache__" not in path.parts:
                yield path


def cited_links():
    """(file, 'page.md', anchor or None): docs links cited in code and markdown, and links between pages."""
    for path in project_files():
        text = path.read_text(encoding="utf-8")
        for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text):
            yield path, page, anchor or None
        if path.parent == DOCS:
            for page, anchor in re.findall(r"\]\(([\w-]+\.md)?(?:#([\w-]+))?\)", text):
                yield path, page or path.name, anchor or None


def test_every_cited_docs_page_and_anchor_exists():
    missing = []
    for path, page, anchor in cited_links():
        target = DOCS / page
        if not target.is_file():
            missing.append(f"{path.relative_to(ROOT)}: docs/{page} does not exist")
        elif anchor is not None and anchor not in anchors(target):
            missing.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor} is not a heading or id of that page")
    assert not missing, "\n".join(missing)


def test_links_are_checked_at_all():
    """The scan above finds links (a broken regex would pass it vacuously)."""
    found = list(cited_links())
    assert len(found) > 30
    assert any(anchor for _, _, anchor in found)


def test_slug_follows_github():
    assert slug("Combined loss, instance variant") == "combined-loss-instance-variant"
    assert slug("Anchors all: the extra term") == "anchors-all-the-extra-term"
    assert slug("Class-mean Gram and Delta G") == "class-mean-gram-and-delta-g"


def test_readme_links_the_docs():
    assert "](docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_no_reference_to_private_notes_or_issue_numbers():
    # The repository documents itself: code and docs cite docs/ pages, papers or this suite's criteria,
    # never the team's private design notes or an issue number, which a reader of the repo cannot follow.
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.md"], cwd=ROOT, capture_output=True, text=True).stdout
    pattern = re.compile("DES" + "IGN" + "|(?i:iss" + "ue [0-9])")  # split: this file must not match itself
    found = []
    for name in tracked.split():
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not found, "\n".join(found)
