from __future__ import annotations

import pytest
import torch

from mind_the_gap.models.students import StudentConfig, build_student, unit_names
from mind_the_gap.models.units import (
    copy_units,
    freeze_units,
    frozen_units,
    reinit_units,
    resolve_units,
    unfreeze_units,
)


@pytest.mark.parametrize(
    ("arch", "units", "image_size", "channels"),
    [("resnet50", 18, 32, 3), ("resnet18", 10, 32, 1), ("resnet18", 10, 96, 3), ("resnet_narrow", 10, 28, 1)],
)
def test_units_are_numbered_as_in_the_paper(arch, units, image_size, channels):
    model = build_student(StudentConfig(arch=arch, width=8), num_classes=7, in_channels=channels, image_size=image_size)
    assert model.num_units == units
    assert unit_names(model)[0] == "stem" and unit_names(model)[-1] == "classifier"
    out = model.eval()(torch.randn(2, channels, image_size, image_size))
    assert out.shape == (2, 7)


def test_small_inputs_get_a_3x3_stem_without_max_pool():
    small = build_student(StudentConfig(arch="resnet18"), 10, 3, 32)
    large = build_student(StudentConfig(arch="resnet18"), 10, 3, 224)
    assert small[0][0].kernel_size == (3, 3) and not any(isinstance(m, torch.nn.MaxPool2d) for m in small[0])
    assert large[0][0].kernel_size == (7, 7) and any(isinstance(m, torch.nn.MaxPool2d) for m in large[0])


def test_resnet50_blocks_are_bottlenecks():
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    assert all(type(model[i]).__name__ == "Bottleneck" for i in range(1, 17))
    assert isinstance(model[17][-1], torch.nn.Linear)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("15-17", [15, 16, 17]), ("0-2", [0, 1, 2]), ("16-", [16, 17]), ("-2", [16, 17]), ("3", [3]),
     ("1,4", [1, 4]), (range(2), [0, 1]), ([17, 0], [0, 17]), (5, [5])],
)  # fmt: skip
def test_unit_ranges(spec, expected):
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    assert resolve_units(model, spec) == expected


@pytest.mark.parametrize(("spec", "message"), [("0-18", r"unit\(s\) \[18\]"), ("a-b", "is not of the form")])
def test_bad_unit_ranges_are_explained(spec, message):
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    with pytest.raises(ValueError, match=message):
        resolve_units(model, spec)


def test_freezing_stops_gradients_updates_and_norm_statistics():
    torch.manual_seed(0)
    model = build_student(StudentConfig(width=8), 5, 1, 16)
    freeze_units(model, "0-4")
    assert frozen_units(model) == [0, 1, 2, 3, 4]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(3):
        loss = model(torch.randn(8, 1, 16, 16)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    for i in range(model.num_units):
        prefix = f"{i}."
        changed = any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
        assert changed == (i > 4), f"unit {i}"
    assert all(p.grad is None for p in model[:5].parameters())
    unfreeze_units(model, "0-4")
    assert frozen_units(model) == [] and all(p.requires_grad for p in model.parameters())


def test_copy_units_is_exact_and_only_those_units():
    source = build_student(StudentConfig(width=8), 5, 1, 16)
    target = build_student(StudentConfig(width=8), 5, 1, 16)
    with torch.no_grad():  # every weight and buffer of the source differs from the target's, BN statistics too
        for value in source.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) + 0.1)
    copy_units(source, target, "0-3")
    src, dst = source.state_dict(), target.state_dict()
    for key in (k for k in src if not k.endswith("num_batches_tracked")):  # zero in both fresh models
        assert torch.equal(src[key], dst[key]) == (int(key.split(".")[0]) <= 3), key


def test_copy_between_different_models_fails_clearly():
    with pytest.raises(ValueError, match="18 and 10 units"):
        copy_units(
            build_student(StudentConfig(arch="resnet50"), 5, 3, 32), build_student(StudentConfig(), 5, 3, 32), "0"
        )


def test_reinit_is_seeded_and_touches_only_those_units():
    model = build_student(StudentConfig(width=8), 5, 1, 16)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_units(model, "-1", seed=3)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_units(model, "-1", seed=3)
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(first["9.2.weight"], original["9.2.weight"])
    assert torch.equal(first["1.conv1.weight"], original["1.conv1.weight"])
