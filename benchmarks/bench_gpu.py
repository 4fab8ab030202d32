"""GPU throughput in one command: the students' training and the generators' sampling, written to a JSON.

Imports only torch (with torchvision), diffusers and transformers, so it runs on a bare GPU machine without the
project. Measures, each after warm-up calls and with CUDA synchronisation, for about ``--seconds``:
- ResNet-50 training at 224 px (100 classes, batch 256, bf16 autocast, channels_last, SGD with Nesterov momentum),
  eager and ``torch.compile``d;
- the narrow student's training (ResNet-18's layout 16 channels wide, one-channel 28 px images, batch 128);
- Stable Diffusion v1.4 generating 512 px images at 25 DPM-Solver++ steps with classifier-free guidance (the
  text encoder, the UNet and the VAE decoder, as the generation pipeline runs them in fp16), img2img at strength
  0.75 from 512 px images, and Stable unCLIP 2.1 image variations at 768 px.

The diffusion models have random weights, built from the published configurations committed under
``benchmarks/configs/`` (same layers, same compute, nothing downloaded); their parameter counts are checked against
the published figures first. The generators are fed token ids instead of a tokenizer (whose vocabulary would have to
be downloaded): every prompt is padded to 77 tokens anyway. ``--smoke`` runs everything at tiny sizes (one timed
call each, no compilation) in seconds on a CPU. Usage:

    python benchmarks/bench_gpu.py [--out benchmarks/results/gpu_throughput.json] [--seconds 8] [--no-compile]
        [--smoke] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import PIL.Image
import torch
import torch.nn.functional as F
import transformers
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableUnCLIPImg2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import BasicBlock
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_throughput.json"
SD = "stable-diffusion-v1-4"
UNCLIP = "stable-diffusion-2-1-unclip"

# Millions of parameters of the published models. SD v1.4: its model card's UNet, CLIP ViT-L/14's text encoder
# (width 768) and the VAE. Stable unCLIP 2.1: SD 2.1's UNet (865.9 M) with its 4.3 M projection of the image
# embedding, OpenCLIP ViT-H's text encoder (width 1024, 23 of its 24 layers, as SD 2 uses it), CLIP ViT-H/14's image
# encoder with its projection, and the same VAE.
PUBLISHED_MILLIONS = {
    SD: {"unet": 859.5, "text_encoder": 123.1, "vae": 83.7},
    UNCLIP: {"unet": 870.2, "text_encoder": 340.4, "image_encoder": 632.1, "vae": 83.7},
}
PARAMETER_TOLERANCE = 0.002  # relative: a layer too many or too few, or a wrong width, is far outside it

# --smoke: the same models, shrunk so that a CPU builds and runs them in seconds.
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "unet": {
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "attention_head_dim": [2, 4],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "projection_class_embeddings_input_dim": 64,  # unCLIP: the image embedding and its noise level, 32 each
    },
    "vae": {
        "block_out_channels": [32, 64],
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
    },
    "text_encoder": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
    "image_encoder": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
        "image_size": 32,
        "patch_size": 4,
    },
    "image_normalizer": {"embedding_dim": 32},
    "feature_extractor": {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
}


DIFFUSERS_MODELS = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "image_normalizer": StableUnCLIPImageNormalizer}
TRANSFORMERS_MODELS = {
    "text_encoder": (CLIPTextConfig, CLIPTextModel),
    "image_encoder": (CLIPVisionConfig, CLIPVisionModelWithProjection),
}


def component_folder(configs: Path, model: str, component: str) -> Path:
    folder = configs / model / component
    if not folder.is_dir():
        raise FileNotFoundError(f"no committed configuration for {model} {component}: {folder} is missing")
    return folder


def build_component(configs: Path, model: str, component: str, smoke: bool = False) -> nn.Module:
    """One network of ``model`` from its committed configuration, with random weights, on the current default
    device (``with torch.device(...)``)."""
    folder = component_folder(configs, model, component)
    overrides = SMOKE_OVERRIDES.get(component, {}) if smoke else {}
    if component in DIFFUSERS_MODELS:
        model_class = DIFFUSERS_MODELS[component]
        return model_class.from_config(model_class.load_config(folder), **overrides)
    config_class, model_class = TRANSFORMERS_MODELS[component]
    return model_class(config_class.from_pretrained(folder, **overrides))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_parameter_counts(configs: Path = CONFIGS) -> dict[str, dict[str, float]]:
    """Millions of parameters of each committed model, built on the meta device (no memory, no time); raises when one
    is not the published figure."""
    counts: dict[str, dict[str, float]] = {}
    for model, published in PUBLISHED_MILLIONS.items():
        for component, expected in published.items():
            with torch.device("meta"):
                millions = count_parameters(build_component(configs, model, component)) / 1e6
            if abs(millions - expected) > PARAMETER_TOLERANCE * expected:
                folder = component_folder(configs, model, component)
                raise ValueError(
                    f"{folder} builds a {component} of {millions:.1f} M parameters, but the published {model} "
                    f"{component} has about {expected} M: the committed configuration is not the published one"
                )
            counts.setdefault(model, {})[component] = round(millions, 2)
    return counts


def narrow_student(width: int = 16, channels: int = 1, classes: int = 10) -> nn.Sequential:
    """The project's default student (resnet_narrow): ResNet-18's layout, two basic blocks per stage at widths w, 2w,
    4w, 8w, behind a 3x3 stride-1 stem (ImageNet's stem would shrink 28 px images too early)."""
    layers: list[nn.Module] = [
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    in_planes = width
    for stage, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            downsample = None
            if stride != 1 or in_planes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            layers.append(BasicBlock(in_planes, planes, stride, downsample))
            in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, classes)]
    return nn.Sequential(*layers)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(
    step: Callable[[], None], images_per_call: int, warmup: int, seconds: float, device: torch.device
) -> float:
    """Images/s of ``step`` after ``warmup`` calls (compilation, cuDNN's algorithm search, the allocator): the first
    timed call sets how many more follow so that the measurement lasts about ``seconds``; the device is synchronised
    only around the timed calls, so the host queues each call while the device runs the last."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - start
    more = max(0, round(seconds / first) - 1)
    start = time.perf_counter()
    for _ in range(more):
        step()
    synchronize(device)
    return (1 + more) * images_per_call / (first + time.perf_counter() - start)


def training_rate(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    batch_size: int,
    classes: int,
    device: torch.device,
    *,
    compiled: bool,
    warmup: int,
    seconds: float,
) -> float:
    """Training images/s as the engine trains a student: uint8 batches normalised on the device, channels_last,
    bf16 autocast, cross-entropy, SGD with Nesterov momentum and weight decay."""
    model = model.to(device, memory_format=torch.channels_last).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images = torch.randint(0, 256, (batch_size, *image_shape), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (batch_size,), device=device)

    def step() -> None:
        x = images.float().div_(255).sub_(0.5).div_(0.25).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return images_per_second(step, batch_size, warmup, seconds, device)


def build_models(
    configs: Path, model: str, components: tuple[str, ...], device: torch.device, dtype: torch.dtype, smoke: bool
) -> dict[str, nn.Module]:
    """Built directly on the device: initialising a billion random weights there takes a moment, on a CPU a minute."""
    with torch.device(device):
        built = {name: build_component(configs, model, name, smoke) for name in components}
    return {name: module.to(dtype).eval() for name, module in built.items()}


def dpm_solver(configs: Path, model: str) -> DPMSolverMultistepScheduler:
    """The project's sampler (DPM-Solver++) on the published noise schedule, as the generators swap it in."""
    folder = component_folder(configs, model, "scheduler")
    return DPMSolverMultistepScheduler.from_config(
        DPMSolverMultistepScheduler.load_config(folder), algorithm_type="dpmsolver++"
    )


