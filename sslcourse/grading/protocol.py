"""The wire between the trusted grader and the sandbox that runs a student's code.

Messages are length-prefixed byte strings. What the grader sends the sandbox is
pickled (the sandbox may unpickle anything the instructor's side made); what the
sandbox sends back is read with ``torch.load(weights_only=True)``, which builds
only tensors, numbers, strings and containers, never objects of the student's
classes. Values from the sandbox are therefore *encoded* first as a tree of
tagged dicts (``{"$": "tensor", ...}``); :func:`decode` turns them back into
tensors, tuples, dtypes, generators' states and networks rebuilt from an
allowlist of ``torch.nn`` layers.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, BinaryIO

import torch
import torch.nn as nn

#: The largest message either side accepts (a student's function returning a huge tensor is refused, not loaded).
MAX_MESSAGE_BYTES = 256 * 2**20


class ProtocolError(RuntimeError):
    """A message that is malformed, too large, or of a type the grader does not accept."""


class UnsupportedValue(TypeError):
    """A value that cannot cross from the sandbox to the grader (an object of a class of the student's)."""


# ------------------------------------------------------------------ framing
def send_bytes(stream: BinaryIO, payload: bytes) -> None:
    stream.write(struct.pack("<Q", len(payload)))
    stream.write(payload)
    stream.flush()


def read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message_bytes(stream: BinaryIO) -> bytes:
    (n,) = struct.unpack("<Q", read_exactly(stream, 8))
    if n > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {n:,} bytes; at most {MAX_MESSAGE_BYTES:,} are accepted")
    return read_exactly(stream, n)


def dumps_trusted(obj: Any) -> bytes:
    """Grader -> sandbox: a pickle (the sandbox trusts the grader)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def loads_trusted(payload: bytes) -> Any:
    """Sandbox side: read what the grader sent."""
    return torch.load(io.BytesIO(payload), weights_only=False)


def dumps_untrusted(tree: Any) -> bytes:
    """Sandbox -> grader: an encoded tree (see :func:`encode`)."""
    buffer = io.BytesIO()
    torch.save(tree, buffer)
    return buffer.getvalue()


def loads_untrusted(payload: bytes) -> Any:
    """Grader side: read what the sandbox sent, without running any code of the student's."""
    try:
        return torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure is a malformed message
        raise ProtocolError(f"the sandbox sent a message that is not a plain encoded value ({type(err).__name__}: {err})") from err


# ------------------------------------------------------------------ networks from an allowlist
def _conv(m):
    return dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size, stride=m.stride,
                padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)


def _bn(m):
    return dict(num_features=m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats)


def _inplace(m):
    return dict(inplace=m.inplace)


#: torch.nn layers a student's function may return inside a network, with how to read their constructor arguments.
LAYERS = {
    "Sequential": lambda m: {},
    "ModuleList": lambda m: {},
    "Identity": lambda m: {},
    "Conv1d": _conv,
    "Conv2d": _conv,
    "BatchNorm1d": _bn,
    "BatchNorm2d": _bn,
    "LayerNorm": lambda m: dict(normalized_shape=tuple(m.normalized_shape), eps=m.eps, elementwise_affine=m.elementwise_affine,
                                bias=getattr(m, "bias", None) is not None),
    "GroupNorm": lambda m: dict(num_groups=m.num_groups, num_channels=m.num_channels, eps=m.eps, affine=m.affine),
    "Linear": lambda m: dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None),
    "ReLU": _inplace,
    "ReLU6": _inplace,
    "SiLU": _inplace,
    "LeakyReLU": lambda m: dict(negative_slope=m.negative_slope, inplace=m.inplace),
    "GELU": lambda m: dict(approximate=m.approximate),
    "Tanh": lambda m: {},
    "Sigmoid": lambda m: {},
    "Flatten": lambda m: dict(start_dim=m.start_dim, end_dim=m.end_dim),
    "Dropout": lambda m: dict(p=m.p, inplace=m.inplace),
    "MaxPool2d": lambda m: dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode),
    "AvgPool2d": lambda m: dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                                count_include_pad=m.count_include_pad),
    "AdaptiveAvgPool2d": lambda m: dict(output_size=m.output_size),
}


def _module_spec(module: nn.Module) -> dict:
    cls = type(module)
    if cls.__module__.split(".")[:2] != ["torch", "nn"] or cls.__name__ not in LAYERS:
        raise UnsupportedValue(
            f"a network containing {cls.__module__}.{cls.__qualname__}; the grader rebuilds networks from torch.nn layers only "
            f"({', '.join(sorted(LAYERS))}): build yours as an nn.Sequential of them"
        )
    return {
        "type": cls.__name__,
        "kwargs": LAYERS[cls.__name__](module),
        "training": module.training,
        "children": [[name, _module_spec(child)] for name, child in module.named_children()],
    }


