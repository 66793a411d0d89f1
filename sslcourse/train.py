"""``fit``: the one training loop for every method of the course.

The same call trains on a laptop CPU in a minute and on a GPU at full speed:
the data sits on the device as uint8 and is shuffled there, augmentations run
batched on the device inside each method's ``training_step``, the precision
follows the hardware (bf16, fp16 with a gradient scaler, or fp32), conv nets
use ``channels_last`` on CUDA, and the optimizer is fused. Training stops
after a number of epochs, of steps, or of seconds; it checkpoints so that a
later call resumes exactly where a dead Colab session stopped; and a loss
that turns NaN or infinite stops it with an error instead of training on.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import DeviceLoader, ImageDataset
from .runtime import choose_precision, get_device

__all__ = ["fit", "History", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped before applying that step."""


@dataclass
class History:
    """What happened during training, one entry per optimizer step.

    ``step``, ``loss``, ``lr`` and ``time`` (seconds of training since the
    first step, summed over resumed calls) are lists of equal length;
    ``metrics`` holds every other value the method logged.
    """

    method: str = ""
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
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


def _make_optimizer(params, name: str, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True, **fast)
    raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {name!r}")


def _learning_rate(step: int, base: float, schedule: str, warmup: int, total: int | None) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if total is None:
        raise ValueError("schedule='cosine' needs epochs or steps, to know where the schedule ends")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
) -> History:
    """Train ``method`` on ``data``; return its :class:`History`.

    Args:
        method: an :class:`~sslcourse.methods.SSLMethod` (``training_step(batch) -> {"loss": ...}``).
        data: an ImageDataset, uint8 images (N, C, H, W), or a DeviceLoader.
        epochs, steps, budget: stop after this many epochs, this many optimizer
            steps (both counted from the very first call when resuming), or
            this many seconds of this call; whichever comes first. At least one
            is required.
        batch_size: images per step (ignored when ``data`` is a DeviceLoader).
        lr, weight_decay, optimizer ("adamw", "adam", "sgd"), schedule
            ("constant" or "cosine"), warmup_steps: the optimisation.
        device: default :func:`sslcourse.get_device`.
        precision: "auto" (bf16 / fp16 / fp32 by hardware), "fp32", "bf16", "fp16".
        channels_last: "auto" uses it for conv nets on CUDA.
        compile: wrap the training step in ``torch.compile``.
        checkpoint: a file. If it exists, training resumes from it (model,
            optimizer, scaler, data order, random state, history); it is
            written every ``checkpoint_every`` steps (default: every epoch),
            at the end, and when the run is interrupted.
        seed: seeds the data order and torch's random state (augmentations).
        progress: show a progress bar with the loss and images per second.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message names
            the method and the step. That step is not applied.
    """
    if epochs is None and steps is None and budget is None:
        raise ValueError("fit needs a stopping rule: pass epochs=, steps= or budget= (seconds)")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
    if not callable(getattr(method, "training_step", None)):
        raise TypeError(f"fit needs a method with training_step(batch); got {type(method).__name__}")

    device = get_device(device)
    prec = choose_precision(device, precision)
    method_name = type(method).__name__
    loader = _make_loader(data, batch_size, device, seed)
    batches_per_epoch = len(loader)
    max_steps = steps
    if epochs is not None:
        max_steps = min(max_steps or epochs * batches_per_epoch, epochs * batches_per_epoch)
    use_channels_last = (device.type == "cuda" and _has_conv(method)) if channels_last == "auto" else bool(channels_last)

    method.to(device)
    if use_channels_last:
        method.to(memory_format=torch.channels_last)
    method.train()
    opt = _make_optimizer([p for p in method.parameters() if p.requires_grad], optimizer, lr, weight_decay, device)
    scaler = torch.amp.GradScaler(device.type, enabled=prec.use_grad_scaler)
    step_fn = torch.compile(method.training_step) if compile else method.training_step

    history = History(method=method_name, device=str(device), precision=prec.name)
    step = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["method"] != method_name:
            raise ValueError(f"checkpoint {ckpt_path} holds a {state['method']}, not a {method_name}")
        method.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        history = History(**state["history"])
        # map_location moved every tensor to the device; RNG states must be CPU byte tensors
        torch.set_rng_state(state["rng_cpu"].cpu())
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
    else:
        torch.manual_seed(seed)
    checkpoint_every = checkpoint_every or batches_per_epoch

    def save() -> None:
        if ckpt_path is None:
            return
        _save_atomic(
            {
                "method": method_name,
                "model": method.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "history": history.to_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
            ckpt_path,
        )

    time_offset = history.seconds
    start = time.perf_counter()
    bar = tqdm(total=max_steps, initial=step, disable=not progress, desc=method_name, unit="step", dynamic_ncols=True)
    history.stopped_by = ""
    try:
        while True:
            if max_steps is not None and step >= max_steps:
                history.stopped_by = "epochs" if epochs is not None and step >= epochs * batches_per_epoch else "steps"
                break
            if budget is not None and time.perf_counter() - start >= budget:
                history.stopped_by = "budget"
                break
            epoch, position = divmod(step, batches_per_epoch)
            for images, labels in loader.batches(epoch, start=position):
                if use_channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                current_lr = _learning_rate(step, lr, schedule, warmup_steps, max_steps)
                for group in opt.param_groups:
                    group["lr"] = current_lr
                with torch.autocast(device.type, dtype=prec.dtype, enabled=prec.dtype is not None):
                    out = step_fn((images, labels))
                if not isinstance(out, dict) or "loss" not in out:
                    raise TypeError(f"{method_name}.training_step must return a dict with a 'loss'; got {type(out).__name__}")
                loss = out["loss"]
                loss_value = float(loss.detach().float())
                if not math.isfinite(loss_value):
                    raise NonFiniteLossError(
                        f"{method_name}: the loss became {loss_value} at step {step} (epoch {epoch}); the step was not "
                        "applied. Check the inputs for NaN, lower the learning rate, or try precision='fp32'."
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if hasattr(method, "after_step"):
                    method.after_step()
                step += 1
                elapsed = time_offset + time.perf_counter() - start
                history.step.append(step)
                history.loss.append(loss_value)
                history.lr.append(current_lr)
                history.time.append(elapsed)
                history.images_seen += images.shape[0]
                for key, value in out.items():
                    if key != "loss":
                        history.metrics.setdefault(key, []).append(float(value.detach().float()) if torch.is_tensor(value) else float(value))
                bar.update(1)
                if step % 10 == 0 or step == 1:
                    bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{history.images_per_second:.0f}", refresh=False)
                if step % checkpoint_every == 0:
                    save()
                if (max_steps is not None and step >= max_steps) or (budget is not None and time.perf_counter() - start >= budget):
                    break
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    return history
