"""Unit-by-unit measurements of students: hooked features, CKA, linear probes and BatchNorm input statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mind_the_gap.analysis.representations import (
    batchnorm_input_moments,
    batchnorm_shift_per_unit,
    cka_batches,
    gaussian_symmetric_kl,
    linear_probe_accuracy,
    minibatch_cka,
    u_centred_gram,
    unit_features,
    unit_grams,
)
from mind_the_gap.data.imageset import ImageSet, ImageView
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


def test_unit_features_of_chosen_units_only():
    model, data = tiny_student(), tiny_set()
    every = unit_features(model, data, NORM, pooled=True)
    chosen = unit_features(model, data, NORM, pooled=True, units=[8, 2])
    assert len(chosen) == 2
    assert torch.equal(chosen[0], every[8])
    assert torch.equal(chosen[1], every[2])


def test_unit_features_of_a_view_are_those_of_its_images():
    model, data = tiny_student(), tiny_set()
    index = torch.tensor([7, 2, 5, 0])
    of_view = unit_features(model, ImageView(((data, index),)), NORM, pooled=True, batch_size=3)
    of_copy = unit_features(model, data.subset(index), NORM, pooled=True, batch_size=3)
    assert all(torch.equal(a, b) for a, b in zip(of_view, of_copy, strict=True))


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


def song_hsic(gram_k: np.ndarray, gram_l: np.ndarray) -> float:
    """The unbiased HSIC estimator as Song et al. (2012) write it, from the Gram matrices with zeroed diagonals."""
    n, ones = len(gram_k), np.ones(len(gram_k))
    k, other = gram_k - np.diag(np.diag(gram_k)), gram_l - np.diag(np.diag(gram_l))
    terms = (
        np.trace(k @ other)
        + (ones @ k @ ones) * (ones @ other @ ones) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * ones @ k @ other @ ones
    )
    return terms / (n * (n - 3))


def full_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of Kornblith et al. (2019) on all examples at once: the biased HSIC of centred features."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def cka(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    grams = ({"x": [u_centred_gram(x[i])], "y": [u_centred_gram(y[i])]} for i in cka_batches(len(x), batch_size))
    return minibatch_cka(grams, [("x", "y")])[("x", "y")][0]


def test_u_centred_gram_gives_the_unbiased_hsic_of_song_et_al():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 3, 2, 2))  # a feature map is flattened
    flat_y = y.reshape(9, -1)
    hsic = (u_centred_gram(torch.tensor(x)) * u_centred_gram(torch.tensor(y))).sum().item() / (9 * 6)
    assert hsic == pytest.approx(song_hsic(x @ x.T, flat_y @ flat_y.T), rel=1e-10)
    # Unchanged by a translation of the features.
    torch.testing.assert_close(u_centred_gram(torch.tensor(x + 100.0)), u_centred_gram(torch.tensor(x)))
    with pytest.raises(ValueError, match="at least 4"):
        u_centred_gram(torch.zeros(3, 2))


@pytest.mark.parametrize("dims", [5, 40])  # fewer and more dimensions than a batch's examples
def test_minibatch_cka_invariances(dims):
    generator = torch.Generator().manual_seed(dims)
    x = torch.randn(60, dims, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(dims, dims, generator=generator, dtype=torch.float64))
    assert cka(x, x, 20) == pytest.approx(1)
    assert cka(x, x @ rotation, 20) == pytest.approx(1)
    assert cka(x, 3.5 * x + 2, 20) == pytest.approx(1)
    # Unrelated representations: near 0, where full-batch linear CKA of all 60 is biased up (0.4 for 40 dimensions).
    assert abs(cka(x, torch.randn(60, dims, generator=generator, dtype=torch.float64), 20)) < 0.15


def test_minibatch_cka_agrees_with_full_linear_cka_on_many_examples():
    # Both estimate the same population CKA. With 4,000 examples of 20 and 30 dimensions the biased full-batch
    # estimate is off by O(D / N) < 0.01 of it, and batches of 500 differ from it by about 0.001 (measured over
    # seeds 0-2): 0.005 leaves room for rounding across platforms, not for a wrong estimator.
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(4000, 8))
    x = shared @ rng.normal(size=(8, 20)) + rng.normal(size=(4000, 20))
    y = np.tanh(shared @ rng.normal(size=(8, 30))) + 0.5 * rng.normal(size=(4000, 30))
    reference = full_linear_cka(x, y)
    assert 0.3 < reference < 0.9
    for batch_size in (4000, 500):
        assert cka(torch.tensor(x), torch.tensor(y), batch_size) == pytest.approx(reference, abs=0.005)


def test_minibatch_cka_in_float32_matches_float64():
    # Features far from 0 and wide, as rectified feature maps are: the float32 Gram product is centred first.
    rng = np.random.default_rng(5)
    shared = rng.normal(size=(256, 8))
    x = np.maximum(shared @ rng.normal(size=(8, 3000)) + 2 * rng.normal(size=(256, 3000)) + 50, 0)
    y = np.maximum(shared @ rng.normal(size=(8, 3000)) + 2 * rng.normal(size=(256, 3000)) + 50, 0)
    single = cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), 64)
    assert single == pytest.approx(cka(torch.tensor(x), torch.tensor(y), 64), abs=1e-6)


def test_minibatch_cka_of_a_constant_unit_is_nan_and_pairs_share_their_keys():
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    batches = [
        {"a": [u_centred_gram(x[i]), u_centred_gram(torch.ones(len(i), 3))], "b": [u_centred_gram(x[i])] * 2}
        for i in cka_batches(16, 8)
    ]
    result = minibatch_cka(batches, [("a", "b"), ("b", "b")])
    assert result[("b", "b")] == pytest.approx([1, 1])
    assert result[("a", "b")][0] == pytest.approx(1)
    assert math.isnan(result[("a", "b")][1])
    with pytest.raises(ValueError, match="at least one batch"):
        minibatch_cka([], [("a", "b")])


def test_cka_batches_cover_every_example_once_in_a_fixed_order_of_near_equal_batches():
    batches = cka_batches(21, 8)
    assert [len(b) for b in batches] == [7, 7, 7]
    assert sorted(torch.cat(batches).tolist()) == list(range(21))
    assert torch.cat(batches).tolist() != list(range(21))  # shuffled: a class-sorted sample is spread over batches
    assert all(a.equal(b) for a, b in zip(batches, cka_batches(21, 8), strict=True))
    assert [len(b) for b in cka_batches(5, 256)] == [5]
    assert min(len(b) for b in cka_batches(9, 8)) == 4
    with pytest.raises(ValueError, match="batch_size must be at least 8, got 4"):
        cka_batches(100, 4)
    with pytest.raises(ValueError, match="at least 4 examples, got 3"):
        cka_batches(3, 8)


def test_unit_grams_reduce_each_units_feature_map_to_its_u_centred_gram():
    model, data = tiny_student(), tiny_set()
    model.train()
    grams = unit_grams(model, data.images[:6], NORM)
    flat = unit_features(model, data, NORM, pooled=False, limit=6)
    assert len(grams) == model.num_units
    for gram, features in zip(grams, flat, strict=True):
        assert gram.shape == (6, 6)
        torch.testing.assert_close(gram, u_centred_gram(features.double()), atol=1e-4, rtol=1e-4)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


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
