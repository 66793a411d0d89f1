"""File lab notebooks downloaded from a learning management system into nbgrader's layout.

Students on Colab download their notebook and upload it to Canvas, Moodle, ...; the instructor
exports every upload as a folder or a .zip. :func:`collect` files each notebook it can place at

    <course>/_grading/submitted/<student>/<lab>/<lab>.ipynb      (the uploaded bytes, unchanged)
    <course>/_grading/submitted/<student>/<lab>/timestamp.txt    (upload time, nbgrader's format)

and reports every other file and why it was left alone. The course root is the folder holding
nbgrader_config.py; the released notebooks are ``labs/<lab>/<lab>.ipynb``.

The *student* comes from the file's path in the export (the first of ``patterns`` that matches);
the *lab* comes from the notebook's content: the checksums of its locked cells (nbgrader's
``compute_checksum``) against those of every released lab. A file named ``Untitled3.ipynb`` is
therefore filed correctly, and one named as lab01 whose content is lab02 is reported, not filed.

Example (from the course root)::

    report = collect("lab01_submissions.zip", ".", "lab01_denoising_autoencoders", roster=["doejane", "roeric"])
    print(report.to_text())
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import nbformat
from nbgrader.utils import compute_checksum, parse_utc

RELEASE_DIR = "labs"
SUBMITTED_DIR = os.path.join("_grading", "submitted")
#: What nbgrader writes and reads (``coursedir.get_existing_timestamp``, ``utils.parse_utc``).
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
#: A notebook is lab L's if at least this fraction of L's locked cells is intact (and more than any other lab's).
MIN_INTACT = 0.5

# File-name patterns. Each is searched (``re.search``) in the file's path inside the export, with "/"
# separators. Named groups: ``student`` (required; nbgrader's ``student_id`` works too), and optionally
# ``late`` (non-empty: uploaded after the deadline), ``name`` (the name the student gave the file: the lab
# it names and Canvas's re-upload counter are read from it) and ``timestamp`` (the upload time, any format
# ``nbgrader.utils.parse_utc`` reads, as in nbgrader's ``FileNameCollectorPlugin.named_regexp``).
# ``{labs}`` stands for any lab name of the course.

#: Canvas "Download Submissions": ``doejane_12345_6789012_lab01_denoising_autoencoders.ipynb``,
#: ``doejane_LATE_12345_6789013_lab01_denoising_autoencoders-1.ipynb`` (``-1``: the second upload of
#: that name). The student id is the login part (Canvas's sortable name, lower case, letters only).
CANVAS = r"(?:^|/)(?P<student>[^/_]+)_(?:(?P<late>LATE)_)?\d+_\d+_(?P<name>[^/]+)$"
#: Moodle "Download all submissions", one folder per student:
#: ``Jane Doe_1234567_assignsubmission_file_/lab01_denoising_autoencoders.ipynb``. The student id is
#: the full name slugged (``jane-doe``): Moodle's participant number differs from assignment to assignment.
MOODLE_FOLDER = r"(?:^|/)(?P<student>[^/]+?)_(?P<participant>\d+)_assignsubmission_file_/(?:[^/]+/)*(?P<name>[^/]+)$"
#: Moodle, flat: ``Jane Doe_1234567_assignsubmission_file_lab01_denoising_autoencoders.ipynb``.
MOODLE_FLAT = r"(?:^|/)(?P<student>[^/]+?)_(?P<participant>\d+)_assignsubmission_file_(?P<name>[^/]+)$"
#: nbgrader's own layout, ``jdoe/lab01_denoising_autoencoders.ipynb`` (file named exactly as a lab).
NBGRADER_FOLDER = r"(?:^|/)(?P<student>[^/]+)/(?P<name>{labs}\.ipynb)$"
#: ``jdoe_lab01_denoising_autoencoders.ipynb`` (the student id has no "_").
NBGRADER_FLAT = r"(?:^|/)(?P<student>[^/_]+)_(?P<name>{labs}\.ipynb)$"
DEFAULT_PATTERNS = (MOODLE_FOLDER, MOODLE_FLAT, CANVAS, NBGRADER_FOLDER, NBGRADER_FLAT)

# Never uploads: archivers' and Jupyter's by-products, skipped without a report line.
_IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
_IGNORED_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Filed:
    """One student's notebook for one lab: filed, already there, or in conflict with what is there."""

    student: str
    lab: str
    source: str  # path inside the export
    late: bool
    timestamp: datetime  # upload time (from the name, else the file's modification time), UTC
    modified_cells: tuple[str, ...] = ()  # grade ids of the lab's locked cells whose content differs
    deleted_cells: tuple[str, ...] = ()  # grade ids of the lab's locked cells the notebook lacks
    replaced: bool = False  # a different notebook was there and replace=True overwrote it


