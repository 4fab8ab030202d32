"""Unit-by-unit measurements of students: hooked features, CKA, linear probes and BatchNorm input statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mind_the_gap.analysis.representations import (
    batchnorm_input_moments,
    batchnorm_shift_per_unit,
    gaussian_symmetric_kl,
    linear_cka,
    linear_probe_accuracy,
    unit_features,
)
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.models.units import freeze_units
from mind_the_gap.training.engine import Normalization

NORM = Normalization((0.4,), (0.3,))
WIDTH = 4


def tiny_student(units: str = "blocks"):
    torch.manual_seed(0)
    return build_student(StudentConfig(arch="resnet_narrow", width=WIDTH, units=units), 3, 1, 8)


def tiny_set(n: int = 10, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(n) % 3, ("a", "b", "c"))


def inputs(data: ImageSet) -> torch.Tensor:
    return NORM.apply(data.images.float() / 255)


def test_unit_features_give_one_pooled_tensor_per_block():
    model, data = tiny_student(), tiny_set()
    features = unit_features(model, data, NORM, pooled=True, batch_size=4)
    widths = [WIDTH] * 3 + [2 * WIDTH] * 2 + [4 * WIDTH] * 2 + [8 * WIDTH] * 2 + [3]
    assert [tuple(f.shape) for f in features] == [(10, w) for w in widths]
    assert all(f.dtype == torch.float32 and f.device.type == "cpu" for f in features)
    with torch.no_grad():
        logits = model.eval()(inputs(data))
        block = model[2](model[1](model[0](inputs(data))))
    torch.testing.assert_close(features[-1], logits)
    torch.testing.assert_close(features[2], block.mean((2, 3)))


def test_unflattened_features_and_limit():
    model, data = tiny_student(), tiny_set()
    features = unit_features(model, data, NORM, pooled=False, limit=3)
    assert tuple(features[0].shape) == (3, WIDTH * 8 * 8)
    assert tuple(features[-1].shape) == (3, 3)
    with torch.no_grad():
        stem = model.eval()[0](inputs(data)[:3])
    torch.testing.assert_close(features[0], stem.flatten(1))


def test_layer_units_are_read_at_their_batchnorm_before_it_is_overwritten_in_place():
    model, data = tiny_student("layers"), tiny_set()
    features = unit_features(model, data, NORM, pooled=True, batch_size=3)
    assert len(features) == 18
    assert all(len(f) == 10 for f in features)
    with torch.no_grad():
        x = model.eval()[0](inputs(data))
        bn1 = model[1].bn1(model[1].conv1(x))  # unit 1: block 1's first conv, read before the ReLU
    torch.testing.assert_close(features[1], bn1.mean((2, 3)))
    assert (features[1] < 0).any()  # the ReLU that follows in place did not reach the copy
    torch.testing.assert_close(features[-1], model(inputs(data)))


def test_unit_features_restore_training_mode_and_remove_hooks():
    model = tiny_student()
    freeze_units(model, [0])
    model.train()
    modes = [m.training for m in model.modules()]
    unit_features(model, tiny_set(), NORM, pooled=True)
    assert [m.training for m in model.modules()] == modes
    assert not modes[1]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_unit_features_reject_a_limit_below_one():
    with pytest.raises(ValueError, match="limit"):
        unit_features(tiny_student(), tiny_set(), NORM, pooled=True, limit=0)


@pytest.mark.parametrize("dims", [5, 40])  # the feature form (D < N) and the Gram form (D > N)
def test_linear_cka_invariances(dims):
    generator = torch.Generator().manual_seed(dims)
    x = torch.randn(20, dims, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(dims, dims, generator=generator, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1)
    assert linear_cka(x, x.double() @ rotation) == pytest.approx(1)
    assert linear_cka(x, 3.5 * x + 2) == pytest.approx(1)
    assert linear_cka(x, torch.randn(20, dims, generator=generator)) < 0.9


def test_linear_cka_forms_agree():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 6)), rng.normal(size=(12, 3))
    wide = np.concatenate([y, np.zeros((12, 20))], axis=1)  # the same similarity, computed by the Gram form
    assert linear_cka(x, wide) == pytest.approx(linear_cka(x, y), rel=1e-10)
    centred_x, centred_y = x - x.mean(0), y - y.mean(0)
    hsic = lambda a, b: np.trace(a @ a.T @ b @ b.T)
    expected = hsic(centred_x, centred_y) / math.sqrt(hsic(centred_x, centred_x) * hsic(centred_y, centred_y))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)


def test_linear_cka_rejects_different_example_counts():
    with pytest.raises(ValueError, match="N >= 2"):
        linear_cka(np.zeros((4, 2)), np.zeros((5, 2)))


def test_linear_probe_reads_separable_classes_and_not_random_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(size=(120, 5)) + 6 * np.eye(3, 5)[labels]
    assert linear_probe_accuracy(features[::2], labels[::2], features[1::2], labels[1::2]) >= 0.95
    noise = rng.integers(0, 3, 120)
    assert linear_probe_accuracy(features[::2], noise[::2], features[1::2], noise[1::2]) < 0.6


def test_batchnorm_input_moments_match_a_direct_computation():
    model, data = tiny_student(), tiny_set(n=7)
    moments = batchnorm_input_moments(model, data, NORM, batch_size=4)  # batches of 4 and 3
    counts = [len(m) for m in moments]
    assert counts == [1, 2, 2, 3, 2, 3, 2, 3, 2, 0]  # a block with a shortcut projection has three
    with torch.no_grad():
        stem_input = model.eval()[0][0](inputs(data)).double()
        block = model[1]
        bn2_input = block.conv2(block.relu(block.bn1(block.conv1(model[0](inputs(data)))))).double()
    mean, var = moments[0][0]
    torch.testing.assert_close(mean, stem_input.mean((0, 2, 3)))
    torch.testing.assert_close(var, stem_input.var((0, 2, 3), correction=0))
    torch.testing.assert_close(moments[1][1][0], bn2_input.mean((0, 2, 3)))
    torch.testing.assert_close(moments[1][1][1], bn2_input.var((0, 2, 3), correction=0))
    assert mean.dtype == torch.float64


def test_batchnorm_input_moments_restore_modes_and_hooks():
    model = tiny_student().train()
    batchnorm_input_moments(model, tiny_set(), NORM)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_symmetric_kl():
    mean, var = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 4.0])
    assert gaussian_symmetric_kl(mean, var, mean, var) == 0
    # N(0, 1) vs N(1, 1): KL is 1/2 each way; N(0, 1) vs N(0, 4): (1/4 + 4) / 2 - 1 summed.
    assert gaussian_symmetric_kl(torch.zeros(1), torch.ones(1), torch.ones(1), torch.ones(1), eps=0) == 1
    assert gaussian_symmetric_kl(torch.zeros(1), torch.ones(1), torch.zeros(1), torch.full((1,), 4.0), eps=0) == 1.125
    scaled = gaussian_symmetric_kl(mean * 10, var * 100, mean * 10 + 10, var * 400, eps=0)
    assert scaled == pytest.approx(gaussian_symmetric_kl(mean, var, mean + 1, var * 4, eps=0))


def test_batchnorm_shift_per_unit():
    model = tiny_student()
    real, same, other = tiny_set(seed=0), tiny_set(seed=0), tiny_set(seed=1)
    real_moments = batchnorm_input_moments(model, real, NORM)
    identical = batchnorm_shift_per_unit(real_moments, batchnorm_input_moments(model, same, NORM))
    shift = batchnorm_shift_per_unit(real_moments, batchnorm_input_moments(model, other, NORM))
    assert shift.shape == (model.num_units,)
    assert math.isnan(shift[-1])
    assert math.isnan(identical[-1])
    np.testing.assert_allclose(identical[:-1], 0, atol=1e-9)
    assert (shift[:-1] > 0).all()
    with pytest.raises(ValueError, match="BatchNorm layers differ"):
        batchnorm_shift_per_unit(real_moments, real_moments[:-1])
