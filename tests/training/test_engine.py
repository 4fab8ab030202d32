from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.training import engine
from mind_the_gap.training.augment import POLICY_GROUP, BatchAugment, local_shuffle
from mind_the_gap.training.checkpoint import load_checkpoint, save_checkpoint
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NonFiniteLossError,
    Normalization,
    _optimizer,
    data_stays_on_device,
    evaluate,
    fit,
    placement,
    planned_steps,
)
from mind_the_gap.training.student_cache import StudentStore, train_student

from ..conftest import striped_images

FAST = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=0, progress=False)
STUDENT = StudentConfig(width=8)
UNIT = Normalization((0.5,), (0.25,))


def test_same_seed_twice_gives_identical_metrics(tmp_path: Path):
    train, test = striped_images(24, seed=0), striped_images(8, seed=1)
    norm = Normalization.of(train)
    results = [
        train_student(StudentStore(tmp_path / f"run{i}"), STUDENT, FAST, train, test, seed=7, normalization=norm)
        for i in range(2)
    ]
    assert _without_timing(results[0].history) == _without_timing(results[1].history)
    assert results[0].test.top1 == results[1].test.top1
    assert results[0].test.loss == results[1].test.loss
    other = train_student(StudentStore(tmp_path / "other"), STUDENT, FAST, train, test, seed=8, normalization=norm)
    assert other.history[-1]["train_loss"] != results[0].history[-1]["train_loss"]


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in history]


def test_engine_learns_an_easy_task():
    train, val = striped_images(48, seed=0), striped_images(16, seed=1)
    torch.manual_seed(0)
    model = build_student(STUDENT, train.num_classes, train.channels, 16)
    config = FAST.model_copy(update={"epochs": 6})
    norm = Normalization.of(train)
    result = fit(model, train, config, seed=0, normalization=norm, val=val)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert evaluate(model, val, norm, config).top1 > 0.8  # chance is 0.25


def test_non_finite_loss_is_a_clear_error():
    train = striped_images(16)
    model = build_student(STUDENT, train.num_classes, 1, 16)
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) in epoch [12] .* lower training.lr"):
        fit(model, train, FAST.model_copy(update={"lr": 1e12, "log_every": 1}), seed=0, normalization=UNIT)


def test_all_frozen_model_is_rejected():
    train = striped_images(8)
    model = build_student(STUDENT, train.num_classes, 1, 16).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, train, FAST, seed=0, normalization=UNIT)


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
    assert result.top1 == pytest.approx(1 / 12)
    assert result.top5 == 1.0
    assert result.per_class_accuracy[0] == 0.5
    assert result.per_class_accuracy[1:] == [0.0] * 5
    assert result.confusion.sum() == 12
    assert result.confusion[0, 0] == 1
    assert result.confusion[0, 1] == 1


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
    assert first.shape == images.shape
    assert torch.equal(first, again)
    distinct = {tuple(x.flatten().tolist()) for x in first}
    assert len(distinct) > 32  # one draw per image, not one per batch


def test_crop_and_flip_move_pixels_without_resampling():
    images = torch.arange(16.0).view(1, 1, 4, 4).expand(32, -1, -1, -1) / 16
    out = BatchAugment(["flip", "crop"], crop_padding=0.25)(images, torch.Generator().manual_seed(1))
    allowed = set((images[0].flatten()).tolist()) | {0.0}
    assert set(out.flatten().tolist()) <= allowed


def test_color_jitter_scales_brightness_of_every_pixel():
    images = torch.full((256, 1, 4, 4), 0.5)
    images[:, :, 0, 0] = 0.25  # one darker pixel: contrast moves it, brightness scales it with the rest
    out = BatchAugment(["color"])(images, torch.Generator().manual_seed(0))
    means = out.mean(dim=(1, 2, 3))
    assert means.min() < 0.4
    assert means.max() > 0.6
    assert torch.all(out[:, :, 0, 0] < out[:, :, 1, 1])  # the darker pixel stays darker


@pytest.mark.parametrize("policy", ["rand_augment", "trivial_augment", "auto_augment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_strong_policies_are_seeded_per_run_and_vary_within_a_batch(policy: str, channels: int):
    images = torch.rand(1, channels, 16, 16).expand(64, -1, -1, -1).contiguous()
    augment = BatchAugment([policy])
    first = augment(images, torch.Generator().manual_seed(0))
    assert first.shape == images.shape
    assert 0 <= first.min()
    assert first.max() <= 1
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(1)))
    groups = {tuple(group.flatten().tolist()) for group in first.split(POLICY_GROUP)}
    assert len(groups) > 1  # each group of images draws its own operation


