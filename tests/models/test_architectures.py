from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from mind_the_gap.models.architectures import StudentConfig, UnitNet, build_student, student_unit_names, unit_names
from mind_the_gap.models.units import (
    copy_units,
    format_units,
    freeze_units,
    frozen_units,
    reinit_units,
    resolve_units,
    unfreeze_units,
)

NARROW_LAYERS = StudentConfig(width=8, units="layers")
# Units 2 (block1.conv2) and 6 (block3.conv2, with block3's shortcut projection) of the narrow ResNet by layers.
LAYER_UNITS = "2,6"
LAYER_MODULES = ("1.conv2.", "1.bn2.", "3.conv2.", "3.bn2.", "3.downsample.")


def _in_layer_units(key: str) -> bool:
    return key.startswith(LAYER_MODULES)


@pytest.mark.parametrize(
    ("arch", "units", "image_size", "channels"),
    [("resnet50", 18, 32, 3), ("resnet18", 10, 32, 1), ("resnet18", 10, 96, 3), ("resnet_narrow", 10, 28, 1)],
)
def test_units_are_numbered_as_in_the_paper(arch, units, image_size, channels):
    model = build_student(StudentConfig(arch=arch, width=8), num_classes=7, in_channels=channels, image_size=image_size)
    assert model.num_units == units
    assert unit_names(model)[0] == "stem"
    assert unit_names(model)[-1] == "classifier"
    out = model.eval()(torch.randn(2, channels, image_size, image_size))
    assert out.shape == (2, 7)


def test_small_inputs_get_a_3x3_stem_without_max_pool():
    small = build_student(StudentConfig(arch="resnet18"), 10, 3, 32)
    large = build_student(StudentConfig(arch="resnet18"), 10, 3, 224)
    assert small[0][0].kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small[0])
    assert large[0][0].kernel_size == (7, 7)
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in large[0])


def test_resnet50_blocks_are_bottlenecks():
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    assert all(type(model[i]).__name__ == "Bottleneck" for i in range(1, 17))
    assert isinstance(model[17][-1], torch.nn.Linear)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("15-17", [15, 16, 17]),
        ("0-2", [0, 1, 2]),
        ("16-", [16, 17]),
        ("-2", [16, 17]),
        ("3", [3]),
        ("1,4", [1, 4]),
        (range(2), [0, 1]),
        ([17, 0], [0, 17]),
        (5, [5]),
    ],
)
def test_unit_ranges(spec, expected):
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    assert resolve_units(model, spec) == expected


@pytest.mark.parametrize(("spec", "message"), [("0-18", r"unit\(s\) \[18\]"), ("a-b", "is not of the form")])
def test_bad_unit_ranges_are_explained(spec, message):
    model = build_student(StudentConfig(arch="resnet50"), 10, 3, 32)
    with pytest.raises(ValueError, match=message):
        resolve_units(model, spec)