def stable_diffusion(
    configs: Path, device: torch.device, dtype: torch.dtype, smoke: bool
) -> tuple[StableDiffusionPipeline, StableDiffusionImg2ImgPipeline]:
    models = build_models(configs, SD, ("unet", "vae", "text_encoder"), device, dtype, smoke)
    pipe = StableDiffusionPipeline(
        **models,
        tokenizer=None,
        scheduler=dpm_solver(configs, SD),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    for each in (pipe, img2img):
        each.set_progress_bar_config(disable=True)
    return pipe, img2img


def stable_unclip(configs: Path, device: torch.device, dtype: torch.dtype, smoke: bool) -> StableUnCLIPImg2ImgPipeline:
    components = ("unet", "vae", "text_encoder", "image_encoder", "image_normalizer")
    models = build_models(configs, UNCLIP, components, device, dtype, smoke)
    extractor = CLIPImageProcessor.from_pretrained(
        component_folder(configs, UNCLIP, "feature_extractor"),
        **(SMOKE_OVERRIDES["feature_extractor"] if smoke else {}),
    )
    noising = component_folder(configs, UNCLIP, "image_noising_scheduler")
    pipe = StableUnCLIPImg2ImgPipeline(
        **models,
        feature_extractor=extractor,
        image_noising_scheduler=DDPMScheduler.from_config(DDPMScheduler.load_config(noising)),
        tokenizer=None,
        scheduler=dpm_solver(configs, UNCLIP),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_token_ids(batch_size: int, device: torch.device) -> torch.Tensor:
    """CLIP token ids of ``batch_size`` prompts of ten words, then as many empty prompts (the unconditional half of
    classifier-free guidance), each padded with end-of-text to 77 tokens as Stable Diffusion's tokenizer pads."""
    start, end, word = 49406, 49407, 320
    prompt = [start] + [word] * 10 + [end] * 66
    empty = [start] + [end] * 76
    return torch.tensor([prompt] * batch_size + [empty] * batch_size, device=device)


def random_images(count: int, size: int, seed: int = 0) -> list[PIL.Image.Image]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, size, size, 3), dtype=torch.uint8, generator=generator)
    return [PIL.Image.fromarray(array.numpy()) for array in pixels]


