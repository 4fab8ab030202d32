"""What the `generation` pipeline generates (``generation`` in the parameters), and the backend it builds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from mind_the_gap.config import Config
from mind_the_gap.devices import resolve_device
from mind_the_gap.generators.base import ImageGenerator
from mind_the_gap.generators.prompts import PromptConfig
from mind_the_gap.generators.store import parse_shard

Backend = Literal["class_diffusion", "stable_diffusion", "img2img", "unclip"]


class GenerationConfig(Config):
    backend: Backend = "class_diffusion"
    # img2img (SDEdit) runs on the offline generator or on Stable Diffusion.
    img2img_model: Literal["class_diffusion", "stable_diffusion"] = "class_diffusion"
    images_per_class: int = Field(800, ge=1)
    seed: int = 0
    # Images per forward pass of every backend, and per write to disk (a kill loses at most one batch).
    batch_size: int = Field(250, ge=1)
    shard: str | None = Field(None, description="'i/N': generate only this disjoint slice (N machines at once)")
    # Diffusers backends: a Hub id or a local folder.
    model_id: str = "CompVis/stable-diffusion-v1-4"
    unclip_model_id: str = "stabilityai/stable-diffusion-2-1-unclip"
    variant: str | None = Field(None, description="the weights' file variant to load (fp16: *.fp16.safetensors)")
    scheduler: str = "dpmsolver++"
    steps: int | None = Field(None, ge=1, description="null: the backend's default")
    guidance_scale: float | None = Field(None, ge=0, description="null: the backend's default")
    negative_prompt: str = ""
    # Each model generates at its native resolution (Stable Diffusion v1.4: 512 px, Stable unCLIP 2.1: 768 px),
    # and its images are resized to the real images' size.
    height: int = Field(512, ge=8)
    width: int = Field(512, ge=8)
    unclip_height: int = Field(768, ge=8)
    unclip_width: int = Field(768, ge=8)
    safety_checker: bool = False
    strength: float = Field(0.5, ge=0, le=1, description="img2img: 0 keeps the real image, 1 is pure generation")
    unclip_noise_level: int = Field(0, ge=0)
    prompts: PromptConfig = PromptConfig()
    device: str = "auto"
    allow_cpu: bool = Field(True, description="false: device auto refuses to generate on a machine without a GPU")

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @property
    def uses_real_images(self) -> bool:
        return self.backend in ("img2img", "unclip")

    def for_this_process(self, environ: Mapping[str, str] = os.environ) -> GenerationConfig:
        """This config with the shard and GPU of this process, when a launcher started several or a shard is given.

        ``accelerate launch`` and ``torchrun`` set RANK, WORLD_SIZE and LOCAL_RANK: with no ``shard`` given, process
        ``RANK`` of ``WORLD_SIZE`` takes shard ``RANK/WORLD_SIZE``. With ``device: auto``, a shard's process takes
        the GPU ``shard_gpu`` picks.
        """
        world = int(environ.get("WORLD_SIZE", "1"))
        shard = self.shard if self.shard is not None or world <= 1 else f"{int(environ.get('RANK', '0'))}/{world}"
        gpu = shard_gpu(shard, environ, torch.cuda.device_count()) if self.device == "auto" else None
        update = {"shard": shard} | ({"device": f"cuda:{gpu}"} if gpu is not None else {})
        return self.model_copy(update=update)


def shard_gpu(shard: str | None, environ: Mapping[str, str], gpus: int) -> int | None:
    """The GPU a shard's process generates on: ``LOCAL_RANK`` where a launcher set it, else shard ``i``'s GPU
    ``i % gpus``, so that shards started by hand on one machine spread over its GPUs; None without a shard or GPUs."""
    if shard is None or gpus == 0:
        return None
    if "LOCAL_RANK" in environ:
        return int(environ["LOCAL_RANK"])
    return parse_shard(shard)[0] % gpus


def build_generator(
    config: GenerationConfig, channels: int, image_size: int, class_diffusion_path: Path | None
) -> ImageGenerator:
    """The backend ``config`` names, producing images of the real data's size and channel count, on the device
    ``generation.device`` resolves to."""
    device = resolve_device(config.device, "generation.device", allow_cpu=config.allow_cpu)
    offline = config.backend == "class_diffusion" or (
        config.backend == "img2img" and config.img2img_model == "class_diffusion"
    )
    if offline:
        from mind_the_gap.generators.class_diffusion import ClassDiffusionGenerator, ClassDiffusionModel

        if class_diffusion_path is None:
            raise ValueError(
                f"generation.backend {config.backend} needs the offline generator: set generator_training.enabled"
            )
        sampling = {"steps": config.steps, "guidance_scale": config.guidance_scale}
        return ClassDiffusionGenerator(
            ClassDiffusionModel.load(class_diffusion_path),
            strength=config.strength if config.backend == "img2img" else None,
            batch_size=config.batch_size,
            device=device,
            **{k: v for k, v in sampling.items() if v is not None},
        )

    from mind_the_gap.generators import diffusers_backends as backends

    unclip = config.backend == "unclip"
    settings = {
        "scheduler": config.scheduler,
        "negative_prompt": config.negative_prompt,
        "height": config.unclip_height if unclip else config.height,  # the model's native resolution
        "width": config.unclip_width if unclip else config.width,
        "output_size": image_size,
        "channels": channels,
        "safety_checker": config.safety_checker,
        "batch_size": config.batch_size,
        "device": device,
        "variant": config.variant,
        **({"steps": config.steps} if config.steps is not None else {}),
        **({"guidance_scale": config.guidance_scale} if config.guidance_scale is not None else {}),
    }
    if config.backend == "stable_diffusion":
        return backends.StableDiffusionGenerator(config.model_id, **settings)
    if config.backend == "img2img":
        return backends.Img2ImgGenerator(config.model_id, strength=config.strength, **settings)
    settings.pop("safety_checker")
    return backends.UnclipGenerator(config.unclip_model_id, noise_level=config.unclip_noise_level, **settings)
