"""Model stitching (Bansal et al., 2021): one student's lower units joined to another's upper units through a small
trained layer, everything else frozen.

A stitched student runs units 0..cut-1 of the ``bottom`` student, a stitching layer (a 1x1 convolution without bias
and a BatchNorm, from the bottom's channels at the cut to the channels the top's unit ``cut`` takes), then units
cut..last of the ``top`` student. Only the stitching layer trains: if the top's units cannot read the bottom's
features through a linear map, the features differ in what they carry, not only in how it is laid out.

The stitched student is a ``UnitNet`` (stem, blocks, head in one ``nn.Sequential``) with the stitching layer inserted
as one more module at the cut, numbered by blocks. So ``engine.fit``, ``evaluate`` and ``predict`` train and test it
unchanged, and ``UnitNet.train`` keeps every frozen module in eval mode: the two students' BatchNorm statistics
never move, as the frozen units of a transfer's. (Wrapping the top's unit ``cut`` as stitch-then-unit instead would
make that unit's modules differ from a residual block, which the ``layers`` numbering needs.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mind_the_gap.models.architectures import UnitNet
from mind_the_gap.models.units import freeze_units


@dataclass(frozen=True)
class Stitch:
    """The stored students ``bottom`` (its units 0..cut-1) and ``top`` (its units cut..last), by key, joined at
    ``cut`` (a unit index of the students' numbering: the first unit taken from the top)."""

    bottom: str
    top: str
    cut: int

    def __post_init__(self) -> None:
        if self.cut < 1:
            raise ValueError(f"a stitch's cut must leave the bottom student at least unit 0, got {self.cut}")

    def describe(self) -> dict[str, Any]:
        """What decides the stitched student's training, for its cache key and its MLflow parameters."""
        return {"bottom": self.bottom, "top": self.top, "cut": self.cut}


class StitchingLayer(nn.Sequential):
    """A 1x1 convolution (no bias: the BatchNorm's shift is the bias) then a BatchNorm, ``in_channels`` to
    ``out_channels``.

    Initialised as the identity where the channels match (always between two students of one architecture): the
    convolution's weight the identity matrix, the BatchNorm's weight 1, bias 0 and statistics (0, 1), so in eval mode
    the fresh layer passes features through (up to the BatchNorm's epsilon). In train mode the BatchNorm standardises
    each channel over the batch; its weight and bias learn the scale back. Where the channels differ, the convolution
    takes torchvision's ResNet initialisation (Kaiming normal, fan out).
    """

    def __init__(self, in_channels: int, out_channels: int):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        super().__init__(conv, nn.BatchNorm2d(out_channels))
        with torch.no_grad():
            if in_channels == out_channels:
                conv.weight.copy_(torch.eye(in_channels).view(in_channels, in_channels, 1, 1))
            else:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


def module_at_cut(model: UnitNet, cut: int) -> int:
    """The index in ``model`` (its stem, blocks, head) of the module unit ``cut`` starts: a stitch joins whole
    modules, so by the ``layers`` numbering a cut must fall on a block's first conv (or the classifier)."""
    if not 0 < cut < model.num_units:
        raise ValueError(f"a stitch's cut must lie in 1-{model.num_units - 1} (units on both sides), got {cut}")
    module, _, inner = model.unit_paths[cut][0].partition(".")
    if inner and inner != "conv1":
        raise ValueError(
            f"unit {cut} ({model.unit_paths[cut][0]}) lies inside a residual block: a stitch joins whole blocks, "
            "so cut at a block's first conv"
        )
    return int(module)


def _out_channels(module: nn.Module) -> int:
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise TypeError(f"cannot tell the channels {type(module).__name__} puts out: it has no BatchNorm")
    return norms[-1].num_features  # a block's last norm (the shortcut's comes first in torchvision's blocks)


def _in_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, nn.Linear):
            return m.in_features
    raise TypeError(f"cannot tell the channels {type(module).__name__} takes: it has no conv or linear layer")


def stitch_students(bottom: UnitNet, top: UnitNet, cut: int) -> UnitNet:
    """Units 0..cut-1 of ``bottom``, a fresh stitching layer, units cut..last of ``top``, as one ``UnitNet`` numbered
    by blocks whose unit ``module_at_cut`` is the stitching layer; every other unit frozen (BatchNorm statistics
    included). The students' modules are shared, not copied: load them for the stitch alone."""
    if bottom.num_units != top.num_units or bottom.numbering != top.numbering:
        raise ValueError("a stitch joins two students of one architecture and numbering")
    at = module_at_cut(bottom, cut)
    lower, upper = list(bottom)[:at], list(top)[at:]
    layer = StitchingLayer(_out_channels(lower[-1]), _in_channels(upper[0]))
    stitched = UnitNet(*lower, layer, *upper, numbering="blocks")
    freeze_units(stitched, [i for i in range(stitched.num_units) if i != at])
    return stitched


def stitching_layer(stitched: UnitNet) -> StitchingLayer:
    """The stitching layer of a stitched student."""
    (layer,) = [m for m in stitched if isinstance(m, StitchingLayer)]
    return layer
