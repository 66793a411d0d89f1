"""nbgrader, graded the course's way: ``IsolatedExecute`` takes the place of nbgrader's ``Execute``.

nbgrader's own autograde runs the whole submitted notebook, tests included, in one
kernel with the instructor's rights, so a solution cell can rebind the checks, patch
torch, or read ``solutions/``. ``nbgrader_config.py`` swaps its ``Execute`` step for
this one, which keeps everything else of nbgrader (restoring locked cells, the
gradebook, late penalties, the formgrader, feedback and export) and fills each cell's
outputs from a verdict computed by :mod:`sslcourse.grading.trusted`: the student's
code in a sandbox, the tests in a separate trusted process.

A graded cell that passed shows what its test printed; one that failed shows an error
output with the test's message only (no traceback, so no line of a hidden test), which
``SaveAutoGrades`` scores as 0. Nothing the student's code prints reaches a graded
cell, so a warning on stderr never costs points.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Float, Int, Unicode

from .job import build_job, job_key
from .sandbox import Limits, check_isolation

ERROR_NAMES = {"failed": "AssertionError", "timeout": "GradingTimeout", "crashed": "SandboxCrashed", "borrowed": "BorrowedReference"}


def verdict_path(grading_dir: Path, lab: str, student: str) -> Path:
    return Path(grading_dir) / "verdicts" / lab / f"{student}.json"


def _job_timeout(job: dict) -> float:
    """Every limit spent, plus a sandbox restart per test: a grading process cannot need more."""
    limits = Limits(**job.get("limits", {}))
    tests = sum(1 for c in job["cells"] if c["kind"] == "test")
    student_cells = sum(1 for c in job["cells"] if c["kind"] in ("solution", "extra"))
    return 120 + tests * (limits.test_seconds + 90) + student_cells * (limits.cell_seconds + 60)


def _grading_environment() -> dict:
    # Grading runs on the CPU, one thread per process: the same verdict on any machine, and the sandbox (which
    # sees no GPU device files) and the grader agree on where tensors live.
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


class TrustedServer:
    """A trusted grading process that imports torch once and forks a child per job (``trusted.py --serve``).

    Used by one thread at a time. If a job outlives its time, the whole server is killed and started again.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sslcourse.grading.trusted", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_grading_environment(),
                                     start_new_session=True, text=True)

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def grade(self, job: dict, timeout: float) -> tuple[int, dict | None, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        with tempfile.TemporaryDirectory(prefix="sslcourse-job-") as scratch:
            files = {name: str(Path(scratch) / name) for name in ("job.json", "verdict.json", "log.txt")}
            Path(files["job.json"]).write_text(json.dumps(job))
            self.proc.stdin.write(json.dumps({"job": files["job.json"], "verdict": files["verdict.json"], "log": files["log.txt"]}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if ready else ""
            if not line:
                self.close()
                return -1, None, f"the grading process gave no answer within {timeout:.0f} s"
            code = json.loads(line)["code"]
            log = Path(files["log.txt"]).read_text(errors="replace") if Path(files["log.txt"]).exists() else ""
            verdict = json.loads(Path(files["verdict.json"]).read_text()) if Path(files["verdict.json"]).exists() else None
            return code, verdict, log


_SERVER: TrustedServer | None = None


def run_trusted(job: dict, *, timeout: float | None = None, server: TrustedServer | None = None) -> dict:
    """Grade one job in a trusted process (a child of ``server``, or of this process's own one); return its verdict."""
    global _SERVER
    if server is None:
        if _SERVER is None:
            _SERVER = TrustedServer()
            atexit.register(_SERVER.close)
        server = _SERVER
    code, verdict, log = server.grade(job, _job_timeout(job) if timeout is None else timeout)
    if code != 0 or verdict is None:
        raise RuntimeError(f"no verdict for {job.get('student')}/{job.get('lab')} (the grader exited {code}):\n{log[-3000:]}")
    return verdict


def cached_verdict(job: dict, path: Path) -> dict | None:
    """The verdict stored at path if it was computed for exactly this job."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return stored.get("verdict") if stored.get("key") == job_key(job) else None


def store_verdict(job: dict, verdict: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": job_key(job), "job": {k: v for k, v in job.items() if k != "cells"}, "verdict": verdict}, indent=1))
    os.replace(tmp, path)  # atomic: an interrupted run leaves either no verdict or a whole one


def _stream(name: str, text: str | None) -> list:
    return [nbformat.v4.new_output("stream", name=name, text=text)] if text else []


def fill_outputs(nb, verdict: dict) -> None:
    """Write the verdict into the notebook's cells, as nbgrader's SaveAutoGrades reads them."""
    cells = verdict["cells"]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        result = cells.get(grade_id) if grade_id else None
        cell.outputs = []
        cell.execution_count = None
        if result is None:
            continue
        if result["kind"] == "test":
            if result["status"] == "passed":
                cell.outputs = _stream("stdout", result.get("stdout"))
            else:
                ename = ERROR_NAMES.get(result["status"], "GradingError")
                message = result.get("message") or result["status"]
                if result["status"] == "error":
                    ename, _, message = message.partition(": ")
                    message = message or "(no message)"
                cell.outputs = _stream("stdout", result.get("stdout")) + [
                    nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])]
        else:
            cell.outputs = _stream("stdout", result.get("stdout")) + _stream("stderr", result.get("stderr"))
            if result.get("error"):
                cell.outputs.append(nbformat.v4.new_output("error", ename="Error", evalue=result["error"], traceback=[result["error"]]))


class IsolatedExecute(Preprocessor):
    """nbgrader's Execute step, with the student's code in a sandbox and the tests in a trusted process."""

    # nbconvert runs a Preprocessor only when enabled; nbgrader's own steps default to True, and so must this one,
    # or nbgrader would skip it and score every test cell, which then has no error output, as passed.
    enabled = Bool(True).tag(config=True)
    isolation = Unicode("bwrap", help="bwrap (a bubblewrap sandbox per submission) or none (a plain child process: trusted code only)").tag(config=True)
    test_seconds = Float(60.0, help="wall-clock limit of one graded test, the student's calls included").tag(config=True)
    cell_seconds = Float(30.0, help="wall-clock limit of one of the student's cells (defining the functions)").tag(config=True)
    memory_bytes = Int(6 * 2**30, help="address-space limit of the sandbox").tag(config=True)
    grading_directory = Unicode("_grading", help="where verdicts and reports are kept, relative to the course root").tag(config=True)

    def _course(self):
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=self.config)

    def limits(self) -> dict:
        return {"test_seconds": self.test_seconds, "cell_seconds": self.cell_seconds, "memory_bytes": self.memory_bytes}

    def preprocess(self, nb, resources):
        check_isolation(self.isolation)
        info = resources["nbgrader"]
        lab, student, notebook = info["assignment"], info["student"], info["notebook"]
        course = self._course()
        root = Path(course.root).resolve()
        source = Path(course.format_path(course.source_directory, ".", lab)) / f"{notebook}.ipynb"
        source_nb = nbformat.read(str(source), as_version=4)
        job = build_job(source_nb, nb, lab=lab, student=student, isolation=self.isolation, limits=self.limits(),
                        watched_prefixes=[str(root), str(Path.home())])
        grading = root / self.grading_directory
        path = verdict_path(grading, lab, student)
        verdict = cached_verdict(job, path)
        if verdict is None:
            self.log.info("Grading %s/%s in a %s sandbox", student, lab, self.isolation)
            verdict = run_trusted(job)
            store_verdict(job, verdict, path)
        else:
            self.log.info("Using the verdict already computed for %s/%s", student, lab)
        fill_outputs(nb, verdict)
        nb.metadata["sslcourse_grading"] = {
            "flags": verdict.get("flags", {}), "seconds": verdict.get("seconds"), "isolation": verdict.get("isolation"),
            "modified_locked_cells": job.get("modified_locked_cells", []), "missing_cells": job.get("missing", []),
        }
        for kind, items in verdict.get("flags", {}).items():
            for item in items:
                self.log.warning("%s/%s flagged (%s): %s", student, lab, kind, item)
        return nb, resources
