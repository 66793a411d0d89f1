"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node N`` (or alone, as one process).

    python -m torch.distributed.run --nproc-per-node 2 tests/distributed_worker.py OUT.json NAME STEPS [CHECKPOINT]

Trains method NAME (a CLI name such as "simclr", or "ae": the plain autoencoder; "ae-no-bn": the same
without batch norm, whose loss depends on no other image of the batch; or several, comma-separated) on 256 digits for STEPS steps with a
global batch of 64 and writes, from process 0, the loss curve and each process's digest of the weights to
OUT.json.
"""

import hashlib
import json
import sys

import torch

import sslcourse
from sslcourse import distributed
from sslcourse.recipes import build_method, default_recipe

torch.set_num_threads(1)
out, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])


def gather_check() -> dict:
    """SimCLR's loss over negatives gathered from every process gives, after DDP averages the gradients,
    exactly the gradients of one process computing the loss on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel

    from sslcourse.losses import nt_xent

    torch.manual_seed(0)
    model, x = torch.nn.Linear(10, 8), torch.randn(16, 10)  # the same on every process
    reference = [g.clone() for g in torch.autograd.grad(nt_xent(model(x[:8]), model(x[8:])), list(model.parameters()))]
    here = distributed.start(torch.device("cpu"))[0]
    ddp = DistributedDataParallel(model)
    x1, x2 = x[:8].chunk(here.size)[here.rank], x[8:].chunk(here.size)[here.rank]  # this process's images, two views
    z1, z2 = ddp(torch.cat([x1, x2])).chunk(2)
    nt_xent(distributed.gather(z1), distributed.gather(z2)).backward()
    error = max(float((p.grad - r).abs().max()) for p, r in zip(model.parameters(), reference))
    return {"processes": here.size, "max_gradient_error": error}


if name == "gather-check":
    result = gather_check()
    if distributed.world().is_main:
        json.dump(result, open(out, "w"))
    sys.exit(0)
checkpoint = sys.argv[4] if len(sys.argv) > 4 else None


def train_one(name: str) -> dict:
    base = name.removesuffix("-no-bn")
    recipe = default_recipe("dae" if base == "ae" else base, "cpu")
    train = sslcourse.load_dataset(recipe.data, "train", size=recipe.size).subset(torch.arange(256))
    torch.manual_seed(0)
    method = build_method(base, train, recipe.widths)
    if name.endswith("-no-bn"):
        for module in list(method.modules()):
            for child_name, child in module.named_children():
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(module, child_name, torch.nn.Identity())
    history = sslcourse.fit(method, train, steps=steps, batch_size=64, lr=1e-3, device="cpu", progress=False,
                            checkpoint=checkpoint, checkpoint_every=2)
    here = distributed.world()
    weights = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in method.parameters())).hexdigest()
    # buffers that every process must hold alike: MoCo's queue, DINO's center, schedule counters (not batch norm's)
    shared = hashlib.sha256(b"".join(v.numpy().tobytes() for k, v in method.state_dict().items()
                                     if k in dict(method.named_buffers()) and "running_" not in k and "num_batches" not in k)).hexdigest()
    digests = [None] * here.size
    if here.size > 1:
        torch.distributed.all_gather_object(digests, (weights, shared))
    else:
        digests = [(weights, shared)]
    features = sslcourse.evaluate.extract_features(method.encoder, train.subset(torch.arange(50)), batch_size=16, device="cpu")
    return {"feature_row_sums": features.sum(1).tolist(), "feature_shape": list(features.shape), "processes": here.size,
            "loss": history.loss, "steps": history.step, "images_seen": history.images_seen,
            "digests": [d[0] for d in digests], "buffer_digests": [d[1] for d in digests]}


results = {name: train_one(name) for name in name.split(",")}
if distributed.world().is_main:
    json.dump(results if len(results) > 1 else next(iter(results.values())), open(out, "w"))
