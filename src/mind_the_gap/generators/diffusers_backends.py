"""Stable Diffusion backends through diffusers: text-to-image, img2img (SDEdit) and unCLIP image variations.

Each implements ``ImageGenerator``: an image depends only on its own request (prompt, seed, init image), never on
the batch it is generated in, because every image gets its own ``torch.Generator``. Weights load on the first
``generate`` call, so a run whose images are all on disk never needs them; loading a model that is not available
fails within seconds with ``ModelUnavailableError``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableUnCLIPImg2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from mind_the_gap.data.sources import RESAMPLING
from mind_the_gap.devices import resolve_device
from mind_the_gap.generators.base import ImageRequest

# Scheduler name -> (class, config overrides); "default" keeps the one the model ships with.
SCHEDULERS: dict[str, tuple[type, dict[str, Any]] | None] = {
    "default": None,
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),  # PLMS, as Stable Diffusion runs it
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the real data's RGB -> grey conversion
WEIGHTS_HINT = (
    "to provide weights, pass a local folder holding the diffusers pipeline as model_id, "
    "or unset HF_HUB_OFFLINE on a machine with network"
)


class ModelUnavailableError(RuntimeError):
    """The model's weights are neither in a local folder nor in the Hugging Face cache, and cannot be fetched."""


def _reason(exc: BaseException) -> str:
    """The first line of an error, cut short: loaders' messages run long."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= 160 else line[:157] + "..."


def load_pipeline(pipeline_class: type[DiffusionPipeline], model_id: str, **kwargs: Any) -> DiffusionPipeline:
    """``pipeline_class.from_pretrained`` that fails fast, in one line saying how to provide the weights.

    A local folder loads directly; a Hub id is looked up in the cache first, and fetched only when
    HF_HUB_OFFLINE is not set (a machine without network fails at once on the name lookup).
    """
    if Path(model_id).expanduser().is_dir():
        try:
            return pipeline_class.from_pretrained(Path(model_id).expanduser(), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"cannot load diffusers model {model_id!r}: the folder is not a complete diffusers pipeline "
                f"({_reason(exc)}); {WEIGHTS_HINT}"
            ) from exc
    if not re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", model_id):  # not a Hub id either: a folder that is missing
        raise ModelUnavailableError(f"cannot load diffusers model {model_id!r}: no such folder; {WEIGHTS_HINT}")
    try:
        return pipeline_class.from_pretrained(model_id, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise ModelUnavailableError(
                f"cannot load diffusers model {model_id!r}: not in the Hugging Face cache and HF_HUB_OFFLINE is "
                f"set; {WEIGHTS_HINT}"
            ) from exc
    try:
        return pipeline_class.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"cannot load diffusers model {model_id!r}: not in the Hugging Face cache and the download failed "
            f"({_reason(exc)}); {WEIGHTS_HINT}"
        ) from exc


def fit_images(images: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Float images in [0, 1] (B, C, H, W) to ``channels`` (1 -> 3 repeats grey, 3 -> 1 takes luma), then
    resized (the real data's filter, antialiased) to ``size``: the order and rules of the real data's conversion."""
    if channels == 1 and images.shape[1] == 3:
        images = (images * images.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode=RESAMPLING, antialias=True)
    return images


