"""Cue-conflict views of images: texture without shape, shape without texture, and Geirhos et al.'s (2019)
cue-conflict stimuli with their shape bias; and control views (blur, noise, lower contrast) that cost accuracy
without singling out texture or shape, to tell reliance on texture from general brittleness."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.sources import IMAGE_SUFFIXES, RESAMPLING, DataSourceError

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """The channel mean, float (N, H, W) in 0-255."""
    return images.float().mean(1)


def patch_shuffled(images: torch.Tensor, grid: int, generator: torch.Generator) -> torch.Tensor:
    """A texture-only view: each image cut into grid x grid patches of floor(H / grid) x floor(W / grid) pixels,
    the patches put in a random order per image; leftover rows and columns at the bottom and right stay in place.

    Only pixels move, so every image keeps its histogram exactly while its global shape is destroyed.
    """
    _check_images(images)
    n, channels, height, width = images.shape
    rows, cols = height // max(grid, 1), width // max(grid, 1)
    if grid < 2 or rows < 1 or cols < 1:
        raise ValueError(f"grid must be at least 2 and give patches of 1 px or more, got {grid} for {height}x{width}")
    core = images[:, :, : grid * rows, : grid * cols]
    patches = core.reshape(n, channels, grid, rows, grid, cols).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, -1)
    order = torch.rand(n, grid * grid, generator=generator, device=generator.device).argsort(1).to(images.device)
    shuffled = patches.gather(1, order.unsqueeze(2).expand_as(patches))
    shuffled = shuffled.reshape(n, grid, grid, channels, rows, cols).permute(0, 3, 1, 4, 2, 5)
    result = images.clone()
    result[:, :, : grid * rows, : grid * cols] = shuffled.reshape(n, channels, grid * rows, grid * cols)
    return result


def edge_view(images: torch.Tensor) -> torch.Tensor:
    """A shape-only view: the Sobel gradient magnitude of each image's luminance, scaled per image to 0-255, drawn in
    the image's own polarity.

    The magnitude is the same for an image and its inverse. An image whose border is dark on average (Fashion-MNIST's
    bright objects on black) gets white edges on black; one whose border is bright (dark objects on white, line
    drawings) gets black edges on white, so the view keeps the intensity layout the students were trained on. A flat
    image gives its background: black, or white when bright. Borders are replicated before filtering, so the image's
    frame is no edge.
    """
    _check_images(images)
    luminance = _luminance(images)
    padded = F.pad(luminance.unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.T]).unsqueeze(1).to(images.device)
    magnitude = F.conv2d(padded, kernels).square().sum(1).sqrt()
    peak = magnitude.amax((1, 2), keepdim=True).clamp(min=1e-6)
    edges = (magnitude / peak * 255).round().to(torch.uint8)
    edges = torch.where(_bright_border(luminance).view(-1, 1, 1), 255 - edges, edges)
    return edges.unsqueeze(1).expand_as(images).contiguous()


# Control views transform this many images at a time: their float copies stay small whatever the set's size.
_CHUNK = 256


def _per_chunk(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``transform`` (float images in 0-255 to float) applied to chunks of ``images``, rounded back to uint8."""
    _check_images(images)
    result = torch.empty_like(images)
    for start in range(0, len(images), _CHUNK):
        chunk = images[start : start + _CHUNK].float()
        result[start : start + _CHUNK] = transform(chunk).round().clamp(0, 255).to(torch.uint8)
    return result


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A control view: each channel blurred by a Gaussian of standard deviation ``sigma`` pixels (the kernel cut at
    3 sigma, separable), borders replicated as in ``edge_view``. Fine texture goes first, coarse shape last."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.device)
    channels = images.shape[1]

    def blur(chunk: torch.Tensor) -> torch.Tensor:
        padded = F.pad(chunk, (radius, radius, radius, radius), mode="replicate")
        rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)

    return _per_chunk(images, blur)


