"""Every method by its default CPU recipe, through the command line: steps, seconds, and the linear probe at
10% labels beside random init and raw pixels.

Runs ``python -m sslcourse pretrain NAME --json`` for each method (a fresh
process each, as a user would), notes the load average when it starts, and
prints a Markdown table; ``--out FILE`` also keeps every JSON result. The
checks of issue 13 are printed under the table: every method above its
random-init encoder, the DAE above raw pixels, SimCLR at 94% or more::

    python benchmarks/pretrain_defaults.py                     # all fifteen (about 25 minutes on a quiet 2-core CPU)
    python benchmarks/pretrain_defaults.py simclr dae --out runs.json
    python benchmarks/pretrain_defaults.py simclr --compare runs.json   # same accuracies as an earlier run?

``--compare FILE`` reruns the methods and reports, for each, whether every
accuracy is identical to the one in FILE (the same command and seed must give
the same numbers whatever the load).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from sslcourse.registry import PRETRAINABLE, REGISTRY


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run(name: str, extra: list[str]) -> dict:
    load = load_average()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sslcourse", "pretrain", name, "--json", *extra],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"method": name, "error": out.stderr.strip(), "load_average": load}
    result = json.loads(out.stdout)
    result["load_average"] = load
    result["command_seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("methods", nargs="*", default=list(PRETRAINABLE))
    parser.add_argument("--out", default=None, help="write every JSON result to this file")
    parser.add_argument("--compare", default=None, help="a file from --out: check the accuracies are identical")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more options for sslcourse pretrain")
    args = parser.parse_args()

    earlier = {}
    if args.compare:
        with open(args.compare) as f:
            earlier = {r["method"]: r for r in json.load(f)}
    results = []
    print("| method | steps | seconds | load average at start | linear @ 10%: method | random init | raw pixels |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.methods:
        r = run(name, args.extra)
        results.append(r)
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | | {r['load_average']:.2f} | | | |", flush=True)
            continue
        acc = {row: 100 * r["rows"][row]["linear"]["0.1"] for row in r["rows"]}
        others = "".join(f", {row} {acc[row]:.1f}" for row in REGISTRY[name].compared_with)
        print(f"| {name} | {r['pretrain_steps']} | {r['pretrain_seconds']:.1f} | {r['load_average']:.2f} | "
              f"{acc[name]:.1f}{others} | {acc['random_init']:.1f} | {acc['raw_pixels']:.1f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)

    print()
    for r in results:
        name = r["method"]
        if "error" in r:
            print(f"{name}: FAILED")
            continue
        acc = {row: r["rows"][row]["linear"]["0.1"] for row in r["rows"]}
        checks = [f"{'beats' if acc[name] > acc['random_init'] else 'DOES NOT beat'} random init"]
        if name == "dae":
            checks.append(f"{'beats' if acc[name] > acc['raw_pixels'] else 'DOES NOT beat'} raw pixels")
        if name == "simclr":
            checks.append(f"{'reaches' if acc[name] >= 0.94 else 'DOES NOT reach'} 94%")
        if name in earlier:
            same = earlier[name].get("rows") == r["rows"]
            checks.append("accuracies identical to the earlier run" if same else "accuracies DIFFER from the earlier run")
        print(f"{name}: {'; '.join(checks)}")


if __name__ == "__main__":
    main()
