"""Input statistics of image sets: pixel histograms and their moments, distances between sources, samples a class."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from mind_the_gap.data.imageset import ImageSet

LEVELS = 256  # the values a uint8 pixel takes
_SLICE_PIXELS = 1 << 22  # pixels counted at once: bounds the int64 copy of a slice to 32 MiB


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


def _root_factor(centred_a: np.ndarray, centred_b: np.ndarray) -> np.ndarray:
    """A matrix W with W W^T = S_a^1/2 S_b S_a^1/2 up to zero eigenvalues (S the covariances of the centred rows):
    C_a C_b^T / sqrt((N_a - 1)(N_b - 1)), (N_a, N_b), when N_a <= D, so nothing of size D x D is formed; else
    S_a^1/2 C_b^T / sqrt(N_b - 1), S_a^1/2 from the eigenvalues of S_a (rounding errors below 0 clipped to 0)."""
    (count_a, dims), count_b = centred_a.shape, len(centred_b)
    if count_a <= dims:
        return centred_a @ centred_b.T / np.sqrt((count_a - 1) * (count_b - 1))
    values, vectors = np.linalg.eigh(centred_a.T @ centred_a / (count_a - 1))
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    return root_a @ centred_b.T / np.sqrt(count_b - 1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets of shape (N, D), as FID defines it:
    ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b).

    Tr sqrt(S_a S_b) = Tr sqrt(S_a^1/2 S_b S_a^1/2), the sum of the singular values of a factor W of that symmetric
    PSD matrix (``_root_factor``): real and non-negative by construction, so exact for singular covariances too,
    D > N included, where the square root of the product itself comes out complex. Singular values rather than the
    square roots of eigenvalues: the rounding noise of the zero eigenvalues would add about sqrt(eps) each. With the
    smaller set's N <= D, W is N x N_b (a Gram form), the cheaper one. With fewer images than dimensions the
    covariances are rank-deficient and the distance is biased upward: compare it only with distances from as many
    images and dimensions.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs two (N, D) feature sets of one D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs at least 2 rows per set, got {len(a)} and {len(b)}")
    if len(b) < len(a):
        a, b = b, a  # the distance is symmetric; the Gram form is taken for the smaller set
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    root_trace = np.linalg.svd(_root_factor(centred_a, centred_b), compute_uv=False).sum()
    traces = np.square(centred_a).sum() / (len(a) - 1) + np.square(centred_b).sum() / (len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + traces - 2 * root_trace)


def spread_sample(labels: torch.Tensor, max_per_class: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """A sample of a set's images a class, so that sets of different sizes compare on equal terms at a bounded cost:
    per class with at least two images, the positions of at most ``max_per_class`` of them, picked at random with a
    generator seeded by ``seed``."""
    if max_per_class < 2:
        raise ValueError(f"max_per_class must be at least 2, got {max_per_class}")
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for label in labels.unique():
        index = (labels == label).nonzero().squeeze(1)
        if len(index) > max_per_class:
            index = index[torch.randperm(len(index), generator=generator)[:max_per_class]]
        if len(index) >= 2:
            groups.append(index)
    return groups
