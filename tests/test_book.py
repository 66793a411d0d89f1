"""The book: its table of contents, configuration, chapters, widgets, and a full build.

The fast tests read files only. The slow one builds the whole book the way the
README does (``jupyter-book build . -W -n --keep-going``), into a temporary
folder with a fresh execution cache, so every chapter really executes; then it
checks the HTML of every page: its exact Colab link, figures and math in the
chapters, and no error output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import nbformat
import pytest
import yaml

from sslcourse.notebook import REPOSITORY_URL, SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
COLAB = "https://colab.research.google.com/github/sslcourse/sslcourse/blob/main/{}.ipynb"
BIBLIOGRAPHY = ROOT / "references.bib"

#: The book's reference part: pages that explain no method, so they show no package code and no figure.
REFERENCE_PAGES = ("book/notation", "book/glossary", "book/syllabus", "book/bibliography")


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def toc_files() -> list[str]:
    """Every page of _toc.yml (root first), as paths without suffix, e.g. 'book/intro'."""
    toc = load_yaml("_toc.yml")
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def chapters() -> list[str]:
    """The executed pages: toc entries under book/."""
    return [f for f in toc_files() if f.startswith("book/")]


def lab_pages() -> list[str]:
    return [f for f in toc_files() if f.startswith("labs/")]


def read_notebook(page: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / f"{page}.ipynb", as_version=4)


# --------------------------------------------------------------- fast checks
def test_every_toc_page_exists_as_a_notebook():
    missing = [f for f in toc_files() if not (ROOT / f"{f}.ipynb").is_file()]
    assert not missing, f"_toc.yml lists pages with no .ipynb (Colab opens only notebooks): {missing}"
    assert len(set(toc_files())) == len(toc_files()), "_toc.yml lists a page twice"


def test_every_book_notebook_is_in_the_toc():
    listed = set(toc_files())
    orphans = sorted(f"book/{p.stem}" for p in (ROOT / "book").glob("*.ipynb") if f"book/{p.stem}" not in listed)
    assert not orphans, f"book/ notebooks missing from _toc.yml (only_build_toc_files would drop them silently): {orphans}"


def test_config_points_the_colab_button_at_the_canonical_repository():
    config = load_yaml("_config.yml")
    assert config["repository"]["url"] == REPOSITORY_URL, "_config.yml repository.url differs from sslcourse.notebook.REPOSITORY_URL"
    assert config["repository"]["branch"] == "main"
    assert config["repository"].get("path_to_book", "") == "", "pages are addressed from the repository root"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "cache"
    assert COLAB.format("x").startswith(f"https://colab.research.google.com/github/{REPOSITORY_URL.split('github.com/')[1]}/blob/main/")


def test_lab_pages_are_excluded_from_execution():
    # myst-nb matches each pattern against the end of the notebook's path (PurePosixPath.match)
    patterns = load_yaml("_config.yml")["execute"]["exclude_patterns"]
    for page in lab_pages():
        path = PurePosixPath(ROOT.as_posix()) / f"{page}.ipynb"
        assert any(path.match(p) for p in patterns), f"{page} would be executed by the book build; patterns: {patterns}"
    for page in chapters():
        path = PurePosixPath(ROOT.as_posix()) / f"{page}.ipynb"
        assert not any(path.match(p) for p in patterns), f"chapter {page} is excluded from execution"


def test_build_excludes_non_book_folders():
    excluded = set(load_yaml("_config.yml")["exclude_patterns"])
    for folder in ("_build", "_grading", "solutions", "tests", ".venv"):
        assert folder in excluded, f"_config.yml exclude_patterns should list {folder}"


@pytest.mark.parametrize("page", chapters())
def test_chapter_starts_with_title_then_setup_cell(page):
    nb = read_notebook(page)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{page}: the first cell must be the title (# ...)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{page} has no code cell"
    assert code[0].source == SETUP_CELL, f"{page}: the first code cell must equal sslcourse.notebook.SETUP_CELL"
    assert f"git+{REPOSITORY_URL}" in code[0].source


@pytest.mark.parametrize("page", chapters())
def test_chapter_is_stored_without_outputs(page):
    # the build executes chapters; stored outputs would only make diffs noisy and go stale
    nb = read_notebook(page)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{page}: clear the outputs of cells {dirty} before committing"


@pytest.mark.parametrize("page", [p for p in chapters() if p != "book/running" and p not in REFERENCE_PAGES])
def test_chapter_shows_package_code_and_cites(page):
    nb = read_notebook(page)
    text = "\n".join(c.source for c in nb.cells)
    assert "## Summary" in text, f"{page} has no summary"
    if page != "book/intro":
        assert "show_source(" in text, f"{page} should show the package's code with show_source"
    cites = re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text)
    assert cites or re.search(r"\(\d{4}\)|\d{4}\)", text), f"{page} quotes no paper"


# ------------------------------------------------------ the scholarly apparatus
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
TERM_ROLE = re.compile(r"\{term\}`([^`]*)`")
# Documents a reader cannot look up: the course's commissioning material. Cite the paper instead. ("the seeds"
# alone is not matched: chapters rightly speak of the random seeds of their runs.)
UNCITABLE_SOURCE = re.compile(
    r"seed reports?|lecture decks?|seed material|\bdecks? \d{3}\b|\breport 000\b"
    r"|\bthe seeds of (?:this|the) course\b|\bthe course's seeds\b",
    flags=re.IGNORECASE,
)


def citing_notebooks() -> list[Path]:
    """Every notebook a reader sees: the book's pages and the labs (instructor and released editions)."""
    return sorted([*(ROOT / "book").glob("*.ipynb"), *(ROOT / "solutions").glob("*/*.ipynb"), *(ROOT / "labs").glob("*/*.ipynb")])


