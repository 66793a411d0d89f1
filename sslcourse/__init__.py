"""sslcourse: the methods of the self-supervised learning course, with GPU-aware training.

The names most code needs are here::

    import sslcourse
    device = sslcourse.get_device()
    train = sslcourse.load_dataset("digits", "train")
    method = sslcourse.methods.DenoisingAutoencoder(corruption="masking", noise_level=0.5)
    history = sslcourse.fit(method, train, steps=500)
"""

from . import augment, color, data, evaluate, long_runs, losses, masks, methods, nets, notebook, patches, plots, runtime
from .data import DeviceLoader, ImageDataset, load_dataset
from .long_runs import pretrained
from .runtime import describe_runtime, get_device, seed_everything
from .train import History, NonFiniteLossError, fit

__version__ = "0.1.0"

__all__ = [
    "augment",
    "color",
    "data",
    "evaluate",
    "long_runs",
    "losses",
    "masks",
    "methods",
    "nets",
    "notebook",
    "patches",
    "plots",
    "runtime",
    "DeviceLoader",
    "ImageDataset",
    "load_dataset",
    "describe_runtime",
    "get_device",
    "seed_everything",
    "History",
    "NonFiniteLossError",
    "fit",
    "pretrained",
]
