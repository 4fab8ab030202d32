"""Cue-conflict views: shuffled patches keep the pixels, edges and silhouettes keep the shape, and the stimuli load;
the control views blur, add noise and lower contrast as their strengths say."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mind_the_gap.data import views
from mind_the_gap.data.sources import DataSourceError
from mind_the_gap.data.views import (
    blurred,
    edge_view,
    load_cue_conflict,
    low_contrast,
    noisy,
    patch_shuffled,
    shape_bias,
    silhouette_view,
)

CLASSES = ("cat", "ankle boot", "t-shirt/top")


def random_images(n: int = 6, channels: int = 3, height: int = 9, width: int = 10) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, height, width), dtype=torch.uint8, generator=generator)


def white_square(channels: int = 1) -> torch.Tensor:
    """A 12x12 black image with a white square on rows and columns 4 to 7."""
    images = torch.zeros(1, channels, 12, 12, dtype=torch.uint8)
    images[..., 4:8, 4:8] = 255
    return images


def test_patch_shuffling_keeps_each_images_pixels_and_moves_patches():
    images = random_images()
    shuffled = patch_shuffled(images, 3, torch.Generator().manual_seed(1))
    assert shuffled.shape == images.shape
    assert shuffled.dtype == torch.uint8
    flat = lambda x: x.flatten(1).sort(1).values
    torch.testing.assert_close(flat(shuffled), flat(images))
    assert (shuffled != images).flatten(1).any(1).all()  # every image's patches moved


def test_patch_shuffling_moves_whole_patches():
    # Each 3x3 patch of a 9x9 image filled with its own number: the result holds the same patches, reordered.
    patch_ids = torch.arange(9, dtype=torch.uint8).view(3, 3).repeat_interleave(3, 0).repeat_interleave(3, 1)
    images = patch_ids.expand(4, 2, 9, 9).contiguous()
    shuffled = patch_shuffled(images, 3, torch.Generator().manual_seed(0))
    blocks = shuffled.unfold(2, 3, 3).unfold(3, 3, 3)  # (N, C, 3, 3, 3, 3)
    assert (blocks == blocks[..., :1, :1]).all()  # every patch is still constant
    assert (blocks[:, 0] == blocks[:, 1]).all()  # the channels move together
    assert sorted(blocks[0, 0, :, :, 0, 0].flatten().tolist()) == list(range(9))


def test_patch_shuffling_is_seeded_and_leaves_the_border_alone():
    images = random_images(height=11, width=13)  # 3x3 patches of 3x4 px: rows 9-10 and column 12 stay
    first = patch_shuffled(images, 3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, patch_shuffled(images, 3, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, patch_shuffled(images, 3, torch.Generator().manual_seed(6)))
    torch.testing.assert_close(first[:, :, 9:], images[:, :, 9:])
    torch.testing.assert_close(first[:, :, :, 12:], images[:, :, :, 12:])


@pytest.mark.parametrize("grid", [1, 11])
def test_patch_shuffling_rejects_bad_grids(grid):
    with pytest.raises(ValueError, match="grid"):
        patch_shuffled(random_images(), grid, torch.Generator())


def test_edge_view_is_bright_on_the_border_and_black_elsewhere():
    edges = edge_view(white_square(channels=3))
    assert edges.shape == (1, 3, 12, 12)
    assert edges.dtype == torch.uint8
    assert torch.equal(edges[:, 0], edges[:, 2])
    ring = torch.zeros(12, 12, dtype=torch.bool)
    ring[3:9, 3:9] = True
    ring[5:7, 5:7] = False  # Sobel answers on both sides of the square's outline
    assert (edges[0, 0][ring] > 0).all()
    assert edges.max() == 255
    assert (edges[0, 0][~ring] == 0).all()  # the flat inside and outside


def test_edge_view_of_a_flat_image_is_its_background():
    assert (edge_view(torch.full((2, 1, 5, 5), 80, dtype=torch.uint8)) == 0).all()
    assert (edge_view(torch.full((2, 1, 5, 5), 200, dtype=torch.uint8)) == 255).all()


def white_on_black_edges(images: torch.Tensor) -> torch.Tensor:
    """The edge view as it was before it followed the image's polarity: always white edges on black."""
    luminance = F.pad(images.float().mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    magnitude = F.conv2d(luminance, torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)).square().sum(1).sqrt()
    peak = magnitude.amax((1, 2), keepdim=True).clamp(min=1e-6)
    return (magnitude / peak * 255).round().to(torch.uint8).unsqueeze(1).expand_as(images)


