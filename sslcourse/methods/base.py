"""What every method is: an nn.Module with an encoder, a training step and a few hooks.

This module is the skeleton the method families share:

- :class:`SSLMethod`: the hooks :func:`sslcourse.fit` calls, the common
  constructor setup (:meth:`~SSLMethod.init_encoder`), momentum targets
  (:meth:`~SSLMethod.momentum_pairs`, :meth:`~SSLMethod.update_momentum`) and
  the recorded constructor arguments (:attr:`~SSLMethod.config`);
- helpers for the constructors and training steps of every family:
  :func:`feature_dim`, :func:`encoder_channels`, :func:`frozen_copy`,
  :func:`views_or_default`, :func:`accuracy`, and :func:`check_number` for
  arguments that would otherwise fail only later, in training.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from ..augment import ContrastiveViews, _check_batch
from ..nets import ConvEncoder, momentum_update
from .config import recording_config

__all__ = [
    "SSLMethod",
    "feature_dim",
    "encoder_channels",
    "frozen_copy",
    "views_or_default",
    "accuracy",
    "check_number",
]


# ------------------------------------------------------------------ helpers
def feature_dim(encoder: nn.Module, in_channels: int, size: int | tuple[int, int], what: str = "images") -> int:
    """The flattened output size of ``encoder`` on one (1, in_channels, H, W) input, ``size`` = H = W or (H, W).

    Runs the encoder once on zeros, in eval mode and without gradients (no
    random numbers drawn, no batch-norm statistics touched). ``what`` names the
    inputs in the error raised when the encoder cannot take that size.
    """
    h, w = (size, size) if isinstance(size, int) else size
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = encoder.training
    try:
        with torch.no_grad():
            return encoder.eval()(torch.zeros(1, in_channels, h, w, device=device)).flatten(1).shape[1]
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"the encoder cannot encode {what} of {h} x {w} pixels: {error}") from error
    finally:
        encoder.train(was_training)


def encoder_channels(encoder: nn.Module | None, in_channels: int) -> int:
    """The image channels ``encoder`` reads: its own ``in_channels`` if it declares one, else ``in_channels``."""
    return getattr(encoder, "in_channels", in_channels) if encoder is not None else in_channels


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that never receives a gradient: the start of a momentum target
    (MoCo's key encoder, BYOL's target, DINO's teacher)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def views_or_default(views: ContrastiveViews | None, image_size: int) -> ContrastiveViews:
    """``views``, or the default two-view augmentation ``ContrastiveViews(image_size)``."""
    return views if views is not None else ContrastiveViews(image_size)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The fraction of rows whose largest logit is at their label, no gradient: (B, K), (B,) -> scalar tensor."""
    return (logits.detach().argmax(1) == labels).float().mean()


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    allow_none: bool = False,
) -> Any:
    """``value`` if it is a finite number (an int if ``integer``) within the bounds (or None if ``allow_none``).

    Otherwise a ValueError that names the argument, what is accepted and what
    came, e.g. ``"momentum must be a number in [0, 1], got 1.5"``. Booleans are
    not numbers here.
    """
    if value is None and allow_none:
        return value
    is_number = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = is_number and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if ok:
        return value
    if low is not None and high is not None:
        where = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        where = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        where = f" {'<' if high_open else '<='} {high}"
    else:
        where = ""
    expected = ("an int" if integer else "a number") + where + (" or None" if allow_none else "")
    raise ValueError(f"{name} must be {expected}, got {value!r}")