@dataclass
class Skipped:
    """A file that was not filed, and why."""

    source: str
    reason: str
    student: str | None = None
    lab: str | None = None


@dataclass
class CollectReport:
    """What :func:`collect` did (or, with dry_run, would do) with every file of the export."""

    source: str
    destination: str
    lab: str | None = None
    dry_run: bool = False
    filed: list[Filed] = field(default_factory=list)
    unchanged: list[Filed] = field(default_factory=list)  # the same bytes were already there
    conflicts: list[Filed] = field(default_factory=list)  # a different notebook is there; not overwritten
    duplicates: list[Skipped] = field(default_factory=list)  # older uploads of a filed (student, lab)
    wrong_lab: list[Skipped] = field(default_factory=list)
    unreadable: list[Skipped] = field(default_factory=list)
    unmatched: list[Skipped] = field(default_factory=list)  # the path fits no pattern
    missing: list[tuple[str, str]] = field(default_factory=list)  # (student, lab) of the roster with nothing

    def to_dict(self) -> dict:
        """Plain JSON-ready data: datetimes as ISO strings, tuples as lists."""

        def plain(value):
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return plain(dataclasses.asdict(self))

    def to_text(self) -> str:
        """The report for a terminal: a summary line, then one line per file that needs a look."""
        verb = "would file" if self.dry_run else "filed"
        lines = [
            f"{self.source} -> {self.destination}" + (f" (lab {self.lab} only)" if self.lab else "")
            + (" [dry run: nothing written]" if self.dry_run else ""),
            f"{verb} {len(self.filed)}, unchanged {len(self.unchanged)}, conflicts {len(self.conflicts)}, "
            f"duplicates {len(self.duplicates)}, wrong lab {len(self.wrong_lab)}, unreadable {len(self.unreadable)}, "
            f"unmatched {len(self.unmatched)}, missing {len(self.missing)}",
        ]

        def section(title, rows):
            if rows:
                lines.append(f"{title} ({len(rows)}):")
                lines.extend(f"  {row}" for row in rows)

        def filed_line(f: Filed) -> str:
            notes = ["late"] if f.late else []
            notes += ["replaced a different notebook"] if f.replaced else []
            notes += [f"modified locked cells: {list(f.modified_cells)}"] if f.modified_cells else []
            notes += [f"deleted locked cells: {list(f.deleted_cells)}"] if f.deleted_cells else []
            return f"{f.student} {f.lab} <- {f.source}" + (f" [{'; '.join(notes)}]" if notes else "")

        def skipped_line(s: Skipped) -> str:
            who = " ".join(x for x in (s.student, s.lab) if x)
            return f"{s.source}: {s.reason}" + (f" ({who})" if who else "")

        section(verb, [filed_line(f) for f in self.filed])
        noted = [f for f in self.unchanged if f.late or f.modified_cells or f.deleted_cells]
        section("unchanged, with notes", [filed_line(f) for f in noted])
        section("conflicts, kept what is there (collect again with replace=True to overwrite)",
                [filed_line(f) for f in self.conflicts])
        section("duplicates, not filed", [skipped_line(s) for s in self.duplicates])
        section("wrong lab, not filed", [skipped_line(s) for s in self.wrong_lab])
        section("unreadable", [skipped_line(s) for s in self.unreadable])
        section("unmatched names", [skipped_line(s) for s in self.unmatched])
        section("missing", [f"{student} {lab}" for student, lab in self.missing])
        return "\n".join(lines)


