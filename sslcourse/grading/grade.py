"""A lab's submissions graded in parallel, resumably, into nbgrader's gradebook, with a report.

nbgrader autogrades one submission after another. ``grade_lab`` splits the work:

1. **verdicts, in parallel**: each submission's grading job (its code in a sandbox, the tests in a
   trusted process: :mod:`sslcourse.grading.trusted`) runs in one of ``workers`` processes; each verdict is
   written atomically to ``_grading/verdicts/<lab>/<student>.json`` under the digest of its job, so an
   interrupted run resumes where it stopped and a changed submission is graded again;
2. **the gradebook, serially**: ``nbgrader autograde LAB --force`` then runs nbgrader's own pipeline, whose
   ``IsolatedExecute`` step finds every verdict ready and only writes it in. One writer, so no grade is lost
   to a locked database;
3. **the report**: per student, the points of each test, the failures with their messages, the seconds, and
   the flags (borrowed references, tampering, timeouts, crashes, memory, blocked file or network access,
   locked cells edited), as text, ``_grading/reports/<lab>.json`` and ``.csv``.

One student's crash, hang or memory blow-up is confined to that student's sandbox and test.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .job import build_job
from .nbgrader_plugin import IsolatedExecute, TrustedServer, cached_verdict, run_trusted, store_verdict, verdict_path
from .sandbox import check_isolation


def find_course_root(start: Path | None = None) -> Path:
    """The folder holding nbgrader_config.py: start (default: the working directory) or one of its parents."""
    start = Path(start or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    raise FileNotFoundError(f"no nbgrader_config.py in {start} or its parents: run this from the course's root, or pass --course DIR")


def _config(root: Path):
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


@dataclass
class StudentResult:
    student: str
    score: float = 0.0
    max_score: float = 0.0
    tests: dict = field(default_factory=dict)  # grade_id -> (score, points, status, message)
    seconds: float = 0.0
    flags: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class GradeReport:
    lab: str
    workers: int
    students: list[StudentResult]
    graded_now: int
    reused: int
    verdict_seconds: float
    gradebook_seconds: float

    def to_dict(self) -> dict:
        return {"lab": self.lab, "workers": self.workers, "graded_now": self.graded_now, "reused": self.reused,
                "verdict_seconds": self.verdict_seconds, "gradebook_seconds": self.gradebook_seconds,
                "students": [s.__dict__ for s in self.students]}

    def to_text(self) -> str:
        lines = [f"{self.lab}: {len(self.students)} submissions; {self.graded_now} graded now, {self.reused} verdicts reused; "
                 f"{self.verdict_seconds:.0f} s on {self.workers} worker(s), then {self.gradebook_seconds:.0f} s writing the gradebook"]
        for s in self.students:
            head = f"  {s.student}: {s.score:g}/{s.max_score:g} ({s.seconds:.1f} s)"
            if s.error:
                head += f"  ERROR: {s.error}"
            lines.append(head)
            for name, (score, points, status, message) in s.tests.items():
                if status != "passed":
                    lines.append(f"      {name} {score:g}/{points:g} {status}: {(message or '')[:160]}")
            for kind, items in s.flags.items():
                for item in items:
                    lines.append(f"      FLAG {kind}: {item}")
        flagged = sum(1 for s in self.students if s.flags)
        lines.append(f"{flagged} submission(s) flagged; reports in _grading/reports/{self.lab}.json and .csv")
        return "\n".join(lines)


def submissions(root: Path, lab: str, submitted: Path) -> dict[str, Path]:
    return {p.parent.parent.name: p for p in sorted(submitted.glob(f"*/{lab}/{lab}.ipynb"))}


def grade_lab(lab: str, course_root: Path | None = None, *, workers: int = 2, progress: bool = True,
              isolation: str | None = None, run_nbgrader: bool = True) -> GradeReport:
    """Grade every submission of ``lab`` found in nbgrader's submitted folder (see the module's docstring)."""
    from nbgrader.coursedir import CourseDirectory
    from tqdm.auto import tqdm

    root = find_course_root(course_root)
    config = _config(root)
    if isolation is not None:
        config.IsolatedExecute.isolation = isolation
    course = CourseDirectory(config=config)
    course.root = str(root)
    execute = IsolatedExecute(config=config)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    check_isolation(execute.isolation)  # no bubblewrap: say so now, not once per submission
    source_path = Path(course.format_path(course.source_directory, ".", lab)) / f"{lab}.ipynb"
    if not source_path.is_file():
        raise FileNotFoundError(f"no lab {lab!r}: expected its source notebook at {source_path}")
    source_nb = nbformat.read(str(source_path), as_version=4)
    submitted = Path(course.format_path(course.submitted_directory, "-", "-")).parent.parent
    found = submissions(root, lab, submitted)
    if not found:
        raise FileNotFoundError(f"no submission of {lab} under {submitted}/<student>/{lab}/{lab}.ipynb: collect them first")
    if run_nbgrader:
        _check_gradebook(course.db_url, lab)
    grading = root / execute.grading_directory
    results = {student: StudentResult(student) for student in found}
    jobs = {}
    for student, path in found.items():
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as err:  # noqa: BLE001 - an unreadable file is that student's problem only
            results[student].error = f"unreadable notebook: {err}"
            continue
        jobs[student] = build_job(source_nb, nb, lab=lab, student=student, isolation=execute.isolation, limits=execute.limits(),
                                  watched_prefixes=[str(root), str(Path.home())])
    todo = {s: j for s, j in jobs.items() if cached_verdict(j, verdict_path(grading, lab, s)) is None}
    started = time.perf_counter()
    servers: queue.Queue = queue.Queue()
    for _ in range(min(workers, max(len(todo), 1))):
        servers.put(TrustedServer())

    def grade_one(job: dict) -> dict:  # each worker thread borrows a trusted server; the work is in its processes
        server = servers.get()
        try:
            return run_trusted(job, server=server)
        finally:
            servers.put(server)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_one, job): student for student, job in todo.items()}
        bar = tqdm(total=len(futures), desc=f"grading {lab}", unit="submission", disable=not progress)
        for future in as_completed(futures):
            student = futures[future]
            try:
                store_verdict(todo[student], future.result(), verdict_path(grading, lab, student))
            except Exception as err:  # noqa: BLE001 - recorded, reported, and the others go on
                results[student].error = f"the grader failed: {str(err)[:500]}"
            bar.update(1)
        bar.close()
    while not servers.empty():
        servers.get().close()
    verdict_seconds = time.perf_counter() - started

    started = time.perf_counter()
    if run_nbgrader:
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        env.pop("NBGRADER_EXECUTION", None)
        args = [sys.executable, "-m", "nbgrader", "autograde", lab, "--force"]
        if isolation is not None:
            args.append(f"--IsolatedExecute.isolation={isolation}")
        proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "Error:" in line or "Exception:" in line]
            raise RuntimeError(f"`nbgrader autograde {lab} --force` exited {proc.returncode} (the verdicts are kept; run again once "
                               "fixed):\n" + "\n".join(errors[-12:] or proc.stderr.splitlines()[-12:]))
    gradebook_seconds = time.perf_counter() - started

    for student, job in jobs.items():
        verdict = cached_verdict(job, verdict_path(grading, lab, student))
        if verdict is None:
            continue
        r = results[student]
        r.score, r.max_score, r.seconds = verdict["score"], verdict["max_score"], verdict["seconds"]
        r.tests = {k: (c["score"], c["points"], c["status"], c.get("message")) for k, c in verdict["cells"].items() if c["kind"] == "test"}
        r.flags = {k: v for k, v in verdict.get("flags", {}).items() if v}
        if job.get("modified_locked_cells"):
            r.flags["locked cells edited"] = list(job["modified_locked_cells"])
        if job.get("missing"):
            r.flags["cells deleted"] = list(job["missing"])
    report = GradeReport(lab, workers, [results[s] for s in sorted(results)], len(todo), len(jobs) - len(todo), verdict_seconds, gradebook_seconds)
    write_report(report, grading / "reports")
    return report


def _check_gradebook(db_url: str, lab: str) -> None:
    """nbgrader can only autograde a lab its gradebook knows: say how to fix that before any work is done."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            gb.find_assignment(lab)
        except MissingEntry:
            raise RuntimeError(
                f"the gradebook ({db_url}) has no lab {lab!r}: run `nbgrader generate_assignment {lab} --force` once in this "
                "repository (it records the lab's graded cells and points), then grade again"
            ) from None


def write_report(report: GradeReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{report.lab}.json").write_text(json.dumps(report.to_dict(), indent=1))
    tests = sorted({name for s in report.students for name in s.tests})
    with open(folder / f"{report.lab}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "score", "max_score", "seconds", *tests, "flags", "error"])
        for s in report.students:
            writer.writerow([s.student, s.score, s.max_score, round(s.seconds, 2), *[s.tests.get(t, (0,))[0] for t in tests],
                             "; ".join(f"{k}: {len(v)}" for k, v in s.flags.items()), s.error or ""])
