"""The graded labs, end to end with nbgrader.

For every lab folder under solutions/:

- the solution notebook passes its own tests (nbgrader's Validator; `nbgrader validate` exits 0 even on
  failure, so the Python API is used) and the released notebook passes none of them;
- labs/ is exactly what `nbgrader generate_assignment NAME --force` makes of solutions/;
- the instructor's round trip works in a scratch copy of the course: `nbgrader autograde` gives a correct
  submission full marks on the autograded points, an untouched one zero, and a plausibly wrong one exactly
  the points of the tests its mistake should fail less than full; `generate_feedback` and `export` write the
  feedback pages and the grades table;
- every notebook starts with the course's setup cell.

The notebooks run in nbgrader's validate and autograde modes (NBGRADER_EXECUTION is set), where a lab
trains for a few seconds only: the graded cells are the tests, not the training results.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from sslcourse.notebook import SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
RELEASED = ROOT / "labs"
LABS = sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file()) if SOLUTIONS.is_dir() else []
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN MARK SCHEME")


@dataclass(frozen=True)
class Mistake:
    """A plausible wrong answer: in the solution cell `cell`, `old` becomes `new`; the grade cells
    in `fails` must then score 0 and every other grade cell full marks."""

    what: str
    cell: str
    old: str
    new: str
    fails: tuple[str, ...]


# One subtly wrong submission per lab: it passes the visible tests and loses the points of hidden ones.
WRONG_SUBMISSIONS = {
    "lab01_denoising_autoencoders": Mistake(
        what="masking_noise draws one mask for the whole batch (every image gets the same holes)",
        cell="masking_noise",
        old="scores = torch.rand(b, d, generator=generator, device=x.device)",
        new="scores = torch.rand(1, d, generator=generator, device=x.device).expand(b, d)",
        # salt_and_pepper reuses masking_noise (as the lab suggests), so it inherits the shared mask.
        fails=("test_masking_noise", "test_salt_and_pepper"),
    ),
    "lab02_context_and_color": Mistake(
        what="rgb_to_lab skips the sRGB linearisation (applies the XYZ matrix to the gamma-encoded values)",
        cell="rgb_to_lab",
        old="linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)",
        new="linear = rgb",
        # white, black, the primaries and grays (the visible checks) come out right without it; mid-tones do not.
        fails=("test_rgb_to_lab",),
    ),
    "lab03_pretext_tasks": Mistake(
        what="relative_position_pairs draws one jitter for the whole batch (every image's tiles move alike)",
        cell="relative_position_pairs",
        old="shift = torch.randint(-jitter, jitter + 1, (b, 2, 2), generator=generator, device=device)",
        new="shift = torch.randint(-jitter, jitter + 1, (1, 2, 2), generator=generator, device=device).expand(b, 2, 2)",
        # the visible checks (geometry, labels, shifts within [-jitter, jitter]) hold for a shared shift too.
        fails=("test_relative_position_pairs",),
    ),
    "lab04_cpc": Mistake(
        what="cpc_info_nce takes the negatives from the prediction's own image only (one softmax per image, not over the batch)",
        cell="cpc_info_nce",
        old="logits = queries @ candidates.T  # (Q, N): every prediction against every patch of the batch\n"
        "    return F.cross_entropy(logits, targets)",
        new="logits = torch.bmm(queries.view(b, -1, d), candidates.view(b, -1, d).transpose(1, 2))  # each image on its own\n"
        "    return F.cross_entropy(logits.flatten(0, 1), index[0, k:].reshape(-1).repeat(b))",
        # the visible checks use one image, where the image is the whole batch; the hidden ones use batches.
        fails=("test_cpc_info_nce",),
    ),
    "lab05_simclr_moco": Mistake(
        what="nt_xent leaves each embedding's similarity with itself in the denominator (no mask on the diagonal)",
        cell="nt_xent",
        old='logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own negative',
        new="logits = logits  # the diagonal (each anchor with itself) stays in the softmax",
        # the visible checks are properties (symmetry, scale and order invariance, vectorization) that hold without the mask too.
        fails=("test_nt_xent",),
    ),
    "lab06_byol_dino": Mistake(
        what="dino_loss lets the gradient into the teacher's logits (no stop-gradient on the teacher)",
        cell="dino_loss",
        old="teacher_logits.detach().float()",
        new="teacher_logits.float()",
        # the values are unchanged, so every visible check (hand-computed cases, the student's gradient) still holds.
        fails=("test_dino_loss",),
    ),
    "lab07_mae": Mistake(
        what="masked_mse averages the error over all patches instead of the hidden ones",
        cell="masked_mse",
        old="return (per_patch * mask).sum() / mask.sum()",
        new="return per_patch.mean()",
        # the visible checks (zero error, a uniform error, every patch hidden) give the same value either way.
        fails=("test_masked_mse",),
    ),
}

STUDENTS = ("correct", "untouched", "wrong")


def notebook_path(folder: Path, lab: str) -> Path:
    return folder / lab / f"{lab}.ipynb"


def nbgrader_meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def cell_name(index: int, cell) -> str:
    grade_id = nbgrader_meta(cell).get("grade_id")
    return f"cell {index}" + (f" ({grade_id})" if grade_id else "")


def nbgrader(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the nbgrader command line of this interpreter in `cwd`; fail with its output if it fails."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("NBGRADER_EXECUTION", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"`nbgrader {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def nbgrader_config():
    """The repository's nbgrader configuration, as the Validator needs it (cell timeout, course paths)."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()


