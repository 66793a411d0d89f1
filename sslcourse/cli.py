"""The ``sslcourse`` command.

    sslcourse info                                     describe the runtime
    sslcourse pretrain dae                             pretrain by the method's recipe, then compare with the baselines:
                                                       every accuracy as mean ± spread, and verdicts beyond the spread
    sslcourse pretrain dae --json                      the same result as one JSON object
    sslcourse pretrain simclr --steps 300 --seed 1     another stopping rule or seed (--epochs, --budget SECONDS)
    sslcourse pretrain colorization                    any method of the course by its name (sslcourse/registry.py)

Bad values are refused before anything is loaded, in one line with exit code 2;
a run that diverges is reported with exit code 1; Ctrl-C stops with exit code 130.

For instructors, from the course's root (the folder with nbgrader_config.py):

    sslcourse course publish OUT                        write the student edition (no solutions, hidden tests, model answers)
    sslcourse course leak-check EDITION                 check an edition (and --also a built book) for leaked answers
    sslcourse course collect EXPORT --lab LAB           file LMS downloads into _grading/submitted/<student>/<lab>/
    sslcourse course grade LAB --workers 2              autograde a lab's submissions in sandboxes, in parallel, with a report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from .registry import PRETRAINABLE, Recipe, method_spec

# The parser checks every value before anything heavy runs: each bad value is one line on stderr naming the
# option, the value and what is accepted, with exit code 2 (argparse's convention), and no traceback.
# torch, the data and the methods are imported only once the arguments are known to be good.


class _Parser(argparse.ArgumentParser):
    """argparse, with each error in one line (no usage block): ``sslcourse pretrain: error: argument --lr: ...``."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _image_side(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"expected an image side in pixels from 1 to 1024, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63 - 1, got {text!r}")
    return value


