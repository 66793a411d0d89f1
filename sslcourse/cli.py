"""The ``sslcourse`` command.

    sslcourse info                                     describe the runtime
    sslcourse pretrain dae --data digits --budget 60   pretrain, then compare with the baselines
    sslcourse pretrain dae --json                      the same result as one JSON object
    sslcourse pretrain colorization                    any method of the course by its name
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
    return parser


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
