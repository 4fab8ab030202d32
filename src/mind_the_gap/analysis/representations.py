"""What trained students compute, unit by unit: features, their similarity and linear read-out, BatchNorm inputs."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from mind_the_gap import memory
from mind_the_gap.data.imageset import ImageSet, TrainingImages
from mind_the_gap.models.architectures import UnitNet
from mind_the_gap.training.engine import Normalization

Moments = list[list[tuple[torch.Tensor, torch.Tensor]]]  # per unit, per BatchNorm: per-channel mean and variance
Hook = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]
PreHook = Callable[[nn.Module, tuple[torch.Tensor, ...]], None]
Key = TypeVar("Key", bound=Hashable)  # what names a representation in minibatch_cka: a student


@contextmanager
def _inspecting(
    model: nn.Module, hooks: Sequence[tuple[nn.Module, Hook]] = (), pre_hooks: Sequence[tuple[nn.Module, PreHook]] = ()
) -> Iterator[None]:
    """Eval mode and no gradients with the hooks attached; afterwards the hooks are removed and every module is back
    in the mode it had (frozen units included)."""
    modes = [(module, module.training) for module in model.modules()]
    handles = []
    try:
        handles += [module.register_forward_hook(hook) for module, hook in hooks]
        handles += [module.register_forward_pre_hook(hook) for module, hook in pre_hooks]
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training


def _inputs(
    images: torch.Tensor | TrainingImages, normalization: Normalization, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Batches of ``images`` (uint8 images, or a set or view to gather them from) prepared as the training engine
    prepares them: [0, 1] floats, then normalised."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for chunk in images.split(batch_size) if isinstance(images, torch.Tensor) else images.chunks(batch_size):
        yield normalization.apply(chunk.to(device).float().div_(255))


def _output_module(model: UnitNet, index: int) -> nn.Module:
    """The module whose output is unit ``index``'s: the unit itself for blocks, the BatchNorm of a (conv, bn) layer."""
    paths = model.unit_paths[index]
    return model.get_submodule(paths[1] if len(paths) > 1 else paths[0])


