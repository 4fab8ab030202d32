"""How the pixel values of two training sources differ: per-channel histograms, overall and per class, and their
moments and Wasserstein distances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mind_the_gap.analysis.distributions import (
    channel_histograms,
    class_histograms,
    histogram_moments,
    wasserstein_per_channel,
)
from mind_the_gap.data.imageset import ImageSet


@dataclass(frozen=True)
class PixelHistograms:
    """Counts of each pixel value per channel of the real and the synthetic training images: over all images, of
    shape (C, 256), and per class, of shape (num_classes, C, 256)."""

    class_names: list[str]
    real: np.ndarray
    synthetic: np.ndarray
    real_classes: np.ndarray
    synthetic_classes: np.ndarray

    def panels(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, real, synthetic) for all images (``all``), then for each class."""
        per_class = zip(self.class_names, self.real_classes, self.synthetic_classes, strict=True)
        return [("all", self.real, self.synthetic), *per_class]


def pixel_histograms(real_train: ImageSet, synthetic_train: ImageSet) -> PixelHistograms:
    """Both sources' pixel-value histograms, over all images and per class."""
    return PixelHistograms(
        list(real_train.class_names),
        channel_histograms(real_train),
        channel_histograms(synthetic_train),
        class_histograms(real_train),
        class_histograms(synthetic_train),
    )


def input_statistics(histograms: PixelHistograms) -> pd.DataFrame:
    """Per class (and ``all``) and channel: each source's mean and standard deviation of pixel values (in [0, 1])
    and the Wasserstein distance between the two sources' pixel distributions (NaN where a source has no images
    of the class)."""
    rows = []
    for name, a, b in histograms.panels():
        (real_mean, real_std), (synthetic_mean, synthetic_std) = histogram_moments(a), histogram_moments(b)
        distance = wasserstein_per_channel(a, b) if a.sum() and b.sum() else np.full(len(a), np.nan)
        for channel in range(len(a)):
            rows.append(
                {
                    "class": name,
                    "channel": channel,
                    "real_mean": real_mean[channel],
                    "real_std": real_std[channel],
                    "synthetic_mean": synthetic_mean[channel],
                    "synthetic_std": synthetic_std[channel],
                    "wasserstein": distance[channel],
                }
            )
    return pd.DataFrame(rows)
