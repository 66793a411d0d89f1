"""How long each chapter of the book takes to execute, one fresh kernel each.

    python benchmarks/chapter_times.py                 # every executed chapter in _toc.yml
    python benchmarks/chapter_times.py book/autoencoders.ipynb
    python benchmarks/chapter_times.py --budget 90 --check   # exit 1 if a chapter exceeds 90 s
    python benchmarks/chapter_times.py --threads 1     # kernels with one torch/OpenMP thread

Runs each notebook with nbclient in its own directory (book/), as the book build
does, and prints its seconds: kernel start included, so the number is what a
build pays. The budget in DESIGN.md is 90 s per chapter on a 2-core CPU;
timings depend on the machine and its load, so tests never assert them.

On a shared machine, other busy processes make torch's OpenMP threads wait for
each other: measured here, a 2-thread DAE step ran about 7 times slower than a
1-thread one while another process kept a core busy. ``--threads 1`` gives
numbers that are stable under such load (and close to an upper bound for a quiet
2-core machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def toc_chapters(root: Path = ROOT) -> list[Path]:
    """The executed notebooks of the book: every toc entry under book/, in toc order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [root / f"{f}.ipynb" for f in files if f.startswith("book/")]


def execute(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in a fresh kernel (cwd: its folder); return wall-clock seconds. Raises on a cell error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")  # no windows from matplotlib
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter under book/ in _toc.yml")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per chapter (DESIGN.md: 90)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a chapter exceeds the budget")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS/MKL_NUM_THREADS for the kernels")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or toc_chapters()
    if args.threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # the kernels inherit the environment
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"{os.cpu_count()} CPU cores{load}, threads per kernel: {os.environ.get('OMP_NUM_THREADS', 'default')}")
    over = []
    total = 0.0
    for path in notebooks:
        seconds = execute(path)
        total += seconds
        flag = "" if seconds <= args.budget else f"  over the {args.budget:g} s budget"
        if flag:
            over.append(path)
        print(f"{seconds:7.1f} s  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}{flag}", flush=True)
    print(f"{total:7.1f} s  in total")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
