"""A grading job: what the trusted grader needs to grade one submission, built from two notebooks.

The instructor's notebook (nbgrader's source, ``solutions/<lab>/<lab>.ipynb``, or the copy in
the gradebook) gives the lab's own cells: context (imports, constants, test helpers) and the
graded tests, hidden parts included. The submission gives only what the student wrote: the
solution cells (matched by their nbgrader ``grade_id``) and any cells the student added.
Nothing else of the submission is used, so editing a locked cell changes nothing but a flag.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import nbformat

from .references import references_for

JOB_VERSION = 1


def _meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _code(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def defined_names(source: str) -> list[str]:
    """Top-level functions and classes a cell defines (what the tests will call)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def build_job(source_nb, submission_nb, *, lab: str, student: str, isolation: str = "bwrap", limits: dict | None = None,
              watched_prefixes: list[str] | None = None) -> dict:
    """The job for one submission of ``lab``.

    Cells, in the submission's order: ``context`` (a locked, ungraded code cell of the lab, from the
    instructor's copy), ``solution`` (the student's text of a solution cell), ``extra`` (a code cell the
    student added or whose text differs from every cell of the lab), ``test`` (a graded code cell, from the
    instructor's copy, hidden tests included). The lab's free cells (training, figures) are left out: they do
    not count, and running them would only cost time. Graded or context cells the student deleted are
    added at the end and reported in ``missing``.
    """
    by_id = {}
    free_sources = set()
    for cell in source_nb.cells:
        meta = _meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("grade_id"):
            by_id[meta["grade_id"]] = cell
        else:
            free_sources.add(_code(cell).strip())
    expected = []
    for cell in source_nb.cells:
        if cell.cell_type == "code" and _meta(cell).get("solution"):
            expected += defined_names(_code(cell))

    cells, seen, modified = [], set(), []
    for index, cell in enumerate(submission_nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = _meta(cell).get("grade_id")
        trusted = by_id.get(grade_id) if grade_id else None
        if trusted is not None and grade_id not in seen:
            seen.add(grade_id)
            meta = _meta(trusted)
            if meta.get("solution"):
                cells.append({"key": grade_id, "kind": "solution", "source": _code(cell)})
            elif meta.get("grade"):
                cells.append({"key": grade_id, "kind": "test", "source": _code(trusted), "points": float(meta.get("points", 0))})
            else:
                cells.append({"key": grade_id, "kind": "context", "source": _code(trusted)})
            if not meta.get("solution") and not meta.get("grade") and _code(cell).strip() != _code(trusted).strip():
                modified.append(grade_id)
        elif _code(cell).strip() and _code(cell).strip() not in free_sources:
            cells.append({"key": f"extra-{index}", "kind": "extra", "source": _code(cell)})
    missing = [gid for gid, cell in by_id.items() if gid not in seen]
    for gid in missing:
        meta = _meta(by_id[gid])
        kind = "solution" if meta.get("solution") else "test" if meta.get("grade") else "context"
        if kind == "solution":
            continue  # nothing of the student's to run
        entry = {"key": gid, "kind": kind, "source": _code(by_id[gid])}
        if kind == "test":
            entry["points"] = float(meta.get("points", 0))
            cells.append(entry)
        else:
            cells.insert(0, entry)
    return {
        "version": JOB_VERSION,
        "lab": lab,
        "student": student,
        "cells": cells,
        "expected": expected,
        "references": references_for(lab),
        "isolation": isolation,
        "limits": dict(limits or {}),
        "watched_prefixes": list(watched_prefixes or []),
        "missing": missing,
        "modified_locked_cells": modified,
    }


def job_key(job: dict) -> str:
    """A digest of everything that decides a verdict: the same key means the same verdict can be reused."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def read_notebook(path: Path):
    return nbformat.read(str(path), as_version=4)
