"""sslcourse.grading.collect: LMS downloads (Canvas, Moodle) filed into nbgrader's submitted/ layout.

Each test builds a scratch course (nbgrader_config.py and the released labs/) and an export of
uploads in both naming styles, as a folder and as a .zip, and checks the report line by line and
the bytes written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import parse_utc

from sslcourse.grading.collect import (
    CANVAS,
    collect,
    format_report,
    lab_named_in,
    student_folder,
)

ROOT = Path(__file__).resolve().parents[1]
LAB1 = "lab01_denoising_autoencoders"
LAB2 = "lab02_context_and_color"
SUBMITTED = Path("_grading", "submitted")


def released(lab: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "labs" / lab / f"{lab}.ipynb", as_version=4)


def work(lab: str, answer: str, edit_locked: str | None = None) -> bytes:
    """A student's notebook: the released lab with the first solution cell answered (solution cells
    are not locked, so the content still identifies the lab), optionally one locked cell edited."""
    nb = released(lab)
    solution = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    solution.source = f"def answer():\n    return {answer!r}\n"
    if edit_locked:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == edit_locked)
        cell.source += "\n\nmy notes: I changed this cell"
    return nbformat.writes(nb).encode()


def when(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 3, day, hour, 0, 0, tzinfo=timezone.utc)


# The export: path inside it -> (bytes, upload time). Canvas names first, then Moodle's, then nbgrader's.
UPLOADS = {
    # Canvas. doejane uploaded twice; the re-upload (-1) must win even though the zip gives the first a later time.
    f"doejane_1001_5001_{LAB1}.ipynb": (work(LAB1, "doe, first try"), when(9)),
    f"doejane_1001_5002_{LAB1}-1.ipynb": (work(LAB1, "doe, second try"), when(8)),
    f"roeric_LATE_1002_5003_{LAB1}.ipynb": (work(LAB1, "roe"), when(12)),
    f"smithann_1003_5004_{LAB2}.ipynb": (work(LAB2, "smith"), when(5)),
    "ngtom_1006_5008_Untitled3.ipynb": (work(LAB1, "ng", edit_locked="intro"), when(6)),
    "kimdan_1005_5007_notes.pdf": (b"%PDF-1.4 not a notebook", when(6)),
    "README.txt": (b"exported by the LMS", when(1)),
    # Moodle, one folder per student and flat.
    f"Ana Lima_2001_assignsubmission_file_/{LAB1}.ipynb": (work(LAB1, "lima"), when(4)),
    f"Ana Lima_2001_assignsubmission_file_/{LAB2}.ipynb": (work(LAB2, "lima"), when(4)),
    f"José Núñez_2002_assignsubmission_file_{LAB2}.ipynb": (work(LAB2, "nunez"), when(3)),
    f"Bo Lee_2003_assignsubmission_file_{LAB1}.ipynb": (work(LAB2, "lee"), when(3)),  # lab02 named as lab01
    f"Kim Dan_2004_assignsubmission_file_/{LAB1}.ipynb": (work(LAB1, "kim")[:500], when(2)),  # truncated JSON
    # nbgrader's own layout; and a Mac archiver's by-product, skipped without a word.
    f"zoe/{LAB2}.ipynb": (work(LAB2, "zoe"), when(2)),
    f"__MACOSX/._{LAB2}.ipynb": (b"\x00\x05\x16\x07", when(2)),
}
ROSTER = ["doejane", "roeric", "smithann", "ngtom", "Ana Lima", "José Núñez", "Bo Lee", "Kim Dan", "zoe", "pat"]


@pytest.fixture
def course(tmp_path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "labs", root / "labs")
    return root


def write_folder(folder: Path, uploads: dict) -> Path:
    for name, (data, time) in uploads.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (time.timestamp(), time.timestamp()))
    return folder


def write_zip(path: Path, uploads: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, time) in uploads.items():
            archive.writestr(zipfile.ZipInfo(name, time.timetuple()[:6]), data)
    return path


@pytest.fixture(params=["folder", "zip"])
def export(request, tmp_path) -> Path:
    if request.param == "folder":
        return write_folder(tmp_path / "downloads", UPLOADS)
    return write_zip(tmp_path / "downloads.zip", UPLOADS)


def filed_rows(entries):
    return [(f.student, f.lab, f.source, f.late, f.modified_cells) for f in entries]


def skipped_rows(entries):
    return [(s.source, s.student, s.lab) for s in entries]


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


EXPECTED_FILED = [
    ("ana-lima", LAB1, f"Ana Lima_2001_assignsubmission_file_/{LAB1}.ipynb", False, ()),
    ("ana-lima", LAB2, f"Ana Lima_2001_assignsubmission_file_/{LAB2}.ipynb", False, ()),
    ("doejane", LAB1, f"doejane_1001_5002_{LAB1}-1.ipynb", False, ()),
    ("jose-nunez", LAB2, f"José Núñez_2002_assignsubmission_file_{LAB2}.ipynb", False, ()),
    ("ngtom", LAB1, "ngtom_1006_5008_Untitled3.ipynb", False, ("intro",)),
    ("roeric", LAB1, f"roeric_LATE_1002_5003_{LAB1}.ipynb", True, ()),
    ("smithann", LAB2, f"smithann_1003_5004_{LAB2}.ipynb", False, ()),
    ("zoe", LAB2, f"zoe/{LAB2}.ipynb", False, ()),
]


def test_collect_files_every_identified_notebook_and_reports_the_rest(course, export):
    report = collect(export, course, roster=ROSTER)

    assert filed_rows(report.filed) == EXPECTED_FILED
    assert report.unchanged == [] and report.conflicts == []
    assert all(f.deleted_cells == () and not f.replaced for f in report.filed)
    assert skipped_rows(report.duplicates) == [(f"doejane_1001_5001_{LAB1}.ipynb", "doejane", LAB1)]
    assert report.duplicates[0].reason == f"an older upload; filed doejane_1001_5002_{LAB1}-1.ipynb"
    assert skipped_rows(report.wrong_lab) == [(f"Bo Lee_2003_assignsubmission_file_{LAB1}.ipynb", "bo-lee", LAB2)]
    assert report.wrong_lab[0].reason == f"named as {LAB1} but its locked cells are {LAB2}'s"
    assert skipped_rows(report.unreadable) == [
        (f"Kim Dan_2004_assignsubmission_file_/{LAB1}.ipynb", "kim-dan", None),
        ("kimdan_1005_5007_notes.pdf", "kimdan", None),
    ]
    assert report.unreadable[0].reason.startswith("not a readable notebook (NotJSONError")
    assert report.unreadable[1].reason == "not a notebook (expected a .ipynb file)"
    assert [(s.source, s.reason) for s in report.unmatched] == [("README.txt", "fits no file-name pattern")]
    assert report.missing == [
        ("bo-lee", LAB1), ("jose-nunez", LAB1), ("kim-dan", LAB1), ("pat", LAB1), ("smithann", LAB1), ("zoe", LAB1),
        ("bo-lee", LAB2), ("doejane", LAB2), ("kim-dan", LAB2), ("ngtom", LAB2), ("pat", LAB2), ("roeric", LAB2),
    ]

    # Exactly the filed notebooks were written, byte for byte as uploaded, each with nbgrader's timestamp.txt.
    written = files_under(course / SUBMITTED)
    expected = {}
    for student, lab, source, _, _ in EXPECTED_FILED:
        expected[f"{student}/{lab}/{lab}.ipynb"] = UPLOADS[source][0]
        expected[f"{student}/{lab}/timestamp.txt"] = UPLOADS[source][1].strftime("%Y-%m-%d %H:%M:%S.%f UTC").encode()
    assert written == expected
    plain = course / "plain"
    plain.write_bytes(b"")  # written notebooks get the permissions any new file gets (not tempfile's 0600)
    assert (course / SUBMITTED / "doejane" / LAB1 / f"{LAB1}.ipynb").stat().st_mode == plain.stat().st_mode
    stamp = (course / SUBMITTED / "roeric" / LAB1 / "timestamp.txt").read_text()
    assert parse_utc(stamp) == when(12).replace(tzinfo=None)  # what nbgrader's get_existing_timestamp reads

    text = format_report(report)
    assert f"roeric {LAB1} <- roeric_LATE_1002_5003_{LAB1}.ipynb [late]" in text
    assert f"ngtom {LAB1} <- ngtom_1006_5008_Untitled3.ipynb [modified locked cells: ['intro']]" in text
    assert "filed 8, unchanged 0, conflicts 0, duplicates 1, wrong lab 1, unreadable 2, unmatched 1, missing 12" in text
    assert json.loads(json.dumps(report.to_dict()))["filed"][0]["timestamp"] == "2024-03-04T12:00:00+00:00"


def test_a_second_run_changes_nothing(course, export):
    collect(export, course)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (course / SUBMITTED).rglob("*") if p.is_file()}

    again = collect(export, course)

    assert again.filed == [] and again.conflicts == []
    assert filed_rows(again.unchanged) == EXPECTED_FILED
    assert len(again.duplicates) == 1 and len(again.wrong_lab) == 1 and len(again.unreadable) == 2
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (course / SUBMITTED).rglob("*") if p.is_file()}
    assert after == before
    assert "unchanged, with notes (2):" in again.to_text()  # the late one and the edited one are still pointed out


def test_a_different_notebook_already_filed_is_kept_unless_replace(course, tmp_path):
    export = write_zip(tmp_path / "x.zip", {f"doejane_1001_5002_{LAB1}.ipynb": (work(LAB1, "new"), when(9))})
    target = course / SUBMITTED / "doejane" / LAB1 / f"{LAB1}.ipynb"
    target.parent.mkdir(parents=True)
    target.write_bytes(work(LAB1, "graded already"))

    kept = collect(export, course)
    assert filed_rows(kept.conflicts) == [("doejane", LAB1, f"doejane_1001_5002_{LAB1}.ipynb", False, ())]
    assert kept.filed == [] and target.read_bytes() == work(LAB1, "graded already")
    assert not (target.parent / "timestamp.txt").exists()

    replaced = collect(export, course, replace=True)
    assert [(f.student, f.replaced) for f in replaced.filed] == [("doejane", True)]
    assert target.read_bytes() == work(LAB1, "new")
    assert sorted(p.name for p in target.parent.iterdir()) == [f"{LAB1}.ipynb", "timestamp.txt"]  # no temp files left


def test_collecting_one_lab_reports_the_others_as_wrong_lab(course, export):
    report = collect(export, course, LAB1, roster=ROSTER)

    assert filed_rows(report.filed) == [row for row in EXPECTED_FILED if row[1] == LAB1]
    assert sorted(skipped_rows(report.wrong_lab)) == sorted([
        (f"Bo Lee_2003_assignsubmission_file_{LAB1}.ipynb", "bo-lee", LAB2),
        (f"Ana Lima_2001_assignsubmission_file_/{LAB2}.ipynb", "ana-lima", LAB2),
        (f"José Núñez_2002_assignsubmission_file_{LAB2}.ipynb", "jose-nunez", LAB2),
        (f"smithann_1003_5004_{LAB2}.ipynb", "smithann", LAB2),
        (f"zoe/{LAB2}.ipynb", "zoe", LAB2),
    ])
    assert f"smithann_1003_5004_{LAB2}.ipynb: a {LAB2} notebook; collecting {LAB1} only (smithann {LAB2})" in report.to_text()
    assert report.missing == [(s, LAB1) for s in ["bo-lee", "jose-nunez", "kim-dan", "pat", "smithann", "zoe"]]
    assert {p.name for p in (course / SUBMITTED).glob("*/*")} == {LAB1}


def test_dry_run_reports_but_writes_nothing(course, export):
    report = collect(export, course, dry_run=True)

    assert filed_rows(report.filed) == EXPECTED_FILED
    assert not (course / SUBMITTED).exists()
    assert "would file 8" in report.to_text() and "[dry run: nothing written]" in report.to_text()


def test_hostile_zip_entries_cannot_write_outside_the_submissions(course, tmp_path):
    bad = write_zip(tmp_path / "bad.zip", {
        "../../evil.ipynb": (work(LAB1, "evil"), when(1)),
        f"{tmp_path}/abs_evil.ipynb": (work(LAB1, "evil"), when(1)),
        f"../../{LAB1}.ipynb": (work(LAB1, "evil"), when(1)),  # nbgrader's folder style with student ".."
        f"/../.hidden/{LAB1}.ipynb": (work(LAB1, "hidden"), when(1)),
        f"/etc/../../doejane_1_2_{LAB1}.ipynb": (work(LAB1, "doe"), when(1)),  # a fine name behind a bad path
    })
    outside = files_under(tmp_path)

    report = collect(bad, course)

    assert [(s.source, s.reason) for s in report.unmatched] == [
        ("../../evil.ipynb", "fits no file-name pattern"),
        (f"../../{LAB1}.ipynb", "student id '..' gives no usable folder name (expected letters or digits in it)"),
        (f"{tmp_path}/abs_evil.ipynb", "fits no file-name pattern"),
    ]
    assert [(f.student, f.source) for f in report.filed] == [
        ("doejane", f"/etc/../../doejane_1_2_{LAB1}.ipynb"),
        ("hidden", f"/../.hidden/{LAB1}.ipynb"),
    ]
    new = {k for k in files_under(tmp_path) if k not in outside}
    assert new == {f"course/_grading/submitted/{s}/{LAB1}/{n}" for s in ("doejane", "hidden")
                   for n in (f"{LAB1}.ipynb", "timestamp.txt")}


def test_notebooks_of_no_lab_and_deleted_locked_cells(course, tmp_path):
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    gutted = released(LAB1)
    gutted.cells = [c for c in gutted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "submit"]
    export = write_folder(tmp_path / "d", {
        f"doejane_1_2_{LAB1}.ipynb": (nbformat.writes(plain).encode(), when(1)),
        f"roeric_1_3_{LAB1}.ipynb": (nbformat.writes(gutted).encode(), when(1)),
        "smithann_1_4_data.ipynb": (b'{"not": "a notebook"}', when(1)),
    })

    report = collect(export, course)

    assert [(s.student, s.reason) for s in report.wrong_lab] == [
        ("doejane", f"matches no lab (closest: {LAB1}, 0 of 20 locked cells intact)")]
    assert [(f.student, f.modified_cells, f.deleted_cells) for f in report.filed] == [("roeric", (), ("submit",))]
    assert [s.student for s in report.unreadable] == ["smithann"]
    assert "deleted locked cells: ['submit']" in report.to_text()


def test_custom_patterns(course, tmp_path):
    export = write_folder(tmp_path / "d", {
        f"s42--2024-03-07 10:30:00--{LAB1}.ipynb": (work(LAB1, "42"), when(1)),
        f"s43--{LAB1}.ipynb": (work(LAB1, "43"), when(2)),
    })
    # nbgrader's FileNameCollectorPlugin group names (student_id, timestamp) work as they are.
    nbgrader_style = r"(?P<student_id>s\d+)--(?P<timestamp>[0-9-]+ [0-9:]+)--(?P<name>.+)$"
    report = collect(export, course, patterns=[nbgrader_style])

    assert [(f.student, f.timestamp) for f in report.filed] == [("s42", datetime(2024, 3, 7, 10, 30, tzinfo=timezone.utc))]
    assert [s.source for s in report.unmatched] == [f"s43--{LAB1}.ipynb"]
    with pytest.raises(ValueError, match=r"expected a named group \(\?P<student>"):
        collect(export, course, patterns=[r"(?P<who>\w+)"])
    with pytest.raises(ValueError, match="unknown lab 'lab99': expected one of"):
        collect(export, course, "lab99")
    with pytest.raises(FileNotFoundError, match="nbgrader_config.py"):
        collect(export, tmp_path)
    with pytest.raises(ValueError, match="expected a folder or a .zip file"):
        collect(tmp_path / "nothing.zip", course)


def test_names_and_student_ids():
    assert [student_folder(s) for s in ["doejane", "José Núñez", ".hidden", "a/../b", "Ana  Lima "]] == [
        "doejane", "jose-nunez", "hidden", "a-.-b", "ana-lima"]
    for hopeless in ["..", "/", "", "._"]:
        with pytest.raises(ValueError, match="no usable folder name"):
            student_folder(hopeless)
    labs = [LAB1, LAB2]
    assert lab_named_in(f"Copy of {LAB1}-2.ipynb", labs) == LAB1
    assert lab_named_in("lab02.ipynb", labs) == LAB2
    assert lab_named_in("Untitled3.ipynb", labs) is None
    assert lab_named_in("lab01_and_lab02.ipynb", labs) is None
    assert lab_named_in("lab012.ipynb", labs) is None
    canvas = re.compile(CANVAS)
    assert canvas.search(f"sub/doejane_LATE_1_2_{LAB1}-1.ipynb").groupdict() == {
        "student": "doejane", "late": "LATE", "name": f"{LAB1}-1.ipynb"}
