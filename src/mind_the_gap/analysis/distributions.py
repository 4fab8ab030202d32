"""Input statistics of image sets: pixel histograms and their moments, distances between sources, diversity."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg, stats

from mind_the_gap.data.imageset import ImageSet

LEVELS = 256  # the values a uint8 pixel takes
_SLICE_PIXELS = 1 << 22  # pixels counted at once: bounds the int64 copy of a slice to 32 MiB
_FRECHET_EPS = 1e-6  # as in the FID reference code


def _slices(data: ImageSet) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The images and labels in slices of whole images of about ``_SLICE_PIXELS`` values each."""
    size = max(1, _SLICE_PIXELS // max(1, data.images[0:1].numel()))
    return data.images.split(size), data.labels.split(size)


def channel_histograms(data: ImageSet) -> np.ndarray:
    """Counts of each pixel value per channel, int64 of shape (C, 256)."""
    channels = data.channels
    offsets = (torch.arange(channels) * LEVELS).view(1, -1, 1, 1)
    counts = torch.zeros(channels * LEVELS, dtype=torch.int64)
    for images in _slices(data)[0]:
        counts += torch.bincount((images.long() + offsets).flatten(), minlength=channels * LEVELS)
    return counts.view(channels, LEVELS).numpy()


def class_histograms(data: ImageSet) -> np.ndarray:
    """Counts of each pixel value per class and channel, int64 of shape (num_classes, C, 256); zeros for a class
    without images."""
    classes, channels = data.num_classes, data.channels
    bins = classes * channels * LEVELS
    counts = torch.zeros(bins, dtype=torch.int64)
    for images, labels in zip(*_slices(data), strict=True):
        offsets = (labels.view(-1, 1, 1, 1) * channels + torch.arange(channels).view(1, -1, 1, 1)) * LEVELS
        counts += torch.bincount((images.long() + offsets).flatten(), minlength=bins)
    return counts.view(classes, channels, LEVELS).numpy()


def _check_histograms(histograms: np.ndarray, name: str) -> np.ndarray:
    histograms = np.asarray(histograms)
    if histograms.ndim == 0 or histograms.shape[-1] != LEVELS:
        raise ValueError(f"{name} must have shape (..., {LEVELS}), got {histograms.shape}")
    return histograms


def histogram_moments(histograms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the pixel values on the [0, 1] scale, exact from the counts.

    Takes any leading shape (..., 256) and returns two arrays of that leading shape; NaN where there are no counts
    (a class without images).
    """
    counts = _check_histograms(histograms, "histograms").astype(np.float64)
    values = np.arange(LEVELS) / (LEVELS - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = counts.sum(-1)
        mean = (counts * values).sum(-1) / total
        variance = (counts * (values - mean[..., None]) ** 2).sum(-1) / total
    return mean, np.sqrt(variance)


def wasserstein_per_channel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 1-D Wasserstein distance between two sources' pixel distributions per channel, on the [0, 1] scale.

    ``a`` and ``b`` are (C, 256) histograms; weighting the 256 levels by their counts makes it exact for uint8 images.
    """
    a, b = _check_histograms(a, "a"), _check_histograms(b, "b")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be (C, {LEVELS}) histograms of one shape, got {a.shape} and {b.shape}")
    for name, histograms in (("a", a), ("b", b)):
        if (histograms.sum(1) == 0).any():
            raise ValueError(f"histogram {name} has a channel without counts")
    values = np.arange(LEVELS) / (LEVELS - 1)
    return np.array([stats.wasserstein_distance(values, values, u, v) for u, v in zip(a, b, strict=True)])


def _product_root(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    """sqrt(S_a S_b); when scipy finds the product singular, or the root is not finite, sqrt((S_a + eps I)(S_b + eps I))
    instead, as the FID reference code does."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(cov_a @ cov_b)
            if np.isfinite(root).all():
                return root
        except linalg.LinAlgWarning:
            pass
    offset = np.eye(len(cov_a)) * _FRECHET_EPS
    return linalg.sqrtm((cov_a + offset) @ (cov_b + offset))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets of shape (N, D), as FID computes it:
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b)).

    When the product of the covariances is near-singular, eps * I is added to both, as in the FID reference code; a
    negligible imaginary part of the square root is dropped.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs two (N, D) feature sets of one D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs at least 2 rows per set, got {len(a)} and {len(b)}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = _product_root(cov_a, cov_b)
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: the covariance product's square root is complex ({root.imag.max()})")
        root = root.real
    diff = mean_a - mean_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def within_class_spread(
    features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, max_per_class: int = 256, seed: int = 0
) -> float:
    """Diversity of a set: the mean Euclidean distance between two images' features of one class, averaged over the
    classes that have at least two images.

    At most ``max_per_class`` images of a class take part, picked at random with a generator seeded by ``seed``, so
    the cost stays quadratic in ``max_per_class`` and sets of different sizes compare on equal terms.
    """
    features = torch.as_tensor(features, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if max_per_class < 2:
        raise ValueError(f"max_per_class must be at least 2, got {max_per_class}")
    generator = torch.Generator().manual_seed(seed)
    spreads = []
    for label in labels.unique():
        index = (labels == label).nonzero().squeeze(1)
        if len(index) > max_per_class:
            index = index[torch.randperm(len(index), generator=generator)[:max_per_class]]
        if len(index) >= 2:
            spreads.append(torch.pdist(features[index]).mean())
    if not spreads:
        raise ValueError("within_class_spread needs a class with at least 2 images")
    return float(torch.stack(spreads).mean())