# ------------------------------------------------------------------ the base class
class SSLMethod(nn.Module):
    """Base class of the course's methods.

    A method owns an ``encoder`` (the network whose representation we keep)
    and whatever else its pretext task needs (decoders, heads, momentum
    targets). :func:`sslcourse.fit` calls::

        params = method.on_epoch_start(epoch)   # before each epoch; fit resets these parameters' optimizer state
        out = method.training_step(batch)       # every batch: {"loss": scalar tensor, ...}
        ... backward, optimizer step ...
        method.after_step(out)                  # after every step the optimizer applied

    ``batch`` is ``(images, labels)`` from a :class:`~sslcourse.data.DeviceLoader`:
    float (B, C, H, W) in [0, 1] on the training device; labels are never used
    for pretraining. ``fit`` logs the entries of ``out`` that are numbers or
    0-dim tensors; larger ones (MoCo's keys, DINO's mean teacher output) are there for
    ``after_step``. Everything a method needs to resume (queues, centers, step
    counters of schedules, pseudo-labels) is a registered buffer, so it is in
    the ``state_dict`` that checkpoints hold.

    Every subclass's constructor arguments are recorded: :attr:`config`.
    """

    encoder: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = recording_config(cls.__init__)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments, defaults included, as JSON-able values (a copy).

        Modules, functions, tensors, data sets and other objects appear as a
        short description, e.g. ``"<ConvEncoder>"`` or ``"<Tensor int64 (100, 9)>"``.
        """
        return copy.deepcopy(self.__dict__.get("_config", {}))

    # -------------------------------------------------------------- constructor setup
    @property
    def applied_steps(self) -> int:
        """The optimizer steps applied so far, from the method's ``step`` buffer (saved with it).

        Read from the buffer once, after construction or a ``load_state_dict``, and then counted on the host
        by :meth:`count_step`: a schedule that needs it every step (BYOL's momentum, DINO's teacher
        temperature) never makes the GPU wait for Python.
        """
        if getattr(self, "_host_step", None) is None:
            self._host_step = int(self.step)
            self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_host_step", None))
        return self._host_step

    def count_step(self) -> None:
        """One more applied step: the ``step`` buffer on the device and its count on the host."""
        steps = self.applied_steps
        self.step += 1
        self._host_step = steps + 1

    def init_encoder(
        self,
        encoder: nn.Module | None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int | None = None,
    ) -> None:
        """The setup every family shares: ``self.encoder`` is ``encoder``, or a
        :class:`~sslcourse.nets.ConvEncoder` (``in_channels``, ``widths``) when it is None;
        ``self.in_channels`` is what that encoder reads (:func:`encoder_channels`);
        ``self.image_size`` is the side of the square training images (checked
        by :meth:`check_images`), or None for a method that takes any size."""
        check_number("in_channels", in_channels, low=1, integer=True)
        if image_size is not None:
            check_number("image_size", image_size, low=1, integer=True)
        self.encoder = encoder if encoder is not None else ConvEncoder(in_channels, widths)
        self.in_channels = encoder_channels(encoder, in_channels)
        self.image_size = image_size

    def feature_dim(self, size: int | tuple[int, int] | None = None, *, what: str = "images") -> int:
        """The flattened size of the encoder's output on inputs of ``size`` (default ``image_size``); see :func:`feature_dim`."""
        return feature_dim(self.encoder, self.in_channels, self.image_size if size is None else size, what)

    def check_images(self, x: torch.Tensor) -> None:
        """Refuse a batch that is not float (B, C, H, W) of ``image_size`` x ``image_size``, with an error that says so."""
        name = type(self).__name__
        _check_batch(x, f"{name}.training_step")
        h, w = x.shape[-2:]
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"{name} was built for {self.image_size} x {self.image_size} images; got {h} x {w}. "
                "Pass image_size= to match the data"
            )

    # -------------------------------------------------------------- hooks
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement training_step(batch) -> dict with 'loss'")

    def after_step(self, out: dict[str, Any]) -> None:
        """Called with ``training_step``'s dict after every optimizer step that was applied; nothing by default."""

    def on_epoch_start(self, epoch: int) -> list[nn.Parameter]:
        """Called before the first batch of every epoch (counted from 0 over the whole run; not
        when a run resumes in the middle of an epoch).

        Returns the parameters it re-initialised, whose optimizer state is then
        stale (fit drops it). Nothing by default.
        """
        return []

    # -------------------------------------------------------------- momentum targets
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (online, target) pairs that :meth:`update_momentum` moves; none by default.

        A target is a :func:`frozen_copy` of its online module, made in the constructor.
        """
        return []

    @torch.no_grad()
    def update_momentum(self, momentum: float) -> None:
        """target <- m * target + (1 - m) * online, for every pair of :meth:`momentum_pairs`.

        Parameters only, all pairs in one fused ``torch._foreach_lerp_``
        (:func:`sslcourse.nets.momentum_update`). Buffers are not averaged:
        each target keeps its own (batch norm's running statistics), which its
        own forward passes update, as in the MoCo, BYOL and DINO code.
        """
        pairs = self.momentum_pairs()
        if not pairs:
            raise ValueError(f"{type(self).__name__}.update_momentum: momentum_pairs() returns no (online, target) pair to update")
        targets: list[torch.Tensor] = []
        onlines: list[torch.Tensor] = []
        for i, (online, target) in enumerate(pairs):
            o, t = list(online.parameters()), list(target.parameters())
            if len(o) != len(t):
                raise ValueError(f"momentum pair {i}: the online module has {len(o)} parameters, its target {len(t)}")
            onlines += o
            targets += t
        momentum_update(targets, onlines, momentum)
