"""Helpers for the book's chapters and the labs: showing the package's own code, and the setup cell."""

from __future__ import annotations

import inspect
import textwrap

# No package imports at the top: the grading tools load this file on its own to read the setup cell.
__all__ = ["REPOSITORY_URL", "SETUP_CELL", "show_source", "on_gpu", "gpu_steps"]


#: The canonical repository; ``_config.yml`` and every notebook's setup cell use the same one (a test keeps them equal).
REPOSITORY_URL = "https://github.com/sslcourse/sslcourse"

#: The first code cell of every chapter and lab: installs the package on Colab, then describes the runtime.
SETUP_CELL = f'''\
# Setup: on Colab, install the course package from its repository; locally it is installed already.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{REPOSITORY_URL}"], check=True)

import sslcourse
device = sslcourse.get_device()
print(sslcourse.describe_runtime(device))'''


def show_source(obj, *, start: str | None = None) -> object:
    """Display the source code of a function, class or method of the package.

    Chapters call this instead of copying code, so the book always shows what
    the package runs. ``start`` skips the lines before the first one that
    contains it (e.g. ``start="def training_step"`` to show one method of a
    class). In Jupyter, Colab and the built book it renders as highlighted
    Python; elsewhere it returns the plain text.
    """
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show_source needs a function, class or method defined in a file; got {obj!r}") from err
    source = textwrap.dedent(source)
    if start is not None:
        lines = source.splitlines()
        hits = [i for i, line in enumerate(lines) if start in line]
        if not hits:
            raise ValueError(f"show_source: no line of {getattr(obj, '__qualname__', obj)} contains {start!r}")
        source = textwrap.dedent("\n".join(lines[hits[0] :]))
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - IPython ships with Jupyter
        return source
    return Markdown(f"```python\n{source.rstrip()}\n```")


def on_gpu(device) -> bool:
    """Whether a chapter takes its GPU settings: on a CUDA device, or in smoke mode.

    Smoke mode (the environment variable ``SSLCOURSE_SMOKE=gpu``, see
    :func:`sslcourse.runtime.smoke_mode`) runs the GPU branch of a notebook
    on a CPU with a handful of steps, so that CI executes every line a Colab
    user will, without a GPU. Its numbers mean nothing; only that it runs.
    """
    import torch

    from sslcourse.runtime import smoke_mode

    return torch.device(device).type == "cuda" or smoke_mode()


def gpu_steps(steps: int) -> int:
    """``steps`` on a GPU; :data:`sslcourse.runtime.SMOKE_STEPS` at most in smoke mode."""
    from sslcourse.runtime import SMOKE_STEPS, smoke_mode

    return min(steps, SMOKE_STEPS) if smoke_mode() else steps
