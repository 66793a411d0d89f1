"""``fit``: the one training loop for every method of the course.

The same call trains on a laptop CPU in a minute and on a GPU at full speed:
the data sits on the device as uint8 and is shuffled there, augmentations run
batched on the device inside each method's ``training_step``, the precision
follows the hardware (bf16, fp16 with a gradient scaler, or fp32), conv nets
use ``channels_last`` on CUDA, and the optimizer is fused. On a GPU the loop
never waits for the host: losses and metrics stay on the device and are read
every ``log_every`` steps. Training stops after a number of epochs, of steps,
or of seconds; it checkpoints so that a later call resumes exactly where a
dead Colab session or a Ctrl-C stopped; and a non-finite loss never reaches
the weights: training stops with :class:`NonFiniteLossError`.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import Checkpoint, CheckpointError, method_config
from .data import DeviceLoader, ImageDataset
from .runtime import SMOKE_STEPS, Precision, choose_precision, get_device, smoke_mode

__all__ = ["fit", "History", "NonFiniteLossError", "CheckpointError"]


class NonFiniteLossError(FloatingPointError):
    """The loss (or a gradient) became NaN or infinite; training stopped and that update was not applied."""


@dataclass
class History:
    """What happened during training, one entry per applied optimizer step.

    ``step``, ``loss``, ``lr`` and ``time`` (seconds of training since the
    first step, summed over resumed calls) are lists of equal length;
    ``metrics`` holds every other scalar the method logged. ``skipped`` lists,
    for each step the fp16 gradient scaler skipped (an overflow), how many
    steps had been applied before it: such a step changes nothing.
    """

    method: str = ""
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    images_seen: int = 0
    device: str = ""
    precision: str = ""
    stopped_by: str = ""

    def __len__(self) -> int:
        return len(self.step)

    @property
    def seconds(self) -> float:
        return self.time[-1] if self.time else 0.0

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    def plot(self, ax=None, smooth: int = 20):
        """Loss against step (a running mean over ``smooth`` steps on top). Returns the axes."""
        from .plots import loss_curve

        return loss_curve(self, ax=ax, smooth=smooth)

    def __repr__(self) -> str:
        last = f"{self.loss[-1]:.4g}" if self.loss else "-"
        return (
            f"History({self.method}: {len(self)} steps, {self.seconds:.1f} s, last loss {last}, "
            f"{self.images_per_second:.0f} img/s on {self.device} {self.precision})"
        )


# ------------------------------------------------------------------ the loop


def fit(
    method: nn.Module,
    data: ImageDataset | DeviceLoader | torch.Tensor,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    budget: float | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adamw",
    schedule: str = "constant",
    warmup_steps: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    channels_last: bool | str = "auto",
    compile: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
) -> History:
    """Train ``method`` on ``data``; return its :class:`History`.

    Args:
        method: an :class:`~sslcourse.methods.SSLMethod` (``training_step(batch) -> {"loss": ...}``;
            optional hooks ``after_step(out)`` after every applied step and
            ``on_epoch_start(epoch)`` before every epoch).
        data: an ImageDataset, uint8 images (N, C, H, W), or a DeviceLoader.
        epochs, steps, budget: stop after this many epochs, this many optimizer
            steps (both counted from the very first call when resuming), or
            this many seconds of this call; whichever comes first. At least one
            is required. Steps and epochs give the same result on any machine;
            a budget depends on how fast (and how busy) the machine is.
        batch_size: images per step (ignored when ``data`` is a DeviceLoader).
        lr, weight_decay, optimizer ("adamw", "adam", "sgd"), schedule
            ("constant" or "cosine"), warmup_steps: the optimisation.
        device: default :func:`sslcourse.get_device`.
        precision: "auto" (bf16 / fp16 / fp32 by hardware), "fp32", "bf16", "fp16".
        channels_last: "auto" uses it for conv nets on CUDA.
        compile: wrap the training step in ``torch.compile``.
        checkpoint: a file. If it exists, training resumes from it (model,
            optimizer, scaler, data position, random state, history), provided
            it was written by the same method with the same settings and the
            same optimisation; it is written every ``checkpoint_every`` steps
            (default: every epoch), at the end, and when Ctrl-C stops the run
            (at the end of the step under way, so resuming gives exactly what
            an uninterrupted run gives; a second Ctrl-C stops at once, keeping
            the last checkpoint written).
        seed: seeds the data order and torch's random state (augmentations).
        progress: show a progress bar with the loss and images per second.
        log_every: read losses and metrics from the device every this many steps.

    Raises:
        NonFiniteLossError: the loss or a gradient became NaN or infinite; the
            message names the method and the step. That update was not applied.
        CheckpointError: the checkpoint path is unusable, its file unreadable,
            or it holds another method or run. Raised before any training.
    """
    stop = StopRule(epochs, steps, budget)
    if smoke_mode():  # SSLCOURSE_SMOKE=gpu: CI runs the notebooks' GPU settings on a CPU, a handful of steps each
        stop.steps = min(stop.steps or SMOKE_STEPS, SMOKE_STEPS)
    _check_arguments(method, log_every, checkpoint_every)
    here, device = distributed.start(get_device(device))  # under torchrun: this process's rank and device
    prec = choose_precision(device, precision)
    loader = _make_loader(data, batch_size, device, seed)
    use_channels_last = _place(method, device, channels_last)
    opt = make_optimizer([p for p in method.parameters() if p.requires_grad], optimizer, lr, weight_decay, device)
    guard = UpdateGuard(device, prec)
    total = stop.total_steps(len(loader))
    run = dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule, warmup_steps=warmup_steps,
               batch_size=loader.batch_size, seed=seed, **({"total_steps": total} if schedule == "cosine" else {}))
    ckpt = Checkpoint(checkpoint, type(method).__name__, method_config(method), run) if checkpoint is not None else None
    state = TrainState.resume(ckpt, method, opt, guard, device) or TrainState.start(method, device, prec, seed + 7919 * here.rank)
    lr_at = lambda step: learning_rate(step, lr, schedule, warmup_steps, total)  # noqa: E731
    step_fn = distributed.wrap(method, device) if here.size > 1 else method.training_step
    step_fn = torch.compile(step_fn) if compile else step_fn
    after_step, epoch_hook = _hooks(method)
    checkpoint_every = checkpoint_every or len(loader)

    method.train()
    stop.start(state)
    bar = _progress_bar(stop, state, progress and here.is_main, type(method).__name__)
    record = Recorder(state, type(method).__name__, eager=guard.eager, bar=bar, processes=here.size)
    with interrupts_between_steps(here, device) as interrupted, bar:
        for epoch, position, batch in batches_from(loader, state.batches):
            if stop.reached(state, here, device):
                break
            if position == 0:
                forget_optimizer_state(opt, epoch_hook(epoch))
            set_learning_rate(opt, lr_at(state.step))
            images, labels = distributed.shard(batch, here)
            if use_channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=prec.dtype, enabled=prec.dtype is not None):
                out = step_fn((images, labels))
            loss = _loss_of(out, method)
            applied = guard.backward_and_step(loss, opt)
            state.batches += 1
            if applied is False:  # known at once on CPU and with fp16; on a GPU otherwise read with the losses
                guard.explain_skip(loss, method, state)
                continue
            after_step(out)
            record.add(out, loss, applied, opt.param_groups[0]["lr"], images.shape[0])
            if state.step % log_every == 0:
                record.flush()
            stopping = interrupted()
            if ckpt is not None and (state.step % checkpoint_every == 0 or stopping):
                record.flush()
                state.save(ckpt, method, opt, guard, device)
            if stopping:
                raise KeyboardInterrupt(f"stopped by Ctrl-C after step {state.step}" + (f"; {ckpt.path} resumes it" if ckpt else ""))
        record.flush()
    if ckpt is not None:
        state.save(ckpt, method, opt, guard, device)
    return state.history


# ------------------------------------------------------------------ its parts


class StopRule:
    """When training ends: after ``epochs`` passes over the data, ``steps`` applied
    optimizer steps (both counted over resumed calls) or ``budget`` seconds of this call."""

    def __init__(self, epochs: int | None, steps: int | None, budget: float | None) -> None:
        if epochs is None and steps is None and budget is None:
            raise ValueError("fit needs a stopping rule: pass epochs=, steps= or budget= (seconds)")
        for name, value in (("epochs", epochs), ("steps", steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget < math.inf):
            raise ValueError(f"budget must be a positive, finite number of seconds, got {budget!r}")
        self.epochs, self.steps, self.budget = epochs, steps, budget
        self.max_batches: int | None = None
        self.started = time.perf_counter()

    def total_steps(self, batches_per_epoch: int) -> int | None:
        """Where a schedule ends: the step count at which training stops, if known in advance."""
        self.max_batches = self.epochs * batches_per_epoch if self.epochs is not None else None
        known = [n for n in (self.steps, self.max_batches) if n is not None]
        return min(known) if known else None

    def start(self, state: "TrainState") -> None:
        self.started = time.perf_counter()
        state.history.stopped_by = ""

    def reached(self, state: "TrainState", here: distributed.World = distributed.World(), device=None) -> bool:
        """Whether to stop before the next batch; records why in ``state.history.stopped_by``.
        Under torchrun every process takes the decision of the first whose time is up."""
        if self.steps is not None and state.step >= self.steps:
            state.history.stopped_by = "steps"
        elif self.max_batches is not None and state.batches >= self.max_batches:
            state.history.stopped_by = "epochs"
        elif self.budget is not None and distributed.any_rank(time.perf_counter() - self.started >= self.budget, device):
            state.history.stopped_by = "budget"
        return bool(state.history.stopped_by)


@dataclass
class TrainState:
    """Where a run stands: applied optimizer steps, batches drawn (the data position:
    a skipped step draws a batch but applies nothing) and the history so far."""

    history: History
    step: int = 0
    batches: int = 0
    seconds_before: float = 0.0  # training time of earlier calls, when resuming

    @classmethod
    def start(cls, method: nn.Module, device: torch.device, prec: Precision, seed: int) -> "TrainState":
        torch.manual_seed(seed)
        return cls(History(method=type(method).__name__, device=str(device), precision=prec.name))

    @classmethod
    def resume(cls, ckpt: Checkpoint | None, method, opt, guard, device) -> "TrainState | None":
        saved = ckpt.load(device) if ckpt is not None else None
        if saved is None:
            return None
        method.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        guard.scaler.load_state_dict(saved["scaler"])
        rank = distributed.world().rank  # each process has its own random state (its own augmentations)
        torch.set_rng_state(saved["rng_cpu"][rank].cpu())  # map_location moved it; RNG states are CPU byte tensors
        if device.type == "cuda" and saved.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(saved["rng_cuda"][rank].cpu(), device)
        history = History(**saved["history"])
        return cls(history, step=saved["step"], batches=saved["batches"], seconds_before=history.seconds)

    def snapshot(self, method: nn.Module, opt, guard: "UpdateGuard", device: torch.device) -> dict:
        """Everything a later call needs to continue exactly from here."""
        return {
            "model": method.state_dict(),
            "optimizer": opt.state_dict(),
            "scaler": guard.scaler.state_dict(),
            "step": self.step,
            "batches": self.batches,
            "history": self.history.to_dict(),
            "rng_cpu": _every_process(torch.get_rng_state()),
            "rng_cuda": _every_process(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None,
        }

    def save(self, ckpt: Checkpoint, method: nn.Module, opt, guard: "UpdateGuard", device: torch.device) -> None:
        """Write the checkpoint (process 0 only, under torchrun, once every process's random state is in)."""
        snapshot = self.snapshot(method, opt, guard, device)
        if distributed.world().is_main:
            ckpt.save(snapshot)
        if distributed.world().size > 1:
            torch.distributed.barrier()


def _every_process(rng_state: torch.Tensor) -> list[torch.Tensor]:
    """This random state from every process, in rank order (a list of one outside torchrun)."""
    if distributed.world().size == 1:
        return [rng_state]
    states: list = [None] * distributed.world().size
    torch.distributed.all_gather_object(states, rng_state)
    return states


class UpdateGuard:
    """The backward pass and optimizer step, which never apply a non-finite update.

    A gradient scaler does the work. With fp16 it scales the loss dynamically,
    as the T4 of free Colab needs, and skips a step whose gradients overflowed
    (that step is then not applied anywhere: no hook, no schedule, no history
    entry; :attr:`History.skipped` counts it). Otherwise its scale stays 1 and
    it only checks, on the device, that every gradient is finite before the
    optimizer steps; a non-finite loss or gradient stops training.

    ``eager``: whether the step's outcome is read at once. On the CPU that
    costs nothing, and with fp16 the skipped step's hooks depend on it. On a
    GPU in bf16 or fp32 it is read later with the losses (:class:`Recorder`),
    so that the GPU never waits for Python: there the scaler still skips a
    non-finite update on the device, the hooks of the steps until the next
    read have run, and training stops at that read, before any checkpoint
    is written past the bad step.
    """

    def __init__(self, device: torch.device, prec: Precision) -> None:
        self.dynamic = prec.use_grad_scaler
        self.scaler = torch.amp.GradScaler(
            device.type, init_scale=2.0**16 if self.dynamic else 1.0, growth_interval=2000 if self.dynamic else 2**31 - 1
        )
        self.eager = device.type != "cuda" or self.dynamic

    def backward_and_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> bool | torch.Tensor:
        """Backward and optimizer step; whether the update was applied (a bool, or a device bool tensor)."""
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        scale = self.scaler._get_scale_async().clone()  # the scale shrinks exactly when the step is skipped
        self.scaler.step(opt)
        self.scaler.update()
        applied = self.scaler._get_scale_async() >= scale
        return bool(applied) if self.eager else applied

    def explain_skip(self, loss: torch.Tensor, method: nn.Module, state: TrainState) -> None:
        """A skipped step: recorded when fp16 overflowed; otherwise training stops with :class:`NonFiniteLossError`."""
        value = float(loss.detach().float())
        if self.dynamic and math.isfinite(value):
            state.history.skipped.append(state.step)
            return
        raise NonFiniteLossError(_non_finite_message(type(method).__name__, state.step, value))


def _non_finite_message(method_name: str, step: int, loss: float) -> str:
    what = f"the loss became {loss}" if not math.isfinite(loss) else "the gradients became non-finite"
    return (
        f"{method_name}: {what} at step {step}; that update was not applied. "
        "Check the inputs for NaN, lower the learning rate, or try precision='fp32'."
    )


class Recorder:
    """Collects each step's loss, metrics and outcome on the device and reads them into
    the history (and the progress bar) when asked, at once when ``eager`` (where reading is free)."""

    def __init__(self, state: TrainState, method_name: str, eager: bool, bar=None, processes: int = 1) -> None:
        self.state, self.method_name, self.eager, self.bar, self.processes = state, method_name, eager, bar, processes
        self.pending: list[tuple] = []
        self.started = time.perf_counter()

    def add(self, out: dict, loss: torch.Tensor, applied, lr: float, images: int) -> None:
        self.state.step += 1
        metrics = {k: v.detach() if torch.is_tensor(v) else v for k, v in out.items() if k != "loss" and _is_scalar(v)}
        self.pending.append((self.state.step, loss.detach(), applied, lr, images * self.processes, metrics, self._now()))
        if self.eager:
            self.flush()

    def _now(self) -> float:
        return self.state.seconds_before + time.perf_counter() - self.started

    def flush(self) -> None:
        if not self.pending:
            return
        steps, losses, applied, lrs, images, metrics, times = zip(*self.pending)
        self.pending = []
        # one read from the device for all of them; under torchrun, the mean over processes (the global batch's loss)
        loss_values = distributed.all_reduce_mean(torch.stack([v.float() for v in losses])).tolist()
        if not all(a is True for a in applied):
            ok = torch.stack([torch.as_tensor(a, device=losses[0].device) for a in applied]).tolist()
            bad = ok.index(False) if False in ok else None
            if bad is not None:
                raise NonFiniteLossError(_non_finite_message(self.method_name, steps[bad] - 1, loss_values[bad]))
        history = self.state.history
        history.step.extend(steps)
        history.loss.extend(loss_values)
        history.lr.extend(lrs)
        history.time.extend(times)
        history.images_seen += sum(images)
        for key in {k for m in metrics for k in m}:
            values = [m.get(key, float("nan")) for m in metrics]
            history.metrics.setdefault(key, []).extend(
                torch.stack([torch.as_tensor(v, dtype=torch.float32, device=losses[0].device) for v in values]).tolist()
            )
        if self.bar is not None:
            self.bar.update(history.step[-1] - self.bar.n)
            self.bar.set_postfix(loss=f"{loss_values[-1]:.4f}", img_s=f"{history.images_per_second:.0f}", refresh=False)


def _is_scalar(value) -> bool:
    return (torch.is_tensor(value) and value.dim() == 0) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def batches_from(loader: DeviceLoader, batches_done: int) -> Iterator[tuple[int, int, tuple[torch.Tensor, torch.Tensor]]]:
    """Every batch after the first ``batches_done``, epoch after epoch: ``(epoch, position in it, (images, labels))``."""
    epoch, position = divmod(batches_done, len(loader))
    while True:
        for offset, batch in enumerate(loader.batches(epoch, start=position)):
            yield epoch, position + offset, batch
        epoch, position = epoch + 1, 0


def learning_rate(step: int, base: float, schedule: str, warmup: int, total: int | None) -> float:
    """The learning rate at ``step``: a linear warm-up over ``warmup`` steps, then constant or a cosine to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if total is None:
        raise ValueError("schedule='cosine' needs epochs or steps, to know where the schedule ends")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(opt: torch.optim.Optimizer, value: float) -> None:
    for group in opt.param_groups:
        group["lr"] = value


def forget_optimizer_state(opt: torch.optim.Optimizer, params) -> None:
    """Drop the optimizer's state (moments, step counts) of re-initialised parameters, e.g. DeepCluster's new head."""
    for p in params or ():
        opt.state.pop(p, None)


def make_optimizer(params, name: str, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD (Nesterov momentum 0.9): fused on CUDA, foreach elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True, **fast)
    raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {name!r}")


@contextmanager
def interrupts_between_steps(here: distributed.World = distributed.World(), device=None) -> Iterator[Callable[[], bool]]:
    """Within the block, a first Ctrl-C (SIGINT) only raises a flag that the loop reads
    between steps, so a run always stops at a step boundary; a second one interrupts at once.
    Yields the function that reads the flag (under torchrun: whether any process's is up).
    Outside the main thread, Ctrl-C is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: distributed.any_rank(False, device) if here.size > 1 else False
        return
    pressed = []

    def on_sigint(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        tqdm.write("Ctrl-C: stopping after this step (press again to stop at once)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: distributed.any_rank(bool(pressed), device)
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _progress_bar(stop: StopRule, state: TrainState, progress: bool, name: str):
    return tqdm(total=stop.steps or stop.max_batches, initial=state.step, disable=not progress, desc=name, unit="step", dynamic_ncols=True)


def _check_arguments(method: nn.Module, log_every: int, checkpoint_every: int | None) -> None:
    if not callable(getattr(method, "training_step", None)):
        raise TypeError(f"fit needs a method with training_step(batch); got {type(method).__name__}")
    for name, value in (("log_every", log_every), ("checkpoint_every", checkpoint_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _loss_of(out, method: nn.Module) -> torch.Tensor:
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{type(method).__name__}.training_step must return a dict with a 'loss'; got {type(out).__name__}")
    return out["loss"]


def _hooks(method: nn.Module) -> tuple[Callable[[dict], None], Callable[[int], list]]:
    """The method's ``after_step(out)`` (also accepted without the argument, as the labs write it) and ``on_epoch_start(epoch)``."""
    after = getattr(method, "after_step", None)
    if after is None:
        after_step = lambda out: None  # noqa: E731
    else:
        try:
            takes_out = bool(inspect.signature(after).parameters)
        except (TypeError, ValueError):
            takes_out = True
        after_step = after if takes_out else (lambda out: after())
    epoch_hook = getattr(method, "on_epoch_start", None) or (lambda epoch: [])
    return after_step, epoch_hook


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def _place(method: nn.Module, device: torch.device, channels_last: bool | str) -> bool:
    """Move the method to ``device`` (channels_last for conv nets on CUDA by default); whether channels_last is used."""
    use = (device.type == "cuda" and _has_conv(method)) if channels_last == "auto" else bool(channels_last)
    method.to(device)
    if use:
        method.to(memory_format=torch.channels_last)
    return use


def _make_loader(data, batch_size: int, device: torch.device, seed: int) -> DeviceLoader:
    if isinstance(data, DeviceLoader):
        if data.device != device:
            raise ValueError(f"the DeviceLoader lives on {data.device} but training runs on {device}")
        return data
    if isinstance(data, (ImageDataset, torch.Tensor)):
        if isinstance(data, ImageDataset) and len(data) < batch_size:
            batch_size = len(data)
        return DeviceLoader(data, batch_size, device=device, seed=seed)
    raise TypeError(f"fit(data=...) takes an ImageDataset, a uint8 tensor (N, C, H, W) or a DeviceLoader; got {type(data).__name__}")