def _train_a_little(model: UnitNet) -> dict[str, torch.Tensor]:
    """Three SGD steps on random 16 px images; the state dict after them."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        loss = model(torch.randn(8, 1, 16, 16)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def test_freezing_stops_gradients_updates_and_norm_statistics():
    torch.manual_seed(0)
    model = build_student(StudentConfig(width=8), 5, 1, 16)
    freeze_units(model, "0-4")
    assert frozen_units(model) == [0, 1, 2, 3, 4]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    after = _train_a_little(model)
    for i in range(model.num_units):
        prefix = f"{i}."
        changed = any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
        assert changed == (i > 4), f"unit {i}"
    assert all(p.grad is None for p in model[:5].parameters())
    unfreeze_units(model, "0-4")
    assert frozen_units(model) == []
    assert all(p.requires_grad for p in model.parameters())


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


@pytest.mark.parametrize(
    ("arch", "numbering", "count", "blocks", "convs_per_block"),
    [
        ("resnet_narrow", "blocks", 10, 8, 2),
        ("resnet_narrow", "layers", 18, 8, 2),
        ("resnet18", "blocks", 10, 8, 2),
        ("resnet18", "layers", 18, 8, 2),
        ("resnet50", "blocks", 18, 16, 3),
        ("resnet50", "layers", 50, 16, 3),
    ],
)
def test_both_numberings_count_and_name_the_units(arch, numbering, count, blocks, convs_per_block):
    config = StudentConfig(arch=arch, width=8, units=numbering)
    model = build_student(config, num_classes=5, in_channels=3, image_size=16)
    names = unit_names(model)
    assert model.num_units == len(names) == count
    if numbering == "blocks":
        middle = [f"block{b}" for b in range(1, blocks + 1)]
    else:
        middle = [f"block{b}.conv{c}" for b in range(1, blocks + 1) for c in range(1, convs_per_block + 1)]
    assert names == ["stem", *middle, "classifier"]
    assert student_unit_names(config) == names
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("numbering", ["blocks", "layers"])
@pytest.mark.parametrize("arch", ["resnet_narrow", "resnet18", "resnet50"])
def test_every_weight_and_buffer_belongs_to_exactly_one_unit(arch, numbering):
    model = build_student(StudentConfig(arch=arch, width=8, units=numbering), 5, 3, 16)
    owners: dict[str, list[int]] = {}
    for index, paths in enumerate(model.unit_paths):
        for path in paths:
            for key in model.get_submodule(path).state_dict():
                owners.setdefault(f"{path}.{key}", []).append(index)
    assert owners.keys() == model.state_dict().keys()
    assert all(len(units) == 1 for units in owners.values())
    owner_of_parameter = model.unit_of_parameter()
    assert owner_of_parameter.keys() == dict(model.named_parameters()).keys()
    assert all(owners[name] == [unit] for name, unit in owner_of_parameter.items())


@pytest.mark.parametrize("arch", ["resnet_narrow", "resnet18", "resnet50"])
def test_layers_numbering_puts_the_shortcut_with_the_blocks_last_conv(arch):
    model = build_student(StudentConfig(arch=arch, width=8, units="layers"), 5, 3, 16)
    owner = model.unit_of_parameter()
    with_shortcut = [i for i in range(1, len(model) - 1) if model[i].downsample is not None]
    assert with_shortcut
    for i in with_shortcut:
        last = 3 if isinstance(model[i], Bottleneck) else 2
        unit = owner[f"{i}.conv{last}.weight"]
        shortcut_units = {u for name, u in owner.items() if name.startswith(f"{i}.downsample.")}
        assert shortcut_units == {unit}
        assert owner[f"{i}.bn{last}.weight"] == unit
        assert unit_names(model)[unit] == f"block{i}.conv{last}"
        assert model.unit_paths[unit] == (f"{i}.conv{last}", f"{i}.bn{last}", f"{i}.downsample")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3-1", "'3-1' is empty"),
        ("-0", "'-0' names no unit"),
        ("", "is not of the form"),
        (" ", "is not of the form"),
        ("1,,2", "is not of the form"),
        ([], "names no unit"),
        (range(0), "names no unit"),
        ("0,5-4", "'5-4' is empty"),
    ],
)
def test_a_range_that_names_no_unit_is_an_error(spec, message):
    model = build_student(StudentConfig(width=8), 5, 1, 16)
    with pytest.raises(ValueError, match=message):
        resolve_units(model, spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("0,15-17", [0, 15, 16, 17]), ("1, 4-6, -1", [1, 4, 5, 6, 17]), ("2-3,3-4", [2, 3, 4]), ("16-,0", [0, 16, 17])],
)
def test_comma_lists_of_ranges(spec, expected):
    model = build_student(StudentConfig(width=8, units="layers"), 5, 1, 16)
    assert resolve_units(model, spec) == expected


@pytest.mark.parametrize(
    ("indices", "text"),
    [([0, 1, 2, 5], "0-2,5"), ([3], "3"), ([17, 0, 16], "0,16-17"), (range(18), "0-17"), ([4, 2, 2, 3], "2-4")],
)
def test_format_units_writes_the_shortest_ranges(indices, text):
    model = build_student(StudentConfig(width=8, units="layers"), 5, 1, 16)
    assert format_units(indices) == text
    assert resolve_units(model, text) == sorted(set(indices))


def test_format_units_round_trips_through_resolve_units():
    model = build_student(StudentConfig(width=8, units="layers"), 5, 1, 16)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        chosen = sorted(torch.nonzero(torch.rand(18, generator=generator) < 0.5).flatten().tolist()) or [7]
        assert resolve_units(model, format_units(chosen)) == chosen


def _layer_student() -> UnitNet:
    return build_student(NARROW_LAYERS, 5, 1, 16)


def _perturb(model: nn.Module) -> None:
    """Move every weight and buffer, normalisation statistics and batch counters too, away from its value."""
    with torch.no_grad():
        for value in model.state_dict().values():
            value.add_(torch.rand_like(value) + 0.1 if value.is_floating_point() else 7)


def test_freezing_layer_units_stops_exactly_those_convs_and_norms():
    torch.manual_seed(0)
    model = _layer_student()
    freeze_units(model, LAYER_UNITS)
    assert frozen_units(model) == [2, 6]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters() if _in_layer_units(name)}
    model.train()
    assert not model.get_submodule("3.bn2").training
    assert not model.get_submodule("3.downsample.1").training
    assert model.get_submodule("3.bn1").training
    assert model.get_submodule("1.bn1").training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    after = _train_a_little(model)
    for key in before:
        assert torch.equal(before[key], after[key]) == _in_layer_units(key), key


def test_copying_layer_units_copies_exactly_those_convs_and_norms():
    source, target = _layer_student(), _layer_student()
    _perturb(source)
    copy_units(source, target, LAYER_UNITS)
    src, dst = source.state_dict(), target.state_dict()
    for key in src:
        assert torch.equal(src[key], dst[key]) == _in_layer_units(key), key


def test_reinit_of_layer_units_touches_exactly_those_convs_and_norms():
    model = _layer_student()
    _perturb(model)
    perturbed = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_units(model, LAYER_UNITS, seed=3)
    for key, value in model.state_dict().items():
        assert torch.equal(value, perturbed[key]) != _in_layer_units(key), key
    for norm in ("1.bn2", "3.bn2", "3.downsample.1"):
        module = model.get_submodule(norm)
        assert torch.equal(module.running_var, torch.ones_like(module.running_var))
        assert module.num_batches_tracked == 0


def test_copy_between_numberings_is_refused():
    layers = _layer_student()
    with pytest.raises(ValueError, match=r"10 and 18 units \(blocks vs layers numbering\)"):
        copy_units(build_student(StudentConfig(width=8), 5, 1, 16), layers, "0")
    same_count = build_student(StudentConfig(arch="resnet50"), 5, 1, 16)  # 18 blocks-numbered units, as layers has
    with pytest.raises(ValueError, match="units are different modules"):
        copy_units(same_count, layers, "0")