def notebook_text(path: Path) -> str:
    # code cells too: a cell may display Markdown (parsed as MyST) that cites
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)


def cited_keys(text: str) -> set[str]:
    """The bibliography keys of every {cite}, {cite:p}, {cite:t}... role, including {pre}key{post} forms."""
    keys = set()
    for group in CITE_ROLE.findall(text):
        for part in group.split(","):
            key = re.sub(r"\{[^}]*\}", "", part).strip()
            if key:
                keys.add(key)
    return keys


def bibliography_entries():
    from pybtex.database import parse_file  # a dependency of sphinxcontrib-bibtex, which Jupyter Book uses

    return parse_file(str(BIBLIOGRAPHY)).entries


def link_exceptions() -> dict[str, str]:
    """Entries allowed without a link: ``% link-exception KEY: reason`` comments in references.bib."""
    return dict(re.findall(r"^%\s*link-exception\s+([^\s:]+):\s*(\S.*)$", BIBLIOGRAPHY.read_text(), flags=re.MULTILINE))


def markdown_of(page: str) -> str:
    return "\n".join(c.source for c in read_notebook(page).cells if c.cell_type == "markdown")


def glossary_entries() -> list[tuple[list[str], str]]:
    """(terms, definition) of each entry of the glossary directive(s) of book/glossary."""
    blocks = re.findall(r"```\{glossary\}\n(.*?)\n```", markdown_of("book/glossary"), flags=re.DOTALL)
    entries: list[tuple[list[str], str]] = []
    terms: list[str] = []
    definition: list[str] = []
    for line in "\n".join(blocks).splitlines():
        if not line.strip():
            continue
        if line.startswith((" ", "\t")):
            definition.append(line.strip())
            continue
        if definition:
            entries.append((terms, " ".join(definition)))
            terms, definition = [], []
        terms.append(line.strip())
    if terms:
        entries.append((terms, " ".join(definition)))
    return entries


def test_cite_key_parser_reads_every_role_form():
    # the check below relies on this parser; a parser that found nothing would let every page pass
    text = "{cite:t}`a2020x` and {cite:p}`b2019y, c2018z`, {cite}`d2017w`, {cite:ps}`{see}e2016v{p. 3}`"
    assert cited_keys(text) == {"a2020x", "b2019y", "c2018z", "d2017w", "e2016v"}
    assert cited_keys(notebook_text(ROOT / "book" / "bibliography.ipynb")), "the bibliography page shows a citation"


def test_every_cited_key_is_in_the_bibliography():
    known = set(bibliography_entries())
    missing: dict[str, list[str]] = {}
    for path in citing_notebooks():
        for key in sorted(cited_keys(notebook_text(path)) - known):
            missing.setdefault(key, []).append(path.relative_to(ROOT).as_posix())
    assert not missing, f"cited keys that references.bib lacks (add the entry or fix the key): {missing}"