def _build_module(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind not in LAYERS:
        raise ProtocolError(f"a network layer of type {kind!r}, which is not on the allowlist")
    cls = getattr(nn, kind)
    if kind in ("Sequential", "ModuleList"):
        module = cls()
        for name, child in spec["children"]:
            if kind == "Sequential":
                module.add_module(str(name), _build_module(child))
            else:
                module.append(_build_module(child))
    else:
        module = cls(**spec["kwargs"])
    module.train(bool(spec["training"]))
    return module


# ------------------------------------------------------------------ values
def _tensor_record(t: torch.Tensor) -> dict:
    return {"$": "tensor", "v": t.detach().cpu().clone(), "device": str(t.device), "rg": bool(t.requires_grad), "leaf": bool(t.is_leaf)}


def encode(value: Any, depth: int = 0) -> Any:
    """A value of the sandbox as a tree that ``torch.load(weights_only=True)`` reads back."""
    if depth > 20:
        raise UnsupportedValue("a value nested more than 20 levels deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, nn.Parameter):
            raise UnsupportedValue(f"a tensor of the subclass {type(value).__qualname__}; return a plain torch.Tensor")
        return _tensor_record(value)
    if isinstance(value, torch.Size):
        return {"$": "size", "v": [int(s) for s in value]}
    if isinstance(value, torch.dtype):
        return {"$": "dtype", "v": str(value).replace("torch.", "")}
    if isinstance(value, torch.device):
        return {"$": "device", "v": str(value)}
    if isinstance(value, torch.Generator):
        return {"$": "generator", "state": value.get_state(), "device": str(value.device)}
    if isinstance(value, nn.Module):
        return {"$": "module", "spec": _module_spec(value),
                "state": {k: _tensor_record(v) for k, v in value.state_dict(keep_vars=True).items()}}
    if type(value) in (tuple, list):
        return {"$": type(value).__name__, "v": [encode(v, depth + 1) for v in value]}
    if type(value) is dict:
        if not all(isinstance(k, str) for k in value):
            raise UnsupportedValue("a dict whose keys are not all strings")
        return {"$": "dict", "k": list(value), "v": [encode(v, depth + 1) for v in value.values()]}
    try:
        import numpy as np

        if type(value) is np.ndarray and value.dtype != object:
            return {"$": "ndarray", "v": torch.from_numpy(value.copy())}
        if isinstance(value, np.generic):
            return encode(value.item(), depth + 1)
    except ImportError:  # pragma: no cover
        pass
    raise UnsupportedValue(f"a value of type {type(value).__module__}.{type(value).__qualname__}")


def decode_tensor(record: dict) -> torch.Tensor:
    t = record["v"]
    if type(t) is not torch.Tensor:
        raise ProtocolError(f"a tensor record holding {type(t).__name__}")
    device = str(record.get("device", "cpu"))
    return t.to(device) if device != "cpu" and torch.device(device).type == "cuda" and torch.cuda.is_available() else t


def decode(tree: Any) -> Any:
    """Inverse of :func:`encode`, on the grader's side: builds only plain values and allowlisted layers."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if not isinstance(tree, dict) or "$" not in tree:
        raise ProtocolError(f"an encoded value of type {type(tree).__name__}")
    kind = tree["$"]
    if kind == "tensor":
        t = decode_tensor(tree)
        return t.requires_grad_(True) if tree.get("rg") and t.is_floating_point() else t
    if kind == "size":
        return torch.Size(int(s) for s in tree["v"])
    if kind == "dtype":
        dtype = getattr(torch, str(tree["v"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ProtocolError(f"an unknown dtype {tree['v']!r}")
        return dtype
    if kind == "device":
        return torch.device(str(tree["v"]))
    if kind == "generator":
        g = torch.Generator(device="cpu")
        g.set_state(tree["state"])
        return g
    if kind == "module":
        module = _build_module(tree["spec"])
        state = {k: decode_tensor(v) for k, v in tree["state"].items()}
        module.load_state_dict(state, strict=True)
        for name, p in module.named_parameters():
            record = tree["state"].get(name)
            if record is not None:
                p.requires_grad_(bool(record["rg"]))
        return module
    if kind in ("tuple", "list"):
        items = [decode(v) for v in tree["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {str(k): decode(v) for k, v in zip(tree["k"], tree["v"])}
    if kind == "ndarray":
        return tree["v"].numpy()
    raise ProtocolError(f"an encoded value of unknown kind {kind!r}")
