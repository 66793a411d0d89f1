"""The book: its table of contents, configuration, chapters, widgets, and a full build.

The fast tests read files only. The slow one builds the whole book the way the
README does (``jupyter-book build . -W -n --keep-going``), into a temporary
folder with a fresh execution cache, so every chapter really executes; then it
checks the HTML of every page: its exact Colab link, figures and math in the
chapters, and no error output.
"""

from __future__ import annotations

import re
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


@pytest.mark.parametrize("page", [p for p in chapters() if p != "book/running"])
def test_chapter_shows_package_code_and_cites(page):
    nb = read_notebook(page)
    text = "\n".join(c.source for c in nb.cells)
    assert "## Summary" in text, f"{page} has no summary"
    if page != "book/intro":
        assert "show_source(" in text, f"{page} should show the package's code with show_source"
    assert re.search(r"\(\d{4}\)|\d{4}\)", text), f"{page} quotes no paper"


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
@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """Build the book as the README does, into a temporary folder (fresh execution cache)."""
    out = tmp_path_factory.mktemp("book")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    if not Path(command[0]).exists():
        command[0] = "jupyter-book"
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
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
    if page not in ("book/running", "book/teaching"):  # the how-to pages have neither figures nor formulas
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

    records = {Path(r.uri).resolve(): r.data for r in get_cache(str(built_book["cache"])).list_cache_records()}
    for page in chapters():
        data = records.get((ROOT / f"{page}.ipynb").resolve())
        assert data is not None, f"{page} was not executed into the cache"
        seconds = data.get("execution_seconds")
        assert isinstance(seconds, (int, float)) and seconds > 0, f"{page}: no execution time recorded ({data})"
        record_property(f"{page}_seconds", round(seconds, 1))
        print(f"{page}: executed in {seconds:.1f} s")
    lab_records = [p for p in lab_pages() if (ROOT / f"{p}.ipynb").resolve() in records]
    assert not lab_records, f"lab pages were executed by the build: {lab_records}"
