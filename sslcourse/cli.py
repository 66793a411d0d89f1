"""The ``sslcourse`` command.

    sslcourse info                                     describe the runtime
    sslcourse pretrain dae --data digits --budget 60   pretrain, then compare with the baselines
    sslcourse pretrain dae --json                      the same result as one JSON object
    sslcourse pretrain colorization                    any method of the course by its name

For instructors, from the course's root (the folder with nbgrader_config.py):

    sslcourse course publish OUT                        write the student edition (no solutions, hidden tests, model answers)
    sslcourse course leak-check EDITION                 check an edition (and --also a built book) for leaked answers
    sslcourse course collect EXPORT --lab LAB           file LMS downloads into _grading/submitted/<student>/<lab>/
    sslcourse course grade LAB --workers 2              autograde a lab's submissions in sandboxes, in parallel, with a report
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from . import __version__
from .data import DatasetNotAvailableError
from .plots import format_accuracy_table
from .recipes import default_recipe, pretrain_and_probe
from .runtime import describe_runtime, get_device

PRETRAINABLE = ["dae", "context", "colorization", "splitbrain", "superres", "rotation", "relpos", "jigsaw", "deepcluster", "cpc", "simclr", "moco", "byol", "dino", "mae"]
#: For each method, the other pretrained rows it is compared with, besides random init and raw pixels.
COMPARED_WITH = {"dae": ["ae"]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslcourse", description="Self-supervised learning for computer vision: the course's command line.")
    parser.add_argument("--version", action="version", version=f"sslcourse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe the runtime: device, precision, versions")
    info.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")

    pre = sub.add_parser(
        "pretrain",
        help="pretrain a method, then probe it beside random init and raw pixels",
        description="Pretrain METHOD, then report linear-probe and kNN accuracy at 1%%, 10%% and 100%% of the labels "
        "for it, its comparison rows (the plain autoencoder for dae), the same encoder at random init, and raw "
        "pixels. Defaults depend on the device: the embedded data and a time budget on a CPU (the colour methods "
        "pretrain on photo patches and are probed on digits), CIFAR-10 and epochs on a GPU. --data pretrains and "
        "probes on the dataset named.",
    )
    pre.add_argument("method", choices=PRETRAINABLE)
    pre.add_argument("--data", default=None, help="dataset name (default: digits or photos on CPU, cifar10 on GPU)")
    pre.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    pre.add_argument("--budget", type=float, default=None, help="seconds of pretraining for each pretrained model")
    pre.add_argument("--epochs", type=int, default=None, help="epochs of pretraining (instead of, or besides, --budget)")
    pre.add_argument("--batch-size", type=int, default=None)
    pre.add_argument("--lr", type=float, default=None)
    pre.add_argument("--device", default=None)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's own choice, one per core). On a machine busy with other work, "
        "--threads 1 can be several times faster: measured on 2 cores, fit ran at 350 img/s on 1 thread and 550-640 "
        "on 2 when idle, but 80-160 on 1 and 14-27 on 2 under load",
    )
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
    grade.add_argument("--workers", type=int, default=2, help="submissions graded at once (default 2; about one per core)")
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


def pretrain(args: argparse.Namespace) -> dict:
    """Run ``sslcourse pretrain``; return the result object that ``--json`` prints."""
    device = get_device(args.device)
    overrides = dict(data=args.data, size=args.size, batch_size=args.batch_size, lr=args.lr, budget=args.budget, epochs=args.epochs)
    recipe = default_recipe(args.method, device, **overrides)
    if args.epochs is not None and args.budget is None:
        recipe = replace(recipe, budget=None)  # asked for epochs: do not cut them short with the default budget
    if args.data is not None and args.size is None:
        recipe = replace(recipe, size=None)  # another dataset keeps its native size
    if args.data is not None:
        recipe = replace(recipe, probe_data=None, probe_size=None)  # pretrain and probe on the data asked for
    result = pretrain_and_probe(
        args.method, recipe, device=device, seed=args.seed, compared_with=COMPARED_WITH.get(args.method, ()),
        progress=not (args.quiet or args.json),
    )
    del result["model"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "info":
        print(describe_runtime(args.device))
        return 0
    if args.command == "course":
        return course_command(args)
    if args.command == "pretrain":
        if args.threads is not None and args.threads < 1:
            print(f"sslcourse: --threads expects a positive number of threads; got {args.threads}", file=sys.stderr)
            return 2
        threads = torch.get_num_threads()
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        try:
            result = pretrain(args)
        except DatasetNotAvailableError as err:
            print(f"sslcourse: {err}", file=sys.stderr)
            return 1
        finally:
            torch.set_num_threads(threads)  # main() may be called in-process (tests, notebooks)
        if args.json:
            print(json.dumps(result))
        else:
            layer = "the whole encoder" if result["probe_layer"] == "all" else f"the encoder's first {result['probe_layer']} layers"
            print(
                f"{result['method']} pretrained on {result['data']} for {result['pretrain_seconds']:.0f} s "
                f"({result['runtime']})\n"
                f"probed on {result['probe_data']} at {layer}: accuracy (%) on the test split; "
                "fractions below 100% average 3 random labelled subsets\n"
            )
            print(format_accuracy_table(result["rows"]))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