def test_one_strong_policy_at_most():
    with pytest.raises(ValueError, match="one strong policy at most"):
        BatchAugment(["rand_augment", "auto_augment"])
    with pytest.raises(ValueError, match="one strong policy at most"):
        TrainConfig(augment=["trivial_augment", "auto_augment"])
    with pytest.raises(ValueError, match="unknown augmentation"):
        BatchAugment(["mixup"])


def test_local_shuffle_permutes_pixels_within_their_squares_only():
    images = torch.rand(32, 1, 7, 7).expand(-1, 2, -1, -1)  # 7 px: the last row and column lie outside the squares
    out = local_shuffle(images, 2, 1.0, torch.Generator().manual_seed(0))
    assert not torch.equal(out, images)
    assert torch.equal(out[:, :, 6], images[:, :, 6])
    assert torch.equal(out[:, :, :, 6], images[:, :, :, 6])
    square = lambda x: x[:, :, 2:4, 4:6].flatten(2)  # noqa: E731
    assert torch.equal(square(out).sort(-1).values, square(images).sort(-1).values)  # the same pixels, moved
    assert torch.equal(out[:, 0], out[:, 1])  # channels move together
    untouched = local_shuffle(images, 2, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(untouched, images)
    with pytest.raises(ValueError, match="local_shuffle needs a patch"):
        local_shuffle(images, 8, 1.0, torch.Generator())


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
    first = train_student(store, STUDENT, FAST, train, test, seed=0, normalization=UNIT)
    unkeyed = {"progress": True, "data_on_device": "never"}  # how it runs, not what it learns
    again = train_student(store, STUDENT, FAST.model_copy(update=unkeyed), train, test, 0, UNIT)
    assert not first.cache_hit
    assert again.cache_hit
    assert again.test.top1 == first.test.top1
    assert np.array_equal(again.test.confusion, first.test.confusion)
    assert again.normalization == first.normalization
    changed = train_student(store, STUDENT, FAST.model_copy(update={"lr": 0.01}), train, test, 0, UNIT)
    assert not changed.cache_hit
    assert changed.key != first.key
    model = store.load_model(first.key, STUDENT, train)
    assert evaluate(model, test, first.normalization, FAST).top1 == first.test.top1


def _count_training_steps(model: nn.Module) -> list[int]:
    """A counter, in a one-item list, of the model's forward passes in training mode: one per optimizer step."""
    steps = [0]

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        steps[0] += module.training

    model.register_forward_pre_hook(count)
    return steps


def test_min_steps_stretches_a_tiny_set_over_epochs_rounds():
    train, val = striped_images(10), striped_images(2, seed=1)  # 40 images: one batch of 32 per pass
    config = FAST.model_copy(update={"min_steps": 10})
    model = build_student(STUDENT, train.num_classes, 1, 16)
    steps = _count_training_steps(model)
    history = fit(model, train, config, seed=0, normalization=UNIT, val=val).history
    assert planned_steps(len(train), config) == 10
    assert steps[0] == 10
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["optimizer_steps"] for r in history] == [3, 7, 10]
    assert [r["data_passes"] for r in history] == pytest.approx([3 * 32 / 40, 7 * 32 / 40, 10 * 32 / 40])
    assert all("val_accuracy" in r for r in history)
    assert history[-1]["lr"] == pytest.approx(0, abs=1e-12)  # the cosine schedule spans all ten steps