def test_every_bibliography_entry_has_authors_title_year_and_a_link():
    entries = bibliography_entries()
    exceptions = link_exceptions()
    assert set(exceptions) <= set(entries), f"link exceptions for keys that are not entries: {sorted(set(exceptions) - set(entries))}"
    problems = []
    for key, entry in entries.items():
        fields = entry.fields
        if not (entry.persons.get("author") or entry.persons.get("editor")):
            problems.append(f"{key}: no author")
        if not fields.get("title"):
            problems.append(f"{key}: no title")
        year = fields.get("year", "")
        if not re.fullmatch(r"(19|20)\d\d", year):
            problems.append(f"{key}: year should be four digits, got {year!r}")
        match = re.fullmatch(r"[a-z]+(\d{4})[a-z0-9]+", key)
        if not match or match.group(1) != year:
            problems.append(f"{key}: keys are authorYEARword with the entry's year ({year})")
        links = {name: fields[name] for name in ("doi", "eprint", "url") if fields.get(name)}
        if not links and key not in exceptions:
            problems.append(f"{key}: no doi, eprint or url (or list it as '% link-exception {key}: reason')")
        if links and key in exceptions:
            problems.append(f"{key}: has a link but is listed as a link exception")
        if "doi" in links and not re.fullmatch(r"10\.\d{4,9}/\S+", links["doi"]):
            problems.append(f"{key}: doi should look like 10.NNNN/..., got {links['doi']!r}")
        if "eprint" in links and not re.fullmatch(r"\d{4}\.\d{4,5}", links["eprint"]):
            problems.append(f"{key}: eprint should be an arXiv id like 2002.05709, got {links['eprint']!r}")
        if "url" in links and not links["url"].startswith(("https://", "http://")):
            problems.append(f"{key}: url should start with http(s)://, got {links['url']!r}")
    assert not problems, "references.bib:\n" + "\n".join(problems)


def test_reference_pages_form_their_own_part_between_looking_back_and_teaching():
    parts = load_yaml("_toc.yml")["parts"]
    captions = [part["caption"] for part in parts]
    assert "Reference" in captions, f"_toc.yml has no 'Reference' part: {captions}"
    i = captions.index("Reference")
    assert captions[i - 1 : i + 2] == ["Looking back", "Reference", "Teaching"], f"parts in order: {captions}"
    assert [c["file"] for c in parts[i]["chapters"]] == list(REFERENCE_PAGES)


def test_bibliography_page_lists_every_entry():
    assert re.search(r"```\{bibliography\}\n:all:\n```", markdown_of("book/bibliography")), (
        "book/bibliography should hold ```{bibliography}``` with :all: (the full list, cited or not)"
    )


def test_glossary_defines_each_term_once_with_the_chapter_that_teaches_it():
    entries = glossary_entries()
    assert 30 <= len(entries) <= 50, f"the glossary should define 30 to 50 terms, has {len(entries)}"
    terms = [term.lower() for names, _ in entries for term in names]
    duplicates = sorted({t for t in terms if terms.count(t) > 1})
    assert not duplicates, f"terms defined twice: {duplicates}"
    pages = set(chapters())
    for names, definition in entries:
        assert definition, f"glossary term {names} has no definition"
        taught_in = re.findall(r"\{doc\}`([^`]+)`", definition)
        assert taught_in, f"glossary term {names}: say which chapter teaches it ({{doc}}`chapter`)"
        for stem in taught_in:
            assert f"book/{stem}" in pages, f"glossary term {names} points at {stem}, which is not a chapter in _toc.yml"


def test_every_linked_term_is_in_the_glossary():
    defined = {term.lower() for names, _ in glossary_entries() for term in names}
    unknown: dict[str, list[str]] = {}
    for path in citing_notebooks():
        for role in TERM_ROLE.findall(notebook_text(path)):
            target = re.search(r"<([^>]+)>\s*$", role)
            term = (target.group(1) if target else role).strip()
            if term.lower() not in defined:
                unknown.setdefault(term, []).append(path.relative_to(ROOT).as_posix())
    assert not unknown, f"{{term}} links to terms book/glossary does not define: {unknown}"


