"""local_shuffle's squares scale with the image: 2 px at 28 px stays 2 px, and a 224 px photo gets 16 px squares.
Augmenting a batch reads nothing back from its device, and the strong policies' seeds come from the host."""

from __future__ import annotations

from types import SimpleNamespace

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


@pytest.mark.parametrize(
    "ops",
    [["flip", "crop", "color", "local_shuffle"], ["resized_crop", "flip", "rand_augment"], ["trivial_augment"]],
)
def test_augmentation_reads_no_value_of_the_images_device_back_on_the_host(ops: list[str]):
    """On the meta device tensors have no values, so any read on the host (``.item()``, ``bool()``, ``nonzero()``,
    ``tolist()``), which on a GPU waits for the device every step, raises here."""
    images = torch.empty(32, 3, 16, 16, device="meta")
    augmented = BatchAugment(ops)(images, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    assert augmented.device == torch.device("meta")
    assert augmented.shape == images.shape


def test_a_strong_policy_draws_its_seeds_from_the_host_generator_only():
    images = torch.rand(32, 3, 16, 16)
    policy, flip = BatchAugment(["flip", "trivial_augment"]), BatchAugment(["flip"])
    on_device, alone = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    first = policy(images, on_device, torch.Generator().manual_seed(1))
    flip(images, alone)
    assert torch.equal(on_device.get_state(), alone.get_state())  # the policy drew nothing from it
    assert torch.equal(first, policy(images, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)))
    assert not torch.equal(first, policy(images, torch.Generator().manual_seed(0), torch.Generator().manual_seed(2)))
    # Without a host generator the training run's own, on the host (the CPU), draws them as before.
    host = torch.Generator().manual_seed(0)
    assert torch.equal(policy(images, torch.Generator().manual_seed(0)), policy(images, host, host))


def test_a_strong_policy_refuses_to_draw_its_seeds_on_a_device():
    on_gpu = SimpleNamespace(device=torch.device("cuda"))  # a stand-in: this machine may have no GPU
    with pytest.raises(ValueError, match=r"^a strong policy draws its seeds on the host, not from a generator on cuda"):
        BatchAugment(["trivial_augment"])(torch.rand(4, 3, 8, 8), on_gpu)
