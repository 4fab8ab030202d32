"""AdaBN: BatchNorm statistics re-estimated on new images, and nothing else of the student changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.models.units import freeze_units
from mind_the_gap.training.adapt import adapt_batchnorm
from mind_the_gap.training.engine import Normalization

NORM = Normalization((0.5,), (0.25,))


def _images(n: int, brightness: int, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 64, (n, 1, 16, 16), generator=generator, dtype=torch.uint8) + brightness
    return ImageSet(images, torch.zeros(n, dtype=torch.long), ("a", "b"))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build_student(StudentConfig(width=4), 2, 1, 16)
    model.train()
    model(torch.randn(8, 1, 16, 16))  # running statistics that differ from the new images'
    return model


def _batchnorm_buffers(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_only_batchnorm_buffers_change_and_frozen_units_are_adapted():
    model = _model()
    freeze_units(model, "0-8")  # frozen units keep their statistics in training; AdaBN must still adapt them
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapt_batchnorm(model, _images(64, brightness=150), NORM, batch_size=16)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed
    assert all(_batchnorm_buffers(k) for k in changed)
    assert {k for k in before if k.endswith("running_mean")} <= changed  # every BatchNorm layer adapted
    assert all(not p.requires_grad for p in model[0].parameters())  # the frozen flags survive
    assert model.training
    assert not model[0][1].training
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_adapted_statistics_are_those_of_the_new_images():
    model = _model()
    data = _images(32, brightness=100)
    adapt_batchnorm(model, data, NORM, units="0", batch_size=32)  # one batch: the exact mean of the stem's input
    stem = model[0]
    inputs = stem[0](NORM.apply(data.images.float() / 255))
    assert torch.allclose(stem[1].running_mean, inputs.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(stem[1].running_var, inputs.var((0, 2, 3)), rtol=1e-4)


def test_only_the_named_units_change():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapt_batchnorm(model, _images(32, brightness=150), NORM, units="-3")  # units 7-9 of 10
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"7", "8"}  # the classifier (unit 9) holds no BatchNorm


def test_units_without_batchnorm_and_empty_sets_are_errors():
    with pytest.raises(ValueError, match="hold no BatchNorm"):
        adapt_batchnorm(_model(), _images(8, 0), NORM, units="9")
    with pytest.raises(ValueError, match="empty image set"):
        adapt_batchnorm(_model(), _images(0, 0), NORM)
