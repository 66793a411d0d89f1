"""A method's constructor arguments, recorded as plain JSON-able values.

:class:`~sslcourse.methods.SSLMethod` wraps the ``__init__`` of every
subclass with :func:`recording_config`, so ``method.config`` says how the
method was built without any subclass writing it. :func:`sslcourse.fit`
stores it in checkpoints and refuses to resume one built differently.

Numbers, strings, booleans and None are kept as they are, tuples and lists
become lists, dicts keep their keys; anything else (a given encoder, a views
object, a function, a data set, a tensor) becomes a short description: its
class or function name and, for tensors and data sets, dtype and shape.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any, Callable

import torch

__all__ = ["describe", "recording_config"]


def describe(value: Any) -> Any:
    """``value`` as a JSON-able value: itself, a list, a dict, or a short description string.

    >>> describe((32, 64))
    [32, 64]
    >>> describe(torch.zeros(100, 9, dtype=torch.long))
    '<Tensor int64 (100, 9)>'
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Integral):  # e.g. numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return f"<Tensor {str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}>"
    images = getattr(value, "images", None)
    if isinstance(images, torch.Tensor):  # an ImageDataset
        source = "/".join(str(part) for part in (getattr(value, "name", ""), getattr(value, "split", "")) if part)
        return f"<{type(value).__name__} {source} {tuple(images.shape)}>".replace("  ", " ")
    if inspect.isroutine(value):
        return f"<function {getattr(value, '__module__', None) or '?'}.{getattr(value, '__qualname__', '?')}>"
    return f"<{type(value).__name__}>"


def recording_config(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a constructor so that it stores its bound arguments, defaults applied, as ``self._config``.

    When constructors call each other (``super().__init__(...)``), the
    outermost call finishes last and its arguments are the ones kept. Extra
    keyword arguments (``**kwargs``) are recorded under their own names.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_and_record(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:  # [0] is self
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                config.update({key: describe(v) for key, v in value.items()})
            else:
                config[name] = describe(value)
        self._config = config

    return init_and_record
