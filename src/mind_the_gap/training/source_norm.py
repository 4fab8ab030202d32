"""BatchNorm statistics per source in mixed training (``training.batchnorm: per_source``, as "Diversify, Don't
Fine-Tune" trains on real and synthetic images, and domain-specific BN, Chang et al. 2019): each source's images
in a batch are normalised by their own batch statistics and update their own running statistics, while every
weight, the BN's affine ones included, is shared. The first source's running statistics (the real images') are the
model's own, so the student is tested with them; the others' live here only while it trains."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class SourceStatistics:
    """Running statistics of each source after the first, for every BatchNorm layer of ``model``."""

    def __init__(self, model: nn.Module, sources: int):
        self.norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
        if not self.norms:
            raise ValueError("training.batchnorm per_source needs a model with BatchNorm layers")
        self.others = [[_buffers(norm, clone=True) for norm in self.norms] for _ in range(sources - 1)]

    def logits(self, model: nn.Module, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with each source's images forwarded on their own (their own batch and running statistics).
        A source with a single image in the batch has no batch statistics: it is normalised by its running ones."""
        out: torch.Tensor | None = None
        for number in range(len(self.others) + 1):
            rows = (source == number).nonzero().squeeze(1)  # reads the batch's split back: one sync per source
            if not len(rows):
                continue
            with self._active(number), _running_statistics_only(self.norms, len(rows) == 1):
                part = model(x[rows])
            out = part.new_empty((len(x), *part.shape[1:])) if out is None else out
            out[rows] = part
        assert out is not None  # a batch holds at least one image
        return out

    def state(self) -> list[list[torch.Tensor]]:
        """The other sources' statistics, for a run's progress file."""
        return [[tensor.clone() for buffers in source for tensor in buffers] for source in self.others]

    def load(self, state: list[list[torch.Tensor]]) -> None:
        for source, saved in zip(self.others, state, strict=True):
            tensors = iter(saved)
            for buffers in source:
                for tensor in buffers:
                    tensor.copy_(next(tensors))

    @contextmanager
    def _active(self, number: int) -> Iterator[None]:
        """The model's BatchNorm layers holding source ``number``'s running statistics (0: their own)."""
        if number == 0:
            yield
            return
        swapped = self.others[number - 1]
        own = [_buffers(norm) for norm in self.norms]
        for norm, buffers in zip(self.norms, swapped, strict=True):
            _set_buffers(norm, buffers)
        try:
            yield
        finally:
            for norm, buffers in zip(self.norms, own, strict=True):
                _set_buffers(norm, buffers)


def part_ids(sizes: list[int]) -> torch.Tensor:
    """The source of each image of a training set joined from parts of ``sizes``: the part's number."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _buffers(norm: _BatchNorm, clone: bool = False) -> tuple[torch.Tensor, ...]:
    return tuple(getattr(norm, name).clone() if clone else getattr(norm, name) for name in BUFFERS)


def _set_buffers(norm: _BatchNorm, buffers: tuple[torch.Tensor, ...]) -> None:
    for name, tensor in zip(BUFFERS, buffers, strict=True):
        setattr(norm, name, tensor)


@contextmanager
def _running_statistics_only(norms: list[_BatchNorm], active: bool) -> Iterator[None]:
    """The BatchNorm layers in eval mode while ``active``: they normalise by their running statistics."""
    training = [norm.training for norm in norms]
    if active:
        for norm in norms:
            norm.eval()
    try:
        yield
    finally:
        for norm, mode in zip(norms, training, strict=True):
            norm.train(mode)
