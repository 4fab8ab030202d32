"""Result charts drawn as matplotlib figures (the PNGs of the Markdown report and of MLflow), confusion matrices and
sample grids."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # figures are written to files and MLflow, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mind_the_gap.results.charts import BarChart, Chart, LineChart  # noqa: E402

TITLE_CHARACTERS_PER_INCH = 10  # at the title's 12 points


def _title(figure: plt.Figure, title: str) -> None:
    """The chart's title over the whole figure, wrapped to its width: an axes' title runs past the figure's edge,
    where the PNG cuts it off."""
    figure.suptitle(textwrap.fill(title, int(figure.get_figwidth() * TITLE_CHARACTERS_PER_INCH)))


def matplotlib_figure(chart: Chart) -> plt.Figure:
    """The chart as a matplotlib figure: the PNG of the Markdown report and of MLflow."""
    return _bar_figure(chart) if isinstance(chart, BarChart) else _line_figure(chart)


def _line_figure(chart: LineChart) -> plt.Figure:
    figure, axes = plt.subplots(len(chart.panels), 1, figsize=chart.size, sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], chart.panels, strict=True):
        for level in panel.levels:
            ax.axhspan(level.mean - level.ci, level.mean + level.ci, color=level.colour, alpha=0.12)
            ax.axhline(level.mean, color=level.colour, lw=0.8, ls=level.style, label=level.label)
        for curve in panel.curves:
            style = {"color": curve.colour, "ls": curve.style, "marker": "o", "ms": 4, "label": curve.label}
            if curve.band:
                ax.plot(curve.x, curve.mean, **style)
                mean, ci = np.asarray(curve.mean), np.asarray(curve.ci)
                ax.fill_between(curve.x, mean - ci, mean + ci, color=curve.colour, alpha=0.15)
            else:
                ax.errorbar(curve.x, curve.mean, yerr=curve.ci, capsize=3, **style)
        if bounds := panel.padded_bounds():
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, bounds[0]), min(high, bounds[1]))
        ax.set_ylabel(panel.value_title)
        ax.grid(alpha=0.3)
        if panel.curves or panel.levels:
            ax.legend(fontsize=7, loc=chart.legend_at)
    bottom = axes[-1, 0]
    if chart.log2_x:
        bottom.set_xscale("log", base=2)
    if chart.x_ticks:
        positions, labels = zip(*chart.x_ticks, strict=True)
        bottom.set_xticks(positions, labels, fontsize=7)
    bottom.set_xlabel(chart.x_title)
    _title(figure, chart.title)
    figure.tight_layout()
    return figure


def _bar_figure(chart: BarChart) -> plt.Figure:
    figure, ax = plt.subplots(figsize=chart.size)
    categories = chart.categories
    row = {category: len(categories) - 1 - i for i, category in enumerate(categories)}  # the first on top
    for group in chart.groups:
        ax.barh(
            [row[c] for c in group.categories],
            group.mean,
            xerr=group.ci,
            capsize=2,
            color=group.colour,
            label=group.label,
        )
    ax.set_yticks(range(len(categories)), categories[::-1], fontsize=7)
    for level in chart.levels:
        ax.axvspan(level.mean - level.ci, level.mean + level.ci, color=level.colour, alpha=0.12)
        ax.axvline(level.mean, color=level.colour, lw=0.8, ls=level.style, label=level.label)
    ax.set_xlim(*chart.value_range)
    ax.set_xlabel(chart.value_title)
    _title(figure, chart.title)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str) -> plt.Figure:
    """The confusion matrix, normalised per true class, as a heat map."""
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    show_labels = len(class_names) <= 30
    axes.set_xticks(ticks, class_names if show_labels else [], rotation=90, fontsize=8)
    axes.set_yticks(ticks, class_names if show_labels else [], fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def sample_grid(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], per_class: int) -> plt.Figure:
    """One row per class of its first ``per_class`` images (uint8, N x C x H x W)."""
    rows = max(1, len(class_names))
    figure, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9, rows * 0.95), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    seen = [0] * len(class_names)
    for image, label in zip(images, labels.tolist(), strict=True):
        if seen[label] < per_class:
            ax = axes[label][seen[label]]
            ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if image.shape[0] == 1 else None)
            seen[label] += 1
    for label, name in enumerate(class_names):
        axes[label][0].set_title(name, fontsize=7, loc="left")
    figure.tight_layout()
    return figure