def noisy(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """A control view: independent Gaussian noise on every pixel value, of standard deviation ``std`` as a share of
    the 0-255 range, drawn from ``generator`` (a fixed seed gives the same view to every student), clipped."""
    if not std > 0:
        raise ValueError(f"noise std must be positive, got {std}")

    def add_noise(chunk: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(chunk.shape, generator=generator, device=generator.device).to(chunk.device)
        return chunk + 255 * std * noise

    return _per_chunk(images, add_noise)


def low_contrast(images: torch.Tensor, contrast: float) -> torch.Tensor:
    """A control view: each image blended toward its own mean grey, ``mean + contrast * (pixel - mean)`` over all its
    channels and pixels (1 keeps the image, 0 leaves a flat grey); every edge and texture stays where it was."""
    if not 0 < contrast < 1:
        raise ValueError(f"contrast must be between 0 and 1 (exclusive), got {contrast}")

    def flatten(chunk: torch.Tensor) -> torch.Tensor:
        mean = chunk.mean((1, 2, 3), keepdim=True)
        return mean + contrast * (chunk - mean)

    return _per_chunk(images, flatten)


def _bright_border(luminance: torch.Tensor) -> torch.Tensor:
    """Whether each image's outermost pixels (N, H, W luminance in 0-255) average above mid-grey: a light background.
    No Fashion-MNIST image's do (the brightest border averages 108)."""
    border = torch.cat([luminance[:, 0], luminance[:, -1], luminance[:, 1:-1, 0], luminance[:, 1:-1, -1]], dim=1)
    return border.mean(1) > 127.5


def _otsu_thresholds(luminance: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold per image of integer levels 0-255 (N, H, W): the level t that best splits the pixels into
    <= t and > t by between-class variance; 255 (nothing above) for an image of a single level."""
    n = len(luminance)
    levels = torch.arange(256, dtype=torch.float64, device=luminance.device)
    bins = (luminance.long() + 256 * torch.arange(n, device=luminance.device).view(-1, 1, 1)).flatten()
    histograms = torch.bincount(bins, minlength=256 * n).view(n, 256).double()
    share = histograms / histograms.sum(1, keepdim=True)
    below = share.cumsum(1)
    below_mass = (share * levels).cumsum(1)
    total_mass = below_mass[:, -1:]
    between = (total_mass * below - below_mass).square() / (below * (1 - below))
    valid = (below > 1e-12) & (below < 1 - 1e-12)
    between = between.where(valid, -1.0)
    return between.argmax(1).where(valid.any(1), 255)


def silhouette_view(images: torch.Tensor) -> torch.Tensor:
    """A shape-only view: each image's foreground, its luminance above Otsu's threshold, white on black."""
    _check_images(images)
    luminance = _luminance(images).round()
    mask = luminance > _otsu_thresholds(luminance).view(-1, 1, 1)
    return (mask.to(torch.uint8) * 255).unsqueeze(1).expand_as(images).contiguous()


@dataclass(frozen=True)
class CueConflictSet:
    """Cue-conflict images labelled by their shape's class, with the class of their texture alongside."""

    images: ImageSet
    texture_labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.texture_labels.dtype != torch.int64 or self.texture_labels.shape != (len(self.images),):
            raise ValueError(
                f"CueConflictSet.texture_labels must be int64 of shape ({len(self.images)},), got "
                f"{self.texture_labels.dtype} {tuple(self.texture_labels.shape)}"
            )


def _class_key(name: str) -> str:
    """A class name as folder and file names spell it: lower case, spaces, slashes and hyphens as underscores."""
    return re.sub(r"[ /-]", "_", name.lower())


def _decode_cue_conflict(path: Path, image_size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((image_size, image_size), Image.Resampling[RESAMPLING.upper()])
            return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, -1)
    except Exception as exc:  # damaged files make PIL raise almost anything
        raise DataSourceError(f"unreadable cue-conflict image {path}: {type(exc).__name__}: {exc}") from exc


def load_cue_conflict(folder: str | Path, class_names: Sequence[str], image_size: int, channels: int) -> CueConflictSet:
    """Cue-conflict images in Geirhos et al.'s layout, ``<folder>/<shape>/<shape><n>-<texture><m>.png``.

    Class names match after lower-casing and writing spaces, slashes and hyphens as underscores. The file name is
    parsed against the known names (longest first), so names that hold hyphens or digits parse too; the shape must be
    the folder's. Images whose shape and texture agree are skipped, as Geirhos et al. leave them out of the shape
    bias. Images are resized to ``image_size`` (square, with ``RESAMPLING``) and converted to ``channels`` (1: grey,
    3: RGB).
    """
    folder = Path(folder)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not folder.is_dir():
        raise DataSourceError(f"cue-conflict folder {folder} does not exist")
    keys = {_class_key(name): label for label, name in enumerate(class_names)}
    if len(keys) != len(class_names):
        raise ValueError(f"class names collide once spaces, slashes and hyphens are underscores: {list(class_names)}")
    names = "|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True))
    pattern = re.compile(rf"(?P<shape>{names})\d+_(?P<texture>{names})\d+")
    files = sorted(
        path
        for path in folder.glob("*/*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not path.name.startswith(".")
        and not path.parent.name.startswith(".")
    )
    if not files:
        raise DataSourceError(f"cue-conflict folder {folder} holds no images")
    kept, shapes, textures = [], [], []
    for path in files:
        match = pattern.fullmatch(_class_key(path.stem))
        if match is None or _class_key(path.parent.name) != match["shape"]:
            raise DataSourceError(
                f"cue-conflict image {path}: no known <shape><n>-<texture><m> classes in its name and folder "
                f"(known: {', '.join(class_names)})"
            )
        shape, texture = keys[match["shape"]], keys[match["texture"]]
        if shape != texture:
            kept.append(path)
            shapes.append(shape)
            textures.append(texture)
    if not kept:
        raise DataSourceError(f"cue-conflict folder {folder} holds no image whose shape and texture classes differ")
    mode = "L" if channels == 1 else "RGB"
    pixels = np.stack([_decode_cue_conflict(path, image_size, mode) for path in kept])
    images = ImageSet(
        torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(shapes, dtype=torch.int64),
        tuple(class_names),
    )
    return CueConflictSet(images, torch.tensor(textures, dtype=torch.int64))


def shape_bias(predictions: torch.Tensor, shape_labels: torch.Tensor, texture_labels: torch.Tensor) -> dict[str, float]:
    """The share of images classified as their shape, as their texture, and the shape bias: the share of shape
    decisions among the decisions for either cue (NaN when there is none).

    ``predictions`` are predicted classes (N,), or logits (N, classes) whose argmax is taken.
    """
    predicted = predictions.argmax(1) if predictions.ndim == 2 else predictions
    if len(predicted) == 0 or not predicted.shape == shape_labels.shape == texture_labels.shape:
        raise ValueError(
            f"shape_bias needs one prediction, shape and texture label per image, got {tuple(predictions.shape)}, "
            f"{tuple(shape_labels.shape)} and {tuple(texture_labels.shape)}"
        )
    shape_correct = (predicted == shape_labels).double().mean().item()
    texture_correct = (predicted == texture_labels).double().mean().item()
    both = shape_correct + texture_correct
    return {
        "shape_correct": shape_correct,
        "texture_correct": texture_correct,
        "shape_bias": shape_correct / both if both > 0 else float("nan"),
    }
