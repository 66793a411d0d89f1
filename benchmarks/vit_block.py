"""The course's Transformer block against timm's, forward and backward on a CPU.

    pip install timm          # not a dependency of the course; only this comparison needs it
    python benchmarks/vit_block.py [--threads 1] [--batch 128]

Why it exists: issue 5 asked whether the small Vision Transformer should use a well-kept library's blocks.
sslcourse.nets.TransformerBlock is a pre-norm block on torch's nn.MultiheadAttention (which dispatches to
PyTorch's fused attention) and exposes its attention weights for DINO's maps; timm's Block is the reference
ViT block. Both have the same parameters at the same sizes. Measured on the course's 2-core CPU (one thread,
load about 2.7; dim 96, 4 heads, MLP ratio 2, batch 128 of 17 tokens), three runs: 20.5-21.6 ms for ours,
17.7-20.2 ms for timm's, 5-18% less. The course keeps its own block (no extra dependency, attention weights in
reach); a GPU comparison has not been run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from sslcourse.nets import TransformerBlock


def best_ms(block: torch.nn.Module, x: torch.Tensor, repeats: int = 5, inner: int = 20) -> float:
    """The best mean time of ``inner`` forward+backward passes, over ``repeats`` tries, in milliseconds."""
    for _ in range(3):
        block(x).sum().backward()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            block(x).sum().backward()
        best = min(best, (time.perf_counter() - start) / inner)
    return 1000 * best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=17, help="16 patches of a 16-pixel digit and the class token")
    args = parser.parse_args(argv)
    try:
        from timm.models.vision_transformer import Block
    except ImportError:
        print("this comparison needs timm: pip install timm", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.tokens, args.dim)
    blocks = {
        "sslcourse.nets.TransformerBlock": TransformerBlock(args.dim, args.heads, mlp_ratio=2.0),
        "timm Block": Block(args.dim, args.heads, mlp_ratio=2.0, qkv_bias=True),
    }
    print(f"{torch.get_num_threads()} thread(s), batch {args.batch} x {args.tokens} tokens x {args.dim}")
    for name, block in blocks.items():
        params = sum(p.numel() for p in block.parameters())
        print(f"{name:>32}: {best_ms(block, x):6.2f} ms per forward+backward ({params} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