@pytest.mark.parametrize("min_steps", [0, 5, 9])
def test_without_stretching_training_is_epochs_passes(min_steps: int):
    train = striped_images(25)  # 100 images: three batches of 32 per pass
    config = FAST.model_copy(update={"min_steps": min_steps})
    model = build_student(STUDENT, train.num_classes, 1, 16)
    steps = _count_training_steps(model)
    history = fit(model, train, config, seed=0, normalization=UNIT).history
    assert planned_steps(len(train), config) == steps[0] == config.epochs * (100 // 32) == 9
    assert [r["optimizer_steps"] for r in history] == [3, 6, 9]
    assert [r["data_passes"] for r in history] == pytest.approx([0.96, 1.92, 2.88])


def test_max_steps_cuts_a_large_set_to_the_same_steps_in_epochs_rounds():
    train = striped_images(25)  # 100 images: three batches of 32 per pass, nine steps in three epochs
    config = FAST.model_copy(update={"max_steps": 4})
    model = build_student(STUDENT, train.num_classes, 1, 16)
    steps = _count_training_steps(model)
    history = fit(model, train, config, seed=0, normalization=UNIT).history
    assert planned_steps(len(train), config) == steps[0] == 4
    assert [r["optimizer_steps"] for r in history] == [1, 3, 4]
    assert history[-1]["lr"] == pytest.approx(0, abs=1e-12)  # the cosine schedule spans the four steps


def test_max_steps_below_min_steps_is_refused():
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig.model_validate(FAST.model_dump() | {"max_steps": 3, "min_steps": 5})


def test_lr_scales_put_parameters_in_groups_of_their_learning_rate():
    model = build_student(STUDENT, 4, 1, 16)
    scales = {name: 0.1 for name, _ in model.named_parameters() if name.startswith(("0.", "1."))}
    scales["9.2.bias"] = 0.5
    optimizer = _optimizer(model, FAST, scales)
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert len(group_of) == sum(1 for _ in model.parameters())
    for name, parameter in model.named_parameters():
        group = group_of[id(parameter)]
        assert group["lr"] == pytest.approx(FAST.lr * scales.get(name, 1.0)), name
        assert group["weight_decay"] == (FAST.weight_decay if parameter.ndim > 1 else 0.0), name


def test_a_parameter_with_a_tiny_lr_scale_barely_moves():
    train = striped_images(16)
    model = build_student(STUDENT, train.num_classes, 1, 16)
    slow, fast = "1.conv1.weight", "2.conv1.weight"
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fit(model, train, FAST.model_copy(update={"amp": "off"}), seed=0, normalization=UNIT, lr_scales={slow: 1e-6})
    after = dict(model.named_parameters())

    def moved(name: str) -> float:
        return ((after[name] - before[name]).norm() / before[name].norm()).item()

    assert moved(slow) < 1e-5
    assert moved(fast) > 1e-2


def test_placement_resolves_the_config_unless_given_a_resolved_device_and_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {})  # a CPU without native bf16
    on_cuda = FAST.model_copy(update={"device": "cuda", "amp": "auto"})
    assert placement(on_cuda) == (torch.device("cuda"), torch.float16)  # fit scales float16 gradients
    assert placement(on_cuda, torch.device("cpu"), torch.bfloat16) == (torch.device("cpu"), torch.bfloat16)
    assert placement(on_cuda, torch.device("cpu")) == (torch.device("cpu"), torch.float32)


@pytest.mark.parametrize(("amp", "dtype"), [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_cpu_training_runs_in_the_resolved_precision_and_channels_last(amp: str, dtype: torch.dtype):
    train = striped_images(8, channels=3)  # three channels: a one-channel batch is channels_last either way
    model = build_student(STUDENT, train.num_classes, 3, 16)
    seen: list[tuple[torch.dtype, bool]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last)))

    model.register_forward_hook(record)
    config = FAST.model_copy(update={"amp": amp, "device": "cpu", "epochs": 1, "channels_last": True})
    fit(model, train, config, seed=0, normalization=Normalization((0.5,) * 3, (0.25,) * 3))
    assert seen
    assert all(entry == (dtype, True) for entry in seen)
    assert model[1].conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_real_normalization_is_the_real_pools_for_any_training_set():
    synthetic = striped_images(5, seed=3)
    real = Normalization((0.3,), (0.2,))
    assert TrainConfig().normalization == "real"
    assert Normalization.resolve("real", synthetic, real) == real
    own = Normalization.resolve("train", synthetic, real)
    assert own == Normalization.of(synthetic)
    assert own != real
    rgb = striped_images(2, channels=3)
    assert Normalization.resolve("imagenet", rgb, real) == Normalization(IMAGENET_MEAN, IMAGENET_STD)
    grey = Normalization.resolve("imagenet", synthetic, real)
    assert grey.mean == pytest.approx((sum(IMAGENET_MEAN) / 3,))
    assert grey.std == pytest.approx((sum(IMAGENET_STD) / 3,))
    assert Normalization.resolve("none", rgb, real) == Normalization((0.0,) * 3, (1.0,) * 3)


