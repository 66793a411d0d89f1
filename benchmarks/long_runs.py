"""The long runs: pretrain every method for about five minutes, with three seeds, and ship the encoders.

A chapter's live run pretrains for about a minute. This script pretrains each
method of the course (the registry's ``PRETRAINABLE``) with its CPU recipe,
unchanged except for the number of steps (:data:`LONG_RUN_STEPS`, about five
minutes of one thread of this project's 2-core CPU), for seeds 0, 1 and 2. After each run it writes
the encoder's weights to ``sslcourse/pretrained/<method>-seed<k>.pt`` and its
entry in ``sslcourse/pretrained/manifest.json`` (recipe, steps, seconds,
machine, versions, sha256, and the probe accuracies beside the random-init and
raw-pixel baselines), which :func:`sslcourse.pretrained` reads::

    python benchmarks/long_runs.py --plan                  # what is done, what remains, and how long it should take
    python benchmarks/long_runs.py                         # all of it: 15 methods x 3 seeds, about four hours
    python benchmarks/long_runs.py --methods simclr byol --seeds 0

Resumable, so it can run in parts: each (method, seed) trains with a
checkpoint in ``--work`` (default ``.long_runs/``), so a killed run continues
where it stopped, exactly as if it had not been stopped (:func:`sslcourse.fit`'s
checkpoints); a pair whose weights and manifest entry are in place, made by the
same recipe, threads and probing, is skipped.

Runs stop by steps, never by seconds, and train on the CPU with one torch
thread (``--threads``, recorded in the manifest: float sums, hence the
weights, depend on it). So the same command gives the same weights and
accuracies on any machine, however busy; and one thread is also what a shared
2-core machine runs best, where two threads competing with other work can be
many times slower. On a quiet 2-core machine two processes can share the work
(each pair once: give them different seeds or methods); the manifest is
updated under a lock::

    python benchmarks/long_runs.py --seeds 0 1 &  python benchmarks/long_runs.py --seeds 2

``--steps``, ``--fractions``, ``--probes`` and ``--repeats`` shorten a trial
(the tests use them); the manifest records what was run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

import sslcourse
from sslcourse import long_runs
from sslcourse.recipes import TrainingDivergedError, build_method, default_recipe, divergence, weights_rms
from sslcourse.registry import PRETRAINABLE, Recipe

REPOSITORY = Path(__file__).resolve().parents[1]

#: About five minutes of pretraining each method on one thread of a 2-core CPU, in steps: the fastest
#: speed measured with ``python benchmarks/cpu_steps.py --threads 1 --rounds 3 --seconds 300`` (run twice:
#: 30-step runs of each CPU recipe, the fastest of six rounds) times 300 s, rounded to tens. Measured on this
#: project's 2-core machine while other work shared it (load averages 4.4 to 9.5 at the rounds' starts); no
#: quiet moment came, so on a quiet machine a run takes less than five minutes. Two threads were far slower
#: there: 0.07 to 0.49 steps/s for dae, context, colorization and splitbrain, against 1.4 to 3.2 on one
#: thread in the same round. In the comments: the speed (steps/s, one thread), and the live run's steps
#: (the CPU recipe's, calibrated to a minute of two threads on a quiet machine) for comparison.
LONG_RUN_STEPS: dict[str, int] = {
    "dae": 1160,          #  3.86 steps/s; live run 490
    "context": 1160,      #  3.87 steps/s; live run 540
    "colorization": 920,  #  3.05 steps/s; live run 500
    "splitbrain": 780,    #  2.60 steps/s; live run 380
    "superres": 1150,     #  3.85 steps/s; live run 620
    "rotation": 530,      #  1.76 steps/s; live run 290
    "relpos": 4090,       # 13.64 steps/s; live run 1780
    "jigsaw": 1900,       #  6.33 steps/s; live run 900
    "deepcluster": 2070,  #  6.89 steps/s; live run 980
    "cpc": 1200,          #  3.99 steps/s; live run 610
    "simclr": 1170,       #  3.89 steps/s; live run 550
    "moco": 1620,         #  5.39 steps/s; live run 830
    "byol": 1730,         #  5.77 steps/s; live run 790
    "dino": 990,          #  3.31 steps/s; live run 500
    "mae": 6790,          # 22.65 steps/s; live run 1770
}
#: The seeds of the long runs: three, for a mean and a spread.
SEEDS = (0, 1, 2)
#: The torch threads of the long runs (part of the command's result, as float sums depend on them).
THREADS = 1
#: What :data:`LONG_RUN_STEPS` aims at, in seconds at the measured speed: the estimate that ``--plan`` prints.
TARGET_SECONDS = 300.0
#: Write the training checkpoint every this many steps: a kill loses at most this much work.
CHECKPOINT_EVERY = 200


def long_recipe(name: str, steps: int | None = None) -> Recipe:
    """Method ``name``'s CPU recipe, stopping after ``steps`` (default :data:`LONG_RUN_STEPS`) and nothing else."""
    if steps is None:
        if name not in LONG_RUN_STEPS:
            raise KeyError(f"no long-run step count for {name!r}: measure it with "
                           f"'python benchmarks/cpu_steps.py {name} --seconds 300' and add it to LONG_RUN_STEPS")
        steps = LONG_RUN_STEPS[name]
    return replace(default_recipe(name, "cpu"), steps=steps, epochs=None, budget=None)


