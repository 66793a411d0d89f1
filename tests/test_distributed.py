"""fit under torchrun: two CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

WORKER = Path(__file__).with_name("distributed_worker.py")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")


def run(tmp_path: Path, *args: str, processes: int = 1) -> dict:
    out = tmp_path / f"out-{processes}-{'-'.join(a.replace('/', '_') for a in args)}.json"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(processes)] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([*launcher, str(WORKER), str(out), *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(out.read_text())


def test_gathered_negatives_give_the_gradients_of_the_whole_batch(tmp_path):
    result = run(tmp_path, "gather-check", "0", processes=2)
    assert result["processes"] == 2
    assert result["max_gradient_error"] < 1e-6


def test_two_processes_follow_the_loss_curve_of_one(tmp_path):
    # Without batch norm a loss depends on no other image of its batch: sharding the global batch and
    # averaging gradients is then the same computation as one process, up to the order of float sums.
    one = run(tmp_path, "ae-no-bn", "12")
    two = run(tmp_path, "ae-no-bn", "12", processes=2)
    assert two["processes"] == 2 and two["steps"] == one["steps"] == list(range(1, 13))
    assert two["images_seen"] == one["images_seen"] == 12 * 64
    assert two["digests"][0] == two["digests"][1], "the two processes' weights differ"
    for a, b in zip(one["loss"], two["loss"]):
        assert abs(a - b) <= 1e-5 * abs(a), (one["loss"], two["loss"])
    # the probe's features: each process encodes its share; every process gets all of them, in order
    assert two["feature_shape"] == one["feature_shape"] and two["feature_shape"][0] == 50
    assert two["feature_row_sums"] == pytest.approx(one["feature_row_sums"], rel=1e-4)


def test_two_processes_resume_exactly_from_the_checkpoint_of_process_0(tmp_path):
    # the DAE masks pixels at random: each process has its own random state, saved and restored
    straight = run(tmp_path, "dae", "8", processes=2)
    ckpt = tmp_path / "run.pt"
    first = run(tmp_path, "dae", "4", str(ckpt), processes=2)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp")) and first["steps"] == [1, 2, 3, 4]
    resumed = run(tmp_path, "dae", "8", str(ckpt), processes=2)
    assert resumed["loss"] == straight["loss"]
    assert resumed["digests"] == straight["digests"]



def test_methods_that_couple_a_batch_train_alike_on_every_process(tmp_path):
    # SimCLR gathers negatives, MoCo shuffles keys across processes and enqueues every process's keys,
    # DINO averages its center: the weights and those buffers must stay identical on both processes
    results = run(tmp_path, "simclr,moco,dino", "4", processes=2)
    for name, result in results.items():
        assert result["steps"] == [1, 2, 3, 4] and all(math.isfinite(v) for v in result["loss"]), name
        assert result["images_seen"] == 4 * 64, name
        assert result["digests"][0] == result["digests"][1], f"{name}: the processes' weights differ"
        assert result["buffer_digests"][0] == result["buffer_digests"][1], f"{name}: queue/center/counters differ"
