"""Training throughput of `sslcourse.fit`: images per second for each method and setting.

    python benchmarks/fit_speed.py                # the CPU default (digits, small encoder)
    python benchmarks/fit_speed.py --steps 200    # longer, steadier figures

On a CUDA machine it also times CIFAR-sized random images through the full-width
encoder in each precision, with and without channels_last. Figures are printed,
never asserted: shared machines are noisy.
"""

from __future__ import annotations

import argparse
import time

import torch

import sslcourse
from sslcourse.methods import DenoisingAutoencoder


def measure(method, data, steps: int, batch_size: int, **kwargs) -> float:
    warmup = sslcourse.fit(method, data, steps=5, batch_size=batch_size, progress=False, **kwargs)  # noqa: F841
    history = sslcourse.fit(method, data, steps=steps, batch_size=batch_size, progress=False, **kwargs)
    return history.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print(sslcourse.describe_runtime())
    digits = sslcourse.load_dataset("digits", "train")
    for name, corruption in (("dae (masking 0.5)", "masking"), ("ae", None)):
        for widths in ((32, 64), (96, 192)):
            method = DenoisingAutoencoder(in_channels=1, widths=widths, corruption=corruption, noise_level=0.5)
            ips = measure(method, digits, args.steps, 128, device="cpu")
            print(f"cpu  digits 16x16  {name:18s} widths {widths}: {ips:8.0f} img/s")
    if torch.cuda.is_available():
        images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
        for precision in ("fp32", "auto"):
            for channels_last in (False, True):
                method = DenoisingAutoencoder(in_channels=3, widths=(96, 192), corruption="masking", noise_level=0.5)
                ips = measure(method, images, args.steps, 256, device="cuda", precision=precision, channels_last=channels_last)
                print(f"cuda 32x32 x3  dae widths (96, 192) precision={precision:4s} channels_last={channels_last!s:5s}: {ips:8.0f} img/s")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
