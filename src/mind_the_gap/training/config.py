"""The training recipe shared by every experiment (``training`` in the parameters)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mind_the_gap.config import Config

# Applied in this order: flip, crop, resized_crop (one affine warp), then at most one strong policy (kornia's
# RandAugment, TrivialAugment or AutoAugment), then color (brightness and contrast jitter), then local_shuffle
# (PatchShuffle: pixels permuted inside small squares, which blurs texture and keeps shape).
Augmentation = Literal[
    "flip", "crop", "resized_crop", "rand_augment", "trivial_augment", "auto_augment", "color", "local_shuffle"
]


class TrainConfig(Config):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: list[Augmentation] = ["crop", "flip"]
    crop_padding: float = Field(0.125, ge=0, le=0.5, description="crop shift as a share of the image side")
    resized_crop_scale: tuple[float, float] = (0.35, 1.0)
    shuffle_patch: int = Field(
        2,
        ge=2,
        description="local_shuffle: side of the squares whose pixels are permuted, in px at 28 px; scaled with the "
        "image's shorter side (x side / 28, rounded, at least 2: 16 px at 224)",
    )
    shuffle_share: float = Field(0.5, ge=0, le=1, description="local_shuffle: share of the images shuffled")
    min_steps: int = Field(0, ge=0, description="optimizer steps at least, however small the training set")
    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps at most, however large the training set (null: no cap)"
    )
    # shared: one set of BatchNorm statistics; per_source: in a training set joined from several sets (real +
    # synthetic), each set's images normalised by their own batch and running statistics, the first set's (real)
    # kept for testing (see training.source_norm).
    batchnorm: Literal["shared", "per_source"] = "shared"
    # real: the real training pool's statistics for every student; train: each student's own training set's.
    normalization: Literal["real", "train", "imagenet", "none"] = "real"
    eval_batch_size: int = Field(1024, ge=1)
    device: str = "auto"
    allow_cpu: bool = Field(True, description="false: device auto refuses to train on a machine without a GPU")
    # Mixed precision. auto: bf16 on GPUs that have it (else fp16) and on CPUs with native bf16 (AVX-512 BF16,
    # AMX), float32 elsewhere; bf16 and fp16 force autocast; off: float32.
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    # torch.compile the model for the training steps (evaluation stays eager): fused kernels, after a first step that
    # compiles for a minute or so. Off by default: not yet measured to pay for a whole student here.
    compile: bool = False
    # always: the whole training set copied to the device; never: each batch streamed from host memory; auto: the
    # copy when the set takes at most half the device's free memory (off CUDA: always). The same student either way.
    data_on_device: Literal["auto", "always", "never"] = "auto"
    # Students of a cell trained at once, in threads that share the CPU's cores. auto: 2 on a CPU with 2 threads or
    # more (a narrow student leaves 2 cores partly idle: 2 at once train 1.03-1.14x the images/s), 1 on a GPU.
    concurrent_students: Literal["auto"] | int = Field("auto", description="auto or at least 1")
    log_every: int = Field(25, ge=1, description="steps between loss checks and progress-bar updates")
    progress: bool = True

    @model_validator(mode="after")
    def _scale_range(self) -> TrainConfig:
        low, high = self.resized_crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"training.resized_crop_scale must satisfy 0 < low <= high <= 1, got {low, high}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"training.warmup_epochs ({self.warmup_epochs}) must be below training.epochs")
        policies = [op for op in self.augment if op.endswith("_augment")]
        if len(policies) > 1:
            raise ValueError(f"training.augment takes one strong policy at most, got {', '.join(policies)}")
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise ValueError(f"training.max_steps ({self.max_steps}) must be at least min_steps ({self.min_steps})")
        if self.concurrent_students != "auto" and self.concurrent_students < 1:
            raise ValueError(f"training.concurrent_students must be auto or at least 1, got {self.concurrent_students}")
        return self
