"""Grading a class, tried as a dishonest student and as an unlucky one would, through the real path.

A scratch course (nbgrader_config.py and solutions/ copied) generates Lab 01; each submission below is the
solution with one change, filed under nbgrader's submitted/ folder, and `grade_lab` grades them all (the
student's code in a bubblewrap sandbox, the tests in a trusted process, then `nbgrader autograde` into the
gradebook). Each cheat must lose the points of the tests it touches, keep the others, and be flagged; the
honest submission graded in the same run keeps full marks.

The scratch course sets a 15 s limit per graded test (the course's own config says 60 s), so that the two
submissions that loop forever cost CI seconds, not minutes; the limit is what is checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from sslcourse.grading.sandbox import bwrap_path

ROOT = Path(__file__).resolve().parents[1]
LAB = "lab01_denoising_autoencoders"
TEST_SECONDS = 15
TESTS = ("test_gaussian_noise", "test_masking_noise", "test_salt_and_pepper", "test_emphasized_mse", "test_build_encoder")
POINTS = {"test_gaussian_noise": 2, "test_masking_noise": 3, "test_salt_and_pepper": 3, "test_emphasized_mse": 3, "test_build_encoder": 4}

def test_bubblewrap_is_installed():
    assert bwrap_path() is not None, (
        "bubblewrap (`bwrap`) is not installed: the grader runs each submission in a bubblewrap sandbox. "
        "Install it (Debian/Ubuntu: sudo apt-get install bubblewrap), as the README says"
    )


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("NBGRADER_EXECUTION", None)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def make_course(root: Path, test_seconds: float = TEST_SECONDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = (ROOT / "nbgrader_config.py").read_text()
    config += f"\nc.IsolatedExecute.test_seconds = {test_seconds}\nc.IsolatedExecute.cell_seconds = {test_seconds}\n"
    (root / "nbgrader_config.py").write_text(config)
    shutil.copytree(ROOT / "solutions" / LAB, root / "solutions" / LAB)
    nbgrader("generate_assignment", LAB, "--force", cwd=root)
    return root


def answers() -> dict[str, str]:
    nb = nbformat.read(ROOT / "solutions" / LAB / f"{LAB}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def submit(course: Path, student: str, changes: dict[str, str] | None = None, untouched: bool = False) -> Path:
    """The release with the solution typed in, each cell in `changes` replaced by its text."""
    nb = nbformat.read(course / "labs" / LAB / f"{LAB}.ipynb", as_version=4)
    given = answers()
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and not untouched:
            cell.source = (changes or {}).get(grade_id, given[grade_id])
    folder = course / "_grading" / "submitted" / student / LAB
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LAB}.ipynb"
    nbformat.write(nb, path)
    return path


def signature(grade_id: str) -> str:
    """The def line and docstring of a solution cell, for a replacement body."""
    source = answers()[grade_id]
    return source.split("### BEGIN SOLUTION")[0].rstrip() + "\n"


def body(grade_id: str, code: str) -> str:
    return signature(grade_id) + "\n".join("    " + line for line in code.strip().splitlines()) + "\n"


def correct(grade_id: str) -> str:
    return answers()[grade_id]


WRONG_GAUSSIAN = "return x.clone(), torch.ones_like(x, dtype=torch.bool)  # wrong: no noise at all"


def cheats(course: Path, peer_file: Path, port: int) -> dict[str, dict[str, str]]:
    """student -> the solution cells they changed."""
    solutions = str(course / "solutions" / LAB / f"{LAB}.ipynb")
    gradebook = str(course / "_grading" / "gradebook.db")
    return {
        "borrows": {"masking_noise": body("masking_noise", "import sslcourse\nreturn sslcourse.augment.masking_noise(x, fraction, generator=generator)")},
        "borrows_by_alias": {"emphasized_mse": "from sslcourse.losses import emphasized_mse as helper\n"
                             + body("emphasized_mse", "return helper(pred, target, corrupted, alpha, beta)")},
        "rebinds_helpers": {"gaussian_noise": body("gaussian_noise", WRONG_GAUSSIAN)
                            + "\ncheck = lambda *args, **kwargs: None\ncheck_close = lambda *args, **kwargs: None\n"
                            "def rel_error(x, y):\n    return 0.0\n"},
        "patches_torch": {"gaussian_noise": body("gaussian_noise", WRONG_GAUSSIAN)
                          + "\nimport numpy, numpy.testing, builtins\ntorch.allclose = lambda *a, **k: True\n"
                          "torch.testing.assert_close = lambda *a, **k: None\nnumpy.testing.assert_allclose = lambda *a, **k: None\n"
                          "torch.equal = lambda *a, **k: True\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n"},
        "input_transformer": {"build_encoder": "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n"
                              + body("build_encoder", "return nn.Sequential(nn.Conv2d(in_channels, 10, 1))")},
        "loops_in_a_call": {"masking_noise": body("masking_noise", "while True:\n    pass")},
        "loops_at_definition": {"emphasized_mse": "while True:\n    pass\n" + correct("emphasized_mse")},
        "exits": {"emphasized_mse": body("emphasized_mse", "import os\nos._exit(3)")},
        "allocates_20gb": {"gaussian_noise": body("gaussian_noise", "big = torch.empty(20 * 2**30, dtype=torch.uint8)\nbig.fill_(1)\n"
                                                  "return x + big[:1].float(), torch.ones_like(x, dtype=torch.bool)")},
        "reads_solutions": {"gaussian_noise": body("gaussian_noise", f"""
