"""Sampling throughput: `ClassDiffusionGenerator.generate` against a bare diffusers loop.

Both run the same UNet with the same DPM-Solver++ settings, steps, guidance (conditional and null-class halves in one
forward pass) and batch size; the bare loop draws all noise at once and skips the per-request seeding, validation
and uint8 conversion. Without ``--model`` the UNet has the default config's architecture and random weights, for
28x28 grey images in 10 classes (throughput does not depend on the weights). Usage:

    python benchmarks/bench_class_diffusion.py [--model DIR] [--images 1024] [--batch-size 256] [--threads 2]
        [--device auto] [--precision float32|bfloat16]
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import DPMSolverMultistepScheduler

from mind_the_gap.generators.base import ImageRequest, image_seed
from mind_the_gap.generators.class_diffusion import (
    ClassDiffusionConfig,
    ClassDiffusionGenerator,
    ClassDiffusionModel,
    build_unet,
)


@torch.inference_mode()
def bare_loop(model: ClassDiffusionModel, generator: ClassDiffusionGenerator, images: int, batch_size: int) -> float:
    """Images/s of the plainest diffusers sampling loop with batched classifier-free guidance."""
    config, unet, device, guidance = model.config, generator.unet, generator.device, generator.guidance_scale
    dtype = torch.bfloat16 if generator.precision == "bfloat16" else torch.float32
    shape = (model.channels, *unet.config.sample_size)
    start = time.perf_counter()
    for first in range(0, images, batch_size):
        count = min(batch_size, images - first)
        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
            algorithm_type="dpmsolver++",
            thresholding=config.prediction_type == "epsilon",
            sample_max_value=1.0,  # as the generator samples
        )
        scheduler.set_timesteps(generator.steps, device=device)
        sample = torch.randn(count, *shape, generator=torch.Generator().manual_seed(first)).to(device)
        classes = torch.arange(count, device=device) % model.num_classes
        classes = torch.cat([classes, torch.full_like(classes, model.num_classes)])
        for t in scheduler.timesteps:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                prediction = unet(torch.cat([sample, sample]), t, class_labels=classes).sample.float()
            conditional, unconditional = prediction.chunk(2)
            sample = scheduler.step(unconditional + guidance * (conditional - unconditional), t, sample).prev_sample
        sample.cpu()  # the images leave the device, as the generator's do
    return images / (time.perf_counter() - start)


def ours(generator: ClassDiffusionGenerator, images: int) -> float:
    names = generator.model.class_names
    requests = [
        ImageRequest(i % len(names), names[i % len(names)], i, image_seed(0, i % len(names), i)) for i in range(images)
    ]
    start = time.perf_counter()
    generator.generate(requests)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a folder written by ClassDiffusionModel.save; default: random weights")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, help="solver steps; default: the model config's")
    parser.add_argument("--guidance-scale", type=float, help="default: the model config's")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], help="default: the model config's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs is reported")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.model:
        model = ClassDiffusionModel.load(args.model)
    else:
        config = ClassDiffusionConfig()
        names = [f"class{i}" for i in range(10)]
        model = ClassDiffusionModel(build_unet(config, 1, (28, 28), len(names)), config, names, (28, 28), 1)
    generator = ClassDiffusionGenerator(
        model,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        precision=args.precision,
        batch_size=args.batch_size,
        device=args.device,
    )
    if generator.guidance_scale == 1:
        parser.error("the bare loop always runs both guidance halves: compare at guidance != 1")
    print(
        f"{generator.device}, {generator.precision}, {model.image_size} x{model.channels}, "
        f"{generator.steps} DPM-Solver++ steps, guidance "
        f"{generator.guidance_scale}, batch {args.batch_size}, {args.images} images, {torch.get_num_threads()} "
        f"threads, {sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f}M parameters"
    )

    ours(generator, min(args.images, 2 * args.batch_size))  # warm-up: allocator, oneDNN kernels, thread pool
    results: dict[str, list[float]] = {"bare diffusers loop": [], "ClassDiffusionGenerator": []}
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
        results["bare diffusers loop"].append(bare_loop(model, generator, args.images, args.batch_size))
        results["ClassDiffusionGenerator"].append(ours(generator, args.images))
    bare = max(results["bare diffusers loop"])
    for label, rates in results.items():
        print(
            f"{label:<24} {max(rates):7.1f} images/s (best of {args.repeats}; all: "
            f"{', '.join(f'{r:.1f}' for r in rates)}; {max(rates) / bare:.2f}x bare)"
        )


if __name__ == "__main__":
    main()
