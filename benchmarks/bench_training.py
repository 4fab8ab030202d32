"""Training throughput: the engine (`mind_the_gap.training.engine.fit`) against a bare PyTorch loop.

Both train the same student from the same initial weights on the same uint8 tensors with the same batch size,
optimizer and learning-rate schedule; the engine runs once without augmentation (its overhead alone) and once
with the default crop and flip. The bare loop runs twice: in float32 with the default memory format (the plain
PyTorch baseline) and with the engine's precision and memory format (``--amp``, ``--no-channels-last``; ``auto``
picks bf16 on GPUs and on CPUs with native bf16), so the engine's overhead and the precision's gain both show.
The ratios are the figures to compare across machines (timings on shared machines are noisy). Last, how far from
the hardware's limit the engine is: its achieved GFLOP/s (the convolutions' and matrix products' floating-point
operations of a training step, forward and backward, counted by PyTorch) against the device's measured matrix
product peak in the same precision.
Usage:

    python benchmarks/bench_training.py [--arch resnet_narrow] [--images 4096] [--epochs 2] [--device auto]
        [--amp auto|bf16|fp16|off] [--no-channels-last] [--streaming]

``--streaming`` adds a run of the engine with crop and flip whose batches are streamed from host memory
(``training.data_on_device: never``), against the whole set on the device.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mind_the_gap.data.prepare import DatasetConfig, load_source
from mind_the_gap.devices import precision_name, resolve_device, resolve_precision
from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, fit


def bare_loop(model, images, labels, config: TrainConfig, device: torch.device) -> float:
    """Images/s of the plainest loop that does the same work: shuffle, convert, normalise, step, schedule."""
    channels_last = config.channels_last
    dtype = resolve_precision(config.amp, device, allow_float16=True)
    amp = dtype != torch.float32
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    images, labels = images.to(device), labels.to(device)
    mean = images.float().mean(dim=(0, 2, 3), keepdim=True) / 255
    std = (images.float() / 255).std(dim=(0, 2, 3), keepdim=True)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )
    steps = len(images) // config.batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * config.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and config.amp == "fp16")
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(len(images), device=device)
        for step in range(steps):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = (images[index].float() / 255 - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.batch_size * config.epochs / (time.perf_counter() - start)


def training_flops_per_image(model, images, labels, batch_size: int, device: torch.device) -> float:
    """Floating-point operations of one image's training step (forward and backward), as PyTorch counts them."""
    model = copy.deepcopy(model).to(device).train()
    x = images[:batch_size].to(device).float() / 255
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), labels[:batch_size].to(device)).backward()
    return counter.get_total_flops() / batch_size


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of large square matrix products in ``dtype``: the practical peak of this device and precision."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    products, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        products += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 2 * size**3 * products / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet_narrow", choices=["resnet_narrow", "resnet18", "resnet50"])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--streaming", action="store_true", help="also stream batches from host memory")
    parser.add_argument("--data", type=Path, default=Path("data/01_raw/fashion_mnist"))
    args = parser.parse_args()

    train, _ = load_source(DatasetConfig(path=args.data))
    images, labels = train.images[: args.images], train.labels[: args.images]
    data = type(train)(images, labels, train.class_names)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    initial = build_student(
        StudentConfig(arch=args.arch, width=args.width), data.num_classes, data.channels, data.image_size[0]
    )
    base = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        warmup_epochs=0,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        progress=False,
    )
    precision = precision_name(resolve_precision(args.amp, device, allow_float16=True))
    print(
        f"{args.arch} on {device}, {precision}, channels_last {args.channels_last}, {len(data)} images of "
        f"{data.image_size}, batch {args.batch_size}, {args.epochs} epochs, "
        f"{torch.get_num_threads()} threads"
    )

    # Warm-up (allocator, kernels, thread pool) so that the first measurement is not charged for it.
    norm = Normalization.of(data)
    warmup = data.subset(torch.arange(4 * args.batch_size))
    fit(copy.deepcopy(initial), warmup, base.model_copy(update={"epochs": 1}), 0, norm)
    plain = base.model_copy(update={"amp": "off", "channels_last": False})
    float32 = bare_loop(copy.deepcopy(initial), images, labels, plain, device)
    print(f"bare PyTorch loop, fp32     {float32:8.0f} images/s")
    bare = bare_loop(copy.deepcopy(initial), images, labels, base, device)
    print(f"bare PyTorch loop, {precision:<8} {bare:8.0f} images/s ({bare / float32:.2f}x fp32)")
    runs = [
        ("engine, no augmentation", {"augment": []}),
        ("engine, crop + flip", {"augment": ["crop", "flip"], "data_on_device": "always"}),
    ]
    if args.streaming:
        runs.append(("engine, crop + flip, streamed", {"augment": ["crop", "flip"], "data_on_device": "never"}))
    speeds = {}
    for label, update in runs:
        result = fit(copy.deepcopy(initial), data, base.model_copy(update=update), 0, norm)
        speeds[label] = result.images_per_second
        print(
            f"{label:<29} {result.images_per_second:8.0f} images/s ({result.images_per_second / bare:.2f}x bare "
            f"{precision}, {result.images_per_second / float32:.2f}x bare fp32)"
        )
    flops_per_image = training_flops_per_image(initial, images, labels, args.batch_size, device)
    achieved = flops_per_image * speeds["engine, crop + flip"]
    dtype = resolve_precision(args.amp, device, allow_float16=True)
    peak = matmul_peak(device, dtype)
    print(
        f"engine, crop + flip: {achieved / 1e9:.1f} GFLOP/s, {100 * achieved / 1e9 / peak:.1f}% of this device's "
        f"{precision} matrix product peak ({peak:.0f} GFLOP/s"
        + (f"; fp32: {matmul_peak(device, torch.float32):.0f} GFLOP/s)" if dtype != torch.float32 else ")")
    )


if __name__ == "__main__":
    main()
