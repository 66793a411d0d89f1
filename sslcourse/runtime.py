"""Where and how code runs: device, precision, seeding.

Every other module asks this one instead of deciding for itself, so that the
same notebook trains on a laptop CPU, a Colab T4 or an H100 without edits.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "get_device",
    "seed_everything",
    "Precision",
    "choose_precision",
    "describe_runtime",
    "is_cuda",
]


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to train on: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` overrides the choice ("cpu", "cuda", "cuda:1", ...). The
    environment variable ``SSLCOURSE_DEVICE`` does the same without code
    changes (handy to force the CPU path on a GPU machine).
    """
    prefer = prefer if prefer is not None else os.environ.get("SSLCOURSE_DEVICE")
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for, but torch sees no CUDA GPU")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every GPU); return a CPU generator seeded alike."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: ``dtype`` for autocast (None: plain fp32) and
    whether gradients need a scaler (fp16 only)."""

    dtype: torch.dtype | None
    use_grad_scaler: bool

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def choose_precision(device: str | torch.device, requested: str = "auto") -> Precision:
    """Mixed precision where it pays.

    ``auto``: bf16 on GPUs that support it (Ampere and newer), fp16 with a
    gradient scaler on older GPUs (the T4 of free Colab), fp32 on CPU and MPS.
    ``requested`` may also be "fp32", "bf16" or "fp16".
    """
    device = torch.device(device)
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {requested!r}")
    if requested == "fp32" or (requested == "auto" and device.type != "cuda"):
        return Precision(None, False)
    if requested == "auto":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision(torch.bfloat16, False)
        return Precision(torch.float16, True)
    if requested == "bf16":
        return Precision(torch.bfloat16, False)
    # fp16 with a gradient scaler: what a T4 needs. "auto" picks it only there; asked for by name it also
    # runs on a CPU (slowly), which is how the tests exercise the scaler's path without a GPU
    return Precision(torch.float16, True)


def describe_runtime(device: str | torch.device | None = None) -> str:
    """One line for the top of a notebook: versions, device, precision, cores."""
    device = get_device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        where = f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    else:
        where = device.type
    precision = choose_precision(device).name
    threads = torch.get_num_threads()
    return (
        f"sslcourse on {where}, {precision}; torch {torch.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPU cores, "
        f"{threads} torch thread{'s' if threads != 1 else ''}"
    )


#: Steps that every ``fit`` takes at most in smoke mode.
SMOKE_STEPS = 30


def smoke_mode() -> bool:
    """Whether the environment asks for smoke mode (``SSLCOURSE_SMOKE=gpu``): notebooks take their GPU
    settings (:func:`sslcourse.notebook.on_gpu`) and every :func:`sslcourse.fit` stops after at most
    :data:`SMOKE_STEPS` steps, so that CI executes every line a Colab user will, on a CPU, quickly.
    Its numbers mean nothing; only that everything runs."""
    return os.environ.get("SSLCOURSE_SMOKE", "").lower() == "gpu"


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory a training step frees, for the next step to reuse.

    By default glibc serves each large block (a step's activations: tens of
    megabytes) from a fresh ``mmap`` and unmaps it when freed, so every step
    touches new pages and pays a page fault for each 4 kB of them: measured by
    ``benchmarks/vs_lightly.py`` on a 2-core virtual machine, about half of a
    SimCLR step's CPU time. With ``M_MMAP_MAX = 0`` and a 1 GiB trim threshold,
    freed blocks are reused. The cost: the process keeps its peak memory. The
    numbers computed do not change. Process-wide; the command line turns it on
    for its one run. Returns False where it cannot be set (not glibc).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))