def probe_settings(fractions: Sequence[float], probes: Sequence[str], repeats: int) -> dict:
    """How a run is probed, as the manifest records it."""
    return {"fractions": [float(f) for f in fractions], "probes": list(probes), "repeats": repeats}


def finished(out: Path, name: str, seed: int, recipe: Recipe, probing: dict, threads: int) -> str | None:
    """Why the pair (name, seed) must run, or None when its weights and entry are in place and made this way."""
    entry = long_runs.manifest(out)["checkpoints"].get(long_runs.run_name(name, seed))
    if entry is None:
        return "not run yet"
    path = out / entry["file"]
    if not path.is_file():
        return f"{path.name} is missing"
    if long_runs.sha256_of(path) != entry["sha256"]:
        return f"{path.name} differs from its manifest entry"
    if entry["recipe"] != recipe.to_dict():
        return "its recipe changed"
    if entry["machine"]["torch_threads"] != threads:
        return f"it was made with {entry['machine']['torch_threads']} torch threads, not {threads}"
    if {key: entry["probe"].get(key) for key in probing} != probing:
        return "its probing changed"
    return None


def saved_step(checkpoint: Path) -> int:
    """The step a training checkpoint stopped at; 0 when there is none (or none readable: fit then says why)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"]) if checkpoint.exists() else 0
    except Exception:
        return 0


def train_pair(name: str, seed: int, recipe: Recipe, work: Path, *, progress: bool = True):
    """Pretrain ``name`` with ``seed`` by ``recipe`` on the CPU, resuming from (and checkpointing to) ``work``.

    Returns ``(method, history, started_at)``: the trained method, fit's
    history (its ``seconds`` summed over resumed calls), and the step this
    call started from (0 for a fresh run).
    """
    train = sslcourse.load_dataset(recipe.data, "train", size=recipe.size)
    checkpoint = work / f"{long_runs.run_name(name, seed)}.pt"
    started_at = saved_step(checkpoint)
    sslcourse.seed_everything(seed)
    method = build_method(name, train, recipe)
    before = weights_rms(method)
    history = sslcourse.fit(method, train, **recipe.fit_arguments(), device="cpu", seed=seed, checkpoint=checkpoint,
                            checkpoint_every=CHECKPOINT_EVERY, progress=progress)
    if len(history) != recipe.steps:
        raise RuntimeError(f"{checkpoint} holds {len(history)} steps of {name}, not the {recipe.steps} asked for: "
                           "delete it to start this run over")
    reason = divergence(history, before, weights_rms(method))
    if reason is not None:
        raise TrainingDivergedError(f"{name} seed {seed} diverged: {reason}")
    return method, history, started_at


def machine(load_start: Sequence[float]) -> dict:
    """Where a run ran: platform, CPU count, torch threads, load averages (1, 5, 15 min) at its start and end."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def ship_pair(name: str, seed: int, recipe: Recipe, method, history, out: Path, *, probing: dict,
              started_at: int, load_start: Sequence[float]) -> dict:
    """Write the encoder's weights, probe exactly what was written, and record the entry in the manifest."""
    file = f"{long_runs.run_name(name, seed)}.pt"
    path = long_runs.save_encoder_weights(method.encoder, out / file)
    encoder = long_runs.load_encoder_weights(long_runs.fresh_encoder(name, recipe), path).eval()
    start = time.perf_counter()
    rows = long_runs.probe_rows(name, encoder, recipe, seed=seed, fractions=probing["fractions"], probes=probing["probes"],
                                repeats=probing["repeats"])
    entry = {
        "method": name,
        "seed": seed,
        "file": file,
        "sha256": long_runs.sha256_of(path),
        "bytes": path.stat().st_size,
        "recipe": recipe.to_dict(),
        "steps": len(history),
        "seconds": round(history.seconds, 2),
        "final_loss": history.loss[-1] if history.loss else None,
        "resumed_from_step": started_at,
        "machine": machine(load_start),
        "package_version": sslcourse.__version__,
        "torch_version": torch.__version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "probe": {**probing, "data": recipe.probe_dataset[0], "size": recipe.probe_dataset[1],
                  "layer": recipe.probe_depth if recipe.probe_depth is not None else "all"},
        "probe_seconds": round(time.perf_counter() - start, 2),
        "rows": rows,
    }
    with manifest_lock(out):  # another process may be shipping another pair into the same folder
        data = long_runs.manifest(out)
        data["checkpoints"][long_runs.run_name(name, seed)] = entry
        long_runs.write_manifest(data, out)
    return entry


