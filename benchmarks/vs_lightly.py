"""SimCLR training throughput: ``sslcourse.fit`` against lightly's documented pipeline, on the CPU.

    /work/bench-venv/bin/python benchmarks/vs_lightly.py                  # about 11 minutes on a quiet 2-core machine
    /work/bench-venv/bin/python benchmarks/vs_lightly.py --rounds 5 --steps 12 --workers 0 1 2
    /work/bench-venv/bin/python benchmarks/vs_lightly.py --configs fit fit-cl lightly-0

lightly is not a dependency of the course; only this comparison needs it. Install it in an
environment of its own, so that it cannot move the course's pins::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -c constraints.txt -e . lightly scikit-image

(lightly 1.6.0 installs next to torch 2.14.1 / torchvision 0.29.1 without changing them;
scikit-image gives the photographs, and uniform noise is used without it.)

Both sides train the same network on the same images:

- the package's SimCLR encoder and projection head, built once (seed 0) and copied to each side;
- 32x32 RGB images (patches of scikit-image's photographs, resized), batches of ``--batch-size``;
- AdamW at lr 1e-3 (``fit``'s default optimizer), NT-Xent at the method's temperature.

``fit``: ``sslcourse.fit(SimCLR, uint8 images, steps=...)``: the images stay a uint8 tensor, each
batch is augmented in one batched pass per view (:class:`sslcourse.augment.ContrastiveViews`) and
both views go through the network in one pass, as :class:`sslcourse.methods.SimCLR` does.

``lightly``: its documented pipeline (the SimCLR example of its documentation): a dataset that
gives PIL images (as torchvision's CIFAR10 does, ``Image.fromarray`` per item), lightly's
``SimCLRTransform`` applied per image in a ``torch.utils.data.DataLoader`` with ``W`` worker
processes, ``NTXentLoss``, and a plain loop that encodes the two views in two passes. Its transform
takes the package's view settings (crop scale, flip, jitter strengths and probability, grayscale,
no blur, no normalisation); what still differs is printed with the results.

Every run is a fresh process (so nothing one side sets, such as the allocator's behaviour, can
help the other): it loads the shared weights and images, trains one warm-up step, then ``--steps``
steps (one epoch of ``steps x batch`` images: lightly's iterator and workers start inside the timed
part, as they do every epoch). Each round runs every configuration once, in a rotating order; a
configuration's figure is the median over rounds of images per second of wall-clock time. Beside
it: images per second of the process's own CPU time (for single-process runs; much less sensitive
to other work on a shared machine) and the 1-minute load average before each run. Every process
runs torch with ``--threads`` threads (1 by default); lightly's workers are extra processes that use
the other cores. Figures are printed, never asserted.

Measured on the course's machine (AMD EPYC, 2 cores, no GPU; torch 2.14.1, lightly 1.6.0, one torch
thread, batch 256, load average 0.8-1.1, medians of 3 rounds): fit with its defaults 104 img/s, with
channels_last 162, with channels_last in a process that keeps freed memory 228; lightly with 0, 1
and 2 workers 123, 128 and 130, and with 0 workers, channels_last and kept memory 191. So fit with
its defaults ran at 0.80-0.85x lightly's documented pipeline, with channels_last at 1.25-1.32x, and
with both settings at 1.76-1.86x (1.20x lightly given the same two settings). Both settings are
outside the augmentations: fit uses channels_last only on CUDA, and glibc's malloc returns every
large freed block to the system, so each step's activations fault in fresh pages.

The configurations (``--configs``; ``lightly-W`` for each of ``--workers``):

    fit                fit with its defaults
    fit-cl             fit(channels_last=True)
    fit-cl-heap        the same in a process whose allocator keeps freed memory (see keep_freed_memory)
    lightly-W          lightly's documented pipeline with W loader workers
    lightly-0-cl-heap  lightly, 0 workers, with both of the last two settings (not in its documentation)
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

import sslcourse
from sslcourse.augment import ContrastiveViews
from sslcourse.methods import SimCLR

IMAGE_SIZE = 32
INSTALL_HINT = (
    "this comparison needs lightly, which the course does not depend on. Install it in a separate environment:\n"
    "    python3 -m venv /work/bench-venv\n"
    "    /work/bench-venv/bin/pip install -c constraints.txt -e . lightly scikit-image\n"
    "then run: /work/bench-venv/bin/python benchmarks/vs_lightly.py"
)
DIFFERENCES = (
    "sslcourse jitters in a fixed order (brightness, contrast, saturation, hue) and turns the hue in YIQ; "
    "torchvision in a random order and in HSV. sslcourse's crop clamps an oversized box where torchvision retries "
    "10 times, then takes a centre crop. sslcourse resamples with one bilinear grid_sample (no antialiasing), PIL with "
    "antialiased bilinear filtering. sslcourse encodes both views in one pass of 2B images (batch-norm statistics over "
    "both), lightly's loop in two passes of B."
)


# ------------------------------------------------------------------ the data
def benchmark_images(count: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, str]:
    """``count`` colour images, uint8 (count, 3, size, size), and what they are: the embedded
    photo patches, repeated as needed, or uniform noise where scikit-image is missing."""
    try:
        patches = sslcourse.load_dataset("photos", "all", size=size).images
    except ImportError:
        noise = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return noise, "uniform noise (scikit-image is missing, so no photographs)"
    repeats = -(-count // len(patches))
    return patches.repeat(repeats, 1, 1, 1)[:count].contiguous(), f"patches of scikit-image's photographs ({len(patches)} distinct)"


class PILImages(torch.utils.data.Dataset):
    """Images handed out as PIL images through ``transform``, as torchvision's CIFAR10 does.

    ``images``: uint8 (N, 3, H, W). Item i is ``(transform(PIL image i), 0)``.
    """

    def __init__(self, images: torch.Tensor, transform: Callable) -> None:
        self.pixels = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3), what Image.fromarray takes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[index])), 0


# ------------------------------------------------------------------ the two sides
def lightly_transform(views: ContrastiveViews):
    """lightly's SimCLRTransform with the settings of the package's ``views``."""
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(
        input_size=views.size or IMAGE_SIZE,
        cj_prob=views.jitter_p,
        cj_strength=1.0,
        cj_bright=views.jitter["brightness"],
        cj_contrast=views.jitter["contrast"],
        cj_sat=views.jitter["saturation"],
        cj_hue=views.jitter["hue"],
        min_scale=views.crop_scale[0],
        random_gray_scale=views.grayscale_p,
        gaussian_blur=views.blur_p,
        sigmas=views.blur_sigma,
        hf_prob=views.flip_p,
        normalize=None,  # the package trains on [0, 1] images
    )


class EncoderWithHead(nn.Module):
    """A backbone and a projection head, as lightly's SimCLR example builds its model: (B, C, H, W) -> (B, D)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))


