"""Checkpoints that know what they hold.

A checkpoint written by :func:`sslcourse.fit` holds everything a later call
needs to continue exactly where training stopped (weights, optimizer, gradient
scaler, random state, data position, history) and also what it is a
checkpoint *of*: the method's class and constructor settings, and the run's
optimisation (optimizer, learning rate, weight decay, schedule, batch size,
seed). Resuming into a different method or a different run is refused with an
error that names the file and every difference, instead of continuing silently
as something else. A file cut short (a full disk, a killed Colab session) gives
an error that names it, not a pickle traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["CheckpointError", "Checkpoint", "method_config"]

FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be used: its path is unusable, its file is unreadable, or it holds another run."""


def method_config(method: nn.Module) -> dict[str, Any]:
    """The method's constructor settings (``method.config``), or {} for a method that does not record them."""
    config = getattr(method, "config", None)
    if callable(config):
        config = config()
    return dict(config) if isinstance(config, dict) else {}


def _differences(saved: dict, now: dict) -> list[str]:
    keys = sorted(set(saved) | set(now), key=str)
    missing = object()
    return [
        f"{key}: {saved.get(key, 'not set')!r} in the checkpoint, {now.get(key, 'not set')!r} now"
        for key in keys
        if saved.get(key, missing) != now.get(key, missing)
    ]


class Checkpoint:
    """One checkpoint file of one run.

    Args:
        path: the file. It is checked at once: a folder, or a place where no
            file can be written, is an error before any training happens.
        method_name: the method's class name.
        config: the method's constructor settings (:func:`method_config`).
        run: the run's optimisation settings, e.g. ``{"optimizer": "adamw", "lr": 1e-3, "batch_size": 128}``.
    """

    def __init__(self, path: str | os.PathLike, method_name: str, config: dict, run: dict) -> None:
        self.path = Path(path)
        self.method_name, self.config, self.run = method_name, config, run
        self._check_path()

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise CheckpointError(f"checkpoint={str(self.path)!r} is a folder; pass a file path, e.g. {str(self.path / 'run.pt')!r}")
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".sslcourse-write-test-"):
                pass
        except OSError as err:
            raise CheckpointError(f"cannot write the checkpoint {str(self.path)!r}: {err.strerror or err}") from None

    def load(self, device: torch.device) -> dict | None:
        """The saved state, checked against this run; None when there is no file yet."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, EOFError, RuntimeError... for a damaged file
            raise CheckpointError(
                f"{self.path} is not a readable sslcourse checkpoint ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
                "It may have been cut short by a full disk or a killed process: delete it to start over, or pass another checkpoint path."
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.path} is not a checkpoint of this version of sslcourse.fit (format {state.get('format') if isinstance(state, dict) else '?'}, "
                f"expected {FORMAT}); delete it to start over, or pass another checkpoint path."
            )
        if state["method"] != self.method_name:
            raise CheckpointError(f"checkpoint {self.path} holds a {state['method']}, not a {self.method_name}")
        for what, saved, now in (("method settings", state["config"], self.config), ("run", state["run"], self.run)):
            differences = _differences(saved, now)
            if differences:
                raise CheckpointError(
                    f"checkpoint {self.path} was written by a {self.method_name} with other {what}: " + "; ".join(differences)
                    + ". Resume with the same settings, or pass another checkpoint path to start a new run."
                )
        return state

    def save(self, state: dict) -> None:
        """Write ``state`` (with what this checkpoint is of) atomically: a crash mid-write leaves the previous file."""
        state = {"format": FORMAT, "method": self.method_name, "config": self.config, "run": self.run, **state}
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
