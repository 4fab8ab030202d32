"""Train-or-reuse one student: the step every experiment repeats, cached by a key of everything it depends on."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mind_the_gap import devices
from mind_the_gap.data.imageset import ImageSet, TrainingImages
from mind_the_gap.devices import GLOBAL_RNG, precision_name
from mind_the_gap.files import exclusive, write_atomically
from mind_the_gap.keys import content_key
from mind_the_gap.models import architectures, units
from mind_the_gap.models.architectures import StudentConfig, UnitNet, build_student, count_parameters
from mind_the_gap.training import augment, distillation, engine, source_norm, stitching, transfer
from mind_the_gap.training.checkpoint import load_checkpoint, save_checkpoint
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.engine import (
    Evaluation,
    Normalization,
    TeacherModel,
    evaluate,
    fit,
    placement,
    planned_steps,
    seed_everything,
)
from mind_the_gap.training.stitching import Stitch, stitch_students, stitching_layer
from mind_the_gap.training.transfer import Transfer, start_from_parent

log = logging.getLogger(__name__)

# Settings that change how a run looks or where it runs, not what it learns, are left out of the cache key;
# `amp`, `min_steps` and `max_steps` enter it resolved, as the precision and the number of steps they give.
_NOT_IN_KEY = {
    "device",
    "allow_cpu",
    "progress",
    "log_every",
    "eval_batch_size",
    "amp",
    "min_steps",
    "max_steps",
    "concurrent_students",
    "data_on_device",
}
# The code that decides what a student learns (`devices` resolves its precision and autocasts), this module included:
# its source is part of every key, so that students of older code are never reused.
TRAINING_MODULES = (
    engine,
    augment,
    transfer,
    distillation,
    source_norm,
    architectures,
    units,
    devices,
    sys.modules[__name__],
)


@functools.cache
def code_version(modules: tuple = TRAINING_MODULES) -> str:
    """A digest of the training code's source and of the torch version that runs it."""
    digest = hashlib.sha256(torch.__version__.encode())
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class StudentResult:
    """What one trained student measured; ``test`` is the evaluation on the real test set."""

    key: str
    seed: int
    history: list[dict[str, float]]
    test: Evaluation
    normalization: Normalization
    train_seconds: float
    images_per_second: float
    num_parameters: int
    cache_hit: bool = False

    def metrics(self) -> dict[str, float]:
        """The final metrics, under the names every pipeline logs."""
        last = self.history[-1]
        metrics = {
            "test_accuracy": self.test.top1,
            "test_top5_accuracy": self.test.top5,
            "test_loss": self.test.loss,
            "train_accuracy": last["train_accuracy"],
            "train_loss": last["train_loss"],
            "train_seconds": self.train_seconds,
            "train_images_per_second": self.images_per_second,
        }
        if "val_accuracy" in last:
            metrics |= {"val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"]}
        return metrics

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["test"]["confusion"] = self.test.confusion.tolist()
        data.pop("cache_hit")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudentResult:
        test = dict(data["test"], confusion=np.asarray(data["test"]["confusion"], dtype=np.int64))
        normalization = Normalization(*(tuple(data["normalization"][k]) for k in ("mean", "std")))
        return cls(**{**data, "test": Evaluation(**test), "normalization": normalization})


class StudentTracker(Protocol):
    """Receives a student's progress (the MLflow tracker implements it)."""

    def log_epoch(self, record: dict[str, float]) -> None: ...


class StudentStore:
    """Trained students on disk, one safetensors checkpoint and one JSON result per key.

    The result is written last, so a key whose JSON exists is complete; a student killed mid-way resumes from its
    progress file (the state after its last finished epoch), which is removed once the student is stored.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """The key of a student: a digest of everything it depends on."""
        return content_key(parts, 20, sort_keys=True)

    def checkpoint_path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def result_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def progress_path(self, key: str) -> Path:
        return self.directory / f"{key}.progress.pt"

    def load_result(self, key: str) -> StudentResult | None:
        path = self.result_path(key)
        if not (path.is_file() and self.checkpoint_path(key).is_file()):
            return None
        try:
            result = StudentResult.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable cached result %s (%s); training again", path, exc)
            return None
        result.cache_hit = True
        return result

    def save(self, key: str, model: UnitNet, result: StudentResult, metadata: dict[str, Any]) -> None:
        save_checkpoint(self.checkpoint_path(key), model, metadata)
        text = json.dumps(result.to_json())
        write_atomically(self.result_path(key), lambda temp: temp.write_text(text))

    def load_model(self, key: str, student: StudentConfig, data: ImageSet) -> UnitNet:
        """The stored student ``key``, built for images like ``data``'s."""
        if not self.checkpoint_path(key).is_file():
            raise ValueError(f"student {key} is not in {self.directory}: train it first (its pipeline's run)")
        with GLOBAL_RNG:  # building draws initial weights, which the checkpoint then replaces
            model = build_student(student, data.num_classes, data.channels, data.image_size[0])
        load_checkpoint(self.checkpoint_path(key), model)
        return model


def load_stitched(store: StudentStore, key: str, stitch: Stitch, student: StudentConfig, data: ImageSet) -> UnitNet:
    """The stored stitched student ``key``: its two students joined by its trained stitching layer."""
    if not store.checkpoint_path(key).is_file():
        raise ValueError(f"stitched student {key} is not in {store.directory}: train it first (its pipeline's run)")
    bottom, top = store.load_model(stitch.bottom, student, data), store.load_model(stitch.top, student, data)
    with GLOBAL_RNG:
        model = stitch_students(bottom, top, stitch.cut)
    load_checkpoint(store.checkpoint_path(key), stitching_layer(model))
    return model