@contextmanager
def manifest_lock(out: Path):
    """Hold an exclusive lock on ``out``'s manifest (POSIX ``flock``; no lock where the system has none)."""
    try:
        import fcntl
    except ImportError:  # Windows: run one process at a time
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".manifest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def summary_line(entry: dict) -> str:
    """One line on a shipped run: its length, size, and its linear probe at 10% of the labels beside the baselines."""
    line = (f"{entry['method']} seed {entry['seed']}: {entry['steps']} steps in {entry['seconds']:.0f} s, "
            f"{entry['bytes'] / 1024:.0f} KiB")
    rows = entry["rows"]
    if not all("0.1" in rows.get(row, {}).get("linear", {}) for row in (entry["method"], "random_init", "raw_pixels")):
        return line

    def shown(row: str) -> str:
        cell = rows[row]["linear"]["0.1"]
        spread = f" ± {100 * cell['std']:.1f}" if cell.get("std") is not None else ""
        return f"{100 * cell['mean']:.1f}{spread}%"

    return (f"{line}; linear probe at 10% of the labels {shown(entry['method'])} "
            f"(random init {shown('random_init')}, raw pixels {shown('raw_pixels')})")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(PRETRAINABLE), choices=list(PRETRAINABLE), metavar="METHOD",
                        help=f"which methods (default all: {' '.join(PRETRAINABLE)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="which seeds (default 0 1 2)")
    parser.add_argument("--out", type=Path, default=long_runs.PACKAGE_FOLDER, help="where weights and manifest go (default: the package's)")
    parser.add_argument("--work", type=Path, default=REPOSITORY / ".long_runs", help="where the resumable training checkpoints go")
    parser.add_argument("--steps", type=int, default=None, help="train every method this many steps instead (a trial)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0], help="label fractions probed")
    parser.add_argument("--probes", nargs="+", default=["linear", "knn"], choices=["linear", "knn"])
    parser.add_argument("--repeats", type=int, default=long_runs.default_repeats(),
                        help=f"labelled subsets per fraction below 1 (default {long_runs.default_repeats()}, as sslcourse pretrain)")
    parser.add_argument("--plan", action="store_true", help="list each pair's status and estimated time; train nothing")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name, value in (("--steps", args.steps), ("--threads", args.threads), ("--repeats", args.repeats)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds must be >= 0, got {args.seeds}")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the pairs the arguments name (seed by seed, so that a part of the run gives every method one seed);
    return the manifest entries written."""
    args = parse(argv)
    probing = probe_settings(args.fractions, args.probes, args.repeats)
    pairs = [(name, seed) for seed in args.seeds for name in args.methods]
    if args.plan:
        total = 0.0
        for name, seed in pairs:
            recipe = long_recipe(name, args.steps)
            why = finished(args.out, name, seed, recipe, probing, args.threads)
            seconds = TARGET_SECONDS * recipe.steps / LONG_RUN_STEPS[name]
            total += seconds if why else 0.0
            print(f"{long_runs.run_name(name, seed):20s} {recipe.steps:6d} steps  ~{seconds / 60:4.1f} min  {why or 'done'}")
        print(f"to run: about {total / 3600:.1f} h of training at the measured speeds, plus probing")
        return []
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    written = []
    try:
        for name, seed in pairs:
            recipe = long_recipe(name, args.steps)
            why = finished(args.out, name, seed, recipe, probing, args.threads)
            if why is None:
                print(f"{long_runs.run_name(name, seed)}: done, skipped", flush=True)
                continue
            print(f"{long_runs.run_name(name, seed)}: {why}; training {recipe.steps} steps", flush=True)
            load_start = os.getloadavg()
            method, history, started_at = train_pair(name, seed, recipe, args.work, progress=not args.no_progress)
            entry = ship_pair(name, seed, recipe, method, history, args.out, probing=probing, started_at=started_at,
                              load_start=load_start)
            print(summary_line(entry), flush=True)
            written.append(entry)
    finally:
        torch.set_num_threads(threads)
    return written


if __name__ == "__main__":
    main()
