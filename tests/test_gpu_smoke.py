"""Smoke mode (SSLCOURSE_SMOKE=gpu): the chapters' GPU branches, executed on a CPU with a handful of steps.

No GPU is available to CI, and a Colab user must not be the first to run a line of a GPU branch. In smoke
mode the chapters take their GPU settings (``sslcourse.notebook.on_gpu``) and every ``fit`` stops after
``SMOKE_STEPS`` steps; the numbers mean nothing, only that every line runs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

import sslcourse
from sslcourse.notebook import gpu_steps, on_gpu
from sslcourse.runtime import SMOKE_STEPS

BOOK = Path(__file__).resolve().parents[1] / "book"
WITH_GPU_BRANCH = sorted(p for p in BOOK.glob("*.ipynb") if "on_gpu(" in p.read_text())


def test_smoke_mode_takes_the_gpu_settings_with_a_handful_of_steps(monkeypatch):
    monkeypatch.delenv("SSLCOURSE_SMOKE", raising=False)
    assert not on_gpu("cpu") and gpu_steps(1000) == 1000 and on_gpu("cuda")
    monkeypatch.setenv("SSLCOURSE_SMOKE", "gpu")
    assert on_gpu("cpu") and gpu_steps(1000) == SMOKE_STEPS and gpu_steps(2) == 2
    train = sslcourse.load_dataset("digits", "train").subset(torch.arange(128))
    method = sslcourse.methods.DenoisingAutoencoder(widths=(8, 16))
    history = sslcourse.fit(method, train, steps=1000, batch_size=32, device="cpu", progress=False)
    assert len(history) == SMOKE_STEPS


def test_the_chapters_with_a_gpu_branch_are_found():
    names = {p.stem for p in WITH_GPU_BRANCH}
    assert {"masked_autoencoders", "self_distillation", "spatial_pretext", "comparison"} <= names, names
    for path in BOOK.glob("*.ipynb"):  # a branch on the device that bypasses on_gpu would escape smoke mode
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert 'device.type == "cuda"' not in cell.source, f"{path.name}: branch with on_gpu(device)"


@pytest.mark.parametrize("path", WITH_GPU_BRANCH, ids=lambda p: p.stem)
def test_gpu_branch_runs_in_smoke_mode(path, monkeypatch):
    monkeypatch.setenv("SSLCOURSE_SMOKE", "gpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Traceback" not in printed
