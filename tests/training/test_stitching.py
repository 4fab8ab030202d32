"""Stitched students: two stored students joined at a cut by a trained 1x1 conv + BatchNorm, nothing else trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mind_the_gap.models.architectures import StudentConfig, UnitNet, build_student
from mind_the_gap.models.units import frozen_units
from mind_the_gap.training.checkpoint import load_checkpoint
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, evaluate, fit, seed_everything
from mind_the_gap.training.stitching import (
    Stitch,
    StitchingLayer,
    module_at_cut,
    stitch_students,
    stitching_layer,
)
from mind_the_gap.training.student_cache import StudentStore, load_stitched, stitch_normalization, train_student
from mind_the_gap.training.transfer import Transfer, TransferConfig

from ..conftest import striped_images

BLOCKS = StudentConfig(width=8)
LAYERS = StudentConfig(width=8, units="layers")
FAST = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, amp="off", progress=False)


def _student(config: StudentConfig = BLOCKS, seed: int = 0) -> UnitNet:
    seed_everything(seed)
    return build_student(config, num_classes=4, in_channels=1, image_size=16)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("cut", [1, 3, 8, 9])
def test_a_student_stitched_to_itself_through_a_fresh_layer_is_the_student(cut: int):
    # The fresh layer is the identity in eval mode: conv weight I, BatchNorm (x - 0) / sqrt(1 + eps) * 1 + 0.
    student = _student().eval()
    with torch.no_grad():
        for module in student.modules():  # statistics away from BatchNorm's (0, 1) start, as a trained student's
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    images = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = student(images)
    stitched = stitch_students(student, student, cut).eval()
    assert stitched.num_units == student.num_units + 1
    assert isinstance(stitched[cut], StitchingLayer)
    torch.testing.assert_close(stitched(images), expected, rtol=1e-4, atol=1e-4)


def test_the_layer_maps_the_bottoms_channels_to_the_tops_and_cuts_fall_on_whole_blocks():
    student = _student()
    layer = stitching_layer(stitch_students(student, student, 3))  # after the first stage (width 8)
    assert layer[0].weight.shape == (8, 8, 1, 1)
    assert torch.equal(layer[0].weight.view(8, 8), torch.eye(8))
    assert stitching_layer(stitch_students(student, student, 9))[0].weight.shape == (64, 64, 1, 1)  # before the head
    layers = _student(LAYERS)
    assert module_at_cut(layers, 3) == 2  # unit 3: block 2's conv1
    with pytest.raises(ValueError, match="inside a residual block"):
        module_at_cut(layers, 2)  # unit 2: block 1's conv2
    with pytest.raises(ValueError, match="must lie in 1-9"):
        module_at_cut(student, 10)
    with pytest.raises(ValueError, match="at least unit 0"):
        Stitch("a", "b", 0)


def test_only_the_stitching_layer_trains_and_the_students_batchnorm_statistics_stay():
    bottom, top = _student(seed=0), _student(seed=1)
    before = {"bottom": _state(bottom), "top": _state(top)}
    stitched = stitch_students(bottom, top, 5)
    assert frozen_units(stitched) == [i for i in range(stitched.num_units) if i != 5]
    layer_before = _state(stitching_layer(stitched))
    data = striped_images(16)
    fit(stitched, data, FAST, 0, Normalization.of(data))
    # Every weight, running statistic and batch counter of both students, to the bit.
    for name, model in (("bottom", bottom), ("top", top)):
        after = model.state_dict()
        assert all(torch.equal(after[key], value) for key, value in before[name].items()), name
    layer_after = stitching_layer(stitched).state_dict()
    assert not torch.equal(layer_after["0.weight"], layer_before["0.weight"])
    assert not torch.equal(layer_after["1.running_mean"], layer_before["1.running_mean"])
    assert layer_after["1.num_batches_tracked"].item() > 0
    stitched.train()
    assert stitching_layer(stitched).training
    assert not any(m.training for i, m in enumerate(stitched) if i != 5)


def test_a_stitched_student_is_stored_by_a_key_of_its_students_and_cut(tmp_path: Path):
    store = StudentStore(tmp_path)
    train, test = striped_images(16), striped_images(4, seed=1)
    normalization = Normalization.of(train)
    keys = [train_student(store, BLOCKS, FAST, train, test, seed, normalization).key for seed in (0, 1)]
    stored = {key: _state(store.load_model(key, BLOCKS, train)) for key in keys}
    stitch = Stitch(keys[0], keys[1], 5)
    assert stitch.describe() == {"bottom": keys[0], "top": keys[1], "cut": 5}
    assert stitch_normalization(store, stitch) == normalization
    first = train_student(store, BLOCKS, FAST, train, test, 0, normalization, stitch=stitch)
    assert not first.cache_hit
    assert first.key not in keys
    again = train_student(store, BLOCKS, FAST, train, test, 0, normalization, stitch=stitch)
    assert again.cache_hit
    assert again.key == first.key
    other = train_student(store, BLOCKS, FAST, train, test, 0, normalization, stitch=Stitch(keys[0], keys[1], 3))
    assert other.key != first.key
    # The store holds the stitching layer alone; joined to its students again, it is the stitched student tested.
    state, metadata = load_checkpoint(store.checkpoint_path(first.key))
    assert sorted(state) == [
        "0.weight",
        "1.bias",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
        "1.weight",
    ]
    assert metadata["stitch"] == stitch.describe()
    loaded = load_stitched(store, first.key, stitch, BLOCKS, train)
    assert evaluate(loaded, test, normalization, FAST).top1 == first.test.top1
    # The stored students are untouched: their checkpoints load as trained.
    for key, state in stored.items():
        after = store.load_model(key, BLOCKS, train).state_dict()
        assert all(torch.equal(after[name], value) for name, value in state.items())
    transfer = Transfer(keys[0], "0-4", TransferConfig())
    with pytest.raises(ValueError, match="not from a transfer"):
        train_student(store, BLOCKS, FAST, train, test, 0, normalization, stitch=stitch, transfer=transfer)