@dataclass
class PackageSide:
    """``sslcourse.fit`` on a SimCLR method; ``run(steps)`` trains that many steps, one epoch of ``images``."""

    method: SimCLR
    images: torch.Tensor
    batch_size: int
    channels_last: bool | str = "auto"

    def run(self, steps: int) -> None:
        sslcourse.fit(
            self.method, self.images[: steps * self.batch_size], steps=steps, batch_size=self.batch_size,
            device="cpu", channels_last=self.channels_last, progress=False,
        )


class LightlySide:
    """lightly's pipeline and a plain PyTorch loop; ``run(steps)`` trains one epoch of ``steps`` batches."""

    def __init__(self, model: EncoderWithHead, dataset: PILImages, batch_size: int, workers: int, temperature: float,
                 channels_last: bool = False) -> None:
        from lightly.loss import NTXentLoss

        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.dataset, self.batch_size, self.workers, self.channels_last = dataset, batch_size, workers, channels_last
        self.criterion = NTXentLoss(temperature=temperature)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0, foreach=True)
        self.model.train()

    def run(self, steps: int) -> None:
        subset = torch.utils.data.Subset(self.dataset, range(steps * self.batch_size))
        loader = torch.utils.data.DataLoader(subset, batch_size=self.batch_size, shuffle=True, drop_last=True, num_workers=self.workers)
        for (x0, x1), _ in loader:
            if self.channels_last:
                x0, x1 = x0.contiguous(memory_format=torch.channels_last), x1.contiguous(memory_format=torch.channels_last)
            loss = self.criterion(self.model(x0), self.model(x1))
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()


