"""nested_subsets: the fractions of the real pool data_efficiency trains on are stratified, nested and seeded; their
indices, for jobs that name a subset of a stored set (the ablations' mixed sets)."""

from __future__ import annotations

import math

import pytest
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subset_indices, nested_subsets

from ..conftest import striped_images

CLASS_SIZES = [10, 7, 5, 3]


def uneven_classes() -> ImageSet:
    """Classes of 10, 7, 5 and 3 images, interleaved, every image a distinct noise pattern."""
    images = striped_images(10, seed=4)
    rank = torch.arange(len(images)) % 10
    keep = rank < torch.tensor(CLASS_SIZES)[images.labels]
    shuffled = torch.randperm(int(keep.sum()), generator=torch.Generator().manual_seed(0))
    return images.subset(keep.nonzero().squeeze(1)[shuffled])


def rows(images: ImageSet) -> list[bytes]:
    return [image.numpy().tobytes() for image in images.images]


def subsets(images: ImageSet, fractions: list[float], seed: int = 0) -> dict[float, ImageSet]:
    return nested_subsets(images, fractions, torch.Generator().manual_seed(seed))


def test_every_class_keeps_the_ceiling_of_its_share_and_at_least_one_image():
    for fraction, subset in subsets(uneven_classes(), [1, 0.5, 0.25, 0.1, 0.01]).items():
        expected = [max(1, math.ceil(fraction * n)) for n in CLASS_SIZES]
        assert subset.class_counts().tolist() == expected, fraction
        assert subset.class_names == uneven_classes().class_names


def test_a_share_that_is_whole_in_decimal_is_not_rounded_up():
    images = striped_images(800, num_classes=2, size=8)  # 800 x 0.1 is 80.00000000000001 in floating point
    assert subsets(images, [0.1])[0.1].class_counts().tolist() == [80, 80]
    ten = striped_images(10, num_classes=2, size=8)  # 10 x 0.7 is 7.000000000000001
    assert subsets(ten, [0.7])[0.7].class_counts().tolist() == [7, 7]


def test_each_subset_lies_inside_every_larger_one_in_the_pools_order():
    pool = uneven_classes()
    position = {row: i for i, row in enumerate(rows(pool))}
    nested = subsets(pool, [0.25, 1, 0.5])
    for smaller, larger in ((0.25, 0.5), (0.5, 1)):
        assert set(rows(nested[smaller])) < set(rows(nested[larger]))
    for subset in nested.values():
        indices = [position[row] for row in rows(subset)]
        assert indices == sorted(indices)  # in the pool's order
        assert torch.equal(subset.labels, pool.labels[indices])


def test_the_whole_pool_is_the_set_itself_unchanged():
    pool = uneven_classes()
    whole = subsets(pool, [1.0, 0.5], seed=3)[1.0]
    assert torch.equal(whole.images, pool.images)
    assert torch.equal(whole.labels, pool.labels)
    assert whole.fingerprint() == pool.fingerprint()  # so its student is the real baseline's, from the cache


def test_the_same_seed_draws_the_same_subset_and_another_seed_another():
    pool = uneven_classes()
    first, again, other = (subsets(pool, [0.5], seed)[0.5] for seed in (0, 0, 1))
    assert rows(first) == rows(again)
    assert rows(first) != rows(other)
    assert other.class_counts().tolist() == first.class_counts().tolist()


@pytest.mark.parametrize("fraction", [0, 1.5, -0.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction: float):
    with pytest.raises(ValueError, match=rf"fractions must lie in \(0, 1\], got \[{fraction}\]"):
        subsets(uneven_classes(), [0.5, fraction])


def test_the_indices_select_the_subsets_in_the_pools_order_and_draw_as_the_subsets_do():
    pool = uneven_classes()
    generator = torch.Generator().manual_seed(2)
    indices = nested_subset_indices(pool.labels, pool.num_classes, [0.25, 1, 0.5], generator)
    same_seed = torch.Generator().manual_seed(2)
    nested = nested_subsets(pool, [0.25, 1, 0.5], same_seed)
    assert list(indices) == [0.25, 1, 0.5]
    for fraction, index in indices.items():
        assert index.tolist() == sorted(index.tolist()), fraction
        assert torch.equal(pool.subset(index).images, nested[fraction].images), fraction
        assert torch.equal(pool.labels[index], nested[fraction].labels), fraction
    assert torch.equal(indices[1], torch.arange(len(pool)))
    # One draw each: a second subset from the same generator (the mixed sets' synthetic part) is the same too.
    assert torch.equal(torch.randperm(10, generator=generator), torch.randperm(10, generator=same_seed))
