"""Augmentation speed: the hand-written batch augmentation (`mind_the_gap.training.augment`) against kornia's
equivalent, and the cost of each strong policy, in milliseconds per batch and as a share of a training step.

The issue that brought kornia in asked to replace the hand-written crop and flip with kornia's if it is as fast;
this is the measurement behind keeping them. Usage:

    python benchmarks/bench_augment.py [--batch 128] [--size 28] [--channels 1] [--repeats 50] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import kornia.augmentation as K
import torch

from mind_the_gap.devices import resolve_device
from mind_the_gap.training.augment import POLICIES, BatchAugment


def milliseconds(step, repeats: int, device: torch.device) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    images = torch.rand(args.batch, args.channels, args.size, args.size, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    padding = round(0.125 * args.size)

    hand = BatchAugment(["crop", "flip"])
    kornia_crop_flip = K.AugmentationSequential(
        K.RandomCrop((args.size, args.size), padding=padding), K.RandomHorizontalFlip()
    )
    rows = [
        (
            "crop + flip, hand-written (grid_sample)",
            milliseconds(lambda: hand(images, generator), args.repeats, device),
        ),
        ("crop + flip, kornia", milliseconds(lambda: kornia_crop_flip(images), args.repeats, device)),
    ]
    for policy in POLICIES:
        augment = BatchAugment(["crop", "flip", policy])
        rows.append(
            (
                f"crop + flip + {policy} (kornia, per group)",
                milliseconds(lambda a=augment: a(images, generator), args.repeats, device),
            )
        )
    local = BatchAugment(["crop", "flip", "local_shuffle"])
    rows.append(("crop + flip + local_shuffle", milliseconds(lambda: local(images, generator), args.repeats, device)))
    print(f"{args.batch} images of {args.channels}x{args.size}x{args.size} on {device}, ms per batch:")
    for name, ms in rows:
        print(f"  {name:48s} {ms:8.2f} ms  ({args.batch / ms * 1e3:9.0f} images/s)")
    print(f"kornia / hand-written for crop + flip: {rows[1][1] / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()