def keep_freed_memory() -> bool:
    """The package's own setting (:func:`sslcourse.runtime.keep_freed_memory`), which the command line turns on."""
    from sslcourse.runtime import keep_freed_memory as keep

    return keep()


# ------------------------------------------------------------------ one run, in its own process
@dataclass(frozen=True)
class Config:
    name: str
    label: str
    side: str  # "fit" or "lightly"
    workers: int = 0
    channels_last: bool = False
    keep_memory: bool = False

    @property
    def single_process(self) -> bool:
        return self.side == "fit" or self.workers == 0


def configs_for(workers: list[int]) -> dict[str, Config]:
    named = [
        Config("fit", "sslcourse fit, defaults", "fit"),
        Config("fit-cl", "sslcourse fit, channels_last=True", "fit", channels_last=True),
        Config("fit-cl-heap", "sslcourse fit, channels_last, freed memory kept", "fit", channels_last=True, keep_memory=True),
        *(Config(f"lightly-{w}", f"lightly, {w} worker{'' if w == 1 else 's'}", "lightly", workers=w) for w in workers),
        Config("lightly-0-cl-heap", "lightly, 0 workers, channels_last, memory kept", "lightly", channels_last=True, keep_memory=True),
    ]
    return {c.name: c for c in named}


def run_one(config: Config, shared: Path, steps: int, batch_size: int, threads: int) -> dict:
    """Build ``config``'s side from the shared weights and images, warm it up, time ``steps`` steps."""
    torch.set_num_threads(threads)
    if config.keep_memory and not keep_freed_memory():
        raise RuntimeError("could not set malloc options (not glibc?)")
    state = torch.load(shared, weights_only=False)
    method = SimCLR(**state["kwargs"])
    method.load_state_dict(state["weights"])
    images = state["images"]
    if config.side == "fit":
        side = PackageSide(method, images, batch_size, channels_last=True if config.channels_last else "auto")
    else:
        dataset = PILImages(images, lightly_transform(method.views))
        model = EncoderWithHead(copy.deepcopy(method.encoder), copy.deepcopy(method.projector))
        side = LightlySide(model, dataset, batch_size, config.workers, method.temperature, channels_last=config.channels_last)
    side.run(1)  # warm-up: first calls allocate and pick convolution kernels
    wall, cpu = time.perf_counter(), time.process_time()
    side.run(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images_per_second": steps * batch_size / wall, "cpu_images_per_second": steps * batch_size / cpu}


# ------------------------------------------------------------------ the orchestra
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):  # pragma: no cover - not on Linux
        return "unknown CPU"


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float("nan")


def measure_in_child(config: Config, shared: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", config.name, "--shared", str(shared), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--workers", *map(str, args.workers)]
    load = load_average()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the run of {config.name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "load": load}