def format_report(report: CollectReport) -> str:
    """The text the command line prints: ``report.to_text()``."""
    return report.to_text()


def student_folder(student: str) -> str:
    """A student id made safe as a folder name: ASCII, lower case, ``[a-z0-9_.-]``, no leading dot.

    >>> student_folder("José Núñez"), student_folder("doejane"), student_folder(".hidden/../x")
    ('jose-nunez', 'doejane', 'hidden-.-x')
    """
    slug = unicodedata.normalize("NFKD", student).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^a-z0-9_.-]+", "-", slug)).strip("-._")
    if not slug:
        raise ValueError(f"student id {student!r} gives no usable folder name (expected letters or digits in it)")
    return slug


def released_labs(course_root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{lab: {grade_id: checksum}}`` of the locked cells of every ``labs/<lab>/<lab>.ipynb``."""
    labs = {}
    for path in sorted(Path(course_root, RELEASE_DIR).glob("*/*.ipynb")):
        if path.stem != path.parent.name:
            continue
        cells = (cell.metadata.get("nbgrader", {}) for cell in nbformat.read(path, as_version=4).cells)
        labs[path.stem] = {m["grade_id"]: m["checksum"] for m in cells if m.get("locked") and "checksum" in m}
        if not labs[path.stem]:
            raise ValueError(f"{path}: expected locked cells with nbgrader checksums (a notebook made by "
                             "`nbgrader generate_assignment`), found none")
    if not labs:
        raise FileNotFoundError(f"expected released notebooks {RELEASE_DIR}/<lab>/<lab>.ipynb in {course_root}, found none")
    return labs


def identify(notebook: nbformat.NotebookNode, labs: dict[str, dict[str, str]]):
    """The lab a notebook is, from its locked cells: ``(lab or None, modified grade ids, deleted grade ids, detail)``.

    Each lab scores the fraction of its locked cells present in the notebook with their checksum;
    the best lab wins if it scores at least MIN_INTACT.
    """
    have = defaultdict(set)  # grade_id -> checksums of the notebook's cells with that id
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and "grade_id" in meta:
            try:
                have[meta["grade_id"]].add(compute_checksum(cell))
            except (KeyError, TypeError, ValueError, AttributeError):  # e.g. points that are not a number
                have[meta["grade_id"]].add("")

    def score(lab):
        expected = labs[lab]
        return sum(checksum in have.get(gid, ()) for gid, checksum in expected.items()) / len(expected)

    best = max(sorted(labs), key=score)
    if score(best) < MIN_INTACT:
        intact = round(score(best) * len(labs[best]))
        return None, (), (), f"matches no lab (closest: {best}, {intact} of {len(labs[best])} locked cells intact)"
    modified = tuple(g for g, c in labs[best].items() if g in have and c not in have[g])
    deleted = tuple(g for g in labs[best] if g not in have)
    return best, modified, deleted, ""


def lab_named_in(name: str, labs: Iterable[str]) -> str | None:
    """The one lab a file name names (its full name, or its ``labNN`` prefix), else None.

    >>> lab_named_in("Copy of lab01_denoising_autoencoders-1.ipynb", ["lab01_denoising_autoencoders", "lab02_x"])
    'lab01_denoising_autoencoders'
    """
    name = name.lower()
    hits = {lab for lab in labs for key in {lab.lower(), lab.lower().split("_")[0]}
            if re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![0-9])", name)}
    return hits.pop() if len(hits) == 1 else None


@dataclass
class _Upload:
    path: str  # inside the export, "/"-separated
    mtime: datetime
    read: Callable[[], bytes]


@contextlib.contextmanager
def _uploads(source: Path) -> Iterator[list[_Upload]]:
    """The files of a folder (recursively) or a .zip, read on demand; zip entries are read in memory, never extracted."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        mtime = lambda p: datetime.fromtimestamp(p.stat().st_mtime, timezone.utc)  # noqa: E731
        yield [_Upload(p.relative_to(source).as_posix(), mtime(p), p.read_bytes) for p in files]
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            # A zip entry's time has no time zone: it is taken as UTC (the LMS server's clock).
            yield [_Upload(info.filename.replace("\\", "/"), datetime(*info.date_time, tzinfo=timezone.utc),
                           lambda info=info: archive.read(info))
                   for info in sorted(archive.infolist(), key=lambda i: i.filename) if not info.is_dir()]
    else:
        raise ValueError(f"expected a folder or a .zip file of downloaded submissions, got {str(source)!r}")


def _compile(patterns: Iterable[str | re.Pattern], labs: Iterable[str]) -> list[re.Pattern]:
    alternatives = "(?:" + "|".join(re.escape(lab) for lab in labs) + ")"
    compiled = []
    for pattern in patterns:
        pattern = re.compile(pattern.replace("{labs}", alternatives)) if isinstance(pattern, str) else pattern
        if not {"student", "student_id"} & set(pattern.groupindex):
            raise ValueError(f"file-name pattern {pattern.pattern!r}: expected a named group (?P<student>...)")
        compiled.append(pattern)
    return compiled


def _upload_counter(name: str) -> int:
    """Canvas's re-upload counter: ``lab01-2.ipynb`` -> 2, ``lab01.ipynb`` -> 0."""
    match = re.search(r"-(\d+)(?:\.[^.]*)?$", name)
    return int(match.group(1)) if match else 0


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file next to ``path``, then rename it over ``path``: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with O_EXCL: a fresh file with the usual permissions (umask), unlike tempfile's 0600.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
        out.write(data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def collect(source, course_root, lab=None, *, patterns=None, roster=None, replace=False, dry_run=False) -> CollectReport:
    """File the notebooks of an LMS export (folder or .zip) as nbgrader submissions; report everything else.

    source       a folder (searched recursively) or a .zip of the downloads
    course_root  the folder holding nbgrader_config.py, labs/ and _grading/
    lab          collect only this lab; notebooks of other labs are reported as wrong lab
    patterns     file-name regexes tried in order (default DEFAULT_PATTERNS; see CANVAS, MOODLE_FOLDER, ...)
    roster       student ids expected to submit; those without a submission are reported missing
    replace      overwrite a different notebook already filed (otherwise it is reported as a conflict)
    dry_run      decide and report everything, write nothing

    When a student uploaded the same lab more than once, the newest is filed (LATE beats on time, then
    Canvas's ``-N`` counter, then the upload time) and the others are reported as duplicates.
    """
    source, root = Path(source), Path(course_root)
    if not (root / "nbgrader_config.py").is_file():
        raise FileNotFoundError(f"expected the course root (the folder holding nbgrader_config.py), got {str(root)!r}")
    labs = released_labs(root)
    if lab is not None and lab not in labs:
        raise ValueError(f"unknown lab {lab!r}: expected one of {sorted(labs)}")
    compiled = _compile(DEFAULT_PATTERNS if patterns is None else patterns, labs)
    expected = sorted({student_folder(s) for s in roster}) if roster is not None else []
    submitted = root / SUBMITTED_DIR
    report = CollectReport(str(source), str(submitted), lab, dry_run)
    candidates = defaultdict(list)  # (student, lab) -> [(newness, Filed, _Upload)]

    with _uploads(source) as uploads:
        for upload in uploads:
            parts = upload.path.split("/")
            if _IGNORED_FOLDERS & set(parts[:-1]) or parts[-1] in _IGNORED_FILES or parts[-1].startswith("._"):
                continue
            candidate = _classify(upload, compiled, labs, lab, report)
            if candidate is not None:
                newness, filed = candidate
                candidates[filed.student, filed.lab].append((newness, filed, upload))

        for (student, found), group in sorted(candidates.items()):
            group.sort(key=lambda candidate: candidate[0], reverse=True)
            (_, filed, upload), *older = group
            for _, old, _ in older:
                report.duplicates.append(Skipped(old.source, f"an older upload; filed {filed.source}", student, found))
            _file(filed, upload.read(), submitted, replace, dry_run, report)

    for lab_ in [lab] if lab else sorted({f.lab for f in report.filed + report.unchanged + report.conflicts}):
        have = {f.student for f in report.filed + report.unchanged + report.conflicts if f.lab == lab_}
        report.missing += [(s, lab_) for s in expected if s not in have and not (submitted / s / lab_ / f"{lab_}.ipynb").exists()]
    return report


def _classify(upload: _Upload, patterns: list[re.Pattern], labs: dict, lab: str | None, report: CollectReport):
    """``(newness, Filed)`` for a notebook to file; anything else goes into the report and gives None."""
    match = next((m for m in (p.search(upload.path) for p in patterns) if m), None)
    if match is None:
        report.unmatched.append(Skipped(upload.path, "fits no file-name pattern"))
        return None
    groups = match.groupdict()
    stamp = groups.get("timestamp")
    try:
        student = student_folder(groups.get("student") or groups.get("student_id") or "")
    except ValueError as error:
        report.unmatched.append(Skipped(upload.path, str(error)))
        return None
    try:
        timestamp = parse_utc(stamp).replace(tzinfo=timezone.utc) if stamp else upload.mtime
    except ValueError as error:
        report.unmatched.append(Skipped(upload.path, f"upload time {stamp!r} in the name is no date ({error})", student))
        return None
    name = groups.get("name") or upload.path.rsplit("/", 1)[-1]
    if not name.lower().endswith(".ipynb"):
        report.unreadable.append(Skipped(upload.path, "not a notebook (expected a .ipynb file)", student))
        return None
    try:
        notebook = nbformat.reads(upload.read().decode("utf-8"), as_version=4)
        if not isinstance(notebook.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as error:  # anything a parser raises on foreign bytes means the same: unreadable
        detail = f"{type(error).__name__}: {error}"
        report.unreadable.append(Skipped(upload.path, f"not a readable notebook ({detail[:100]})", student))
        return None
    found, modified, deleted, detail = identify(notebook, labs)
    named = lab_named_in(name, labs)
    if found is None:
        problem = detail
    elif named is not None and named != found:
        problem = f"named as {named} but its locked cells are {found}'s"
    elif lab is not None and found != lab:
        problem = f"a {found} notebook; collecting {lab} only"
    else:
        late = bool(groups.get("late"))
        newness = (late, _upload_counter(name), timestamp, upload.path)
        return newness, Filed(student, found, upload.path, late, timestamp, modified, deleted)
    report.wrong_lab.append(Skipped(upload.path, problem, student, found))
    return None


def _file(filed: Filed, data: bytes, submitted: Path, replace: bool, dry_run: bool, report: CollectReport) -> None:
    folder = submitted / filed.student / filed.lab
    target = folder / f"{filed.lab}.ipynb"
    if not target.resolve().is_relative_to(submitted.resolve()):  # student_folder makes this impossible; keep it so
        raise RuntimeError(f"refusing to write {target}: outside {submitted}")
    if target.exists():
        if target.read_bytes() == data:
            report.unchanged.append(filed)
            return
        if not replace:
            report.conflicts.append(filed)
            return
        filed.replaced = True
    report.filed.append(filed)
    if dry_run:
        return
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, data)
    _write_atomically(folder / "timestamp.txt", filed.timestamp.strftime(TIMESTAMP_FORMAT).encode())
    os.utime(target, (filed.timestamp.timestamp(),) * 2)