def to_uint8(images: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Float images in [0, 1] as uint8 (B, channels, *size) on the CPU."""
    images = fit_images(images.float(), size, channels)
    return (images * 255).round_().clamp_(0, 255).to(torch.uint8).cpu().contiguous()


def _init_images(requests: Sequence[ImageRequest]) -> torch.Tensor:
    """The requests' real images as one uint8 batch; each request must carry one."""
    missing = [f"{r.class_name}/{r.index}" for r in requests if r.init_image is None]
    if missing:
        raise ValueError(f"img2img and unclip need request.init_image; missing for {', '.join(missing[:5])}")
    return torch.stack([r.init_image for r in requests])


class _DiffusersGenerator:
    """What the three backends share: settings, lazy loading, batching, seeding and the uint8 output."""

    name: str
    pipeline_class: type[DiffusionPipeline]

    def __init__(
        self,
        model_id: str,
        *,
        scheduler: str = "dpmsolver++",
        steps: int = 25,
        guidance_scale: float = 2.0,
        negative_prompt: str = "",
        height: int = 512,
        width: int = 512,
        output_size: int | None = None,
        channels: int = 3,
        safety_checker: bool = False,
        batch_size: int = 8,
        device: str | torch.device = "auto",
        variant: str | None = None,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if height % 8 or width % 8 or height < 8 or width < 8:
            raise ValueError(f"height and width must be positive multiples of 8, got {height}x{width}")
        if steps < 1 or batch_size < 1 or guidance_scale < 0 or (output_size is not None and output_size < 1):
            raise ValueError(
                f"need steps >= 1, batch_size >= 1, guidance_scale >= 0 and output_size >= 1, got {steps}, "
                f"{batch_size}, {guidance_scale}, {output_size}"
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.model_id, self.scheduler, self.steps = model_id, scheduler, steps
        self.guidance_scale = float(guidance_scale)  # 2 and 2.0 are one setting, so must give one run key
        self.negative_prompt, self.height, self.width = negative_prompt, height, width
        self.output_size, self.channels, self.safety_checker = output_size, channels, safety_checker
        self.batch_size, self.variant = batch_size, variant
        self.device = resolve_device(device, "generation.device")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self._pipeline: DiffusionPipeline | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images ``generate`` returns."""
        return (self.output_size, self.output_size) if self.output_size else (self.height, self.width)

    def describe(self) -> dict[str, Any]:
        # The dtype changes the images (fp16 on CUDA, fp32 on the CPU); batch size and device type do not.
        return {
            "backend": self.name,
            "model_id": self.model_id,
            "scheduler": self.scheduler,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
            "height": self.height,
            "width": self.width,
            "output_size": self.output_size,
            "channels": self.channels,
            "safety_checker": self.safety_checker,
            "dtype": str(self.dtype).removeprefix("torch."),
            # A variant's weights (fp16) may round otherwise than the full-precision ones.
            **({"variant": self.variant} if self.variant is not None else {}),
        }

    @property
    def pipeline(self) -> DiffusionPipeline:
        if self._pipeline is None:
            self._pipeline = self._load()
        return self._pipeline

    def _load_kwargs(self) -> dict[str, Any]:
        # safety_checker=None skips loading the checker, which would black out its (frequent) false positives.
        return {} if self.safety_checker else {"safety_checker": None, "requires_safety_checker": False}

    def _load(self) -> DiffusionPipeline:
        # Load in the final dtype: from_pretrained keeps in fp32 the modules that need it, a later .to() would not;
        # weights of a variant stored in fp16 are cast up on the CPU.
        variant = {} if self.variant is None else {"variant": self.variant}
        pipe = load_pipeline(
            self.pipeline_class, self.model_id, torch_dtype=self.dtype, **variant, **self._load_kwargs()
        )
        if SCHEDULERS[self.scheduler] is not None:
            scheduler_class, overrides = SCHEDULERS[self.scheduler]
            pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.device)
        pipe.unet.set_attn_processor(AttnProcessor2_0())  # PyTorch's fused scaled-dot-product attention
        if self.device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        return pipe

    def generate(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        if not requests:
            return torch.empty((0, self.channels, *self.size), dtype=torch.uint8)
        batches = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        return torch.cat([self._generate_batch(batch) for batch in batches])

    def _generate_batch(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        # CPU generators give the same starting noise whatever the device.
        generators = [torch.Generator().manual_seed(r.seed) for r in requests]
        images = self.pipeline(
            **self._inputs(requests),
            prompt=[r.prompt for r in requests],
            negative_prompt=[self.negative_prompt] * len(requests) if self.negative_prompt else None,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=generators,
            output_type="pt",
        ).images
        return to_uint8(images, self.size, self.channels)

    def _inputs(self, requests: Sequence[ImageRequest]) -> dict[str, Any]:
        """The pipeline arguments particular to a backend."""
        raise NotImplementedError


class StableDiffusionGenerator(_DiffusersGenerator):
    """Text-to-image with ``StableDiffusionPipeline`` (Stable Diffusion v1.4 by default)."""

    name = "stable_diffusion"
    pipeline_class = StableDiffusionPipeline

    def __init__(self, model_id: str = "CompVis/stable-diffusion-v1-4", **settings: Any) -> None:
        super().__init__(model_id, **settings)

    def _inputs(self, requests: Sequence[ImageRequest]) -> dict[str, Any]:
        return {"height": self.height, "width": self.width}


class Img2ImgGenerator(_DiffusersGenerator):
    """SDEdit with ``StableDiffusionImg2ImgPipeline``: each real ``init_image`` is noised to ``strength`` (0: the
    image itself, 1: pure noise) and denoised, at the generation size ``height`` x ``width``."""

    name = "img2img"
    pipeline_class = StableDiffusionImg2ImgPipeline

    def __init__(self, model_id: str = "CompVis/stable-diffusion-v1-4", *, strength: float = 0.5, **settings: Any):
        super().__init__(model_id, **settings)
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        if 0 < strength and int(self.steps * strength) < 1:  # the pipeline runs int(steps * strength) steps
            raise ValueError(f"strength {strength} with {self.steps} steps leaves no denoising step: raise either")
        self.strength = float(strength)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "strength": self.strength}

    def _generate_batch(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        if self.strength == 0:  # no noise, nothing to denoise: the real image, at the output size
            return to_uint8(_init_images(requests).float() / 255, self.size, self.channels)
        return super()._generate_batch(requests)

    def _inputs(self, requests: Sequence[ImageRequest]) -> dict[str, Any]:
        init = _init_images(requests).to(self.device).float() / 255
        return {"image": fit_images(init, (self.height, self.width), 3), "strength": self.strength}


class UnclipGenerator(_DiffusersGenerator):
    """Image variations with ``StableUnCLIPImg2ImgPipeline`` (Stable unCLIP, SD 2.1): the UNet is conditioned on
    the CLIP image embedding of each real ``init_image`` (noised to ``noise_level``) and on the prompt."""

    name = "unclip"
    pipeline_class = StableUnCLIPImg2ImgPipeline

    def __init__(
        self,
        model_id: str = "stabilityai/stable-diffusion-2-1-unclip",
        *,
        noise_level: int = 0,
        height: int = 768,
        width: int = 768,
        **settings: Any,
    ) -> None:
        if settings.get("safety_checker"):
            raise ValueError("Stable unCLIP has no safety checker: leave safety_checker off")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        super().__init__(model_id, height=height, width=width, **settings)
        self.noise_level = noise_level

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "noise_level": self.noise_level}

    def _load_kwargs(self) -> dict[str, Any]:
        return {}

    def _inputs(self, requests: Sequence[ImageRequest]) -> dict[str, Any]:
        # PIL images go through the pipeline's CLIP feature extractor (resize, crop, normalise).
        init = _init_images(requests).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
        return {
            "image": [Image.fromarray(np.ascontiguousarray(array)) for array in init],
            "noise_level": self.noise_level,
            "height": self.height,
            "width": self.width,
        }


def tiny_clip_tokenizer(vocab_dir: Path) -> CLIPTokenizer:
    """A CLIP tokenizer of a few kilobytes of vocabulary (letters, digits and some punctuation), its files written
    to ``vocab_dir``: for tiny random-weight models."""
    vocab_dir.mkdir(parents=True, exist_ok=True)
    symbols = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789,.-'"))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:  # byte-level BPE: every symbol alone and as the end of a word
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(f"{symbol}</w>", len(vocab))
    (vocab_dir / "vocab.json").write_text(json.dumps(vocab))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77)


def save_tiny_stable_diffusion(directory: Path, unclip: bool = False, variant: str | None = None) -> Path:
    """A Stable Diffusion pipeline (``unclip``: a Stable unCLIP one) with random weights and a few kilobytes of
    vocabulary, saved like a downloaded model: for tests, benchmarks and offline smoke runs at 32 px. ``variant``
    ``fp16`` saves only half-precision weights, as a cache holding only a model's fp16 files has them."""
    directory = Path(directory)
    tokenizer = tiny_clip_tokenizer(directory / "vocab")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            sample_size=32,
        )
        unet_config = dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        )
        scheduler_config = dict(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        if not unclip:
            pipe = StableDiffusionPipeline(
                vae=vae,
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                unet=UNet2DConditionModel(**unet_config),
                scheduler=DDIMScheduler(**scheduler_config),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            embedding = 32
            pipe = StableUnCLIPImg2ImgPipeline(
                feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
                image_encoder=CLIPVisionModelWithProjection(
                    CLIPVisionConfig(
                        hidden_size=embedding,
                        projection_dim=embedding,
                        num_hidden_layers=2,
                        num_attention_heads=4,
                        image_size=32,
                        intermediate_size=37,
                        patch_size=4,
                    )
                ),
                image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embedding),
                image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
                tokenizer=tokenizer,
                text_encoder=text_encoder,
                # The image embedding and its noise-level embedding enter the UNet as a class embedding.
                unet=UNet2DConditionModel(
                    **unet_config, class_embed_type="projection", projection_class_embeddings_input_dim=2 * embedding
                ),
                scheduler=DDIMScheduler(**scheduler_config, prediction_type="v_prediction"),
                vae=vae,
            )
    model_dir = directory / ("tiny-unclip" if unclip else "tiny-stable-diffusion")
    if variant == "fp16":
        pipe.to(torch.float16)
    pipe.save_pretrained(model_dir, variant=variant)
    return model_dir