def generation_rate(
    pipe: diffusers.DiffusionPipeline,
    batch_size: int,
    steps: int,
    guidance_scale: float,
    inputs: dict[str, Any],
    device: torch.device,
    *,
    warmup: int,
    seconds: float,
) -> float:
    """Generated images/s of whole pipeline calls: text encoding, the denoising steps, VAE decoding."""
    token_ids = prompt_token_ids(batch_size, device)

    @torch.inference_mode()
    def step() -> None:
        prompt_embeds, negative_prompt_embeds = pipe.text_encoder(token_ids)[0].chunk(2)
        pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            output_type="pt",
            **inputs,
        )

    return images_per_second(step, batch_size, warmup, seconds, device)


def report(measurement: str, rate: float) -> None:
    print(f"{measurement:<52}{rate:12,.2f} images/s", flush=True)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {setting}: CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class Sizes:
    """What is measured: the real sizes, or tiny ones for --smoke."""

    resnet_size: int = 224
    resnet_batch: int = 256
    narrow_batch: int = 128
    sd_size: int = 512
    unclip_size: int = 768
    generate_batch: int = 8
    steps: int = 25
    train_warmup: int = 5
    compile_warmup: int = 3  # the first call compiles the forward, the first backward the backward
    generate_warmup: int = 1


