"""AdaBN (Li et al., 2016): adapt a trained student to a new image source without labels, by re-estimating the
running statistics of its BatchNorm layers on that source's images. Nothing else of the student changes."""

from __future__ import annotations

import torch
from torch import nn

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import UnitNet
from mind_the_gap.models.units import UnitSpec, resolve_units
from mind_the_gap.training.engine import Normalization


@torch.no_grad()
def adapt_batchnorm(
    model: UnitNet,
    images: ImageSet,
    normalization: Normalization,
    units: UnitSpec | None = None,
    batch_size: int = 512,
) -> UnitNet:
    """Re-estimate, in place, the running mean and variance of the BatchNorm layers of ``units`` (all by default)
    as averages of their batch statistics over ``images`` (labels unused); return the model.

    Frozen units are adapted too: freezing keeps training from moving their statistics, and adapting them is the
    point here. Every other module runs in eval mode, so the statistics of the adapted layers see the inputs the
    adapted student will see.
    """
    selected = range(model.num_units) if units is None else resolve_units(model, units)
    layers = [m for i in selected for unit in model.unit(i) for m in unit.modules() if isinstance(m, nn.BatchNorm2d)]
    if not layers:
        raise ValueError(f"units {units!r} hold no BatchNorm layer to adapt")
    if len(images) == 0:
        raise ValueError("cannot adapt BatchNorm statistics on an empty image set")
    was_training = model.training
    device = next(model.parameters()).device
    momenta = [layer.momentum for layer in layers]
    model.eval()
    try:
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the batches, not a moving one
            layer.train()
        for chunk in images.images.split(batch_size):
            model(normalization.apply(chunk.to(device).float().div_(255)))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    return model
