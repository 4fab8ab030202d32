"""Generation throughput: the image store (`generate_into` with `StableDiffusionGenerator`) against a bare diffusers
pipeline call.

Both run the same model with the same prompts, batch size, steps, guidance, size and per-image seeds; the bare loop
only calls the pipeline, the store also converts to uint8, writes PNG files atomically and appends the manifest.
Without ``--model-id`` the model is a tiny random-weight Stable Diffusion built on the spot (32 px). Usage:

    python benchmarks/bench_diffusers_generation.py [--model-id CompVis/stable-diffusion-v1-4 --size 512]
        [--images 64] [--batch-size 8] [--steps 25] [--device auto] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from mind_the_gap.generators.diffusers_backends import SCHEDULERS, StableDiffusionGenerator, save_tiny_stable_diffusion
from mind_the_gap.generators.prompts import PromptConfig
from mind_the_gap.generators.store import generate_into, plan_requests


def bare_loop(pipe: StableDiffusionPipeline, requests, args: argparse.Namespace) -> float:
    """Images/s of the plainest loop over the same batches: the pipeline call, nothing else."""
    start = time.perf_counter()
    for i in range(0, len(requests), args.batch_size):
        batch = requests[i : i + args.batch_size]
        pipe(
            [r.prompt for r in batch],
            height=args.size,
            width=args.size,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            generator=[torch.Generator().manual_seed(r.seed) for r in batch],
            output_type="pt",
        )
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    return len(requests) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-id", help="a Hub id or local folder; default: a tiny random-weight pipeline")
    parser.add_argument("--size", type=int, help="generation height and width (default: 32 tiny, 512 otherwise)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--scheduler", default="dpmsolver++", choices=sorted(SCHEDULERS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's); 1 where other work shares cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        model_id = args.model_id or str(save_tiny_stable_diffusion(Path(scratch) / "models"))
        args.size = args.size or (512 if args.model_id else 32)
        generator = StableDiffusionGenerator(
            model_id,
            scheduler=args.scheduler,
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            height=args.size,
            width=args.size,
            batch_size=args.batch_size,
            device=args.device,
        )
        classes = ("tench", "goldfish", "great white shark", "tiger shark")
        prompts = PromptConfig(mode="plain")
        per_class = -(-args.images // len(classes))
        requests = plan_requests(classes, per_class, 0, prompts.prompt)[: args.images]

        # The bare pipeline as a user would load it, with the same dtype, scheduler and device.
        bare = StableDiffusionPipeline.from_pretrained(
            model_id,
            safety_checker=None,
            requires_safety_checker=False,
            **({"torch_dtype": generator.dtype} if generator.dtype != torch.float32 else {}),
        )
        scheduler_class, overrides = SCHEDULERS[args.scheduler] or (type(bare.scheduler), {})
        bare.scheduler = scheduler_class.from_config(bare.scheduler.config, **overrides)
        bare.set_progress_bar_config(disable=True)
        bare.to(generator.device)
        print(
            f"{Path(model_id).name} on {generator.device} ({generator.dtype}), {args.images} images of "
            f"{args.size}x{args.size}, batch {args.batch_size}, {args.steps} steps, "
            f"{torch.get_num_threads()} threads"
        )

        # Warm-up (weights, kernels, allocator) so that neither measurement is charged for it.
        bare_loop(bare, requests[: args.batch_size], args)
        generator.generate(requests[: args.batch_size])
        rates = {"bare": bare_loop(bare, requests, args)}
        stats = generate_into(Path(scratch) / "store", requests, generator, args.batch_size, progress=False)
        rates["store"] = stats.images_per_second
        print(f"bare diffusers pipeline        {rates['bare']:8.2f} images/s")
        print(f"generate_into (PNG + manifest) {rates['store']:8.2f} images/s ({rates['store'] / rates['bare']:.0%})")


if __name__ == "__main__":
    main()