SMOKE_SIZES = Sizes(
    resnet_size=32,
    resnet_batch=2,
    narrow_batch=2,
    sd_size=32,
    unclip_size=32,
    generate_batch=2,
    steps=2,
    train_warmup=1,
    compile_warmup=1,
    generate_warmup=0,
)
STRENGTH = 0.75  # img2img: the pipeline runs int(steps * strength) of the steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement, after warm-up")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (its ResNet-50 figure: null)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one timed call each: checks, not figures")
    parser.add_argument("--device", default="auto", help="auto (cuda where available), cuda, cuda:N or cpu")
    parser.add_argument("--guidance-scale", type=float, default=2.0, help="the paper's generation guidance")
    args = parser.parse_args()
    if args.seconds <= 0:
        raise SystemExit(f"--seconds must be positive, got {args.seconds}")
    began = time.perf_counter()
    diffusers.utils.logging.set_verbosity_error()  # their notes on disabled safety checkers and dtype casts
    transformers.utils.logging.set_verbosity_error()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    generation_dtype = torch.float16 if device.type == "cuda" else torch.float32  # as the generators load
    sizes = SMOKE_SIZES if args.smoke else Sizes()
    seconds = 0.0 if args.smoke else args.seconds
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"
    print(
        f"{device_name}, torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
        f"{transformers.__version__}{', smoke sizes' if args.smoke else ''}; about {seconds:g} s per measurement"
    )
    results: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "smoke": args.smoke,
        "seconds_per_measurement": seconds,
    }

    def record(key: str, value: Any) -> None:
        """Written after every measurement, so that a run stopped at its time limit keeps what it measured."""
        results[key] = value
        results["total_seconds"] = round(time.perf_counter() - began, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    parameters = check_parameter_counts()
    for model, counts in parameters.items():
        print(f"{model} parameters (M): " + ", ".join(f"{name} {value:.1f}" for name, value in counts.items()))
    record("parameters_millions", parameters)

    def train(model: nn.Module, shape: tuple[int, int, int], batch: int, classes: int, compiled: bool) -> float:
        warmup = sizes.compile_warmup if compiled else sizes.train_warmup
        return training_rate(model, shape, batch, classes, device, compiled=compiled, warmup=warmup, seconds=seconds)

    resnet_shape, resnet_batch = (3, sizes.resnet_size, sizes.resnet_size), sizes.resnet_batch
    resnet = {"eager_images_per_second": train(resnet50(num_classes=100), resnet_shape, resnet_batch, 100, False)}
    resnet |= {"compiled_images_per_second": None, "batch_size": resnet_batch, "image_size": sizes.resnet_size}
    report(f"resnet50 training, {sizes.resnet_size} px, batch {resnet_batch}, eager", resnet["eager_images_per_second"])
    record("resnet50_224", resnet)
    narrow = train(narrow_student(), (1, 28, 28), sizes.narrow_batch, 10, False)
    report(f"narrow student training, 28 px, batch {sizes.narrow_batch}", narrow)
    record("narrow_28", {"images_per_second": narrow, "batch_size": sizes.narrow_batch, "image_size": 28})

    def generate(key: str, pipe: diffusers.DiffusionPipeline, size: int, inputs: dict[str, Any], **more: Any) -> None:
        batch = sizes.generate_batch
        rate = generation_rate(
            pipe, batch, sizes.steps, args.guidance_scale, inputs, device, warmup=sizes.generate_warmup, seconds=seconds
        )
        report(f"{key}: {size} px, batch {batch}, {sizes.steps} steps", rate)
        dtype = str(generation_dtype).removeprefix("torch.")
        entry = {"images_per_second": rate, "steps": sizes.steps, "batch_size": batch, "image_size": size}
        record(key, entry | {"guidance_scale": args.guidance_scale, "dtype": dtype, **more})

    text_to_image, img2img = stable_diffusion(CONFIGS, device, generation_dtype, args.smoke)
    generate(
        "stable_diffusion_v1_4_512", text_to_image, sizes.sd_size, {"height": sizes.sd_size, "width": sizes.sd_size}
    )
    init_images = random_images(sizes.generate_batch, sizes.sd_size)
    generate("img2img_512", img2img, sizes.sd_size, {"image": init_images, "strength": STRENGTH}, strength=STRENGTH)
    del text_to_image, img2img
    if device.type == "cuda":
        torch.cuda.empty_cache()
    unclip = stable_unclip(CONFIGS, device, generation_dtype, args.smoke)
    size = sizes.unclip_size
    generate(
        "unclip_768", unclip, size, {"image": random_images(sizes.generate_batch, size), "height": size, "width": size}
    )
    del unclip

    # Last, as the slowest to prepare: a run stopped at its limit loses this figure alone.
    if not (args.smoke or args.no_compile):
        compiled = train(resnet50(num_classes=100), resnet_shape, resnet_batch, 100, True)
        report(f"resnet50 training, {sizes.resnet_size} px, batch {resnet_batch}, compiled", compiled)
        record("resnet50_224", resnet | {"compiled_images_per_second": compiled})
    print(f"wrote {args.out} after {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
