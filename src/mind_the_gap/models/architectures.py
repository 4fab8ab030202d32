"""Student networks whose trainable units are numbered as the paper numbers them.

Two numberings (``student.units``), since the paper's 18 units fit two readings:
- ``blocks``: the stem, each residual block, the classifier. ResNet-50 has 18 (stem, 16 bottlenecks,
  classifier), ResNet-18 and the narrow ResNet 10.
- ``layers``: each weighted layer: the stem conv, every conv of the blocks, the fc layer. ResNet-18 and the
  narrow ResNet have 18, ResNet-50 has 50. A block's shortcut projection (downsample) belongs to the block's last
  conv, which it is added to; each conv carries its BatchNorm.

The network itself is always stem, blocks, head in one ``nn.Sequential``; a unit is a group of its submodules,
so freezing, re-initialising and copying units works the same for either numbering.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from mind_the_gap.config import Config

SMALL_INPUT_MAX = 64  # at or below this many pixels the ImageNet stem would shrink images too early

UnitNumbering = Literal["blocks", "layers"]


class StudentConfig(Config):
    """Which student to build (``student`` in the parameters)."""

    arch: Literal["resnet18", "resnet50", "resnet_narrow"] = "resnet_narrow"
    width: int = Field(16, ge=4, le=128, description="first-stage width of resnet_narrow (ResNet-18 has 64)")
    units: UnitNumbering = Field("blocks", description="how units are numbered: blocks or weighted layers")


class UnitNet(nn.Sequential):
    """Stem, residual blocks and head applied in order, with the units of ``numbering`` as groups of submodules.

    Frozen modules (see ``mind_the_gap.models.units``) stay in eval mode under ``train()``: a frozen unit must not
    drift through its normalisation statistics either.
    """

    def __init__(self, *modules: nn.Module, numbering: UnitNumbering = "blocks"):
        super().__init__(*modules)
        self.numbering = numbering
        self.unit_paths: tuple[tuple[str, ...], ...] = _unit_paths(self, numbering)

    def train(self, mode: bool = True) -> UnitNet:
        super().train(mode)
        for module in self.modules():
            if getattr(module, "frozen", False):
                module.eval()
        return self

    @property
    def num_units(self) -> int:
        return len(self.unit_paths)

    def unit(self, index: int) -> list[nn.Module]:
        """The submodules that make up unit ``index``."""
        return [self.get_submodule(path) for path in self.unit_paths[index]]

    def unit_of_parameter(self) -> dict[str, int]:
        """Parameter name -> the unit it belongs to."""
        owner = {}
        for index, paths in enumerate(self.unit_paths):
            for path in paths:
                for name, _ in self.get_submodule(path).named_parameters():
                    owner[f"{path}.{name}"] = index
        return owner


def _unit_paths(model: nn.Sequential, numbering: UnitNumbering) -> tuple[tuple[str, ...], ...]:
    last = len(model) - 1
    if numbering == "blocks":
        return tuple((str(i),) for i in range(len(model)))
    paths: list[tuple[str, ...]] = [("0",)]
    for i in range(1, last):
        block = model[i]
        convs = [name for name, child in block.named_children() if isinstance(child, nn.Conv2d)]
        if not isinstance(block, (BasicBlock, Bottleneck)) or not convs:
            raise TypeError(f"unit numbering 'layers' needs residual blocks, found {type(block).__name__}")
        for j, conv in enumerate(convs):
            group = [f"{i}.{conv}", f"{i}.{conv.replace('conv', 'bn')}"]
            if j == len(convs) - 1 and block.downsample is not None:
                group.append(f"{i}.downsample")
            paths.append(tuple(group))
    paths.append((str(last),))
    return tuple(paths)


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation, applied to one module tree (used at build and re-init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            m.reset_parameters()


def _stem(in_channels: int, width: int, small_input: bool) -> nn.Sequential:
    if small_input:  # CIFAR-style stem: keeps 32x32 inputs at full resolution into the first stage
        conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True))
    conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))


def _head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


def _narrow_blocks(width: int) -> list[nn.Module]:
    """ResNet-18's layout (2 basic blocks per stage) at widths width, 2w, 4w, 8w."""
    blocks, in_planes = [], width
    for stage, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            downsample = None
            if stride != 1 or in_planes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            blocks.append(BasicBlock(in_planes, planes, stride, downsample))
            in_planes = planes
    return blocks


def build_student(config: StudentConfig, num_classes: int, in_channels: int, image_size: int) -> UnitNet:
    """The student for images of ``in_channels`` x ``image_size`` px, with a fresh torchvision initialisation."""
    small_input = image_size <= SMALL_INPUT_MAX
    if config.arch == "resnet_narrow":
        blocks, width, features = _narrow_blocks(config.width), config.width, 8 * config.width
    else:
        net = getattr(resnet, config.arch)(num_classes=num_classes)
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        width, features = 64, net.fc.in_features
    model = UnitNet(
        _stem(in_channels, width, small_input), *blocks, _head(features, num_classes), numbering=config.units
    )
    init_weights(model)
    return model


def unit_names(model: UnitNet) -> list[str]:
    """Readable names of the units, for logs and tables: stem, block1 (or block1.conv1, ...), classifier."""
    last = model.num_units - 1

    def name(index: int, paths: tuple[str, ...]) -> str:
        if index in (0, last):
            return "stem" if index == 0 else "classifier"
        block, _, layer = paths[0].partition(".")
        return f"block{block}.{layer}" if layer else f"block{block}"

    return [name(i, paths) for i, paths in enumerate(model.unit_paths)]


def student_unit_names(config: StudentConfig) -> list[str]:
    """The unit names of any student of ``config``: they do not depend on the data's classes, channels or size."""
    return unit_names(build_student(config, num_classes=2, in_channels=1, image_size=SMALL_INPUT_MAX))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