def unit_features(
    model: UnitNet,
    data: TrainingImages,
    normalization: Normalization,
    pooled: bool,
    batch_size: int = 512,
    limit: int | None = None,
    units: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Each unit's output (of ``units``, every unit if None) for the first ``limit`` images (all if None): one
    float32 CPU tensor (N, D) per unit.

    ``pooled`` averages feature maps over their positions (D = channels), else they are flattened; the classifier's
    logits stay as they are. A layer unit's output is its BatchNorm's, before the ReLU or residual addition.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    images = data if limit is None else data.images[:limit]  # a limit is for a set, not a view
    if len(images) == 0:
        raise ValueError("unit_features needs at least one image")
    units = range(model.num_units) if units is None else units
    outputs: list[list[torch.Tensor]] = [[] for _ in units]

    def keep(store: list[torch.Tensor]) -> Hook:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            reduced = output.mean((2, 3)) if pooled and output.ndim == 4 else output.flatten(1)
            # A copy: the ReLU or residual addition that follows may overwrite the output in place.
            store.append(reduced.to("cpu", torch.float32, copy=True))

        return hook

    hooks = [(_output_module(model, unit), keep(store)) for unit, store in zip(units, outputs, strict=True)]
    device = next(model.parameters()).device
    with _inspecting(model, hooks=hooks):
        for x in _inputs(images, normalization, batch_size, device):
            model(x)
    return [memory.track(torch.cat(store)) for store in outputs]


def _matrix(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) representation, got shape {x.shape}")
    return x.astype(np.float64)


def cka_batches(count: int, batch_size: int) -> list[torch.Tensor]:
    """Indices of ``count`` examples in minibatches for ``minibatch_cka``: a fixed random order (seed 0; a sample
    of a set sorted by class would otherwise put one class in a batch), cut into ceil(count / batch_size) batches
    whose sizes differ by at most one, so that with ``batch_size`` >= 8 every batch holds the 4 examples the
    estimator needs."""
    if batch_size < 8:
        raise ValueError(f"cka batch_size must be at least 8, got {batch_size}")
    if count < 4:
        raise ValueError(f"minibatch CKA needs at least 4 examples, got {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    return list(order.tensor_split(-(-count // batch_size)))


def u_centred_gram(features: torch.Tensor) -> torch.Tensor:
    """The U-centred linear Gram matrix (Székely & Rizzo, 2014) of a minibatch of n >= 4 representations (n, ...),
    float64 on the CPU: <U(K), U(L)> / (n (n - 3)) is the unbiased HSIC estimator of Song et al. (2012).

    The features are flattened and centred over the batch first (U-centring removes the mean anyway; centring first
    keeps the float32 product exact to rounding when the features sit far from 0), the (n, n) product is taken where
    they are and in their precision, the rest in float64.
    """
    n = len(features)
    if n < 4:
        raise ValueError(f"u_centred_gram needs a batch of at least 4 examples, got {n}")
    x = features.flatten(1)
    x = x - x.mean(0)
    gram = (x @ x.T).to("cpu", torch.float64)
    gram.fill_diagonal_(0)
    sums = gram.sum(0)
    centred = gram - sums / (n - 2) - sums[:, None] / (n - 2) + sums.sum() / ((n - 1) * (n - 2))
    return centred.fill_diagonal_(0)


def unit_grams(model: UnitNet, images: torch.Tensor, normalization: Normalization) -> list[torch.Tensor]:
    """Per unit, ``u_centred_gram`` of one minibatch of ``images`` (uint8, N >= 4): the unit's flattened output is
    reduced to an (N, N) matrix in the hook, so no more than one unit's output for one batch is held at a time."""
    grams: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        grams.append(memory.track(u_centred_gram(output)))

    device = next(model.parameters()).device
    with _inspecting(model, hooks=[(_output_module(model, i), hook) for i in range(model.num_units)]):
        (x,) = _inputs(images, normalization, len(images), device)
        model(x)
    return grams


def _hsic(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> np.ndarray:
    """Per unit, the unbiased HSIC estimate from two lists of ``u_centred_gram``s of one batch."""
    return np.array([(x * y).sum().item() / (len(x) * (len(x) - 3)) for x, y in zip(a, b, strict=True)])


def minibatch_cka(
    batches: Iterable[Mapping[Key, Sequence[torch.Tensor]]], pairs: Sequence[tuple[Key, Key]]
) -> dict[tuple[Key, Key], np.ndarray]:
    """Linear CKA per unit for each pair of ``pairs``, accumulated over minibatches (Nguyen et al., 2021):
    sum HSIC_1(K, L) / sqrt(sum HSIC_1(K, K) sum HSIC_1(L, L)) over the batches, HSIC_1 the unbiased estimator.

    Each batch maps a key (a student) to its per-unit ``u_centred_gram``s of the same examples, and only one batch
    is held at a time, whatever the number of examples. Returns {pair: CKA per unit}, NaN for a unit constant over
    the examples. It lies in [-1, 1], is 1 for representations equal up to rotation, isotropic scaling and
    translation, and, its HSIC estimates being unbiased, it lacks the upward bias of full-batch linear CKA on few
    examples per dimension: both estimate the same population value.
    """
    keys = list(dict.fromkeys(key for pair in pairs for key in pair))
    cross: dict[tuple[Key, Key], np.ndarray] = {}
    own: dict[Key, np.ndarray] = {}
    for grams in batches:
        for key in keys:
            own[key] = own.get(key, 0) + _hsic(grams[key], grams[key])
        for a, b in pairs:
            cross[(a, b)] = cross.get((a, b), 0) + _hsic(grams[a], grams[b])
    if not own:
        raise ValueError("minibatch_cka needs at least one batch")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {(a, b): cross[(a, b)] / np.sqrt(own[a] * own[b]) for a, b in pairs}


def linear_probe_accuracy(
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    max_iter: int = 300,
    seed: int = 0,
) -> float:
    """Test accuracy of a logistic regression (L-BFGS, C = 1) fitted on standardised training features: how much of
    the class a representation makes linearly readable."""
    train_x, test_x = _matrix(train_x, "train_x"), _matrix(test_x, "test_x")
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_y.shape != (len(train_x),) or test_y.shape != (len(test_x),) or len(test_x) == 0:
        raise ValueError(
            f"linear_probe_accuracy needs one label per row and a test row, got {train_x.shape} x {train_y.shape} "
            f"and {test_x.shape} x {test_y.shape}"
        )
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(solver="lbfgs", C=1.0, max_iter=max_iter, random_state=seed)
    )
    probe.fit(train_x, train_y)
    return float((probe.predict(test_x) == test_y).mean())


def batchnorm_input_moments(
    model: UnitNet, data: ImageSet, normalization: Normalization, batch_size: int = 512
) -> Moments:
    """Per unit, per BatchNorm2d inside it (in module order): the per-channel mean and variance (float64, CPU) of
    what that BatchNorm receives over the whole set, every image and position.

    Comparing them between real and synthetic images tells where in the network the two sources part.
    """
    if len(data) == 0:
        raise ValueError("batchnorm_input_moments needs at least one image")
    device = next(model.parameters()).device
    layers = [
        [m for path in paths for m in model.get_submodule(path).modules() if isinstance(m, nn.BatchNorm2d)]
        for paths in model.unit_paths
    ]
    sums = {
        layer: [torch.zeros(layer.num_features, dtype=torch.float64, device=device) for _ in range(2)]
        for unit in layers
        for layer in unit
    }
    counts = dict.fromkeys(sums, 0)

    def accumulate(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].double()
        total, squares = sums[module]
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
        counts[module] += x.numel() // x.shape[1]

    with _inspecting(model, pre_hooks=[(layer, accumulate) for layer in sums]):
        for x in _inputs(data.images, normalization, batch_size, device):
            model(x)

    def moments(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        total, squares = sums[layer]
        mean = total / counts[layer]
        return mean.cpu(), (squares / counts[layer] - mean**2).clamp(min=0).cpu()

    return [[moments(layer) for layer in unit] for unit in layers]


def gaussian_symmetric_kl(
    mean_a: torch.Tensor, var_a: torch.Tensor, mean_b: torch.Tensor, var_b: torch.Tensor, eps: float = 1e-5
) -> float:
    """KL(a || b) + KL(b || a) between per-channel Gaussians, averaged over the channels.

    Unchanged when both are scaled alike (up to ``eps``, added to the variances), so layers of any scale compare.
    """
    mean_a, var_a, mean_b, var_b = (torch.as_tensor(t, dtype=torch.float64) for t in (mean_a, var_a, mean_b, var_b))
    if not mean_a.shape == var_a.shape == mean_b.shape == var_b.shape:
        raise ValueError(
            f"gaussian_symmetric_kl needs moments of one shape, got {tuple(mean_a.shape)}, {tuple(var_a.shape)}, "
            f"{tuple(mean_b.shape)} and {tuple(var_b.shape)}"
        )
    var_a, var_b = var_a + eps, var_b + eps
    gap = (mean_a - mean_b).square()
    return float((0.5 * ((var_a + gap) / var_b + (var_b + gap) / var_a) - 1).mean())


def batchnorm_shift_per_unit(a: Moments, b: Moments) -> np.ndarray:
    """Per unit, the mean symmetric KL between two sources' BatchNorm inputs (two ``batchnorm_input_moments`` of one
    model); NaN for a unit without BatchNorm."""
    if [len(unit) for unit in a] != [len(unit) for unit in b]:
        raise ValueError("batchnorm_shift_per_unit needs the moments of one model: the BatchNorm layers differ")
    return np.array(
        [
            np.mean([gaussian_symmetric_kl(*ma, *mb) for ma, mb in zip(ua, ub, strict=True)]) if ua else np.nan
            for ua, ub in zip(a, b, strict=True)
        ]
    )
