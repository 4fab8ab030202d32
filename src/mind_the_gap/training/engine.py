"""One training engine for every experiment: tensors in, a trained student and its history out."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.training.augment import BatchAugment
from mind_the_gap.training.config import TrainConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of pixel values in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: ImageSet) -> Normalization:
        pixels = images.images.transpose(0, 1).reshape(images.channels, -1)
        # Chunked float64 sums: exact enough and no float copy of the whole set.
        total = torch.zeros(images.channels, dtype=torch.float64)
        squares = torch.zeros(images.channels, dtype=torch.float64)
        for chunk in pixels.split(1 << 24, dim=1):
            chunk = chunk.double() / 255
            total += chunk.sum(1)
            squares += (chunk * chunk).sum(1)
        count = pixels.shape[1]
        mean = total / count
        std = (squares / count - mean**2).clamp(min=1e-12).sqrt()
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    @classmethod
    def choose(cls, kind: str, images: ImageSet) -> Normalization:
        if kind == "train":
            return cls.of(images)
        if kind == "imagenet":
            if images.channels == 1:
                return cls((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
            return cls(IMAGENET_MEAN, IMAGENET_STD)
        return cls((0.0,) * images.channels, (1.0,) * images.channels)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        return (images - mean) / std


@dataclass
class FitResult:
    history: list[dict[str, float]]
    normalization: Normalization
    seconds: float
    images_per_second: float


@dataclass
class Evaluation:
    loss: float
    top1: float
    top5: float
    per_class_accuracy: list[float]
    confusion: np.ndarray  # rows: true class, columns: predicted class


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"training.device {name!r} is not a torch device (use auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device {name!r} asked for, but CUDA is not available on this machine")
    return device


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: every unit is frozen")
    # No weight decay on normalisation weights and biases: it only fights their scale.
    groups = [
        {"params": [p for _, p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for _, p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0
    )


def _warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _prepare_inputs(batch: torch.Tensor, norm: Normalization, channels_last: bool) -> torch.Tensor:
    x = norm.apply(batch)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fit(
    model: nn.Module,
    train: ImageSet,
    config: TrainConfig,
    seed: int,
    val: ImageSet | None = None,
    normalization: Normalization | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    description: str = "train",
) -> FitResult:
    """Train ``model`` in place on ``train``; evaluate on ``val`` after every epoch.

    Images stay uint8 on the device and are converted batch by batch; one seeded generator on the device
    drives shuffling and augmentation, so a CPU run is repeatable to the bit.
    """
    if len(train) < 2:
        raise ValueError(f"cannot train on {len(train)} image(s)")
    device = resolve_device(config.device)
    channels_last = config.channels_last and device.type == "cuda"
    norm = normalization or Normalization.choose(config.normalization, train)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = train.images.to(device), train.labels.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    augment = BatchAugment(config.augment, config.crop_padding, config.resized_crop_scale)

    batch_size = min(config.batch_size, len(train))
    steps_per_epoch = len(train) // batch_size  # drop the ragged last batch: a batch of one breaks BatchNorm
    total_steps = steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(total_steps, round(config.warmup_epochs * steps_per_epoch))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and config.amp == "fp16")

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        bar = tqdm(range(steps_per_epoch), desc=f"{description} epoch {epoch}/{config.epochs}",
                   leave=False, disable=None if config.progress else True)  # fmt: skip
        for step in bar:
            index = order[step * batch_size : (step + 1) * batch_size]
            x = augment(images[index].float().div_(255), generator)
            x, y = _prepare_inputs(x, norm, channels_last), labels[index]
            with _autocast(device, config.amp):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.detach().argmax(1) == y).sum()
            # Reading the loss back forces a device sync, so it happens only every `log_every` steps.
            if (step + 1) % config.log_every == 0 or step + 1 == steps_per_epoch:
                seen_loss = loss_sum.item()
                if not math.isfinite(seen_loss):
                    raise NonFiniteLossError(
                        f"{description}: the loss became {seen_loss} in epoch {epoch} between steps "
                        f"{step + 2 - config.log_every} and {step + 1} (lr {schedule.get_last_lr()[0]:.3g}); "
                        "lower training.lr or check the data"
                    )
                bar.set_postfix(loss=f"{seen_loss / ((step + 1) * batch_size):.3f}")
        bar.close()
        seen = steps_per_epoch * batch_size
        seconds = time.perf_counter() - epoch_start
        record = {
            "epoch": float(epoch),
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "lr": schedule.get_last_lr()[0],
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }
        if val is not None and len(val):
            evaluation = evaluate(model, val, norm, config)
            record |= {"val_loss": evaluation.loss, "val_accuracy": evaluation.top1}
        history.append(record)
        log.info("%s epoch %d/%d: loss %.4f, accuracy %.4f%s, %.0f images/s", description, epoch, config.epochs,
                 record["train_loss"], record["train_accuracy"],
                 f", val accuracy {record['val_accuracy']:.4f}" if "val_accuracy" in record else "",
                 record["images_per_second"])  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)
    seconds = time.perf_counter() - start
    return FitResult(history, norm, seconds, steps_per_epoch * batch_size * config.epochs / seconds)


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, norm: Normalization, config: TrainConfig) -> torch.Tensor:
    """Logits (float32, on the CPU) for every image of ``data``."""
    device = resolve_device(config.device)
    channels_last = config.channels_last and device.type == "cuda"
    model.to(device).eval()
    outputs = []
    for chunk in data.images.split(config.eval_batch_size):
        x = _prepare_inputs(chunk.to(device).float().div_(255), norm, channels_last)
        with _autocast(device, config.amp):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0, data.num_classes)


def evaluate(model: nn.Module, data: ImageSet, norm: Normalization, config: TrainConfig) -> Evaluation:
    """Top-1 and top-5 accuracy, loss, per-class accuracy and the confusion matrix on ``data``."""
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty image set")
    logits = predict(model, data, norm, config)
    labels = data.labels
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    predicted = top[:, 0]
    classes = data.num_classes
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes).view(classes, classes)
    support = confusion.sum(1)
    per_class = (confusion.diag().double() / support.clamp(min=1)).where(support > 0, torch.nan)
    return Evaluation(
        loss=F.cross_entropy(logits, labels).item(),
        top1=(predicted == labels).double().mean().item(),
        top5=(top == labels.unsqueeze(1)).any(1).double().mean().item(),
        per_class_accuracy=per_class.tolist(),
        confusion=confusion.numpy(),
    )