def test_edge_view_of_bright_objects_on_black_is_what_it_was():
    # Fashion-MNIST's polarity: a dark frame around bright objects (no Fashion-MNIST image's border averages above
    # 108, so every one of them keeps its edge view).
    images = random_images(n=8, channels=1, height=28, width=28)
    images[..., :3, :] = images[..., -3:, :] = images[..., :, :3] = images[..., :, -3:] = 0
    images[0, 0, 0, :] = 255  # a bright top row, the border still dark on average
    assert torch.equal(edge_view(images), white_on_black_edges(images))


def test_dark_objects_on_white_get_the_same_edges_drawn_black_on_white():
    images = torch.cat([white_square(), random_images(n=4, channels=1, height=12, width=12)])
    images[1:, :, :2, :] = images[1:, :, -2:, :] = images[1:, :, :, :2] = images[1:, :, :, -2:] = 0
    inverse = 255 - images
    assert torch.equal(edge_view(inverse), 255 - edge_view(images))
    assert torch.equal(edge_view(inverse), 255 - white_on_black_edges(images))


def test_silhouette_view_is_the_mask_of_a_bright_object():
    images = white_square(channels=3)
    images[0, :, 5, 5] = 170  # a darker spot inside the object stays foreground
    images[0, :, 0, 0] = 30  # a faint speck of background stays background
    mask = silhouette_view(images)
    expected = torch.zeros(12, 12, dtype=torch.uint8)
    expected[4:8, 4:8] = 255
    assert mask.shape == images.shape
    assert (mask == expected).all()


def test_silhouette_thresholds_each_image_on_its_own():
    dim = white_square() // 5  # the same object at 51 instead of 255
    masks = silhouette_view(torch.cat([white_square(), dim, torch.full_like(dim, 90)]))
    torch.testing.assert_close(masks[0], masks[1])
    assert (masks[2] == 0).all()  # a flat image has no foreground


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (20, 20), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (value, 0, 0) if mode == "RGB" else value).save(path)


def test_load_cue_conflict_parses_geirhos_file_names(tmp_path):
    write_image(tmp_path / "cat" / "cat1-ankle boot2.png", value=200)
    write_image(tmp_path / "cat" / "cat2-cat3.png")  # shape and texture agree: skipped
    write_image(tmp_path / "ankle_boot" / "ankle_boot10-t-shirt_top1.png", value=100, mode="L")
    write_image(tmp_path / "t_shirt_top" / "t-shirt_top3-cat4.png", size=(30, 30))
    stimuli = load_cue_conflict(tmp_path, CLASSES, image_size=8, channels=3)
    assert stimuli.images.class_names == CLASSES
    assert stimuli.images.images.shape == (3, 3, 8, 8)
    assert stimuli.images.images.dtype == torch.uint8
    assert stimuli.images.labels.tolist() == [1, 0, 2]  # files sorted by path: ankle_boot, cat, t_shirt_top
    assert stimuli.texture_labels.tolist() == [2, 1, 0]
    assert (stimuli.images.images[0] == 100).all()
    assert (stimuli.images.images[1, 0] == 200).all()
    grey = load_cue_conflict(tmp_path, CLASSES, image_size=4, channels=1)
    assert grey.images.images.shape == (3, 1, 4, 4)


def test_load_cue_conflict_names_the_file_of_an_unknown_class(tmp_path):
    write_image(tmp_path / "cat" / "cat1-dog2.png")
    with pytest.raises(DataSourceError, match="cat1-dog2.png"):
        load_cue_conflict(tmp_path, CLASSES, image_size=8, channels=3)


def test_load_cue_conflict_names_an_unreadable_file(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "cat1-ankle_boot1.png").write_bytes(b"not a png")
    with pytest.raises(DataSourceError, match="unreadable.*cat1-ankle_boot1.png"):
        load_cue_conflict(tmp_path, CLASSES, image_size=8, channels=3)


def test_load_cue_conflict_names_a_folder_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataSourceError, match=f"{tmp_path.name} holds no images"):
        load_cue_conflict(tmp_path, CLASSES, image_size=8, channels=3)
    write_image(tmp_path / "cat" / "cat1-cat2.png")
    with pytest.raises(DataSourceError, match="shape and texture classes differ"):
        load_cue_conflict(tmp_path, CLASSES, image_size=8, channels=3)


