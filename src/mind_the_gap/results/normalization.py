"""The normalization experiment's figures: pixel-value densities of both sources, and the per-unit profile."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mind_the_gap.analysis.input_statistics import PixelHistograms
from mind_the_gap.results.charts import ACCURACY_BOUNDS, Curve, LineChart, Panel, table_curve


def histogram_figure(histograms: PixelHistograms) -> plt.Figure:
    """Pixel-value densities of both sources: all images (first panel, per channel), then each class."""
    panels = histograms.panels()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    values = np.arange(256) / 255
    for ax in axes.flat:
        ax.axis("off")
    for index, (name, a, b) in enumerate(panels):
        ax = axes.flat[index]
        ax.axis("on")
        for channel in range(len(a)):
            suffix = f" ch{channel}" if len(a) > 1 else ""
            for counts, colour, label in ((a[channel], "C0", "real"), (b[channel], "C3", "synthetic")):
                density = counts / max(counts.sum(), 1)
                ax.plot(values, density, color=colour, lw=0.9, alpha=1 - 0.25 * channel, label=label + suffix)
        ax.set_yscale("log")
        ax.set_title("all images" if index == 0 else name, fontsize=8)
        ax.tick_params(labelsize=6)
        if index == 0:
            ax.legend(fontsize=6)
    figure.suptitle("Pixel values, real vs synthetic training images (log density)", fontsize=9)
    figure.tight_layout()
    return figure


def profile_chart(table: pd.DataFrame) -> LineChart:
    """Three panels over the units, with the layer-swap figure's unit axis: statistics shift, CKA, probes."""

    def curves(*lines: tuple[str, str, str, str]) -> list[Curve]:
        # A measure some runs lack (CKA across seeds, with one seed) is left out.
        return [
            table_curve(table, "unit", measure, label, colour, style)
            for measure, label, colour, style in lines
            if f"{measure}_mean" in table
        ]

    units = table["unit"].tolist()
    return LineChart(
        "Where real and synthetic differ inside the student, unit by unit",
        "unit",
        [
            Panel(
                "BatchNorm input shift\n(symmetric KL)",
                curves(("bn_shift", "real vs synthetic images in the real-trained student", "C2", "-")),
            ),
            Panel(
                "linear CKA (minibatch)\non real test images",
                curves(
                    ("cka_real_real", "real vs real student (other seed)", "C0", "-"),
                    ("cka_synthetic_synthetic", "synthetic vs synthetic student (other seed)", "C3", ":"),
                    ("cka_real_synthetic", "real vs synthetic student (same seed)", "C4", "--"),
                    ("cka_real_synthetic_across_seeds", "real vs synthetic student (other seed)", "C1", "-."),
                ),
            ),
            Panel(
                "linear probe accuracy\non real test images",
                curves(
                    ("probe_real", "real-trained student", "C0", "-"),
                    ("probe_synthetic", "synthetic-trained student", "C3", "-"),
                ),
                bounds=ACCURACY_BOUNDS,
            ),
        ],
        [(u, f"{u}\n{name}") for u, name in zip(units, table["name"], strict=True)],
        size=(8.0, 8.0),
    )