def train_student(
    store: StudentStore,
    student: StudentConfig,
    training: TrainConfig,
    train: TrainingImages,
    test: ImageSet,
    seed: int,
    normalization: Normalization,
    val: ImageSet | None = None,
    transfer: Transfer | None = None,
    tracker: StudentTracker | None = None,
    description: str = "student",
    teacher: Teacher | None = None,
    stitch: Stitch | None = None,
) -> StudentResult:
    """Train a student on ``train`` and test it on ``test``, or reuse the stored one with the same key.

    A fresh student, or with ``transfer`` one that starts from a stored parent student; with ``teacher``, one that
    learns a stored student's softened predictions; with ``stitch``, two stored students joined by a stitching
    layer, the only part that trains (``stitching.stitch_students``; its checkpoint holds that layer alone, see
    ``load_stitched``). The device and precision are resolved here, once, on the machine that trains it.
    """
    if train.class_names != test.class_names:
        raise ValueError("training and test sets name different classes")
    if stitch is not None and transfer is not None:
        raise ValueError("a stitched student starts from its two students, not from a transfer's parent")
    with GLOBAL_RNG:
        seed_everything(seed)
        model = build_student(student, train.num_classes, train.channels, train.image_size[0])
    device, precision = placement(training)
    key = store.key(
        {
            "code": code_version(),
            "student": student.model_dump(mode="json", exclude={"units"}),  # the numbering only names units
            "training": training.model_dump(mode="json", exclude=_NOT_IN_KEY),
            "precision": precision_name(precision),
            "steps": planned_steps(len(train), training),
            "normalization": asdict(normalization),
            "seed": seed,
            "data": {
                "train": train.fingerprint(),
                "test": test.fingerprint(),
                "val": val.fingerprint() if val is not None else "",
            },
            "transfer": transfer.describe(model) if transfer is not None else None,
            **({"teacher": teacher.describe()} if teacher is not None else {}),
            # The stitching code enters a stitched student's key only, so that editing it keeps every other key.
            **({"stitch": {**stitch.describe(), "code": code_version((stitching,))}} if stitch is not None else {}),
        }
    )
    # Two cells may need one student (levers' `none` and the layer swap's headline cell do): on a Dask cluster, or in
    # two `kedro run`s at once, the second waits for the first, then reuses its student rather than training it too.
    waiting = lambda: log.info("%s: waiting for student %s, which another run is training", description, key)  # noqa: E731
    with exclusive(store.directory, key, on_wait=waiting):
        cached = store.load_result(key)
        if cached is not None:
            log.info("%s: reusing trained student %s (test accuracy %.4f)", description, key, cached.test.top1)
            if tracker is not None:
                for record in cached.history:
                    tracker.log_epoch(record)
            return cached
        lr_scales = {}
        if transfer is not None:
            parent = store.load_model(transfer.parent, student, train)
            lr_scales = start_from_parent(model, parent, transfer)
        if stitch is not None:
            bottom = store.load_model(stitch.bottom, student, train)
            top = store.load_model(stitch.top, student, train)
            with GLOBAL_RNG:  # a stitching layer whose channels differ draws its initial weights from the seed
                seed_everything(seed)
                model = stitch_students(bottom, top, stitch.cut)
        fitted = fit(
            model,
            train,
            training,
            seed,
            normalization,
            val=val,
            lr_scales=lr_scales,
            on_epoch=tracker.log_epoch if tracker else None,
            description=description,
            progress_file=store.progress_path(key),
            device=device,
            precision=precision,
            teacher=_load_teacher(store, teacher, student, train),
        )
        result = StudentResult(
            key=key,
            seed=seed,
            history=fitted.history,
            test=evaluate(model, test, normalization, training, device=device, precision=precision),
            normalization=normalization,
            train_seconds=fitted.seconds,
            images_per_second=fitted.images_per_second,
            num_parameters=count_parameters(model),
        )
        metadata = {"student": student.model_dump(mode="json"), "seed": seed, "class_names": list(train.class_names)}
        # A stitched student stores its stitching layer alone: its students are in the store (see load_stitched).
        stored = model.cpu() if stitch is None else stitching_layer(model.cpu())
        store.save(key, stored, result, metadata | ({"stitch": stitch.describe()} if stitch is not None else {}))
        store.progress_path(key).unlink(missing_ok=True)
        log.info(
            "%s: test accuracy %.4f (top-5 %.4f) after %.0f s",
            description,
            result.test.top1,
            result.test.top5,
            result.train_seconds,
        )
        return result


def stitch_normalization(store: StudentStore, stitch: Stitch) -> Normalization:
    """The input normalisation of a stitched student: its bottom student's, whose units see the images first."""
    result = store.load_result(stitch.bottom)
    if result is None:
        raise ValueError(f"the stitch's bottom student {stitch.bottom} is not in {store.directory}: train it first")
    return result.normalization


def _load_teacher(
    store: StudentStore, teacher: Teacher | None, student: StudentConfig, like: TrainingImages
) -> TeacherModel | None:
    """The stored teacher student, with the normalisation it was trained with."""
    if teacher is None:
        return None
    result = store.load_result(teacher.key)
    if result is None:
        raise ValueError(f"the teacher {teacher.key} is not in {store.directory}: train it first (its pipeline's run)")
    return TeacherModel(store.load_model(teacher.key, student, like), result.normalization, teacher.temperature)