def test_shape_bias():
    shapes, textures = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 2, 0, 2, 0])
    # Two shape decisions, one texture decision, two of neither.
    result = shape_bias(torch.tensor([0, 2, 1, 0, 1]), shapes, textures)
    assert result == pytest.approx({"shape_correct": 0.4, "texture_correct": 0.2, "shape_bias": 2 / 3})
    logits = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 0, 1]), 3).float()
    assert shape_bias(logits, shapes, textures) == result
    assert math.isnan(shape_bias(torch.tensor([2, 1, 2, 0, 1]), shapes, textures)["shape_bias"])


def test_shape_bias_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one prediction"):
        shape_bias(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]))


def test_views_reject_float_images():
    with pytest.raises(ValueError, match="uint8"):
        edge_view(np.zeros((1, 1, 4, 4)))  # type: ignore[arg-type]


def test_blur_spreads_a_point_as_a_gaussian_of_its_sigma():
    images = torch.zeros(1, 1, 21, 21, dtype=torch.uint8)
    images[0, 0, 10, 10] = 255
    blur = blurred(images, 1.0)[0, 0].double()
    offsets = torch.arange(-3, 4, dtype=torch.float64)
    kernel = torch.exp(-0.5 * offsets**2)
    kernel /= kernel.sum()
    expected = 255 * torch.outer(kernel, kernel)  # the kernel cut at 3 sigma: 7 taps
    torch.testing.assert_close(blur[7:14, 7:14], expected.round(), atol=1, rtol=0)
    assert blur[:7].eq(0).all()  # nothing beyond 3 sigma
    assert blur.sum().item() == pytest.approx(255, abs=10)  # the point's mass kept, up to rounding


def test_blur_keeps_a_flat_image_and_its_border_and_smooths_an_edge():
    flat = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    assert blurred(flat, 2.5).equal(flat)  # replicated borders: no dark frame
    step = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    step[..., 4:] = 200
    row = blurred(step, 1.0)[0, 0, 0].tolist()
    assert row == sorted(row)
    assert 0 < row[3] < row[4] < 200


def test_noise_has_its_standard_deviation_and_is_seeded():
    images = torch.full((4, 1, 64, 64), 128, dtype=torch.uint8)
    noise = noisy(images, 0.1, torch.Generator().manual_seed(0)).double() - 128
    assert noise.mean().item() == pytest.approx(0, abs=0.5)
    assert noise.std().item() == pytest.approx(25.5, rel=0.03)
    again = noisy(images, 0.1, torch.Generator().manual_seed(0))
    assert again.equal(noisy(images, 0.1, torch.Generator().manual_seed(0)))
    assert not again.equal(noisy(images, 0.1, torch.Generator().manual_seed(1)))


def test_noise_is_clipped_to_the_pixel_range():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 16, 16).contiguous()
    noise = noisy(images, 0.5, torch.Generator().manual_seed(0))
    assert noise[0].min() == 0
    assert noise[1].max() == 255


def test_low_contrast_blends_each_image_toward_its_own_mean():
    images = torch.tensor([[0, 100], [100, 200]], dtype=torch.uint8).view(1, 1, 2, 2)
    # mean 100: 100 + 0.25 (x - 100)
    assert low_contrast(images, 0.25).flatten().tolist() == [75, 100, 100, 125]
    second = torch.full((1, 1, 2, 2), 40, dtype=torch.uint8)
    both = low_contrast(torch.cat([images, second]), 0.25)
    assert both[1].eq(40).all()  # each image around its own mean


def test_blur_and_contrast_work_through_the_set_in_chunks_with_the_same_result(monkeypatch):
    images = random_images(n=7)
    whole = blurred(images, 1.5), low_contrast(images, 0.3)
    monkeypatch.setattr(views, "_CHUNK", 3)
    assert blurred(images, 1.5).equal(whole[0])
    assert low_contrast(images, 0.3).equal(whole[1])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: blurred(x, 0.0), "blur sigma"),
        (lambda x: noisy(x, -0.1, torch.Generator()), "noise std"),
        (lambda x: low_contrast(x, 1.0), "contrast"),
        (lambda x: blurred(x.float(), 1.0), "uint8"),
    ],
)
def test_control_views_reject_bad_strengths_and_images(make, message):
    with pytest.raises(ValueError, match=message):
        make(random_images())