def test_there_are_labs():
    assert LABS, f"no lab found: expected solutions/<lab>/<lab>.ipynb under {SOLUTIONS}"
    for lab in LABS:
        assert notebook_path(RELEASED, lab).is_file(), (
            f"labs/{lab}/{lab}.ipynb is missing: run `nbgrader generate_assignment {lab} --force` from the repository root"
        )


# ------------------------------------------------------------------ setup cell
ALL_NOTEBOOKS = sorted(
    str(p.relative_to(ROOT)) for folder in (SOLUTIONS, RELEASED) if folder.is_dir() for p in folder.glob("*/*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


@pytest.mark.parametrize("relpath", ALL_NOTEBOOKS)
def test_first_code_cell_is_the_setup_cell(relpath):
    nb = nbformat.read(ROOT / relpath, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{relpath} has no code cell"
    assert code[0].source == SETUP_CELL, (
        f"{relpath}: the first code cell is not sslcourse.notebook.SETUP_CELL.\n--- found ---\n{code[0].source}\n--- expected ---\n{SETUP_CELL}"
    )


# ------------------------------------------------------------------ no answers in labs/
@pytest.mark.parametrize("lab", LABS)
def test_released_lab_holds_no_solution_or_hidden_test(lab):
    folder = RELEASED / lab
    assert folder.is_dir(), f"labs/{lab} is missing"
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for marker in MARKERS:
                assert marker not in text, f"{path.relative_to(ROOT)} contains '{marker}': regenerate it with nbgrader"


# ------------------------------------------------------------------ validator
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_solution_passes_its_tests(lab):
    from nbgrader.validator import Validator

    nb = nbformat.read(notebook_path(SOLUTIONS, lab), as_version=4)
    graded = [c for c in nb.cells if nbgrader_meta(c).get("grade") and c.cell_type == "code"]
    assert graded, f"solutions/{lab} has no graded test cell"
    result = Validator(config=nbgrader_config()).validate(str(notebook_path(SOLUTIONS, lab)))
    problems = "\n\n".join(
        f"[{kind}] {item.get('source', '')[:300]}\n{item.get('error', '')[-1500:]}" for kind, items in result.items() for item in items
    )
    assert result == {}, f"the solution of {lab} does not pass its tests:\n{problems}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_released_lab_fails_its_tests(lab):
    """Validator(invert=True) reports the graded cells that pass ('passed'); for an untouched release, none may."""
    from nbgrader.validator import Validator

    path = notebook_path(RELEASED, lab)
    nb = nbformat.read(path, as_version=4)
    graded = [c for c in nb.cells if nbgrader_meta(c).get("grade") and c.cell_type == "code"]
    assert graded, f"labs/{lab} has no graded test cell"
    result = Validator(config=nbgrader_config(), invert=True).validate(str(path))
    passed = [item["source"].splitlines()[0] for item in result.get("passed", [])]
    assert "changed" not in result, f"labs/{lab}: the checksums of locked cells do not match: {result['changed']}"
    assert "type_changed" not in result, f"labs/{lab}: cells changed type: {result['type_changed']}"
    assert not passed, f"labs/{lab}: {len(passed)} of {len(graded)} graded cells pass without any answer: {passed}"
    assert result == {}, f"labs/{lab}: unexpected validator report {result}"


# ------------------------------------------------------------------ a scratch course
@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A copy of the course (nbgrader_config.py and solutions/) in which nbgrader generates every lab."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(SOLUTIONS, root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for lab in LABS:
        nbgrader("generate_assignment", lab, "--force", cwd=root)
    return root


def _fill_in(release, solution, mistake: Mistake | None):
    """The release notebook with the answers of the solution notebook (and the mistake, if any) typed in."""
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in solution.cells if nbgrader_meta(c).get("solution")}
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution"):
            cell.source = answers[grade_id]
            if mistake is not None and grade_id == mistake.cell:
                assert mistake.old in cell.source, (
                    f"the solution cell {grade_id!r} no longer contains {mistake.old!r}: update WRONG_SUBMISSIONS in tests/test_labs.py"
                )
                cell.source = cell.source.replace(mistake.old, mistake.new)
    return nb


@pytest.fixture(scope="module")
def graded(course):
    """Autograde three submissions of every lab in one nbgrader run; return {lab: {student: Submission dict}}."""
    from nbgrader.api import Gradebook

    for lab in LABS:
        mistake = WRONG_SUBMISSIONS.get(lab)
        release = nbformat.read(notebook_path(course / "labs", lab), as_version=4)
        solution = nbformat.read(notebook_path(SOLUTIONS, lab), as_version=4)
        submissions = {"correct": _fill_in(release, solution, None), "untouched": release}
        if mistake is not None:
            submissions["wrong"] = _fill_in(release, solution, mistake)
        for student, nb in submissions.items():
            folder = course / "_grading" / "submitted" / student / lab
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / f"{lab}.ipynb")
    for lab in LABS:
        nbgrader("autograde", lab, "--force", cwd=course)

    scores = {}
    with Gradebook(f"sqlite:///{course / '_grading' / 'gradebook.db'}") as gb:
        for lab in LABS:
            scores[lab] = {}
            for student in STUDENTS:
                try:
                    submission = gb.find_submission(lab, student)
                except Exception:
                    continue
                (notebook,) = submission.notebooks
                scores[lab][student] = {
                    "code_score": submission.code_score,
                    "max_code_score": submission.max_code_score,
                    "max_score": submission.max_score,
                    "cells": {
                        g.name: (g.auto_score, g.max_score) for g in notebook.grades if g.cell.cell_type == "code"
                    },
                }
    return scores


# ------------------------------------------------------------------ labs/ == generated
@pytest.mark.parametrize("lab", LABS)
def test_labs_folder_is_what_nbgrader_generates(lab, course):
    generated = nbformat.read(notebook_path(course / "labs", lab), as_version=4)
    committed = nbformat.read(notebook_path(RELEASED, lab), as_version=4)
    fix = f"regenerate it: `nbgrader generate_assignment {lab} --force` from the repository root"
    assert len(committed.cells) == len(generated.cells), (
        f"labs/{lab} has {len(committed.cells)} cells, nbgrader generates {len(generated.cells)}; {fix}"
    )
    for i, (mine, theirs) in enumerate(zip(committed.cells, generated.cells)):
        where = f"labs/{lab}, {cell_name(i, theirs)}"
        assert mine.cell_type == theirs.cell_type, f"{where}: a {mine.cell_type} cell, nbgrader generates a {theirs.cell_type} cell; {fix}"
        assert mine.source == theirs.source, f"{where}: the source differs from what nbgrader generates; {fix}\n--- labs/ ---\n{mine.source[:600]}\n--- generated ---\n{theirs.source[:600]}"
        assert nbgrader_meta(mine) == nbgrader_meta(theirs), f"{where}: nbgrader metadata {nbgrader_meta(mine)} vs generated {nbgrader_meta(theirs)}; {fix}"
        for key in ("editable", "deletable"):
            assert mine.metadata.get(key) == theirs.metadata.get(key), f"{where}: metadata {key}={mine.metadata.get(key)} vs generated {theirs.metadata.get(key)}; {fix}"
    files = lambda folder: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())  # noqa: E731
    assert files(RELEASED / lab) == files(course / "labs" / lab), f"labs/{lab} holds {files(RELEASED / lab)}, nbgrader generates {files(course / 'labs' / lab)}; {fix}"