import json
nb = json.load(open({solutions!r}))
exec(''.join(nb['cells'][6]['source']), globals())
return gaussian_noise(x, sigma, generator)""")},
        "writes_gradebook": {"emphasized_mse": f"""
import sqlite3
try:
    db = sqlite3.connect({gradebook!r})
    db.execute("UPDATE grade SET manual_score = 99")
    db.commit()
except Exception as err:
    print('gradebook:', err)
try:
    open({str(peer_file)!r}, 'w').write('{{}}')
except Exception as err:
    print('peer:', err)
""" + body("emphasized_mse", f"import sqlite3\nsqlite3.connect({gradebook!r}).execute('DELETE FROM grade').connection.commit()\nreturn pred.sum()")},
        "phones_home": {"gaussian_noise": body("gaussian_noise", f"""
import socket
with socket.create_connection(("127.0.0.1", {port}), timeout=2) as s:
    s.sendall(b"answers please")
return x, torch.ones_like(x, dtype=torch.bool)""")},
        "warns": {"gaussian_noise": "import sys, warnings\n" + correct("gaussian_noise").replace(
            "    ### BEGIN SOLUTION", "    ### BEGIN SOLUTION\n    warnings.warn('a harmless warning')\n    print('debugging output', file=sys.stderr)")},
    }


#: student -> (tests that must score 0, flag kinds that must be raised)
EXPECTED = {
    "honest": ((), ()),
    "untouched": (TESTS, ()),
    "borrows": (("test_masking_noise", "test_salt_and_pepper"), ("borrowed",)),  # salt_and_pepper calls masking_noise
    "borrows_by_alias": (("test_emphasized_mse",), ("borrowed",)),
    "rebinds_helpers": (("test_gaussian_noise",), ("tampering",)),
    "patches_torch": (("test_gaussian_noise",), ("tampering",)),
    "input_transformer": (("test_build_encoder",), ("tampering",)),
    "loops_in_a_call": (("test_masking_noise", "test_salt_and_pepper"), ("timeout",)),
    "loops_at_definition": (("test_emphasized_mse",), ("timeout",)),
    "exits": (("test_emphasized_mse",), ("crash",)),
    "allocates_20gb": (("test_gaussian_noise",), ("memory",)),
    "reads_solutions": (("test_gaussian_noise",), ("blocked",)),
    "writes_gradebook": (("test_emphasized_mse",), ("blocked",)),
    "phones_home": (("test_gaussian_noise",), ("blocked",)),
    "warns": ((), ()),
}


class Listener:
    """A TCP server on 127.0.0.1 that records every connection: the submission must not reach it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.connections.append(conn.recv(100))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    from nbgrader.api import Gradebook

    from sslcourse.grading.grade import grade_lab

    course = make_course(tmp_path_factory.mktemp("classroom"))
    listener = Listener()
    submit(course, "honest")
    submit(course, "untouched", untouched=True)
    peer = course / "_grading" / "submitted" / "honest" / LAB / f"{LAB}.ipynb"
    peer_digest = hashlib.sha256(peer.read_bytes()).hexdigest()
    solutions_digest = hashlib.sha256((course / "solutions" / LAB / f"{LAB}.ipynb").read_bytes()).hexdigest()
    for student, changes in cheats(course, peer, listener.port).items():
        submit(course, student, changes)
    try:
        report = grade_lab(LAB, course, workers=2, progress=False)
    finally:
        listener.close()
    with Gradebook(f"sqlite:///{course / '_grading' / 'gradebook.db'}") as gb:
        scores = {}
        for student in EXPECTED:
            (notebook,) = gb.find_submission(LAB, student).notebooks
            scores[student] = {g.name: (g.auto_score, g.max_score, g.manual_score) for g in notebook.grades}
    return {"course": course, "report": {s.student: s for s in report.students}, "scores": scores, "listener": listener,
            "peer": peer, "peer_digest": peer_digest, "solutions_digest": solutions_digest}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_scores_what_it_earned_and_is_flagged(classroom, student):
    zeroed, flags = EXPECTED[student]
    scores = classroom["scores"][student]
    result = classroom["report"][student]
    for test in TESTS:
        auto, points, manual = scores[test]
        expected = 0 if test in zeroed else POINTS[test]
        message = result.tests.get(test, (None, None, None, None))[3]
        assert auto == expected, f"{student}: {test} scored {auto} of {points}, expected {expected} ({message})"
        assert manual is None, f"{student}: {test} has a manual score {manual}: something wrote the gradebook"
    for kind in flags:
        assert result.flags.get(kind), f"{student}: not flagged as {kind!r}; flags: {result.flags}"
    if not flags:
        assert not result.flags, f"{student} is flagged although honest: {result.flags}"


