"""One training engine for every experiment: tensors in, a trained student and its history out."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mind_the_gap.data.imageset import ImageSet, ImageView, TrainingImages
from mind_the_gap.devices import autocast, resolve_device, resolve_precision, use_fastest_convolutions
from mind_the_gap.files import write_atomically
from mind_the_gap.training.augment import BatchAugment
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import distillation_loss
from mind_the_gap.training.source_norm import SourceStatistics, part_ids

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""


NormalizationKind = Literal["real", "train", "imagenet", "none"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of pixel values in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: TrainingImages) -> Normalization:
        """The statistics of a set, summed in float64 over slices of images: no copy of the whole set."""
        total = torch.zeros(images.channels, dtype=torch.float64)
        squares = torch.zeros(images.channels, dtype=torch.float64)
        pixels = images.channels * images.image_size[0] * images.image_size[1]
        for chunk in images.chunks(max(1, (1 << 24) // max(1, pixels))):
            chunk = chunk.double().div_(255)
            total += chunk.sum((0, 2, 3))
            squares += chunk.square_().sum((0, 2, 3))
        count = len(images) * images.image_size[0] * images.image_size[1]
        mean = total / max(count, 1)
        std = (squares / max(count, 1) - mean**2).clamp(min=1e-12).sqrt()
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    @classmethod
    def resolve(cls, kind: NormalizationKind, train: TrainingImages, real: Normalization) -> Normalization:
        """The input normalisation of a student trained on ``train``.

        ``real``: the real training pool's statistics, the same for every student, so that a student sees real and
        synthetic images, and a swapped unit its inputs, on one scale; ``train``: the student's own training set's
        (per-source normalisation); ``imagenet``: ImageNet's constants (grey: their channel means); ``none``.
        """
        if kind == "real":
            return real
        if kind == "train":
            return cls.of(train)
        if kind == "imagenet":
            if train.channels == 1:
                return cls((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
            return cls(IMAGENET_MEAN, IMAGENET_STD)
        return cls((0.0,) * train.channels, (1.0,) * train.channels)

    def tensors(self, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and standard deviation as (1, C, 1, 1) tensors on ``device``."""
        return tuple(torch.tensor(values, dtype=dtype).view(1, -1, 1, 1).to(device) for values in (self.mean, self.std))

    def apply(self, images: torch.Tensor, tensors: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``images`` standardised. ``tensors``: ``self.tensors`` on the images' device and of their dtype, made once
        by a caller that applies this batch after batch (a tensor made from numbers on a GPU is a copy the host waits
        for)."""
        mean, std = self.tensors(images.device, images.dtype) if tensors is None else tensors
        return (images - mean) / std


@dataclass(frozen=True)
class TeacherModel:
    """A trained student whose predictions, softened at ``temperature``, are the targets (``distillation.Teacher``,
    loaded), with the input normalisation it was trained with."""

    model: nn.Module
    normalization: Normalization
    temperature: float


@dataclass
class FitResult:
    history: list[dict[str, float]]
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


def placement(
    config: TrainConfig, device: torch.device | None = None, precision: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """The device and autocast dtype a student runs with: those given, else those ``config`` resolves to here
    (``fit`` scales float16 gradients, so ``training.amp: auto`` may take float16)."""
    device = resolve_device(config.device, allow_cpu=config.allow_cpu) if device is None else device
    return device, resolve_precision(config.amp, device, allow_float16=True) if precision is None else precision


def _optimizer(model: nn.Module, config: TrainConfig, lr_scales: Mapping[str, float]) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: every unit is frozen")
    # One group per learning-rate scale and weight decay; no decay on normalisation weights and biases, where it
    # only fights their scale.
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in trainable:
        decay = config.weight_decay if parameter.ndim > 1 else 0.0
        groups.setdefault((lr_scales.get(name, 1.0), decay), []).append(parameter)
    params = [{"params": ps, "lr": config.lr * scale, "weight_decay": decay} for (scale, decay), ps in groups.items()]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0
    )


def _warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def planned_steps(num_images: int, config: TrainConfig) -> int:
    """Optimizer steps of a training run: ``epochs`` passes over the data, at least ``min_steps`` and at most
    ``max_steps``."""
    steps = max(config.epochs * (num_images // max(1, min(config.batch_size, num_images))), config.min_steps)
    return steps if config.max_steps is None else min(steps, config.max_steps)


class ShuffledBatches:
    """Indices of shuffled batches, pass after pass; the ragged end of a pass is dropped (a batch of one breaks
    BatchNorm). Its state (the pass's order and the position in it) resumes it where it stopped.

    Every order is drawn on the generator's device, so a run draws the same numbers wherever its batches are
    gathered; ``on_host`` moves each pass's order to the host once (one device sync a pass, none a step) for
    batches gathered from host memory."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, on_host: bool = False):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.home = torch.device("cpu") if on_host else generator.device
        self.order: torch.Tensor | None = None
        self.position = 0

    def __next__(self) -> torch.Tensor:
        if self.order is None or self.position + self.batch_size > self.n:
            order = torch.randperm(self.n, device=self.generator.device, generator=self.generator)
            self.order = order.to(self.home)
            self.position = 0
        self.position += self.batch_size
        return self.order[self.position - self.batch_size : self.position]

    def state_dict(self) -> dict[str, Any]:
        return {"order": None if self.order is None else self.order.cpu(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state["order"]
        self.order = None if order is None else order.to(self.home)
        self.position = state["position"]


# `data_on_device: auto` keeps a training set on a CUDA device when it takes at most this share of the memory free
# there once the model is: the rest is left to activations, gradients, optimizer state and cuDNN's workspaces.
DATA_SHARE_OF_FREE_MEMORY = 0.5


def data_stays_on_device(setting: str, set_bytes: int, free_bytes: int | None) -> bool:
    """Whether ``fit`` copies the whole training set to the device (``setting`` ``always``) or streams its batches
    from host memory (``never``); ``auto`` copies it when it takes at most ``DATA_SHARE_OF_FREE_MEMORY`` of
    ``free_bytes``, and always where the free memory is unknown (``None``: off CUDA; on the CPU the "copy" is the
    set itself)."""
    if setting == "auto":
        return free_bytes is None or set_bytes <= DATA_SHARE_OF_FREE_MEMORY * free_bytes
    return setting == "always"


def free_device_memory(device: torch.device) -> int | None:
    """Bytes a training set may take on ``device``: CUDA's free memory plus what torch's allocator holds unused (an
    earlier student's set, freed into its cache); ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


class WholeSetOnDevice:
    """The fast path: the training set copied to the device once (on the CPU, the set itself), each batch gathered
    there by an index on the device. A view of sets is gathered into place on the device, part by part."""

    index_on_host = False

    def __init__(self, train: TrainingImages, device: torch.device):
        self.labels = train.labels.to(device)
        if isinstance(train, ImageSet):
            self.images = train.images.to(device)
            return
        self.images = torch.empty((len(train), train.channels, *train.image_size), dtype=torch.uint8, device=device)
        start = 0
        for chunk in train.chunks(4096):
            self.images[start : start + len(chunk)] = chunk.to(device)
            start += len(chunk)

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class StreamedFromHost:
    """Batches gathered from the set in host memory by an index on the host, into pinned memory on CUDA, and copied
    to the device without blocking: the host gathers a batch while the device still computes the ones before (torch
    reuses a pinned buffer only once its copy has run)."""

    index_on_host = True

    def __init__(self, train: TrainingImages, device: torch.device):
        self.train, self.device = train, device
        self.pinned = device.type == "cuda"

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.empty(
            (len(index), self.train.channels, *self.train.image_size), dtype=torch.uint8, pin_memory=self.pinned
        )
        labels = torch.empty(len(index), dtype=torch.int64, pin_memory=self.pinned)
        self.train.gather(index, out=images)
        torch.index_select(self.train.labels, 0, index, out=labels)
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def _batch_source(
    train: TrainingImages, config: TrainConfig, device: torch.device, description: str
) -> WholeSetOnDevice | StreamedFromHost:
    set_bytes = train.nbytes
    free_bytes = free_device_memory(device)
    # On the CPU the "device" is host memory: a view of sets is gathered batch by batch, never joined into a copy.
    whole_on_cpu = device.type == "cpu" and isinstance(train, ImageView)
    if not whole_on_cpu and data_stays_on_device(config.data_on_device, set_bytes, free_bytes):
        return WholeSetOnDevice(train, device)
    log.info(
        "%s: training set of %.2f GiB streamed from host memory (training.data_on_device: %s%s)",
        description,
        set_bytes / 2**30,
        config.data_on_device,
        "" if free_bytes is None else f", {free_bytes / 2**30:.2f} GiB free on {device}",
    )
    return StreamedFromHost(train, device)


def _per_source_statistics(
    model: nn.Module, train: TrainingImages, config: TrainConfig, teacher: TeacherModel | None
) -> tuple[SourceStatistics | None, torch.Tensor | None]:
    """With ``training.batchnorm: per_source``, the other sources' BatchNorm statistics and each image's source."""
    if config.batchnorm == "shared":
        return None, None
    if not isinstance(train, ImageView) or len(train.parts) < 2:
        raise ValueError("training.batchnorm per_source needs a training set joined from several sets (sources)")
    if teacher is not None:
        raise ValueError("training.batchnorm per_source does not combine with a teacher")
    return SourceStatistics(model, len(train.parts)), part_ids(train.part_sizes)


def _save_progress(path: Path, state: dict[str, Any]) -> None:
    write_atomically(path, lambda temp: torch.save(state, temp))


def _load_progress(path: Path | None, total_steps: int, description: str) -> dict[str, Any] | None:
    """The state a killed run saved at ``path``, when there is one and it belongs to a run of ``total_steps``."""
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs
    except Exception as exc:  # noqa: BLE001 - any unreadable file is only a lost head start
        log.warning("%s: ignoring unreadable progress file %s (%s); starting over", description, path, exc)
        return None
    if state.get("total_steps") != total_steps:
        log.warning("%s: %s belongs to another run; starting over", description, path)
        return None
    return state


def _prepare_inputs(
    batch: torch.Tensor, norm: Normalization, tensors: tuple[torch.Tensor, torch.Tensor], channels_last: bool
) -> torch.Tensor:
    x = norm.apply(batch, tensors)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fit(
    model: nn.Module,
    train: TrainingImages,
    config: TrainConfig,
    seed: int,
    normalization: Normalization,
    val: ImageSet | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    description: str = "train",
    lr_scales: Mapping[str, float] | None = None,
    progress_file: Path | None = None,
    *,
    device: torch.device | None = None,
    precision: torch.dtype | None = None,
    teacher: TeacherModel | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train``; evaluate on ``val`` after every round.

    Training runs ``planned_steps`` optimizer steps in ``epochs`` rounds: a round is one pass over the data,
    unless ``min_steps`` stretches training over more passes or ``max_steps`` cuts it to part of one, so every
    history has ``epochs`` records whatever the data size. ``lr_scales`` multiplies the learning rate of named
    parameters (per-unit learning rates).
    With ``progress_file``, the state after every round (model, optimizer, schedule, random generator, batch order,
    history) is saved there, and a run that finds it continues from it: a killed run resumes at its last round
    and, on the CPU, ends bit-identical to one never stopped. ``on_epoch`` then gets the resumed rounds first.
    Images stay uint8 on the device and are converted batch by batch; one seeded generator on the device drives
    shuffling and augmentation (a strong policy's seeds come from one on the host, that same one on the CPU), so a CPU
    run is repeatable to the bit, and a step reads nothing back from a GPU (but the loss every ``log_every`` steps, a
    streamed set's batch order once a pass, and float16's grad scaler). ``training.compile`` runs the steps through
    ``torch.compile(model)``.
    ``training.data_on_device`` keeps the whole set on the device or streams each batch from host memory
    (``data_stays_on_device``): the same batches and the same draws either way, so the same student. ``device`` and
    ``precision``, when given, are ``config``'s resolved once by the caller (see ``placement``). With ``teacher``,
    the loss is the distillation loss to the teacher's predictions on the same augmented batch, not to the labels
    (which still score the training accuracy).
    """
    if len(train) < 2:
        raise ValueError(f"cannot train on {len(train)} image(s)")
    device, precision = placement(config, device, precision)
    use_fastest_convolutions(device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    # The training steps run through the compiled module, which shares its parameters and state with ``model``.
    step_model = torch.compile(model) if config.compile else model
    source = _batch_source(train, config, device, description)
    generator = torch.Generator(device=device).manual_seed(seed)
    # The strong policies' seeds are drawn on the host: read back from a GPU, each would wait for it every step.
    host_generator = generator if device.type == "cpu" else torch.Generator().manual_seed(seed)
    statistics = normalization.tensors(device)
    if teacher is not None:
        teacher.model.to(device).eval().requires_grad_(False)
        if config.channels_last:
            teacher.model.to(memory_format=torch.channels_last)
        teacher_statistics = teacher.normalization.tensors(device)
    augment = BatchAugment(
        config.augment, config.crop_padding, config.resized_crop_scale, config.shuffle_patch, config.shuffle_share
    )

    batch_size = min(config.batch_size, len(train))
    total_steps = planned_steps(len(train), config)
    round_ends = [round(total_steps * r / config.epochs) for r in range(1, config.epochs + 1)]
    optimizer = _optimizer(model, config, lr_scales or {})
    warmup_steps = round(config.warmup_epochs * total_steps / config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total_steps, warmup_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    batches = ShuffledBatches(len(train), batch_size, generator, on_host=source.index_on_host)
    per_source, source_of = _per_source_statistics(model, train, config, teacher)
    if source_of is not None:
        source_of = source_of.to(batches.home)

    history: list[dict[str, float]] = []
    step, seconds_before = 0, 0.0
    saved = _load_progress(progress_file, total_steps, description)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        scaler.load_state_dict(saved["scaler"])
        generator.set_state(saved["generator"])
        if per_source is not None:
            per_source.load(saved["source_statistics"])
        host_generator.set_state(saved["host_generator"])
        batches.load_state_dict(saved["batches"])
        history, step, seconds_before = saved["history"], saved["step"], saved["seconds"]
        log.info("%s: resuming after epoch %d/%d from %s", description, len(history), config.epochs, progress_file)
        for record in history:
            if on_epoch is not None:
                on_epoch(record)
    start = time.perf_counter()
    for epoch, end in enumerate(round_ends, 1):
        if epoch <= len(history):
            continue
        model.train()
        round_start, round_steps = time.perf_counter(), end - step
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        bar = tqdm(
            range(round_steps),
            desc=f"{description} epoch {epoch}/{config.epochs}",
            leave=False,
            disable=None if config.progress else True,
        )
        for i in bar:
            index = next(batches)
            batch, y = source(index)
            images = augment(batch.float().div_(255), generator, host_generator)
            x = _prepare_inputs(images, normalization, statistics, config.channels_last)
            with autocast(device, precision):
                if per_source is None:
                    logits = step_model(x)
                else:
                    logits = per_source.logits(step_model, x, source_of[index])
                if teacher is None:
                    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                else:
                    with torch.no_grad():
                        seen = _prepare_inputs(images, teacher.normalization, teacher_statistics, config.channels_last)
                        taught = teacher.model(seen)
                    loss = distillation_loss(logits, taught, teacher.temperature)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            # Reading the loss back forces a device sync, so it happens only every `log_every` steps.
            if (i + 1) % config.log_every == 0 or i + 1 == round_steps:
                seen_loss = loss_sum.item()
                if not math.isfinite(seen_loss):
                    raise NonFiniteLossError(
                        f"{description}: the loss became {seen_loss} in epoch {epoch} between steps "
                        f"{step + i + 2 - config.log_every} and {step + i + 1} (lr {schedule.get_last_lr()[0]:.3g}); "
                        "lower training.lr or check the data"
                    )
                bar.set_postfix(loss=f"{seen_loss / ((i + 1) * batch_size):.3f}")
        bar.close()
        step = end
        seen = max(1, round_steps * batch_size)
        seconds = time.perf_counter() - round_start
        record = {
            "epoch": float(epoch),
            "optimizer_steps": float(step),
            "data_passes": step * batch_size / len(train),
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "lr": schedule.get_last_lr()[0],
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }
        if val is not None and len(val):
            evaluation = evaluate(model, val, normalization, config, device=device, precision=precision)
            record |= {"val_loss": evaluation.loss, "val_accuracy": evaluation.top1}
        history.append(record)
        log.info(
            "%s epoch %d/%d: loss %.4f, accuracy %.4f%s, %.0f images/s",
            description,
            epoch,
            config.epochs,
            record["train_loss"],
            record["train_accuracy"],
            f", val accuracy {record['val_accuracy']:.4f}" if "val_accuracy" in record else "",
            record["images_per_second"],
        )
        if progress_file is not None and epoch < config.epochs:
            _save_progress(
                progress_file,
                {
                    "total_steps": total_steps,
                    "step": step,
                    "history": history,
                    "seconds": seconds_before + time.perf_counter() - start,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                    **({"source_statistics": per_source.state()} if per_source is not None else {}),
                    "host_generator": host_generator.get_state(),
                    "batches": batches.state_dict(),
                },
            )
        if on_epoch is not None:
            on_epoch(record)
    seconds = seconds_before + time.perf_counter() - start
    return FitResult(history, seconds, total_steps * batch_size / seconds)


@torch.no_grad()
def predict(
    model: nn.Module,
    data: ImageSet,
    norm: Normalization,
    config: TrainConfig,
    *,
    device: torch.device | None = None,
    precision: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits (float32, on the CPU) for every image of ``data``."""
    device, precision = placement(config, device, precision)
    model.to(device).eval()
    statistics = norm.tensors(device)
    outputs = []
    for chunk in data.chunks(config.eval_batch_size):
        x = _prepare_inputs(chunk.to(device).float().div_(255), norm, statistics, config.channels_last)
        with autocast(device, precision):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0, data.num_classes)


def evaluate(
    model: nn.Module,
    data: ImageSet,
    norm: Normalization,
    config: TrainConfig,
    *,
    device: torch.device | None = None,
    precision: torch.dtype | None = None,
) -> Evaluation:
    """Top-1 and top-5 accuracy, loss, per-class accuracy and the confusion matrix on ``data``."""
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty image set")
    logits = predict(model, data, norm, config, device=device, precision=precision)
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