def _positive_number(what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected {what}, a positive finite number, got {text!r}")
        return value

    return parse


def _dataset(text: str) -> str:
    from .data import available_datasets

    known = available_datasets()
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; known datasets: {', '.join(known)}")
    return text


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, then ``cuda`` and ``cuda:N`` for each GPU, then ``mps``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(text: str) -> str:
    """``text`` if it names a device available here, else a one-line error saying which are."""
    import torch

    available = available_devices()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; expected cpu, cuda, cuda:N or mps (available here: {', '.join(available)})"
        )
    if device.type != "cpu" and text not in available and str(device) not in available:
        raise argparse.ArgumentTypeError(f"device {text!r} is not available here; available: {', '.join(available)}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sslcourse", description="Self-supervised learning for computer vision: the course's command line.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sslcourse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe the runtime: device, precision, versions")
    info.add_argument("--device", type=check_device, default=None, help="cpu, cuda, cuda:N, mps (default: the best available)")

    pre = sub.add_parser(
        "pretrain",
        help="pretrain a method, then probe it beside random init and raw pixels",
        description="Pretrain METHOD, then report linear-probe and kNN accuracy at 1%, 10% and 100% of the labels "
        "for it, its comparison rows (the plain autoencoder for dae), the same encoder at random init, and raw "
        "pixels, each as mean ± spread (over 5 labelled subsets; at 100%, over bootstrap resamples of the test set), "
        "with a verdict of the method against every other row that counts a gap only beyond the spread. "
        "Defaults come from the method's recipe (sslcourse/registry.py) for the device: on a CPU, the "
        "embedded digits (the colour methods pretrain on photo patches and are probed on digits) for a fixed "
        "number of steps, about a minute on a quiet 2-core machine, so the same seed gives the same numbers on "
        "any machine; on a GPU, CIFAR-10 for the papers' epochs. --steps, --epochs and --budget replace the "
        "recipe's stopping rule (together: whichever comes first). --data pretrains and probes on the dataset named.",
    )
    pre.add_argument("method", choices=PRETRAINABLE)
    pre.add_argument("--data", type=_dataset, default=None, help="dataset name (default: digits or photos on CPU, cifar10 on GPU)")
    pre.add_argument("--size", type=_image_side, default=None, help="resize images to SIZE x SIZE")
    pre.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps of pretraining for each pretrained model")
    pre.add_argument("--epochs", type=_positive_int, default=None, help="epochs of pretraining")
    pre.add_argument("--budget", type=_positive_number("seconds"), default=None,
                     help="seconds of pretraining for each pretrained model (results then depend on the machine's speed and load)")
    pre.add_argument("--batch-size", type=_positive_int, default=None)
    pre.add_argument("--lr", type=_positive_number("a learning rate"), default=None)
    pre.add_argument("--device", type=check_device, default=None, help="cpu, cuda, cuda:N, mps (default: the best available)")
    pre.add_argument("--seed", type=_seed, default=0)
    pre.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for torch (default: torch's own choice, one per core). On a machine busy with other work, "
        "--threads 1 can be several times faster: measured on 2 cores, fit ran at 350 img/s on 1 thread and 550-640 "
        "on 2 when idle, but 80-160 on 1 and 14-27 on 2 under load",
    )
    pre.add_argument("--nproc", type=_positive_int, default=1,
                     help="train on N processes with torchrun (one per GPU; gloo between CPU processes); the batch size "
                     "is the global batch. The same as `torchrun --nproc-per-node N -m sslcourse pretrain ...`")
    pre.add_argument("--json", action="store_true", help="print the result as one JSON object")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")

    course = sub.add_parser("course", help="for instructors: publish the student edition, collect and grade submissions")
    course.add_argument("--course", default=None, help="the course's root, holding nbgrader_config.py (default: here or a parent)")
    steps = course.add_subparsers(dest="step", required=True)
    publish = steps.add_parser("publish", help="write the student edition into OUT: book, labs, package, no answers")
    publish.add_argument("out")
    publish.add_argument("--force", action="store_true", help="write into OUT even if it is not empty")
    leaks = steps.add_parser("leak-check", help="look for lines of solutions, hidden tests and model answers in an edition")
    leaks.add_argument("edition")
    leaks.add_argument("--also", action="append", default=[], help="another folder to scan, e.g. the edition's built book")
    collect = steps.add_parser("collect", help="file downloaded notebooks (a folder or a .zip from an LMS) into nbgrader's layout")
    collect.add_argument("source")
    collect.add_argument("--lab", default=None, help="only this lab (others are reported as the wrong lab)")
    collect.add_argument("--roster", default=None, help="a text file of student ids, one per line: report who is missing")
    collect.add_argument("--replace", action="store_true", help="replace a different notebook already filed for a student")
    collect.add_argument("--dry-run", action="store_true", help="report what would be filed, write nothing")
    grade = steps.add_parser("grade", help="autograde a lab's submissions, each in a sandbox, in parallel; resumable")
    grade.add_argument("lab")
    grade.add_argument("--workers", type=_positive_int, default=2, help="submissions graded at once (default 2; about one per core)")
    grade.add_argument("--isolation", choices=["bwrap", "none"], default=None,
                       help="bwrap (default, from nbgrader_config.py): a bubblewrap sandbox per submission; none: trusted code only")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def course_command(args: argparse.Namespace) -> int:
    """``sslcourse course ...``: every failure is one line on stderr and exit code 1, never a traceback."""
    from .grading.grade import find_course_root

    try:
        root = find_course_root(args.course)
        if args.step == "publish":
            from .grading.publish import publish

            report = publish(root, args.out, force=args.force)
            left = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in report.left_out})
            print(f"wrote the student edition to {report.edition}: {len(report.files)} files, {len(report.notebooks)} notebooks\n"
                  f"left out: {', '.join(left)}\n"
                  f"leak check: none of the {report.secret_lines} lines of solutions, hidden tests and model answers is in it\n"
                  f"its Colab buttons and setup cells point at {report.repository_url}")
        elif args.step == "leak-check":
            from .grading.publish import format_leaks, leak_check

            found = leak_check(root, args.edition, extra_paths=args.also)
            print(format_leaks(found))
            return 1 if found else 0
        elif args.step == "collect":
            from .grading.collect import collect, format_report

            roster = None
            if args.roster is not None:
                roster = [line.strip() for line in open(args.roster) if line.strip()]
            print(format_report(collect(args.source, root, args.lab, roster=roster, replace=args.replace, dry_run=args.dry_run)))
        elif args.step == "grade":
            from .grading.grade import grade_lab

            report = grade_lab(args.lab, root, workers=args.workers, progress=not args.quiet, isolation=args.isolation)
            print(report.to_text())
    except KeyboardInterrupt:
        print("sslcourse: interrupted; `sslcourse course grade` resumes where it stopped when run again", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as err:
        print(f"sslcourse course {args.step}: {err}", file=sys.stderr)
        return 1
    return 0


def recipe_from_args(args: argparse.Namespace, device) -> Recipe:
    """The method's recipe for ``device`` with the options given on the command line."""
    from dataclasses import replace

    from .recipes import default_recipe

    recipe = default_recipe(args.method, device, data=args.data, size=args.size, batch_size=args.batch_size, lr=args.lr)
    if args.steps is not None or args.epochs is not None or args.budget is not None:
        recipe = replace(recipe, steps=args.steps, epochs=args.epochs, budget=args.budget)  # the stopping rule asked for
    if args.data is not None and args.size is None:
        recipe = replace(recipe, size=None)  # another dataset keeps its native size
    if args.data is not None:
        recipe = replace(recipe, probe_data=None, probe_size=None)  # pretrain and probe on the data asked for
    return recipe


def pretrain(args: argparse.Namespace) -> dict:
    """Run ``sslcourse pretrain``; return the result object that ``--json`` prints."""
    from .recipes import pretrain_and_probe
    from .runtime import get_device

    device = get_device(args.device)
    result = pretrain_and_probe(
        args.method, recipe_from_args(args, device), device=device, seed=args.seed,
        compared_with=method_spec(args.method).compared_with, progress=not (args.quiet or args.json),
    )
    del result["model"]
    return result


def _percent(fraction: str) -> str:
    return f"{100 * float(fraction):g}%"


_PHRASES = {"beats": "beats", "is beaten by": "is beaten by", "within the spread of": "is within the spread of",
            "no spread": "has no spread to compare with"}


def verdict_lines(result: dict) -> list[str]:
    """One line per probe and label fraction: the method against every other row, by :func:`sslcourse.evaluate.beats`."""
    name, verdicts = result["method"], result["verdicts"]
    if not verdicts:
        return []
    probes = next(iter(verdicts.values()))
    lines = [f"verdicts: {name} beats a row only where the mean gap exceeds the spread of the paired gaps "
             "(in brackets: the gap in points ± that spread)"]
    for probe, fractions in probes.items():
        for fraction in fractions:
            parts = []
            for other, cells in verdicts.items():
                cell = cells[probe][fraction]
                numbers = "" if cell["gap"] is None else f" ({100 * cell['gap']:+.1f} ± {100 * cell['gap_std']:.1f})"
                parts.append(f"{_PHRASES[cell['verdict']]} {other}{numbers}")
            lines.append(f"  {probe} @ {_percent(fraction)}: {name} " + ", ".join(parts))
    return lines


def result_to_json(result: dict) -> dict:
    """The result of :func:`pretrain` in plain JSON types: every accuracy as ``Accuracy.to_dict()``, without the
    bootstrap's resampled accuracies (the verdicts computed from them are included)."""
    from .plots import format_spread_legend

    out = dict(result)
    out["rows"] = {row: {probe: {f: acc.to_dict(replicates=False) for f, acc in cells.items()} for probe, cells in probes.items()}
                   for row, probes in result["rows"].items()}
    out["spread"] = format_spread_legend(result["rows"])
    return out


def _print_table(result: dict) -> None:
    from .plots import format_accuracy_table, format_spread_legend

    layer = "the whole encoder" if result["probe_layer"] == "all" else f"the encoder's first {result['probe_layer']} layers"
    print(
        f"{result['method']} pretrained on {result['data']} for {result['pretrain_steps']} steps in "
        f"{result['pretrain_seconds']:.1f} s ({result['runtime']})\n"
        f"probed on {result['probe_data']} at {layer}: accuracy (%) on the test split, mean ± spread\n"
    )
    print(format_accuracy_table(result["rows"]))
    print(format_spread_legend(result["rows"]) + "\n")
    print("\n".join(verdict_lines(result)))


def _relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Run this same command on ``nproc`` processes under torchrun; its exit code."""
    import subprocess

    rest = [a for i, a in enumerate(argv) if a != "--nproc" and not a.startswith("--nproc=") and (i == 0 or argv[i - 1] != "--nproc")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "sslcourse", *rest]
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:
        return 130


def pretrain_command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """``sslcourse pretrain``: a result (table or JSON) and 0; or one line on stderr and 1 (could not run or
    diverged), 2 (arguments that do not fit together) or 130 (interrupted)."""
    import torch

    from .data import DatasetNotAvailableError
    from .recipes import RecipeError, TrainingDivergedError
    from .train import NonFiniteLossError

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc, argv)
    from .distributed import world
    from .runtime import keep_freed_memory

    keep_freed_memory()  # this process runs one training: reuse freed memory (faster on a CPU; same numbers)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        result = pretrain(args)
    except KeyboardInterrupt:
        print(f"sslcourse pretrain: interrupted after {time.perf_counter() - start:.0f} s; nothing was saved", file=sys.stderr)
        return 130
    except DatasetNotAvailableError as err:
        print(f"sslcourse: {err}", file=sys.stderr)
        return 1
    except RecipeError as err:
        print(f"sslcourse pretrain: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, TrainingDivergedError) as err:
        from .runtime import get_device

        lr = recipe_from_args(args, get_device(args.device)).lr
        message = " ".join(str(err).split()).rstrip(".")  # one line
        print(f"sslcourse pretrain: training diverged, so nothing was probed ({message}). "
              f"Lower the learning rate: --lr smaller than {lr:g}.", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests, notebooks)
    if not world().is_main:  # under torchrun, process 0 speaks for all
        return 0
    if args.json:
        print(json.dumps(result_to_json(result)))
    else:
        _print_table(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # a bad value (2), or --help and --version (0): returned, so that callers in-process get it
        return exit.code if isinstance(exit.code, int) else 1
    if getattr(args, "device", None) is None and os.environ.get("SSLCOURSE_DEVICE") and args.command in ("info", "pretrain"):
        try:  # the environment's choice of device is checked as strictly as --device
            check_device(os.environ["SSLCOURSE_DEVICE"])
        except argparse.ArgumentTypeError as err:
            print(f"sslcourse {args.command}: error: environment variable SSLCOURSE_DEVICE: {err}", file=sys.stderr)
            return 2
    if args.command == "info":
        from .runtime import describe_runtime

        print(describe_runtime(args.device))
        return 0
    if args.command == "course":
        return course_command(args)
    if args.command == "pretrain":
        return pretrain_command(args, sys.argv[1:] if argv is None else list(argv))
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