@pytest.mark.slow
def test_messages_say_what_happened(classroom):
    report = classroom["report"]
    assert "sslcourse.augment.masking_noise" in report["borrows"].tests["test_masking_noise"][3]
    assert report["loops_in_a_call"].tests["test_masking_noise"][2] == "timeout"
    assert "endless loop" in report["loops_in_a_call"].tests["test_masking_noise"][3]
    assert report["exits"].tests["test_emphasized_mse"][2] == "crashed"
    assert any("rebound the lab's name 'check'" in item for item in report["rebinds_helpers"].flags["tampering"])
    assert any("patched torch.allclose" in item for item in report["patches_torch"].flags["tampering"])
    assert any("solutions" in item for item in report["reads_solutions"].flags["blocked"])
    assert any("socket.connect" in item for item in report["phones_home"].flags["blocked"])


@pytest.mark.slow
def test_a_hanging_test_costs_at_most_its_limit(classroom):
    import json

    verdict = json.loads((classroom["course"] / "_grading" / "verdicts" / LAB / "loops_in_a_call.json").read_text())["verdict"]
    spent = verdict["cells"]["test_masking_noise"]["seconds"]
    assert spent <= TEST_SECONDS + 5, f"a test whose function loops forever took {spent:.0f} s; its limit is {TEST_SECONDS} s"


@pytest.mark.slow
def test_nothing_outside_the_sandbox_was_reached(classroom):
    assert classroom["listener"].connections == [], f"a submission reached a server on 127.0.0.1: {classroom['listener'].connections}"
    assert hashlib.sha256(classroom["peer"].read_bytes()).hexdigest() == classroom["peer_digest"], "another student's submission was overwritten"
    assert hashlib.sha256((classroom["course"] / "solutions" / LAB / f"{LAB}.ipynb").read_bytes()).hexdigest() == classroom["solutions_digest"]
    db = sqlite3.connect(classroom["course"] / "_grading" / "gradebook.db")
    manual = db.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0]
    assert manual == 0, f"{manual} grades have a manual score: a submission wrote the gradebook"


@pytest.mark.slow
def test_feedback_holds_no_hidden_test(classroom):
    course = classroom["course"]
    nbgrader("generate_feedback", LAB, "--force", cwd=course)
    solution = nbformat.read(ROOT / "solutions" / LAB / f"{LAB}.ipynb", as_version=4)
    hidden = []
    for cell in solution.cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            region = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            hidden += [line.strip() for line in region.splitlines() if len(line.strip()) > 30 and not line.strip().startswith("#")]
    release = (course / "labs" / LAB / f"{LAB}.ipynb").read_text()
    hidden = [line for line in hidden if line not in release]  # lines the visible tests have too are no secret
    assert len(hidden) > 50
    import html

    pages = sorted((course / "_grading" / "feedback").glob(f"*/{LAB}/{LAB}.html"))
    assert len(pages) == len(EXPECTED)
    for page in pages:
        text = html.unescape(page.read_text())
        import re

        text = re.sub(r"<[^>]+>", "", text)
        found = [line for line in hidden if line in text]
        assert not found, f"{page.parent.parent.name}'s feedback shows hidden test code: {found[:3]}"
    # ... while it still says what failed.
    text = html.unescape((course / "_grading" / "feedback" / "borrows" / LAB / f"{LAB}.html").read_text())
    assert "calls the package's own sslcourse.augment.masking_noise" in text


