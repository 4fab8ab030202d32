from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mind_the_gap.models.students import StudentConfig, build_student
from mind_the_gap.training.augment import BatchAugment
from mind_the_gap.training.checkpoint import load_checkpoint, save_checkpoint
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import (
    NonFiniteLossError,
    Normalization,
    evaluate,
    fit,
)
from mind_the_gap.training.students import StudentStore, train_student

from ..conftest import striped_images

FAST = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=0, progress=False)
STUDENT = StudentConfig(width=8)


def test_same_seed_twice_gives_identical_metrics(tmp_path: Path):
    train, test = striped_images(24, seed=0), striped_images(8, seed=1)
    results = [train_student(StudentStore(tmp_path / f"run{i}"), STUDENT, FAST, train, test, seed=7) for i in range(2)]
    assert _without_timing(results[0].history) == _without_timing(results[1].history)
    assert results[0].test.top1 == results[1].test.top1 and results[0].test.loss == results[1].test.loss
    other = train_student(StudentStore(tmp_path / "other"), STUDENT, FAST, train, test, seed=8)
    assert other.history[-1]["train_loss"] != results[0].history[-1]["train_loss"]


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in history]


def test_engine_learns_an_easy_task():
    train, val = striped_images(48, seed=0), striped_images(16, seed=1)
    torch.manual_seed(0)
    model = build_student(STUDENT, train.num_classes, train.channels, 16)
    config = FAST.model_copy(update={"epochs": 6})
    result = fit(model, train, config, seed=0, val=val)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert evaluate(model, val, result.normalization, config).top1 > 0.8  # chance is 0.25


def test_non_finite_loss_is_a_clear_error():
    train = striped_images(16)
    model = build_student(STUDENT, train.num_classes, 1, 16)
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) in epoch 1 .* lower training.lr"):
        fit(model, train, FAST.model_copy(update={"lr": 1e12, "log_every": 1}), seed=0)


def test_all_frozen_model_is_rejected():
    train = striped_images(8)
    model = build_student(STUDENT, train.num_classes, 1, 16).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, train, FAST, seed=0)


def test_evaluate_top1_top5_per_class_and_confusion():
    data = striped_images(2, num_classes=6)  # labels 0,0,1,1,...,5,5

    class Fixed(nn.Module):  # predicts class (label + 1) % 6 first and the true class second
        def forward(self, x):
            labels = data.labels
            logits = torch.zeros(len(x), 6)
            logits[torch.arange(len(x)), (labels + 1) % 6] = 2.0
            logits[torch.arange(len(x)), labels] = 1.0
            logits[0] = torch.tensor([5.0, 0, 0, 0, 0, 0])  # the first image is right
            return logits

    config = FAST.model_copy(update={"eval_batch_size": 100})
    result = evaluate(Fixed(), data, Normalization((0.0,), (1.0,)), config)
    assert result.top1 == pytest.approx(1 / 12) and result.top5 == 1.0
    assert result.per_class_accuracy[0] == 0.5 and result.per_class_accuracy[1:] == [0.0] * 5
    assert result.confusion.sum() == 12 and result.confusion[0, 0] == 1 and result.confusion[0, 1] == 1


def test_normalization_statistics_are_exact():
    data = striped_images(10, channels=3)
    pixels = data.images.double() / 255
    stats = Normalization.of(data)
    assert np.allclose(stats.mean, pixels.mean(dim=(0, 2, 3)).numpy())
    assert np.allclose(stats.std, pixels.std(dim=(0, 2, 3), unbiased=False).numpy())


def test_augmentation_differs_per_image_and_is_seeded():
    images = torch.rand(1, 3, 16, 16).expand(64, -1, -1, -1).contiguous()
    augment = BatchAugment(["crop", "flip", "resized_crop", "color"])
    first = augment(images, torch.Generator().manual_seed(0))
    again = augment(images, torch.Generator().manual_seed(0))
    assert first.shape == images.shape and torch.equal(first, again)
    distinct = {tuple(x.flatten().tolist()) for x in first}
    assert len(distinct) > 32  # one draw per image, not one per batch


def test_crop_and_flip_move_pixels_without_resampling():
    images = torch.arange(16.0).view(1, 1, 4, 4).expand(32, -1, -1, -1) / 16
    out = BatchAugment(["flip", "crop"], crop_padding=0.25)(images, torch.Generator().manual_seed(1))
    allowed = set((images[0].flatten()).tolist()) | {0.0}
    assert set(out.flatten().tolist()) <= allowed


def test_checkpoints_round_trip_through_safetensors(tmp_path: Path):
    model = build_student(STUDENT, 4, 1, 16)
    path = tmp_path / "student.safetensors"
    save_checkpoint(path, model, {"seed": 3})
    other = build_student(STUDENT, 4, 1, 16)
    state, metadata = load_checkpoint(path, other)
    assert metadata == {"seed": 3}
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["student.safetensors"]  # no temporary file left
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read checkpoint .*student.safetensors"):
        load_checkpoint(path)


def test_store_reuses_a_trained_student_until_its_inputs_change(tmp_path: Path):
    store = StudentStore(tmp_path)
    train, test = striped_images(16, seed=0), striped_images(4, seed=1)
    first = train_student(store, STUDENT, FAST, train, test, seed=0)
    again = train_student(store, STUDENT, FAST.model_copy(update={"progress": True}), train, test, seed=0)
    assert not first.cache_hit and again.cache_hit
    assert again.test.top1 == first.test.top1 and np.array_equal(again.test.confusion, first.test.confusion)
    changed = train_student(store, STUDENT, FAST.model_copy(update={"lr": 0.01}), train, test, seed=0)
    assert not changed.cache_hit and changed.key != first.key
    model = store.load_model(first.key, STUDENT, train)
    assert evaluate(model, test, first.normalization, FAST).top1 == first.test.top1
