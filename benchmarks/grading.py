"""Seconds per submission when grading, per lab, and the speed-up from more workers.

    python benchmarks/grading.py                         # every lab, 4 submissions, 1 then 2 workers
    python benchmarks/grading.py --labs lab01_denoising_autoencoders --submissions 6 --workers 1 2
    python benchmarks/grading.py --class-size 200 --cores 16   # the projection it prints

For each lab it makes a scratch course (nbgrader_config.py and the lab's solutions/ copied, the lab generated),
files N correct submissions, and times ``grade_lab``'s verdict phase (each submission: its code in a
bubblewrap sandbox, the tests in a trusted process) with 1 worker, then with more, from scratch each time.
The gradebook phase (``nbgrader autograde`` writing the verdicts in, serially) is timed once per lab.

It prints seconds per submission at each worker count, the speed-up, and a projection for a class: with
W workers on as many cores, a class of S students takes about S x (seconds per submission at 1 worker) /
(W x efficiency), where efficiency is the measured speed-up at the largest worker count divided by that count
(a busy 2-core machine gives a pessimistic efficiency), plus the serial gradebook phase. Timings depend on the
machine and its load; they are reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scratch_course(folder: Path, lab: str, submissions: int) -> Path:
    import nbformat

    folder.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions" / lab, folder / "solutions" / lab)
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", lab, "--force"], cwd=folder, env=env,
                   check=True, capture_output=True)
    release = nbformat.read(folder / "labs" / lab / f"{lab}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = answers[meta["grade_id"]]
    for i in range(submissions):
        target = folder / "_grading" / "submitted" / f"student{i:03d}" / lab
        target.mkdir(parents=True)
        nbformat.write(release, target / f"{lab}.ipynb")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", nargs="*", default=None, help="lab names (default: every lab under solutions/)")
    parser.add_argument("--submissions", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--class-size", type=int, default=200)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--isolation", choices=["bwrap", "none"], default="bwrap")
    args = parser.parse_args()

    from sslcourse.grading.grade import grade_lab

    labs = args.labs or sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.submissions} correct submissions per lab; "
          f"isolation {args.isolation}")
    print(f"{'lab':32} " + " ".join(f"{w:>2} worker(s) s/sub" for w in args.workers) + "  speed-up  gradebook s/sub")
    rows = []
    for lab in labs:
        per_workers = {}
        with tempfile.TemporaryDirectory(prefix="grading-bench-") as scratch:
            for workers in args.workers:
                course = scratch_course(Path(scratch) / f"w{workers}", lab, args.submissions)
                start = time.perf_counter()
                report = grade_lab(lab, course, workers=workers, progress=False, isolation=args.isolation,
                                   run_nbgrader=workers == args.workers[-1])
                assert all(s.score == s.max_score for s in report.students), f"{lab}: a correct submission lost points"
                per_workers[workers] = report.verdict_seconds / args.submissions
                gradebook = report.gradebook_seconds / args.submissions
        speedup = per_workers[args.workers[0]] / per_workers[args.workers[-1]]
        rows.append((lab, per_workers, speedup, gradebook))
        print(f"{lab:32} " + " ".join(f"{per_workers[w]:>18.1f}" for w in args.workers) + f"  {speedup:8.2f}  {gradebook:15.1f}", flush=True)

    one = sum(r[1][args.workers[0]] for r in rows) / len(rows)
    book = sum(r[3] for r in rows) / len(rows)
    top = args.workers[-1]
    efficiency = min(1.0, sum(r[2] for r in rows) / len(rows) / (top / args.workers[0]))
    hours = (args.class_size * one / (args.cores * efficiency) + args.class_size * book) / 3600
    print(f"\nmean over labs: {one:.1f} s per submission on 1 worker, speed-up {top / args.workers[0] * efficiency:.2f} "
          f"at {top} workers (efficiency {efficiency:.2f}), gradebook {book:.1f} s per submission")
    print(f"projection: {args.class_size} students of one lab on {args.cores} workers: about "
          f"{args.class_size * one / (args.cores * efficiency) / 60:.0f} min of verdicts + "
          f"{args.class_size * book / 60:.0f} min writing the gradebook ({hours:.1f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
