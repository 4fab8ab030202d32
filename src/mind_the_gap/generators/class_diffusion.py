"""A small class-conditional diffusion model trained on the real generator pool: the offline stand-in for Stable
Diffusion when no pretrained weights can be had.

``train_class_diffusion`` fits a diffusers ``UNet2DModel`` (class embeddings, one extra "null" class for
classifier-free guidance) with DDPM training (v- or epsilon-prediction) and keeps an EMA copy of its weights;
``ClassDiffusionModel`` holds that EMA UNet and saves it as safetensors + JSON; ``ClassDiffusionGenerator``
samples it with DPM-Solver++ as an ``ImageGenerator`` backend, from noise or, with ``strength``, from a noised
real image (SDEdit).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import autocast, resolve_device, resolve_precision
from mind_the_gap.files import write_atomically
from mind_the_gap.generators.base import ImageRequest

# diffusers takes seconds to import, and every `kedro run` imports this module with the pipelines: it is imported
# where a UNet or scheduler is built.
if TYPE_CHECKING:
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

log = logging.getLogger(__name__)

WEIGHTS_FILE, CONFIG_FILE = "unet.safetensors", "model.json"
Precision = Literal["auto", "float32", "bfloat16"]


class ClassDiffusionConfig(Config):
    """Architecture, training and sampling of the class-conditional diffusion model.

    The defaults suit 28x28 or 32x32 images on a CPU: on 2 cores with native bf16 they train in under 4 minutes on
    10,000 Fashion-MNIST images (about 8 in float32), whose samples a real-trained student then recognises 96% of
    the time, and sample 60-90 images/s (24-31 in float32; ``benchmarks/bench_class_diffusion.py``).
    """

    model_config = ConfigDict(extra="forbid")

    # Architecture: one UNet level per width, down-sampling by 2 between levels.
    block_out_channels: tuple[int, ...] = Field((16, 32, 64), min_length=1)
    layers_per_block: int = Field(1, ge=1)
    attention: bool = False  # self-attention in the middle block, at the lowest resolution
    norm_num_groups: int = Field(8, ge=1)

    # Training.
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    num_train_timesteps: int = Field(1000, ge=2)
    # v-prediction keeps few-step sampling stable at the cosine schedule's near-zero-signal end without clipping.
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    class_dropout: float = Field(0.1, ge=0, lt=1)  # labels swapped for the null class, for classifier-free guidance
    seed: int = 0
    # Autocast dtype of training and sampling; auto: bfloat16 on GPUs that have it and on CPUs with native bf16
    # (AMX/AVX-512 BF16), where it is faster, float32 elsewhere.
    precision: Precision = "auto"
    log_every: int = Field(50, ge=1)

    # Sampling (the generator's defaults).
    sampling_steps: int = Field(10, ge=1)
    guidance_scale: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _check_groups(self) -> ClassDiffusionConfig:
        if any(width % self.norm_num_groups for width in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups {self.norm_num_groups} must divide every block_out_channels {self.block_out_channels}"
            )
        return self


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` or ``bfloat16``: the precision as a generator's description and the trained model's key hold it."""
    return str(dtype).removeprefix("torch.")


def build_unet(config: ClassDiffusionConfig, channels: int, size: tuple[int, int], num_classes: int) -> UNet2DModel:
    """The UNet for ``num_classes`` classes; class ``num_classes`` is the null class of classifier-free guidance."""
    from diffusers import UNet2DModel

    levels = len(config.block_out_channels)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        add_attention=config.attention,
        norm_num_groups=config.norm_num_groups,
        attention_head_dim=min(32, config.block_out_channels[-1]),
        num_class_embeds=num_classes + 1,
    )


