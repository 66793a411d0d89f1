"""The student edition (`sslcourse.grading.publish`) and the check that it leaks no answers.

The fast tests publish the real course into a temporary folder (without building the book) and
check what is there and what is not; plant leaks of each kind in copies of it and check that the
leak check finds each with its file, line and source lab; and exercise publish's refusals on the
real course and on a toy course made here. The slow test builds the edition's book (without
executing its chapters) and runs the leak check on the HTML too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sslcourse.grading.publish import (
    NOT_SECRET,
    Leak,
    LeakError,
    PublishError,
    canonical,
    format_leaks,
    leak_check,
    publish,
    secret_lines,
)
from sslcourse.notebook import REPOSITORY_URL, SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.parent.name for p in ROOT.glob("solutions/*/*.ipynb") if p.stem == p.parent.name)
OWNER_REPO = REPOSITORY_URL.split("github.com/", 1)[1]
COLAB = f"https://colab.research.google.com/github/{OWNER_REPO}/blob/main/{{}}.ipynb"
MARKER = re.compile(r"#+\s*(BEGIN|END) (SOLUTION|HIDDEN TESTS|MARK SCHEME)")
# The package's files in the edition (see test_the_package_carries_no_solution).
PACKAGE = "sslcourse/"


def toc_pages(root: Path) -> list[str]:
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            pages.extend([node["file"]] if "file" in node else [])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return pages


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def secret(course: Path, lab: str, kind: str, minimum: int = 40):
    """A deterministic secret line of `lab` from a region of `kind` ("solution", "hidden tests", "model answer")."""
    found = [s for s in secret_lines(course) if s.lab == lab and s.region.startswith(kind) and len(s.text) >= minimum]
    assert found, f"{lab} has no {kind} line of {minimum}+ characters to plant"
    return found[len(found) // 2]


def new_leaks(course: Path, edition: Path, baseline: list[Leak], **kwargs) -> list[Leak]:
    before = set(baseline)
    return [leak for leak in leak_check(course, edition, **kwargs) if leak not in before]


# ------------------------------------------------------------ the real course
@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("publish") / "student-edition"
    start = time.perf_counter()
    # publish runs the leak check itself and raises LeakError on a leak.
    report = publish(ROOT, out)
    print(f"\npublish: {time.perf_counter() - start:.1f} s")
    return report


@pytest.fixture(scope="module")
def baseline(edition):
    return leak_check(ROOT, edition.edition)


def test_edition_holds_the_book_labs_package_and_a_readme(edition):
    out = edition.edition
    on_disk = files_under(out)
    assert on_disk == set(edition.files), "the report's file list differs from what is on disk"
    for name in ("_config.yml", "_toc.yml", "pyproject.toml", "requirements.txt", "constraints.txt", "README.md", "sslcourse/__init__.py", "sslcourse/notebook.py"):
        assert name in on_disk, f"the edition lacks {name}"
    for page in toc_pages(ROOT):
        assert f"{page}.ipynb" in on_disk, f"the edition lacks the book page {page}.ipynb"
    for lab in LABS:
        assert f"labs/{lab}/{lab}.ipynb" in on_disk, f"the edition lacks the released lab {lab}"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "sslcourse"], capture_output=True, text=True, check=True).stdout.split()
    missing = [name for name in tracked if name.endswith(".py") and (ROOT / name).is_file() and name not in on_disk]
    assert not missing, f"package modules missing from the edition: {missing}"


def test_notebooks_travel_byte_for_byte(edition):
    # grading relies on the checksums of the labs' locked cells: publish must not rewrite a notebook
    for name in edition.files:
        if name.endswith(".ipynb"):
            assert (edition.edition / name).read_bytes() == (ROOT / name).read_bytes(), f"{name} changed on the way"
    assert set(edition.notebooks) == {n for n in edition.files if n.endswith(".ipynb")}


def test_edition_leaves_the_instructor_zone_behind(edition):
    out = edition.edition
    on_disk = files_under(out)
    for top in ("solutions", "tests", "_grading", ".ci", "benchmarks", "_build", ".venv", ".git", "sslcourse.egg-info"):
        assert not (out / top).exists(), f"the edition holds {top}/"
    assert not (out / "nbgrader_config.py").exists()
    assert not [n for n in on_disk if "__pycache__" in n or n.endswith(".pyc") or ".ipynb_checkpoints" in n]
    assert "solutions/" + LABS[0] + "/" + LABS[0] + ".ipynb" in edition.left_out
    assert "nbgrader_config.py" in edition.left_out
    for name in sorted(on_disk):
        text = (out / name).read_text(errors="replace")
        hit = MARKER.search(text)
        assert hit is None, f"{name} holds an nbgrader marker: {hit.group()!r}"
        assert "WRONG_SUBMISSIONS" not in text, f"{name} holds the table of wrong submissions"


def test_readme_tells_students_how_to_open_run_and_hand_in(edition):
    readme = (edition.edition / "README.md").read_text()
    for lab in LABS:
        assert COLAB.format(f"labs/{lab}/{lab}") in readme, f"README lacks the Colab link of {lab}"
    for page in toc_pages(ROOT):
        assert COLAB.format(page) in readme, f"README lacks the Colab link of {page}"
    assert f"pip install git+{REPOSITORY_URL}" in readme
    assert "pip install -c constraints.txt -r requirements.txt -e" in readme
    assert "File > Download > Download .ipynb" in readme
    assert "unchanged" in readme and "file name" in readme
    assert "learning management system" in readme
    assert not re.search(r"\bsolutions?\b|nbgrader|hidden test", readme, re.IGNORECASE), "the students' README speaks of the instructor's side"


def test_edition_points_at_the_public_repository(edition):
    config = yaml.safe_load((edition.edition / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY_URL == edition.repository_url
    for name in edition.notebooks:
        cells = json.loads((edition.edition / name).read_text())["cells"]
        first = next(c for c in cells if c["cell_type"] == "code")
        assert "".join(first["source"]) == SETUP_CELL, f"{name}: the first code cell is not the setup cell"


def test_every_lab_has_secret_lines_of_every_kind():
    lines = secret_lines(ROOT)
    assert {s.lab for s in lines} == set(LABS)
    for lab in LABS:
        kinds = {s.region.split(" of ")[0] for s in lines if s.lab == lab}
        assert kinds >= {"solution", "hidden tests", "model answer"}, f"{lab}: the leak check looks for {kinds} only"
    stubs = {"your code here", "your answer here", "raise notimplementederror"}
    assert not [s.text for s in lines if canonical(s.text) in stubs], "the released labs' stubs are public, never secrets"


def test_not_secret_lines_are_real_and_public():
    # every exception names a line that some solution really has and that the package or the book
    # really shows (compared by words, as the leak check compares), with a reason; otherwise the list
    # rots into a hiding place
    solutions = [json.loads(p.read_text()) for p in ROOT.glob("solutions/*/*.ipynb")]
    solution_lines = {line.strip() for nb in solutions for cell in nb["cells"] for line in "".join(cell["source"]).splitlines()}
    package = " " + canonical("\n".join(p.read_text() for p in (ROOT / "sslcourse").rglob("*.py") if p.name != "publish.py")) + " "
    book = " " + canonical("\n".join("".join(c["source"]) for p in (ROOT / "book").glob("*.ipynb") for c in json.loads(p.read_text())["cells"])) + " "
    for line, reason in NOT_SECRET.items():
        assert reason.strip(), f"NOT_SECRET[{line!r}] gives no reason"
        assert line in solution_lines, f"NOT_SECRET lists {line!r}, which no solution notebook has"
        words = f" {canonical(line)} "
        assert words in package or words in book, f"NOT_SECRET lists {line!r}, which neither the package nor the book has"


def test_the_edition_leaks_nothing_outside_the_package(baseline):
    outside = [leak for leak in baseline if not leak.file.startswith(PACKAGE)]
    assert outside == [], format_leaks(outside)


# The package implements every method and is public by design: a solution line it has word for word is not
# looked for (see publish._collect); every other secret line must be absent from it.
def test_the_package_carries_no_solution(baseline):
    inside = [leak for leak in baseline if leak.file.startswith(PACKAGE)]
    assert inside == [], format_leaks(inside)


# ---------------------------------------------------------- planted leaks
@pytest.fixture()
def copy(edition, tmp_path):
    target = tmp_path / "edition"
    shutil.copytree(edition.edition, target)
    return target


def test_a_hidden_test_line_in_a_book_notebook_is_found(copy, baseline):
    lab = LABS[0]
    planted = secret(ROOT, lab, "hidden tests")
    path = copy / "book" / "intro.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ["def helper():\n", "    " + planted.text + "\n"]})
    path.write_text(json.dumps(nb, indent=1))
    found = new_leaks(ROOT, copy, baseline)
    assert found, f"the hidden-test line {planted.text!r} planted in book/intro.ipynb was not found"
    assert {(f.file, f.cell, f.line) for f in found} == {("book/intro.ipynb", len(nb["cells"]) - 1, 2)}
    assert (lab, planted.region) in {(f.lab, f.region) for f in found}
    assert all(f.region.startswith("hidden tests") for f in found if f.lab == lab)


def test_a_model_answer_sentence_in_a_markdown_file_is_found(copy, baseline):
    lab = LABS[-1]
    planted = secret(ROOT, lab, "model answer")
    # rewrapped and with its markup changed, as an editor would paste it
    words = planted.text.replace("**", "").split()
    half = len(words) // 2
    (copy / "book" / "notes.md").write_text("# Notes\n\nAs the graders put it:\n" + " ".join(words[:half]) + "\n" + " ".join(words[half:]) + "\n")
    found = new_leaks(ROOT, copy, baseline)
    assert [(f.file, f.line, f.lab, f.region) for f in found] == [("book/notes.md", 4, lab, planted.region)], format_leaks(found)
    assert found[0].cell is None and found[0].where == "book/notes.md:4"


def test_a_solution_line_in_a_python_file_is_found(copy, baseline):
    lab = LABS[len(LABS) // 2]
    planted = secret(ROOT, lab, "solution", minimum=30)
    target = copy / "sslcourse" / "extras.py"
    target.write_text('"""Helpers."""\n\n\ndef f(x):\n    ' + planted.text + "\n")
    found = new_leaks(ROOT, copy, baseline)
    assert found and {(f.file, f.line) for f in found} == {("sslcourse/extras.py", 5)}, format_leaks(found)
    assert (lab, planted.region) in {(f.lab, f.region) for f in found}


def test_a_solution_line_in_highlighted_html_of_an_extra_path_is_found(copy, baseline, tmp_path):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    lab = LABS[1]
    planted = secret(ROOT, lab, "hidden tests")
    site = tmp_path / "site"
    site.mkdir()
    body = highlight("x = 1\n" + planted.text + "\n", PythonLexer(), HtmlFormatter())
    (site / "page.html").write_text(f"<html><body><p>Intro &amp; more</p>\n{body}</body></html>\n")
    found = new_leaks(ROOT, copy, baseline, extra_paths=[site])
    assert found, f"{planted.text!r} in highlighted HTML was not found"
    assert {f.file for f in found} == {(site / "page.html").as_posix()}
    assert (lab, planted.region) in {(f.lab, f.region) for f in found}


def test_format_leaks():
    assert "no line" in format_leaks([])
    leak = Leak("book/a.ipynb", 3, 7, "lab01_x", "hidden tests of test_f", "assert f(x) == 42" + "y" * 120)
    text = format_leaks([leak, Leak("sslcourse/b.py", 9, None, "lab02_y", "solution of g", "z = g(x)")])
    assert text.splitlines()[0] == "leak check: 2 leak(s) in 2 file(s):"
    assert "book/a.ipynb (cell 7, line 3): lab01_x, hidden tests of test_f: assert f(x) == 42" in text
    assert "sslcourse/b.py:9: lab02_y, solution of g: z = g(x)" in text
    assert "..." in text.splitlines()[1] and len(text.splitlines()[1]) < 200


# ------------------------------------------------------------------ refusals
def test_publish_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PublishError, match="not empty"):
        publish(ROOT, out, check_leaks=False)
    assert (out / "keep.txt").read_text() == "mine" and files_under(out) == {"keep.txt"}


def test_publish_with_force_replaces_all_but_git(tmp_path):
    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "solutions").mkdir()
    (out / "solutions" / "stale.ipynb").write_text("{}")
    report = publish(ROOT, out, force=True, check_leaks=False)
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert not (out / "solutions").exists()
    assert files_under(out) - {".git/HEAD"} == set(report.files)


@pytest.mark.parametrize("where", [".", "_build/publish-test-must-not-exist", "book/edition"])
def test_publish_refuses_a_folder_inside_the_course(where):
    out = ROOT / where
    existed = out.exists()
    # without force: were the check to fail, publish would stop at "not empty" rather than clear the course
    with pytest.raises(PublishError, match="outside the course repository"):
        publish(ROOT, out, check_leaks=False)
    assert out.exists() == existed


def test_publish_refuses_a_folder_that_contains_the_course():
    with pytest.raises(PublishError, match="contains the course repository"):
        publish(ROOT, ROOT.parent, check_leaks=False)


# --------------------------------------------------------------- a toy course
def nb(*cells) -> str:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def md(text: str, **nbgrader) -> dict:
    return {"cell_type": "markdown", "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "source": text}


def code(text: str, **nbgrader) -> dict:
    return {"cell_type": "code", "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "execution_count": None, "outputs": [], "source": text}


HIDDEN = 'assert torch.equal(scale(torch.full((3,), 0.25), 8.0), torch.ones(3)), "saturates at one"'
SOLUTION = "result = x.mul(factor).clamp(min=0.0, max=1.0)  # keep values in the unit interval"
ANSWER = "Clamping keeps every value inside the unit interval, which the decoder's sigmoid expects"


def toy_lab(released: bool) -> str:
    body = "    # YOUR CODE HERE\n    raise NotImplementedError()" if released else f"    ### BEGIN SOLUTION\n    {SOLUTION}\n    return result\n    ### END SOLUTION"
    tests = 'assert scale(torch.ones(2), 0.5).sum() == 1.0, "scale: halves"'
    if not released:
        tests += f"\n### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS"
    return nb(
        md("# Lab 1: toy\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
           f"({COLAB.format('labs/lab01_toy/lab01_toy')})"),
        code(SETUP_CELL),
        code(f'def scale(x, factor):\n    """x times factor, clamped to [0, 1]."""\n{body}', solution=True, grade_id="scale"),
        code(tests, grade=True, grade_id="test_scale", points=1),
        md("YOUR ANSWER HERE" if released else f"**Model answer.**\n\n1. {ANSWER}\n   as its target range.", solution=True, grade=True, grade_id="reflection", points=1),
    )


@pytest.fixture()
def toy(tmp_path):
    root = tmp_path / "course"
    files = {
        "_config.yml": yaml.safe_dump({"title": "Toy", "only_build_toc_files": True, "repository": {"url": REPOSITORY_URL, "branch": "main"}, "launch_buttons": {"colab_url": "https://colab.research.google.com"}}),
        "_toc.yml": "format: jb-book\nroot: book/intro\nchapters:\n  - file: labs/lab01_toy/lab01_toy\n",
        "pyproject.toml": '[project]\nname = "toy"\nrequires-python = ">=3.10"\n',
        "requirements.txt": "torch>=2.2\n",
        "constraints.txt": "torch==2.14.1\n",
        "README.md": "Instructor README: solutions live in solutions/.\n",
        "nbgrader_config.py": "c = get_config()\n",
        ".gitignore": "_grading/\nbook/draft.md\n",
        "sslcourse/__init__.py": "",
        "sslcourse/notebook.py": (ROOT / "sslcourse" / "notebook.py").read_text(),
        "book/intro.ipynb": nb(md("# Toy\n\nThen do [the lab](../labs/lab01_toy/lab01_toy.ipynb)."), code(SETUP_CELL)),
        "book/draft.md": "a draft\n",
        "labs/lab01_toy/lab01_toy.ipynb": toy_lab(released=True),
        "solutions/lab01_toy/lab01_toy.ipynb": toy_lab(released=False),
        "tests/test_toy.py": f"WRONG = {HIDDEN!r}\n",
        "_grading/gradebook.db": "x",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_toy_course_publishes_and_its_secrets_are_the_right_lines(toy, tmp_path):
    report = publish(toy, tmp_path / "out")
    assert report.secret_lines == 3
    assert {(s.region, s.text) for s in secret_lines(toy)} == {
        ("solution of scale", SOLUTION),
        ("hidden tests of test_scale", HIDDEN),
        ("model answer of reflection", f"1. {ANSWER}"),
    }
    assert "solutions/lab01_toy/lab01_toy.ipynb" in report.left_out and "tests/test_toy.py" in report.left_out
    assert "README.md" in report.left_out and "Instructor" not in (tmp_path / "out" / "README.md").read_text()
    assert not (tmp_path / "out" / "_grading").exists()
    # outside git, a walk: ignored files are not known as such, so only the fixed skip list applies
    assert "book/draft.md" in report.files


def test_toy_course_in_git_never_ships_ignored_files(toy, tmp_path):
    subprocess.run(["git", "init", "-q", str(toy)], check=True)
    report = publish(toy, tmp_path / "out")
    assert "book/draft.md" not in report.files and not (tmp_path / "out" / "book" / "draft.md").exists()
    assert "book/intro.ipynb" in report.files  # untracked but not ignored: travels


def test_publish_refuses_to_leave_a_leak_unreported(toy, tmp_path):
    path = toy / "book" / "intro.ipynb"
    cells = json.loads(path.read_text())["cells"] + [code("# how the grader checks it\n" + HIDDEN)]
    path.write_text(nb(*cells))
    with pytest.raises(LeakError, match="leaks answers") as caught:
        publish(toy, tmp_path / "out")
    assert [(l.file, l.cell, l.line, l.lab, l.region) for l in caught.value.leaks] == [("book/intro.ipynb", 2, 2, "lab01_toy", "hidden tests of test_scale")]


def test_a_solution_line_without_its_comment_is_still_found(toy, tmp_path):
    publish(toy, tmp_path / "out")
    (tmp_path / "out" / "sslcourse" / "scale.py").write_text("def scale(x, factor):\n    " + SOLUTION.split("  #")[0] + "\n")
    leaks = leak_check(toy, tmp_path / "out")
    assert [(l.file, l.line, l.region) for l in leaks] == [("sslcourse/scale.py", 2, "solution of scale")]


def test_publish_refuses_a_repository_url_that_differs_from_the_package(toy, tmp_path):
    config = yaml.safe_load((toy / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/someone/instructor-private"
    (toy / "_config.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(PublishError, match="repository.url.*instructor-private.*expected.*" + re.escape(REPOSITORY_URL)):
        publish(toy, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "publish wrote files before its checks passed"


def test_publish_refuses_a_notebook_without_the_setup_cell(toy, tmp_path):
    (toy / "book" / "intro.ipynb").write_text(nb(md("# Toy"), code("import sslcourse")))
    with pytest.raises(PublishError, match=r"book/intro.ipynb: the first code cell is not sslcourse.notebook.SETUP_CELL"):
        publish(toy, tmp_path / "out")


def test_publish_refuses_a_toc_page_the_edition_drops(toy, tmp_path):
    (toy / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: solutions/lab01_toy/lab01_toy\n")
    with pytest.raises(PublishError, match=r"_toc.yml lists pages .*solutions/lab01_toy/lab01_toy"):
        publish(toy, tmp_path / "out")


def test_publish_refuses_links_to_what_the_edition_drops(toy, tmp_path):
    (toy / "book" / "intro.ipynb").write_text(nb(md("# Toy\n\nSee [the answers](../solutions/lab01_toy/lab01_toy.ipynb)."), code(SETUP_CELL)))
    with pytest.raises(PublishError, match=r"book/intro.ipynb: link to \.\./solutions/lab01_toy/lab01_toy.ipynb"):
        publish(toy, tmp_path / "out")


def test_publish_refuses_a_colab_link_to_another_repository(toy, tmp_path):
    lab = toy / "labs" / "lab01_toy" / "lab01_toy.ipynb"
    lab.write_text(lab.read_text().replace(OWNER_REPO, "someone/instructor-private"))
    with pytest.raises(PublishError, match="Colab link to someone/instructor-private"):
        publish(toy, tmp_path / "out")


def test_leak_check_needs_the_solutions(toy, tmp_path):
    shutil.rmtree(toy / "solutions")
    with pytest.raises(PublishError, match="solution notebooks"):
        leak_check(toy, tmp_path)
    with pytest.raises(PublishError, match="expected a course repository"):
        publish(tmp_path / "nowhere", tmp_path / "out")


# -------------------------------------------------------------- the built book
@pytest.mark.slow
def test_the_built_student_book_leaks_nothing_and_opens_colab_at_the_public_repository(edition, tmp_path, record_property):
    # a copy, since the build writes nothing into it but the planting below does
    source = tmp_path / "edition"
    shutil.copytree(edition.edition, source)
    config = yaml.safe_load((source / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # the chapters' outputs are not what is checked here
    config_file = tmp_path / "config-no-execution.yml"
    config_file.write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb) if jb.exists() else "jupyter-book", "build", str(source), "--config", str(config_file), "-W", "-n", "--keep-going", "--path-output", str(tmp_path / "out")]
    html = tmp_path / "out" / "_build" / "html"

    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    record_property("student_book_build_seconds", round(seconds, 1))
    print(f"\nstudent edition book build (no execution): {seconds:.0f} s")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build of the student edition failed:\n{log[-5000:]}"
    assert not [line for line in log.splitlines() if "WARNING" in line], log[-5000:]

    leaks = [leak for leak in leak_check(ROOT, source, extra_paths=[html]) if not leak.file.startswith(PACKAGE)]
    assert leaks == [], format_leaks(leaks)
    for page in toc_pages(source):
        text = (html / f"{page}.html").read_text()
        assert f'href="{COLAB.format(page)}"' in text, f"{page}.html lacks its Colab link {COLAB.format(page)}"

    # the same check finds what a chapter would leak once it is rendered: markup, math and highlighting
    planted = [secret(ROOT, LABS[-2], "model answer"), secret(ROOT, LABS[0], "hidden tests"), secret(ROOT, LABS[2], "solution", minimum=30)]
    page = source / "book" / "running.ipynb"
    notebook = json.loads(page.read_text())
    notebook["cells"] += [md("Some words.\n" + planted[0].text + "\n"), code("def f():\n    " + planted[1].text + "\n    " + planted[2].text)]
    page.write_text(json.dumps(notebook, indent=1))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    found = leak_check(ROOT, source, extra_paths=[html])
    rendered = (html / "book" / "running.html").as_posix()
    for item in planted:
        assert (rendered, item.lab, item.region) in {(f.file, f.lab, f.region) for f in found}, f"{item.text!r} not found in {rendered}"
