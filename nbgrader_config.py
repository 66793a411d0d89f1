"""nbgrader configuration of the course: run every nbgrader command from the repository root.

    solutions/<lab>/<lab>.ipynb   the instructor notebooks (nbgrader "source")
    labs/<lab>/<lab>.ipynb        the student notebooks (nbgrader "release"), generated, never edited by hand
    _grading/                     submissions, autograded copies, feedback, the gradebook (ignored by git)

The instructor's round trip, from the repository root::

    nbgrader generate_assignment lab01_denoising_autoencoders --force   # solutions/ -> labs/ (without --force it skips silently)
    # put each student's notebook in _grading/submitted/<student>/<lab>/<lab>.ipynb
    nbgrader autograde lab01_denoising_autoencoders
    nbgrader generate_feedback lab01_denoising_autoencoders              # HTML per student in _grading/feedback/
    nbgrader export                                                     # _grading/grades.csv

Paths are anchored at the directory of this file, so a copy of it with its
own solutions/ (as tests/test_labs.py makes) is a course of its own.
"""

import os

c = get_config()  # noqa: F821 (injected by traitlets when nbgrader loads this file)

here = os.path.dirname(os.path.abspath(__file__))
grading = os.path.join(here, "_grading")
# sqlite creates the database file but not its folder.
os.makedirs(grading, exist_ok=True)

c.CourseDirectory.course_id = "sslcourse"
c.CourseDirectory.root = here
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = os.path.join("_grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("_grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("_grading", "feedback")
c.CourseDirectory.solution_directory = os.path.join("_grading", "release_solution")
# Files that are never copied out of a lab folder (into labs/ or the grading folders).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.pt", "_build"]

c.CourseDirectory.db_url = "sqlite:///" + os.path.join(grading, "gradebook.db")

# `nbgrader export` writes the grades table next to the gradebook, not into the working tree.
c.ExportPlugin.to = os.path.join(grading, "grades.csv")

# Autograding: nbgrader's Execute step (the whole notebook in one kernel, with the instructor's rights) is replaced
# by sslcourse's IsolatedExecute: the student's cells run in a bubblewrap sandbox (no network, no view of the course,
# memory and time limits), the tests in a separate trusted process that calls the student's functions through
# proxies. Every other step is nbgrader's own. See sslcourse/grading/ and the book's page for instructors.
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades, IgnorePattern, LimitOutput, SaveAutoGrades,
)

from sslcourse.grading.nbgrader_plugin import IsolatedExecute  # noqa: E402

c.Autograde.autograde_preprocessors = [
    IsolatedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
]
c.IsolatedExecute.isolation = "bwrap"      # "none" grades without a sandbox: only for code you trust
c.IsolatedExecute.test_seconds = 60        # a graded test that runs longer scores 0 (its exercise only)
c.IsolatedExecute.cell_seconds = 30        # a cell of the student's that runs longer is skipped
# The Validator (`nbgrader validate`, the tests' check of solutions/ and labs/) still runs whole notebooks in a
# kernel; a lab trains two small models for about 25 s each, so the default 30 s per cell is too short there.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True

# Feedback shows which tests passed, the points, and the failing tests' messages, never the hidden tests' code.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]

# generate_assignment: clear solutions and hidden tests, lock the instructor's cells,
# and fail loudly on a solution region outside a solution cell.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True
c.LockCells.lock_all_cells = False
c.LockCells.lock_readonly_cells = True
c.LockCells.lock_grade_cells = True
c.LockCells.lock_solution_cells = True