# ------------------------------------------------------------------ autograde
def _describe(result) -> str:
    return ", ".join(f"{name} {score:g}/{points:g}" for name, (score, points) in result["cells"].items())


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_autograde_gives_full_marks_to_the_solution(lab, graded, course):
    result = graded[lab]["correct"]
    assert result["max_code_score"] > 0, f"{lab}: no autograded points"
    assert result["max_score"] > result["max_code_score"], f"{lab}: no manually graded part (the written reflection)"
    assert result["code_score"] == result["max_code_score"], (
        f"{lab}: the solution got {result['code_score']:g} of {result['max_code_score']:g} autograded points: {_describe(result)}"
    )
    # It also ran end to end: no cell of the autograded notebook raised.
    nb = nbformat.read(notebook_path(course / "_grading" / "autograded" / "correct", lab), as_version=4)
    errors = [
        f"{cell_name(i, c)}: {o.ename}: {o.evalue}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
        for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors, f"{lab}: the autograded solution raised in {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_autograde_gives_zero_to_the_untouched_lab(lab, graded):
    result = graded[lab]["untouched"]
    assert result["code_score"] == 0, f"{lab}: the untouched release got {result['code_score']:g} points: {_describe(result)}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_autograde_takes_the_points_of_a_subtle_mistake(lab, graded, course):
    mistake = WRONG_SUBMISSIONS.get(lab)
    assert mistake is not None, f"{lab}: add a plausibly wrong submission to WRONG_SUBMISSIONS in tests/test_labs.py"
    result, full = graded[lab]["wrong"], graded[lab]["correct"]
    unknown = set(mistake.fails) - set(result["cells"])
    assert not unknown, f"{lab}: WRONG_SUBMISSIONS names grade cells {sorted(unknown)} that the lab does not have"
    lost = sum(result["cells"][name][1] for name in mistake.fails)
    assert 0 < result["code_score"] < result["max_code_score"], f"{lab}: the wrong submission got {result['code_score']:g}: {_describe(result)}"
    for name, (score, points) in result["cells"].items():
        expected = 0 if name in mistake.fails else points
        assert score == expected, (
            f"{lab}: with the mistake '{mistake.what}', {name} scored {score:g} of {points:g}, expected {expected:g} ({_describe(result)})"
        )
    assert result["code_score"] == full["code_score"] - lost, (
        f"{lab}: the wrong submission got {result['code_score']:g}, expected {full['code_score']:g} - {lost:g}"
    )
    # The mistake is caught by a check that explains itself, not by a crash.
    nb = nbformat.read(notebook_path(course / "_grading" / "autograded" / "wrong", lab), as_version=4)
    for i, cell in enumerate(nb.cells):
        if nbgrader_meta(cell).get("grade_id") in mistake.fails:
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            assert errors and errors[0].ename == "AssertionError" and errors[0].evalue.strip(), (
                f"{lab}, {cell_name(i, cell)}: expected an AssertionError with a message, got {[(o.ename, o.evalue) for o in errors]}"
            )


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_feedback_and_grade_export(lab, graded, course):
    nbgrader("generate_feedback", lab, "--force", cwd=course)
    for student in graded[lab]:
        page = notebook_path(course / "_grading" / "feedback" / student, lab).with_suffix(".html")
        assert page.is_file(), f"generate_feedback wrote no {page.relative_to(course)}"
        html = page.read_text()
        total = f"Score: {graded[lab][student]['code_score']:.1f} / {graded[lab][student]['max_score']:.1f}"
        assert total in html, f"the feedback page of {student} does not show '{total}' (the autograded points of the total)"
    nbgrader("export", cwd=course)
    table = course / "_grading" / "grades.csv"
    assert table.is_file(), "nbgrader export wrote no _grading/grades.csv"
    with table.open() as f:
        rows = [row for row in csv.DictReader(f) if row["assignment"] == lab]
    assert sorted(r["student_id"] for r in rows) == sorted(graded[lab]), f"grades.csv rows for {lab}: {rows}"
    for row in rows:
        student = row["student_id"]
        assert float(row["max_score"]) == graded[lab][student]["max_score"], f"grades.csv: max_score of {student} is {row['max_score']}"
        # Until the reflection is graded by hand, the score is the autograded points.
        assert float(row["score"]) == graded[lab][student]["code_score"], (
            f"grades.csv: {student} has {row['score']}, the gradebook {graded[lab][student]['code_score']:g}"
        )