def _padding(config: ClassDiffusionConfig, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that makes ``size`` divisible by every down-sampling of the UNet."""
    multiple = 2 ** (len(config.block_out_channels) - 1)
    (top, bottom), (left, right) = (_split(-length % multiple) for length in size)
    return left, right, top, bottom


def _split(total: int) -> tuple[int, int]:
    return total // 2, total - total // 2


def to_model_range(images: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """uint8 images to float in [-1, 1], edge-padded to the UNet's size (edges rather than zeros: no false border)."""
    images = images.float() / 127.5 - 1
    return F.pad(images, padding, mode="replicate") if any(padding) else images


def to_uint8(images: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Float images in [-1, 1] at the UNet's size back to uint8 at the data's size, on the CPU."""
    left, right, top, bottom = padding
    images = images[..., top : images.shape[-2] - bottom, left : images.shape[-1] - right]
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu().contiguous()


class ClassDiffusionModel:
    """The EMA UNet with what sampling needs: its config, class names and the images' size and channels."""

    def __init__(
        self,
        unet: UNet2DModel,
        config: ClassDiffusionConfig,
        class_names: Sequence[str],
        image_size: tuple[int, int],
        channels: int,
    ) -> None:
        self.unet = unet.eval().requires_grad_(False)
        self.config, self.class_names = config, tuple(class_names)
        self.image_size, self.channels = (int(image_size[0]), int(image_size[1])), int(channels)
        self.padding = _padding(config, self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """SHA-256 of the weights (names, shapes and bytes): identifies the model in a generator's description."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.unet.state_dict().items()):
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Weights as safetensors and the rest as JSON, each written to a temporary name and renamed into place."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in self.unet.state_dict().items()}
        meta = {
            "config": self.config.model_dump(mode="json"),
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "channels": self.channels,
        }
        write_atomically(directory / WEIGHTS_FILE, lambda temp: save_file(weights, temp))
        text = json.dumps(meta, indent=2)
        write_atomically(directory / CONFIG_FILE, lambda temp: temp.write_text(text))  # last: marks it complete
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ClassDiffusionModel:
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"no class diffusion model in {directory}: need {CONFIG_FILE} and {WEIGHTS_FILE}")
        meta = json.loads((directory / CONFIG_FILE).read_text())
        config = ClassDiffusionConfig.model_validate(meta["config"])
        size = tuple(meta["image_size"])
        unet = build_unet(config, meta["channels"], _padded(config, size), len(meta["class_names"]))
        unet.load_state_dict(load_file(directory / WEIGHTS_FILE))
        return cls(unet, config, meta["class_names"], size, meta["channels"])


def _padded(config: ClassDiffusionConfig, size: tuple[int, int]) -> tuple[int, int]:
    left, right, top, bottom = _padding(config, size)
    return size[0] + top + bottom, size[1] + left + right


def _noise_scheduler(config: ClassDiffusionConfig) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=False,
    )


def _sampler(config: ClassDiffusionConfig) -> DPMSolverMultistepScheduler:
    from diffusers import DPMSolverMultistepScheduler

    # At the cosine schedule's first sampling step the signal scale is ~5e-5, so the image an epsilon prediction implies
    # is its error amplified 2e4-fold: clipping that image to the data range ([-1, 1]) keeps DPM-Solver++ on track.
    clip = config.prediction_type == "epsilon"
    return DPMSolverMultistepScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        algorithm_type="dpmsolver++",
        thresholding=clip,
        sample_max_value=1.0,
    )


def train_class_diffusion(
    data: ImageSet,
    config: ClassDiffusionConfig,
    progress: bool = True,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    device: str | torch.device = "auto",
) -> ClassDiffusionModel:
    """Train the UNet on ``data`` and return its EMA copy; the same seed and data give the same weights on one machine.

    Every ``config.log_every`` steps (and at the last) ``on_log(step, {"loss", "lr", "steps_per_second"})`` gets the
    mean loss since the previous call. With ``progress``, a bar shows the steps where stderr is a terminal; elsewhere
    (a log file) a line is logged as each tenth of the steps is done.
    """
    if len(data) == 0:
        raise ValueError("train_class_diffusion needs at least one image, got an empty image set")
    device = resolve_device(device, "device")
    precision = resolve_precision(config.precision, device)  # never float16: there is no gradient scaler here
    padding = _padding(config, data.image_size)
    images, labels = data.images.to(device), data.labels.to(device)  # uint8 stays compact; batches convert
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # the UNet's initial weights
        unet = build_unet(config, data.channels, _padded(config, data.image_size), data.num_classes).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    generator = torch.Generator(device).manual_seed(config.seed)
    scheduler = _noise_scheduler(config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    running, since, start = torch.zeros((), device=device), 0, time.perf_counter()
    # disable=None: no bar where stderr is not a terminal, whose redraws would clutter a log file.
    bar = tqdm(range(config.steps), desc="class diffusion", disable=None if progress else True, leave=False)
    logged = 0  # the step of the last line logged in place of the bar
    unet.train()
    for step in bar:
        index = torch.randint(len(data), (config.batch_size,), device=device, generator=generator)
        clean = to_model_range(images[index], padding)
        noise = torch.randn(clean.shape, device=device, generator=generator)
        timesteps = torch.randint(config.num_train_timesteps, (config.batch_size,), device=device, generator=generator)
        drop = torch.rand(config.batch_size, device=device, generator=generator) < config.class_dropout
        classes = torch.where(drop, data.num_classes, labels[index])
        target = noise if config.prediction_type == "epsilon" else scheduler.get_velocity(clean, noise, timesteps)
        with autocast(device, precision):
            prediction = unet(scheduler.add_noise(clean, noise, timesteps), timesteps, class_labels=classes).sample
        loss = F.mse_loss(prediction.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        lr_schedule.step()
        # EMA with a short warm-up, so that short runs (tests, smoke runs) do not sample a half-initial model.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        running += loss.detach()
        since += 1
        if since == config.log_every or step == config.steps - 1:
            record = {
                "loss": running.item() / since,
                "lr": optimizer.param_groups[0]["lr"],
                "steps_per_second": (step + 1) / (time.perf_counter() - start),
            }
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if progress and bar.disable and (step + 1) * 10 // config.steps > logged * 10 // config.steps:
                logged = step + 1
                log.info(
                    "class diffusion step %d/%d: loss %.4f, %.1f steps/s",
                    logged,
                    config.steps,
                    record["loss"],
                    record["steps_per_second"],
                )
            if on_log is not None:
                on_log(step + 1, record)
            running.zero_()
            since = 0
    return ClassDiffusionModel(ema.cpu(), config, data.class_names, data.image_size, data.channels)


class ClassDiffusionGenerator:
    """``ImageGenerator`` backend sampling a ``ClassDiffusionModel`` with DPM-Solver++ and classifier-free guidance.

    Each image starts from noise drawn from a ``torch.Generator`` seeded with its request's seed, and DPM-Solver++
    adds no noise after that, so an image depends only on its own request. With ``strength`` set, every request
    must carry ``init_image`` (uint8, the model's channels and size): it is noised to the timestep ``strength`` of
    the way to pure noise and denoised from there (SDEdit; 0 returns it unchanged, 1 is pure generation).
    """

    name = "class_diffusion"

    def __init__(
        self,
        model: ClassDiffusionModel,
        *,
        steps: int | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        precision: Precision | None = None,
        batch_size: int = 256,
        device: str | torch.device = "auto",
    ) -> None:
        self.model = model
        self.steps = model.config.sampling_steps if steps is None else steps
        self.guidance_scale = model.config.guidance_scale if guidance_scale is None else guidance_scale
        if self.steps < 1 or self.guidance_scale < 0 or batch_size < 1:
            raise ValueError(
                f"need steps >= 1, guidance_scale >= 0 and batch_size >= 1, got {self.steps}, "
                f"{self.guidance_scale}, {batch_size}"
            )
        if strength is not None and not 0 <= strength <= 1:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        if strength and int(self.steps * strength) < 1:
            raise ValueError(f"strength {strength} with {self.steps} steps leaves no denoising step: raise either")
        self.strength, self.batch_size = strength, batch_size
        if precision not in (None, "auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
        self.device = resolve_device(device, "device")
        self.precision = resolve_precision(model.config.precision if precision is None else precision, self.device)
        self.unet = model.unet.to(self.device)
        self._fingerprint: str | None = None

    def describe(self) -> dict[str, Any]:
        # Batch size and device change the images only by float rounding; the weights, through their fingerprint, do.
        if self._fingerprint is None:
            self._fingerprint = self.model.fingerprint()
        config = self.model.config
        return {
            "backend": self.name,
            "weights_sha256": self._fingerprint,
            "scheduler": "dpmsolver++",
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "strength": self.strength,
            "beta_schedule": config.beta_schedule,
            "num_train_timesteps": config.num_train_timesteps,
            "prediction_type": config.prediction_type,
            "image_size": list(self.model.image_size),
            "channels": self.model.channels,
            "class_names": list(self.model.class_names),
            "precision": dtype_name(self.precision),
        }

    def generate(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        self._check(requests)
        if not requests:
            return torch.empty((0, self.model.channels, *self.model.image_size), dtype=torch.uint8)
        if self.strength == 0:  # nothing noised, nothing to denoise
            return torch.stack([r.init_image for r in requests]).contiguous()
        batches = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        return torch.cat([self._generate_batch(batch) for batch in batches])

    def _check(self, requests: Sequence[ImageRequest]) -> None:
        shape, classes = (self.model.channels, *self.model.image_size), self.model.num_classes
        for r in requests:
            if not 0 <= r.class_index < classes:
                raise ValueError(
                    f"request {r.class_name}/{r.index}: class_index {r.class_index} outside [0, {classes})"
                )
            if self.strength is None:
                continue
            if r.init_image is None:
                raise ValueError(f"request {r.class_name}/{r.index}: strength {self.strength} needs an init_image")
            if r.init_image.dtype != torch.uint8 or tuple(r.init_image.shape) != shape:
                raise ValueError(
                    f"request {r.class_name}/{r.index}: init_image must be uint8 {shape}, got "
                    f"{r.init_image.dtype} {tuple(r.init_image.shape)}"
                )

    @torch.inference_mode()
    def _generate_batch(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        config, padding = self.model.config, self.model.padding
        scheduler = _sampler(config)
        scheduler.set_timesteps(self.steps, device=self.device)
        shape = (self.model.channels, *_padded(config, self.model.image_size))
        # Noise from CPU generators: the same starting point for a seed whatever the device or batch.
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(r.seed)) for r in requests])
        noise = noise.to(self.device)
        timesteps = scheduler.timesteps
        if self.strength is None:
            sample = noise * scheduler.init_noise_sigma
        else:
            start = self.steps - int(self.steps * self.strength)
            timesteps = timesteps[start:]
            scheduler.set_begin_index(start)
            clean = to_model_range(torch.stack([r.init_image for r in requests]).to(self.device), padding)
            sample = scheduler.add_noise(clean, noise, timesteps[:1])
        classes = torch.tensor([r.class_index for r in requests], device=self.device)
        guided = self.guidance_scale != 1  # scale 1 is the conditional prediction alone: skip the null half
        if guided:
            classes = torch.cat([classes, torch.full_like(classes, self.model.num_classes)])
        for t in timesteps:
            inputs = torch.cat([sample, sample]) if guided else sample
            with autocast(self.device, self.precision):
                prediction = self.unet(inputs, t, class_labels=classes).sample.float()
            if guided:
                conditional, unconditional = prediction.chunk(2)
                prediction = unconditional + self.guidance_scale * (conditional - unconditional)
            sample = scheduler.step(prediction, t, sample).prev_sample
        return to_uint8(sample, padding)