# ------------------------------------------------------------------ parallel, interrupted, resumed
def verdict_files(course: Path) -> list[Path]:
    return sorted((course / "_grading" / "verdicts" / LAB).glob("*.json"))


def gradebook_scores(course: Path) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / '_grading' / 'gradebook.db'}") as gb:
        return {s.student.id: {g.name: g.auto_score for g in s.notebooks[0].grades} for s in gb.find_assignment(LAB).submissions}


@pytest.mark.slow
def test_parallel_grading_killed_halfway_and_resumed_equals_a_serial_run(tmp_path):
    import signal
    import time

    from sslcourse.grading.grade import grade_lab

    shared_mask = {"masking_noise": correct("masking_noise").replace(
        "scores = torch.rand(b, d, generator=generator, device=x.device)",
        "scores = torch.rand(1, d, generator=generator, device=x.device).expand(b, d)")}
    crash = {"emphasized_mse": body("emphasized_mse", "import os\nos._exit(3)")}
    students = {f"s{i:02d}": ({} if i % 4 == 0 else shared_mask if i % 4 == 1 else crash if i == 7 else None) for i in range(20)}
    parallel, serial = make_course(tmp_path / "parallel"), make_course(tmp_path / "serial")
    for course in (parallel, serial):
        for student, changes in students.items():
            submit(course, student, changes, untouched=changes is None and int(student[1:]) % 4 == 2)

    proc = subprocess.Popen([sys.executable, "-m", "sslcourse", "course", "--course", str(parallel), "grade", LAB, "--workers", "2", "--quiet"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(verdict_files(parallel)) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(verdict_files(parallel))
    assert 0 < done < 20, f"the run was to be killed halfway; {done} of 20 verdicts were written"
    for path in verdict_files(parallel):
        assert '"verdict"' in path.read_text(), f"{path.name}: a verdict file left half written"

    report = grade_lab(LAB, parallel, workers=2, progress=False)
    assert report.reused == done and report.graded_now == 20 - done, (
        f"the resumed run graded {report.graded_now} and reused {report.reused}; {done} verdicts were there already")

    nbgrader("autograde", LAB, cwd=serial)  # nbgrader's own serial loop, with the same isolated step
    assert gradebook_scores(parallel) == gradebook_scores(serial)
    totals = {s.student: s.score for s in report.students}
    assert totals["s00"] == 15 and totals["s01"] == 9 and totals["s02"] == 0 and totals["s07"] == 12, totals


# ------------------------------------------------------------------ the grader's own failures, and what the sandbox sees
def tiny_job(context: str, student: str, test: str) -> dict:
    return {"lab": LAB, "student": "probe", "expected": ["answer"], "references": [], "isolation": "bwrap",
            "limits": {"test_seconds": 20, "cell_seconds": 20}, "watched_prefixes": [str(ROOT)],
            "cells": [{"key": "setup", "kind": "context", "source": context},
                      {"key": "answer", "kind": "solution", "source": student},
                      {"key": "test_answer", "kind": "test", "source": test, "points": 1.0}]}


def test_a_grader_failure_gives_no_verdict_rather_than_a_zero():
    from sslcourse.grading.nbgrader_plugin import run_trusted

    job = tiny_job("import a_module_that_does_not_exist", "def answer():\n    return 42", "assert answer() == 42")
    with pytest.raises(RuntimeError, match="(?s)no verdict.*not because of the submission"):
        run_trusted(job)


def test_the_sandbox_sees_neither_the_course_nor_the_network():
    from sslcourse.grading.nbgrader_plugin import run_trusted

    student = f"""
import os, socket
seen = {{path: os.path.exists(path) for path in {[str(ROOT / "solutions"), str(ROOT / "nbgrader_config.py"), str(ROOT / "tests"), str(ROOT / "_grading")]!r}}}
home = os.listdir({str(Path.home())!r}) if os.path.isdir({str(Path.home())!r}) else []
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    network = True
except OSError:
    network = False
def answer():
    return {{"seen": seen, "network": network, "uid": os.getuid(), "cwd": os.getcwd(), "home": home}}
"""
    # Python may live under the home folder (pyenv): the sandbox then has that one path in it, nothing else of home.
    python_homes = sorted({Path(p).relative_to(Path.home()).parts[0] for p in (sys.prefix, sys.base_prefix) if Path(p).is_relative_to(Path.home())})
    test = ("result = answer()\nprint(result)\nassert not any(result['seen'].values()) and not result['network'], result\n"
            f"assert sorted(result['home']) in ([], {python_homes!r}), result['home']")
    verdict = run_trusted(tiny_job("import torch", student, test))
    cell = verdict["cells"]["test_answer"]
    assert cell["status"] == "passed", f"the sandbox saw something of the course or the network: {cell}"
    assert "'uid': 65534" in cell["stdout"] and "'/submission'" in cell["stdout"], cell["stdout"]


# ------------------------------------------------------------------ the proxies keep the tests' meaning
#: Mistakes whose detection depends on what crosses between the grader and the sandbox: gradients (detach,
#: no_grad), in-place changes of arguments, generators and torch's global random state.
BOUNDARY_WORDS = ("detach", "no_grad", "in place", "generator", "global random state")
LOOPED_NT_XENT = '''
def nt_xent(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    losses = []
    for i in range(2 * n):  # a Python loop over the anchors: right values, not vectorized
        sims = torch.stack([z[i] @ z[k] for k in range(2 * n) if k != i]) / temperature
        losses.append(torch.logsumexp(sims, 0) - z[i] @ z[(i + n) % (2 * n)] / temperature)
    return torch.stack(losses).mean()
'''


def boundary_submissions():
    """Per lab, one submission holding one boundary-sensitive mistake in each function that has one."""
    from test_lab_mistakes import MISTAKES

    cases = []
    for lab, mistakes in sorted(MISTAKES.items()):
        chosen = {}
        for m in mistakes:
            if any(word in m.what for word in BOUNDARY_WORDS) and m.function not in chosen and m.failing == (f"test_{m.function}",):
                chosen[m.function] = m
        if chosen:
            cases.append(pytest.param(lab, tuple(chosen.values()), id=lab))
    # Right values from a Python loop: the vectorization check counts the operations in the sandbox.
    cases.append(pytest.param("lab05_simclr_moco", (), id="lab05_simclr_moco-looped-nt_xent"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("lab, mistakes", boundary_submissions())
def test_boundary_sensitive_mistakes_are_caught_through_the_sandbox(lab, mistakes):
    from sslcourse.grading.job import build_job
    from sslcourse.grading.nbgrader_plugin import run_trusted

    source = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    submission = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    by_function = {m.function: m for m in mistakes}
    expected_failures = {f"test_{m.function}" for m in mistakes}
    for cell in submission.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in by_function:
            m = by_function[grade_id]
            assert m.old in cell.source, f"{lab}: {m.what}: the solution no longer contains {m.old!r}"
            cell.source = cell.source.replace(m.old, m.new)
        if lab == "lab05_simclr_moco" and grade_id == "nt_xent" and "nt_xent" not in by_function:
            cell.source = LOOPED_NT_XENT
            expected_failures.add("test_nt_xent")
    verdict = run_trusted(build_job(source, submission, lab=lab, student="boundary"))
    tests = {k: c for k, c in verdict["cells"].items() if c["kind"] == "test"}
    for name, cell in tests.items():
        if name in expected_failures:
            assert cell["status"] == "failed" and cell["message"], (
                f"{lab}: {name} should fail ({[m.what for m in mistakes if 'test_' + m.function == name]}), got {cell['status']}")
        else:
            assert cell["status"] == "passed", f"{lab}: {name} should pass, got {cell['status']}: {cell['message']}"


def test_without_bubblewrap_grading_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    from sslcourse import cli
    from sslcourse.grading import sandbox

    (tmp_path / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    (tmp_path / "solutions" / LAB).mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / LAB / f"{LAB}.ipynb", tmp_path / "solutions" / LAB)
    submit_dir = tmp_path / "_grading" / "submitted" / "someone" / LAB
    submit_dir.mkdir(parents=True)
    shutil.copy(ROOT / "labs" / LAB / f"{LAB}.ipynb", submit_dir)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    code = cli.main(["course", "--course", str(tmp_path), "grade", LAB, "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "bubblewrap" in err and "apt-get install bubblewrap" in err and "--isolation none" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_importing_a_library_in_a_solution_cell_is_not_flagged():
    # The virtual environment may live inside the course (as here): opening its files is an import, not snooping.
    from sslcourse.grading.nbgrader_plugin import run_trusted

    student = "import tabulate, yaml, scipy.special\ndef answer():\n    return float(scipy.special.expit(0.0))"
    verdict = run_trusted(tiny_job("import torch", student, "assert answer() == 0.5"))
    assert verdict["cells"]["test_answer"]["status"] == "passed", verdict["cells"]
    assert not any(verdict["flags"].values()), f"an honest import was flagged: {verdict['flags']}"
