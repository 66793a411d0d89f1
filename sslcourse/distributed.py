"""Training on several processes with ``torchrun``: the few collective operations the course needs.

Launched as ``torchrun --nproc-per-node N script.py`` (or ``sslcourse pretrain
NAME --nproc N``), every process runs the same code; :func:`sslcourse.fit`
notices the launcher's environment and

- joins the process group (NCCL on GPUs, gloo on CPUs) and takes GPU
  ``LOCAL_RANK``;
- gives each process its own shard of every batch: all processes draw the
  same shuffled global batch of ``batch_size`` images from the same seed,
  and process ``r`` of ``N`` keeps its ``r``-th slice of it, so ``N``
  processes see exactly the images one process would;
- wraps the method in ``DistributedDataParallel``, which averages the
  gradients across processes during the backward pass;
- lets only process 0 write checkpoints and show a progress bar.

Methods whose loss couples the images of a batch call :func:`gather` (SimCLR's
negatives come from every process), :func:`all_reduce_mean` (DINO's center)
or :func:`shuffle_across` (MoCo's shuffled batch norm). Outside ``torchrun``
all of them are the identity, so a method's code reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["World", "world", "start", "gather", "all_reduce_mean", "any_rank", "shuffle_across", "shard", "wrap"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size`` (0 of 1 alone)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The current process group's rank and size, or ``World(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def start(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (if any, and not joined yet);
    return the world and this process's device (``cuda:LOCAL_RANK`` on GPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    here = world()
    if here.size > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return here, device


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` (B, ...) concatenated in rank order, (size * B, ...), with gradients:
    each process's part receives the gradients of the loss computed from it on every process."""
    if world().size == 1:
        return x
    return _GatherWithGradient.apply(x)


class _GatherWithGradient(torch.autograd.Function):
    """all_gather forwards; backwards, each process's slice gets the sum over processes of its gradient
    (every process computed a loss from it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world().size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(world().size)[world().rank]


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over processes (no gradient); ``x`` itself when alone."""
    if world().size == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world().size


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process: every process takes the same decision (e.g. to stop)."""
    if world().size == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@torch.no_grad()
def shuffle_across(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's shuffled batch norm: the global batch (every process's ``x``, B images each) in a random
    order drawn by process 0; returns this process's B images of it and the order, (size * B,)
    (``gather(...)[order.argsort()]`` puts per-image results back in the global batch's order)."""
    here = world()
    full = gather(x)
    order = torch.randperm(len(full), device=x.device)
    if here.size > 1:
        dist.broadcast(order, src=0)
    return full[order].chunk(here.size)[here.rank], order


def shard(batch: tuple[torch.Tensor, torch.Tensor], here: World) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's slice of a global batch: rows ``[rank * B / size, (rank + 1) * B / size)``."""
    if here.size == 1:
        return batch
    images, labels = batch
    if len(images) % here.size:
        raise ValueError(f"a batch of {len(images)} images does not split evenly over {here.size} processes; "
                         f"choose a batch size that is a multiple of {here.size}")
    return images.chunk(here.size)[here.rank], labels.chunk(here.size)[here.rank]


class _TrainingStep(nn.Module):
    """Makes ``training_step`` the forward pass, which DistributedDataParallel hooks."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch):
        return self.method.training_step(batch)


def wrap(method: nn.Module, device: torch.device):
    """The method's training step under DistributedDataParallel (gradients averaged across processes)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda" and not getattr(method, "shuffles_batch_norm", False):
        # batch statistics over the global batch, as one process would compute them (SimCLR's "global BN");
        # the layers keep their parameters and buffers. gloo on CPUs has no synchronised batch norm.
        nn.SyncBatchNorm.convert_sync_batchnorm(method)
    ddp = DistributedDataParallel(
        _TrainingStep(method),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,  # some methods leave parts unused in a step (e.g. a discriminator's turn)
    )
    return ddp
