"""Student networks as ordered sequences of trainable units, numbered as the paper numbers them.

ResNet-50 has 18 units (0 = stem, 1-16 = bottleneck blocks, 17 = classifier) and ResNet-18 has 10
(stem, 8 basic blocks, classifier). Keeping the units as the top-level children of one ``nn.Sequential``
makes "the first k units" a plain slice, for freezing, re-initialising and swapping.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock

from mind_the_gap.config import Config

SMALL_INPUT_MAX = 64  # at or below this many pixels the ImageNet stem would shrink images too early


class StudentConfig(Config):
    """Which student to build (``student`` in the parameters)."""

    arch: Literal["resnet18", "resnet50", "resnet_narrow"] = "resnet_narrow"
    width: int = Field(16, ge=4, le=128, description="first-stage width of resnet_narrow (ResNet-18 has 64)")


class UnitNet(nn.Sequential):
    """A network whose top-level children are its trainable units, applied in order.

    Frozen units (see ``mind_the_gap.models.units``) keep their normalisation layers in eval mode under
    ``train()``: a frozen unit must not drift through its running statistics either.
    """

    def train(self, mode: bool = True) -> UnitNet:
        super().train(mode)
        for unit in self:
            if getattr(unit, "frozen", False):
                unit.eval()
        return self

    @property
    def num_units(self) -> int:
        return len(self)


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
    model = UnitNet(_stem(in_channels, width, small_input), *blocks, _head(features, num_classes))
    init_weights(model)
    return model


def unit_names(model: UnitNet) -> list[str]:
    """Readable names of the units, for logs and tables: stem, block1..blockN, classifier."""
    return ["stem", *(f"block{i}" for i in range(1, model.num_units - 1)), "classifier"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
