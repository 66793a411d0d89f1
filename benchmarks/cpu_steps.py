"""How many steps of each CPU recipe fit in a minute: the measurement behind the recipes' ``steps``.

For every method of the registry, trains a fresh method by its CPU recipe for
``--steps`` steps (default 30) with 1 and with 2 torch threads, in
``--rounds`` alternating rounds, and reports the fastest steps per second of
each (the machine may be shared: the fastest run is the closest to a quiet
machine), how busy the cores were before each run, and the steps that the
fastest two-thread speed fits in ``--seconds`` (default 60)::

    python benchmarks/cpu_steps.py                    # all methods, 3 rounds
    python benchmarks/cpu_steps.py simclr byol --rounds 5
    python benchmarks/cpu_steps.py --quiet-below 0.1   # each run waits for cores less than 10% busy
    python benchmarks/cpu_steps.py --json > speeds.json

The time of a run includes its start (optimizer, first batches); a recipe's
run of a minute spreads that over more steps, so the suggested steps err on
the short side.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import sslcourse
from sslcourse.recipes import build_method, default_recipe
from sslcourse.registry import PRETRAINABLE


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def busy_fraction(seconds: float = 2.0) -> float:
    """The fraction of all cores' time spent busy over the next ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(below: float, max_wait: float) -> float:
    """Wait until the cores are busy less than ``below`` (a fraction) over 2 s, at most ``max_wait`` seconds; return it."""
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy >= below and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy


def steps_per_second(name: str, steps: int, threads: int, data_cache: dict) -> float:
    """Steps per second of ``steps`` steps of ``name``'s CPU recipe on ``threads`` torch threads (fit's own time)."""
    recipe = default_recipe(name, "cpu")
    key = (recipe.data, recipe.size)
    if key not in data_cache:
        data_cache[key] = sslcourse.load_dataset(recipe.data, "train", size=recipe.size)
    train = data_cache[key]
    torch.set_num_threads(threads)
    sslcourse.seed_everything(0)
    method = build_method(name, train, recipe)
    arguments = {**recipe.fit_arguments(), "steps": steps, "epochs": None, "budget": None}
    start = time.perf_counter()
    sslcourse.fit(method, train, **arguments, device="cpu", seed=0, progress=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("methods", nargs="*", default=list(PRETRAINABLE))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quiet-below", type=float, default=None,
                        help="before each run, wait until the cores are busy less than this fraction of the time "
                        "(over 2 s; at most --max-wait s), e.g. 0.1")
    parser.add_argument("--max-wait", type=float, default=300.0)
    parser.add_argument("--record", default=None,
                        help="a JSON file of the fastest speeds so far: read, updated with this run's, written back "
                        "(to take the fastest over runs at different times of a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    cache: dict = {}
    best: dict[tuple[str, int], float] = {}
    if args.record and os.path.exists(args.record):
        with open(args.record) as f:
            best = {(name, int(threads)): rate for name, threads, rate in json.load(f)["fastest"]}
    loads = []
    for r in range(args.rounds):
        loads.append(load_average())
        for name in args.methods:
            for threads in args.threads:
                busy = wait_for_quiet(args.quiet_below, args.max_wait) if args.quiet_below else busy_fraction()
                rate = steps_per_second(name, args.steps, threads, cache)
                best[name, threads] = max(best.get((name, threads), 0.0), rate)
                if not args.json:
                    print(f"round {r + 1}: {name:12s} {threads} thread(s): {rate:6.2f} steps/s "
                          f"(cores {100 * busy:.0f}% busy before, load average {load_average():.2f} after)", flush=True)
    if args.record:
        with open(args.record, "w") as f:
            json.dump({"fastest": [[name, threads, rate] for (name, threads), rate in sorted(best.items())]}, f, indent=1)
    rows = []
    for name in args.methods:
        row = {"method": name, "recipe_steps": default_recipe(name, "cpu").steps}
        for threads in args.threads:
            row[f"steps_per_s_{threads}"] = round(best[name, threads], 2)
        fastest_two = best.get((name, 2), max(best[name, t] for t in args.threads))
        row["suggested_steps"] = int(round(fastest_two * args.seconds, -1))
        rows.append(row)
    if args.json:
        print(json.dumps({"load_average_at_rounds": loads, "steps": args.steps, "rows": rows}))
        return
    print(f"\nload average at the start of each round: {', '.join(f'{x:.2f}' for x in loads)}")
    header = ["method", "recipe steps", *[f"steps/s ({t} thr)" for t in args.threads], f"steps in {args.seconds:g} s (2 thr)"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join([row["method"], str(row["recipe_steps"]), *[f"{row[f'steps_per_s_{t}']:.2f}" for t in args.threads],
                          str(row["suggested_steps"])]))


if __name__ == "__main__":
    main()