@pytest.mark.parametrize("symbol", [r"$N$", r"$B$", r"$K$", r"$\tau$", r"$m$", r"$m_c$", r"$\lambda$", r"$D$", r"$D_{\text{out}}$", r"$L$", r"$p$", r"$\nu$"])
def test_notation_page_gives_each_settled_symbol_one_row(symbol):
    first_cells = re.findall(r"^\|\s*([^|]+?)\s*\|", markdown_of("book/notation"), flags=re.MULTILINE)
    assert first_cells.count(symbol) == 1, f"book/notation should define {symbol} in exactly one row, found {first_cells.count(symbol)}"


def test_syllabus_schedules_and_times_every_lab():
    text = notebook_text(ROOT / "book" / "syllabus.ipynb")
    labs = [page.split("/")[1] for page in lab_pages()]
    unscheduled = [lab for lab in labs if not re.search(rf'\(\d+, \[[^]]*\], "{lab}"', text)]
    assert not unscheduled, f"book/syllabus gives these labs no week (WEEKS): {unscheduled}"
    untimed = [lab for lab in labs if not re.search(rf'"{lab}": \(\d+, \d+(\.\d+)?\)', text)]
    assert not untimed, f"book/syllabus has no measured time for these labs (MEASURED, seconds and load): {untimed}"


def test_corruption_explorer_builds_and_reacts():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from sslcourse.widgets import corruption_explorer

    images = (torch.rand(6, 1, 16, 16) * 255).to(torch.uint8)
    box = corruption_explorer(images, n=4)
    kind, level, seed = box.controls
    for name in ("gaussian", "salt_and_pepper", "masking"):
        kind.value = name
        assert level.description == ("sigma" if name == "gaussian" else "fraction")
    level.value = 0.9
    seed.value = 7
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_explorer(images, kind="blur")
    with pytest.raises(TypeError, match="images"):
        corruption_explorer([1, 2, 3])


