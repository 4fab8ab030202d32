"""The matplotlib figures that are no chart: the confusion matrix and the grid of sample images."""

from __future__ import annotations

import numpy as np
import torch

from mind_the_gap.results.figures import confusion_figure, sample_grid


def test_the_confusion_matrix_shows_each_true_class_as_shares_of_its_row():
    confusion = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    (axes,) = confusion_figure(confusion, ["cat", "dog", "eel"], "Baseline").axes
    (image,) = axes.images
    assert np.array_equal(image.get_array(), [[0.8, 0.2, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])  # no images: zeros
    assert image.get_clim() == (0, 1)
    assert [label.get_text() for label in axes.get_xticklabels()] == ["cat", "dog", "eel"]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["cat", "dog", "eel"]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted", "true")
    assert axes.get_title() == "Baseline"


def test_a_confusion_matrix_of_many_classes_has_no_tick_labels():
    (axes,) = confusion_figure(np.eye(31, dtype=int), [f"c{i}" for i in range(31)], "Many").axes
    assert [label.get_text() for label in axes.get_xticklabels()] == [""] * 31


def test_the_sample_grid_shows_each_classs_first_images_in_its_row():
    labels = torch.tensor([0, 1, 0, 0, 1])
    images = (torch.arange(5, dtype=torch.uint8) * 50).view(5, 1, 1, 1).expand(5, 1, 4, 4).contiguous()
    axes = np.array(sample_grid(images, labels, ["zero", "one"], per_class=2).axes).reshape(2, 2)
    shown = [[ax.images[0].get_array()[0, 0] if ax.images else None for ax in row] for row in axes]
    assert shown == [[0, 100], [50, 200]]  # class 0: images 0 and 2 (image 3 is one too many); class 1: 1 and 4
    assert [row[0].get_title(loc="left") for row in axes] == ["zero", "one"]
    assert not any(ax.axison for ax in axes.flat)