def test_normalization_statistics_are_exact_over_several_slices():
    # 2**24 pixel values per slice: 350 images of 3 x 128 x 128 take two slices, the second a ragged one.
    images = torch.randint(0, 256, (350, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 1] //= 2
    images[:, 2] = 255 - images[:, 2] // 4
    data = ImageSet(images, torch.zeros(350, dtype=torch.int64), ("only",))
    # The exact statistics, from each channel's histogram of its 256 values.
    counts = torch.stack([torch.bincount(images[:, c].flatten(), minlength=256) for c in range(3)]).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum(1) / counts.sum(1)
    std = ((counts * (values - mean[:, None]) ** 2).sum(1) / counts.sum(1)).sqrt()
    stats = Normalization.of(data)
    assert stats.mean == pytest.approx(mean.tolist(), abs=1e-12)
    assert stats.std == pytest.approx(std.tolist(), abs=1e-9)


class Killed(Exception):
    """Stands for a process killed after an epoch."""


def _learned(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in history]


@pytest.mark.parametrize("min_steps", [0, 10])  # 10: rounds that end mid-way through a pass over the data
def test_a_killed_run_resumes_from_its_last_epoch_and_ends_bit_identical(tmp_path: Path, min_steps: int):
    train = striped_images(25)  # 100 images: three batches of 32 per pass, a ragged end dropped
    config = FAST.model_copy(update={"amp": "off", "min_steps": min_steps, "augment": ["crop", "flip"]})
    initial = _model(train)
    whole = copy.deepcopy(initial)
    uninterrupted = fit(whole, train, config, seed=0, normalization=UNIT)

    progress = tmp_path / "student.progress.pt"

    def kill_after_epoch_2(record: dict[str, float]) -> None:
        if record["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(
            copy.deepcopy(initial),
            train,
            config,
            seed=0,
            normalization=UNIT,
            on_epoch=kill_after_epoch_2,
            progress_file=progress,
        )
    assert progress.is_file()
    resumed_model, epochs_seen = copy.deepcopy(initial), []
    resumed = fit(
        resumed_model, train, config, seed=0, normalization=UNIT, on_epoch=epochs_seen.append, progress_file=progress
    )
    assert [r["epoch"] for r in epochs_seen] == [1, 2, 3]  # the tracker gets the resumed epochs too
    assert _learned(resumed.history) == _learned(uninterrupted.history)
    for (name, a), b in zip(whole.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_progress_file_of_another_run_or_unreadable_is_ignored(tmp_path: Path, caplog):
    train = striped_images(16)
    config = FAST.model_copy(update={"amp": "off", "epochs": 2})
    progress = tmp_path / "student.progress.pt"

    def stop(record: dict[str, float]) -> None:
        raise Killed

    with pytest.raises(Killed):
        fit(_model(train), train, config, seed=0, normalization=UNIT, on_epoch=stop, progress_file=progress)
    longer = config.model_copy(update={"min_steps": 50})
    assert len(fit(_model(train), train, longer, seed=0, normalization=UNIT, progress_file=progress).history) == 2
    assert "belongs to another run" in caplog.text
    progress.write_bytes(b"half a file")
    assert len(fit(_model(train), train, config, seed=0, normalization=UNIT, progress_file=progress).history) == 2
    assert "unreadable progress file" in caplog.text


def test_a_stored_student_leaves_no_progress_file(tmp_path: Path):
    store = StudentStore(tmp_path)
    train, test = striped_images(16), striped_images(4, seed=1)
    result = train_student(store, StudentConfig(width=8), FAST.model_copy(update={"amp": "off"}), train, test, 0, UNIT)
    assert store.result_path(result.key).is_file()
    assert not store.progress_path(result.key).exists()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
            ],
        ),
    ],
)
def test_a_streamed_run_learns_what_a_whole_set_run_learns(device: str, caplog):
    # 3 channels so that TrivialAugment's colour operations act; 13 a class: 52 images, three batches of 16 a pass
    # and a ragged end dropped; min_steps: rounds that end mid-way through a pass.
    train, val, test = (striped_images(n, channels=3, seed=seed) for n, seed in ((13, 0), (4, 1), (5, 2)))
    config = FAST.model_copy(
        update={"batch_size": 16, "min_steps": 10, "device": device, "augment": ["crop", "flip", "trivial_augment"]}
    )
    initial = _model(train)
    caplog.set_level(logging.INFO, logger="mind_the_gap.training.engine")
    runs = {}
    for setting in ("always", "never"):
        model = copy.deepcopy(initial)
        caplog.clear()
        # cuDNN's deterministic kernels: on a GPU, two runs of the same path are otherwise not bit-identical.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            history = fit(
                model, train, config.model_copy(update={"data_on_device": setting}), 0, UNIT, val, description=setting
            ).history
            runs[setting] = model, history, evaluate(model, test, UNIT, config)
        streamed = "streamed from host memory (training.data_on_device: never" in caplog.text
        assert streamed == (setting == "never")
    (whole, whole_history, whole_test), (stream, stream_history, stream_test) = runs["always"], runs["never"]
    assert _learned(stream_history) == _learned(whole_history)
    assert stream_test.loss == whole_test.loss
    assert stream_test.top1 == whole_test.top1
    assert np.array_equal(stream_test.confusion, whole_test.confusion)
    for (name, a), b in zip(whole.state_dict().items(), stream.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


GiB = 2**30


@pytest.mark.parametrize(
    ("setting", "set_gib", "free_gib", "on_device"),
    [
        ("auto", 18.9, 36.5, False),  # ImageNet-100 real on an A100-40GB (37.3 GiB): streamed
        ("auto", 18.9, 73.0, True),  # on an 80 GB GPU: copied, half of the free memory left to training
        ("auto", 37.1, 73.0, False),  # all real + all synthetic on that GPU: streamed
        ("auto", 37.1, 138.0, True),  # on an H200
        ("auto", 20.0, 40.0, True),  # exactly half
        ("auto", 20.1, 40.0, False),
        ("auto", 1e6, None, True),  # off CUDA: the free memory is unknown, the set stays where it is
        ("always", 100.0, 40.0, True),
        ("never", 0.1, 80.0, False),
        ("never", 0.1, None, False),
    ],
)
def test_auto_keeps_the_set_on_the_device_when_it_takes_at_most_half_the_free_memory(
    setting: str, set_gib: float, free_gib: float | None, on_device: bool
):
    free = None if free_gib is None else round(free_gib * GiB)
    assert data_stays_on_device(setting, round(set_gib * GiB), free) == on_device


def _model(train: ImageSet) -> nn.Module:
    torch.manual_seed(0)
    return build_student(StudentConfig(width=8), train.num_classes, train.channels, train.image_size[0])


class TensorsFromNumbers(TorchDispatchMode):
    """Counts tensors made from Python numbers (``torch.tensor``): on a GPU each is a copy the host waits for."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten.lift_fresh.default
        return func(*args, **(kwargs or {}))


def test_a_training_step_makes_no_tensor_from_python_numbers():
    train = striped_images(16)  # 64 images: two batches of 32 a pass
    config = FAST.model_copy(update={"augment": ["crop", "flip", "trivial_augment"]})
    fit(_model(train), train, config, seed=0, normalization=UNIT)  # what a process makes once (kornia's constants)
    counts = []
    for epochs in (1, 3):
        with TensorsFromNumbers() as mode:
            fit(_model(train), train, config.model_copy(update={"epochs": epochs}), seed=0, normalization=UNIT)
        counts.append(mode.count)
    assert counts[0] == counts[1]  # the same for 2 steps as for 6: none a step


def test_compile_runs_the_training_steps_through_the_compiled_model_and_stores_the_model_itself(monkeypatch):
    compiled: list[nn.Module] = []
    steps = []

    class Compiled(nn.Module):
        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            steps.append(len(x))
            return self.model(x)

    def compile_(model: nn.Module) -> nn.Module:
        compiled.append(model)
        return Compiled(model)

    monkeypatch.setattr(torch, "compile", compile_)
    train = striped_images(16)
    model = _model(train)
    names = list(model.state_dict())
    fit(model, train, FAST, seed=0, normalization=UNIT)
    assert not compiled  # off by default
    fit(model, train, FAST.model_copy(update={"compile": True}), seed=0, normalization=UNIT)
    assert compiled == [model]
    assert steps == [32] * planned_steps(len(train), FAST)
    assert list(model.state_dict()) == names  # the model itself trained: no wrapper's prefix on its weights


def test_training_asks_for_the_fastest_convolutions_on_its_device(monkeypatch):
    asked = []
    monkeypatch.setattr(engine, "use_fastest_convolutions", asked.append)
    train = striped_images(8)
    fit(_model(train), train, FAST.model_copy(update={"epochs": 1}), seed=0, normalization=UNIT)
    assert asked == [torch.device("cpu")]