# ------------------------------------------------------------ the full build
def jupyter_book() -> str:
    """The jupyter-book of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("jupyter-book")
    return str(beside) if beside.exists() else "jupyter-book"


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """Build the book as the README does, into a temporary folder (fresh execution cache)."""
    out = tmp_path_factory.mktemp("book")
    command = [jupyter_book(), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    start = time.perf_counter()
    # a guard against a hung kernel, not a time budget (benchmarks/chapter_times.py measures those): on a 2-core
    # machine shared with other work the build once passed 30 minutes, where a quiet one takes about 12
    proc = subprocess.run(command, capture_output=True, text=True, timeout=5400)
    seconds = time.perf_counter() - start
    print(f"\nbook build: {seconds:.0f} s (fresh execution cache)")
    return {"proc": proc, "html": out / "_build" / "html", "cache": out / "_build" / ".jupyter_cache", "seconds": seconds}


def _sphinx_warnings(log: str) -> list[str]:
    # the kernels' own "[IPKernelApp] WARNING | ... TCP without encryption" lines are not Sphinx's
    return [line for line in log.splitlines() if "WARNING" in line and "[IPKernelApp]" not in line]


@pytest.mark.slow
def test_book_builds_without_warnings(built_book, record_property):
    proc = built_book["proc"]
    log = proc.stdout + proc.stderr
    record_property("book_build_seconds", round(built_book["seconds"], 1))
    assert proc.returncode == 0, f"jupyter-book build failed ({proc.returncode}):\n{log[-5000:]}"
    warnings = _sphinx_warnings(log)
    assert not warnings, "the build printed warnings:\n" + "\n".join(warnings)


@pytest.mark.slow
@pytest.mark.parametrize("page", toc_files())
def test_page_has_its_exact_colab_link(built_book, page):
    html = built_book["html"] / f"{page}.html"
    assert html.is_file(), f"no HTML for {page}"
    link = COLAB.format(page)
    assert f'href="{link}"' in html.read_text(), f"{page}.html lacks its Colab link {link}"


@pytest.mark.slow
@pytest.mark.parametrize("page", chapters())
def test_chapter_renders_figures_math_and_no_errors(built_book, page):
    text = (built_book["html"] / f"{page}.html").read_text()
    if page not in ("book/running", "book/teaching", *REFERENCE_PAGES):  # how-to and reference pages have no figures
        assert re.search(r"<img [^>]*src=\"[^\"]*_images/", text), f"{page}: no rendered figure"
        assert 'class="math' in text, f"{page}: no math"
    assert "output traceback" not in text and "Traceback (most recent call last)" not in text, f"{page}: a cell shows an error"
    assert "output stderr" not in text, f"{page}: a cell printed to stderr (a warning?) in the book"


@pytest.mark.slow
def test_math_renders_without_a_network(built_book):
    # sphinx-mathjax-offline copies MathJax into the build: formulas render offline, and no page loads it from a CDN
    html = built_book["html"]
    for page in toc_files():
        text = (html / f"{page}.html").read_text()
        scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, flags=re.IGNORECASE)
        if 'class="math' in text:
            assert scripts, f"{page} has math but loads no MathJax script"
        for src in scripts:
            assert not src.startswith(("http:", "https:", "//")), f"{page} loads MathJax from the network: {src}"
            target = (html / page).parent / src
            assert target.is_file(), f"{page}: MathJax script {src} is not in the build ({target})"


@pytest.mark.slow
def test_no_execution_failure_reports(built_book):
    reports = built_book["html"] / "reports"
    logs = sorted(p.relative_to(reports).as_posix() for p in reports.rglob("*.log")) if reports.exists() else []
    assert not logs, f"notebook execution failed, see {reports}: {logs}"


@pytest.mark.slow
def test_execution_time_of_every_chapter_is_recorded(built_book, record_property):
    # timings are reported, never asserted (machines are noisy); benchmarks/chapter_times.py measures them
    from jupyter_cache import get_cache

    cache = get_cache(str(built_book["cache"]))
    records = {Path(r.uri).resolve(): r.data for r in cache.list_cache_records()}
    for page in chapters():
        data = records.get((ROOT / f"{page}.ipynb").resolve())
        if data is None:  # pages with the same code (the reference pages' lone setup cell) share one cache record
            try:
                data = cache.match_cache_notebook(read_notebook(page)).data
            except KeyError:
                data = None
        assert data is not None, f"{page} was not executed into the cache"
        seconds = data.get("execution_seconds")
        assert isinstance(seconds, (int, float)) and seconds > 0, f"{page}: no execution time recorded ({data})"
        record_property(f"{page}_seconds", round(seconds, 1))
        print(f"{page}: executed in {seconds:.1f} s")
    lab_records = [p for p in lab_pages() if (ROOT / f"{p}.ipynb").resolve() in records]
    assert not lab_records, f"lab pages were executed by the build: {lab_records}"


def build_scratch_book(folder: Path, page: str) -> subprocess.CompletedProcess:
    """Build a two-page book as the README does: the real _config.yml (execution off), references.bib, one
    page with the given MyST text and the real bibliography page."""
    config = load_yaml("_config.yml")
    config["execute"]["execute_notebooks"] = "off"
    (folder / "book").mkdir(parents=True)
    (folder / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/index", "chapters": [{"file": "book/bibliography"}]}))
    shutil.copy(BIBLIOGRAPHY, folder / "references.bib")
    shutil.copy(ROOT / "book" / "bibliography.ipynb", folder / "book" / "bibliography.ipynb")
    (folder / "book" / "index.md").write_text(page)
    return subprocess.run([jupyter_book(), "build", str(folder), "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_book_build_fails_on_an_unknown_citation_key(tmp_path):
    known = build_scratch_book(tmp_path / "known", "# Known\n\nAs {cite:t}`vincent2008denoising` showed {cite:p}`he2022mae`.\n")
    log = known.stdout + known.stderr
    assert known.returncode == 0, f"a book citing known keys should build:\n{log[-3000:]}"
    html = (tmp_path / "known" / "_build" / "html" / "book" / "index.html").read_text()
    assert "Vincent <em>et al.</em>" in html and "2008" in html, "the citation should render as author and year"
    unknown = build_scratch_book(tmp_path / "unknown", "# Unknown\n\nSee {cite:p}`nosuchauthor1999missing`.\n")
    log = unknown.stdout + unknown.stderr
    assert unknown.returncode != 0, "the build passed with a citation key that references.bib lacks"
    assert 'could not find bibtex key "nosuchauthor1999missing"' in log, f"the failure should name the key:\n{log[-3000:]}"


def test_no_page_cites_the_course_commissioning_material():
    hits = {}
    for path in citing_notebooks():
        found = sorted({m.group(0).lower() for m in UNCITABLE_SOURCE.finditer(notebook_text(path))})
        if found:
            hits[path.relative_to(ROOT).as_posix()] = found
    assert not hits, f"pages point readers at documents they cannot look up; cite the paper (authors, year, table): {hits}"