def print_table(configs: list[Config], results: dict[str, list[dict]]) -> None:
    medians = {c.name: statistics.median(r["images_per_second"] for r in results[c.name]) for c in configs}
    cpu = {c.name: statistics.median(r["cpu_images_per_second"] for r in results[c.name]) for c in configs if c.single_process}
    ours = [c for c in configs if c.side == "fit"]
    print(f"\n{'configuration':48s} {'img/s':>6s} {'cpu img/s':>9s} {'load':>9s}  " + " ".join(f"{c.name + '/this':>16s}" for c in ours) + "  runs (img/s)")
    for c in configs:
        loads = [r["load"] for r in results[c.name]]
        cpu_text = f"{cpu[c.name]:9.0f}" if c.name in cpu else f"{'-':>9s}"
        ratios = " ".join(f"{medians[o.name] / medians[c.name]:16.2f}" for o in ours)
        runs = ", ".join(f"{r['images_per_second']:.0f}" for r in results[c.name])
        print(f"{c.label:48s} {medians[c.name]:6.0f} {cpu_text} {min(loads):4.1f}-{max(loads):<4.1f}  {ratios}  {runs}")
    print("\nimg/s: median over the rounds of images per second of wall-clock time. cpu img/s: the same per second of "
          "the run's CPU time (single-process runs only). X/this: X's img/s over this row's (above 1: X is faster). "
          "load: the 1-minute load average before the runs.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (one epoch of steps x batch images)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every configuration; the median is reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="lightly's DataLoader workers, one configuration each")
    parser.add_argument("--configs", nargs="+", help="which configurations to run (default: all; see the module docstring)")
    parser.add_argument("--widths", type=int, nargs=2, default=[32, 64], help="the package's ConvEncoder widths (its CPU default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shared", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.batch_size < 2:
        parser.error(f"--batch-size must be at least 2 (NT-Xent needs negatives), got {args.batch_size}")
    if any(w < 0 for w in args.workers):
        parser.error(f"--workers must be >= 0, got {args.workers}")
    known = configs_for(args.workers)
    unknown = [name for name in args.configs or [] if name not in known]
    if unknown:
        parser.error(f"unknown --configs {unknown}; expected some of {list(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import lightly
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    known = configs_for(args.workers)
    if args.child:
        print(json.dumps(run_one(known[args.child], args.shared, args.steps, args.batch_size, args.threads)))
        return 0
    if args.rounds < 3:
        print(f"note: {args.rounds} round(s); the comparison asks for the median of at least 3", file=sys.stderr)
    configs = [known[name] for name in args.configs] if args.configs else list(known.values())

    torch.manual_seed(0)
    kwargs = dict(in_channels=3, image_size=IMAGE_SIZE, widths=tuple(args.widths))
    template = SimCLR(**kwargs)
    images, what = benchmark_images(args.steps * args.batch_size)
    views = template.views
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {args.threads} thread(s) per process; "
          f"lightly {lightly.__version__}; sslcourse {sslcourse.__version__}")
    print(f"network: ConvEncoder{tuple(args.widths)} + MLPHead, {sum(p.numel() for p in template.parameters()):,} parameters, "
          f"the same initial weights on both sides; AdamW lr 1e-3; NT-Xent tau {template.temperature}")
    print(f"data: {len(images)} images {IMAGE_SIZE}x{IMAGE_SIZE} RGB, {what}; batch {args.batch_size}; "
          f"{args.steps} timed steps a run, after one warm-up step; {args.rounds} rounds")
    print(f"views: crop scale {views.crop_scale}, flip p {views.flip_p}, jitter {views.jitter} p {views.jitter_p}, "
          f"grayscale p {views.grayscale_p}, blur p {views.blur_p}")
    print(f"what differs: {DIFFERENCES}", flush=True)

    results: dict[str, list[dict]] = {c.name: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / "shared.pt"
        torch.save({"kwargs": kwargs, "weights": template.state_dict(), "images": images}, shared)
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[: r % len(configs)]
            line = []
            for config in order:
                result = measure_in_child(config, shared, args)
                results[config.name].append(result)
                line.append(f"{config.name} {result['images_per_second']:.0f} (load {result['load']:.1f})")
            print(f"round {r + 1}, img/s: " + "; ".join(line), flush=True)
    print_table(configs, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
