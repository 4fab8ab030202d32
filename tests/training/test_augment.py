"""local_shuffle's squares scale with the image: 2 px at 28 px stays 2 px, and a 224 px photo gets 16 px squares."""

from __future__ import annotations

import pytest
import torch

from mind_the_gap.training.augment import BatchAugment, local_shuffle, shuffle_side


@pytest.mark.parametrize(
    ("patch", "height", "width", "side"),
    [(2, 28, 28, 2), (2, 224, 224, 16), (2, 8, 8, 2), (2, 32, 32, 2), (3, 96, 96, 10), (2, 224, 160, 11)],
)
def test_the_shuffle_square_scales_with_the_shorter_side(patch, height, width, side):
    assert shuffle_side(patch, height, width) == side


def test_at_28_px_batch_augment_shuffles_2_px_squares_as_before():
    images = torch.rand(16, 1, 28, 28)
    augmented = BatchAugment(["local_shuffle"], shuffle_patch=2)(images, torch.Generator().manual_seed(3))
    assert torch.equal(augmented, local_shuffle(images, 2, 0.5, torch.Generator().manual_seed(3)))


def test_at_56_px_batch_augment_shuffles_4_px_squares():
    images = torch.rand(8, 3, 56, 56)
    augmented = BatchAugment(["local_shuffle"], shuffle_patch=2, shuffle_share=1.0)(
        images, torch.Generator().manual_seed(0)
    )
    squares = lambda x, side: x.unfold(2, side, side).unfold(3, side, side).flatten(4).sort(-1).values  # noqa: E731
    assert torch.equal(squares(augmented, 4), squares(images, 4))  # every 4 px square keeps its pixels
    assert not torch.equal(squares(augmented, 2), squares(images, 2))  # which cross the 2 px squares' bounds
