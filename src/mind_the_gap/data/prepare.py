"""From a raw source to the four splits every experiment uses: generator pool, real train, validation, test."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from mind_the_gap import memory
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.sources import (
    RESAMPLING,
    DataSourceError,
    FolderListing,
    class_indices,
    list_image_folder,
    load_fashion_mnist,
    load_image_folder,
    load_torchvision,
    shared_image_size,
)

log = logging.getLogger(__name__)

SPLITS = ("generator_pool", "train", "val", "test")
IMAGE_SIZE_RANGE = (8, 1024)  # pixels, the sides dataset.image_size allows


class SplitConfig(Config):
    """Per-class fractions of the source's training images; the rest is the students' real training pool."""

    generator_pool: float = Field(0.5, ge=0.0, lt=1.0)
    val: float = Field(0.1, gt=0.0, lt=1.0)
    test: float = Field(0.15, gt=0.0, lt=1.0, description="used only when the source has no official test split")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.generator_pool + self.val >= 1.0:
            raise ValueError("split.generator_pool + split.val must leave images for the real training pool (< 1)")
        return self


class DatasetConfig(Config):
    """Where the real images come from and how they are shaped (``dataset`` in the parameters)."""

    source: str = "fashion_mnist"
    path: Path = Path("data/01_raw/fashion_mnist")
    image_size: int | None = Field(
        None,
        ge=IMAGE_SIZE_RANGE[0],
        le=IMAGE_SIZE_RANGE[1],
        description="square side in pixels; null keeps the source's",
    )
    channels: Literal[1, 3] | None = None
    classes: list[str] | None = None
    max_per_class: int | None = Field(None, ge=3)
    skip_corrupt: bool = False
    eval_crop: float | None = Field(
        None,
        gt=0,
        le=1,
        description="image folders: the val and test images' shorter side resized to image_size / eval_crop, then "
        "centre-cropped to image_size (0.875: 256 then 224 px, ImageNet's evaluation); null: as the training images",
    )
    split: SplitConfig = SplitConfig()
    seed: int = 0

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in ("fashion_mnist", "imagefolder") or (value.startswith("torchvision:") and len(value) > 12):
            return value
        raise ValueError(f"unknown dataset.source {value!r}: use fashion_mnist, imagefolder or torchvision:<Name>")

    @model_validator(mode="after")
    def _eval_crop_needs_files(self) -> DatasetConfig:
        if self.eval_crop is not None and self.source != "imagefolder":
            raise ValueError(
                f"dataset.eval_crop ({self.eval_crop}) applies to image folders only, not to dataset.source "
                f"{self.source}: set it to null"
            )
        return self


def load_source(config: DatasetConfig) -> tuple[ImageSet, ImageSet | None]:
    """The source's training images and its official test split (None where it has none)."""
    if config.source == "fashion_mnist":
        train, test = load_fashion_mnist(config.path)
    elif config.source.startswith("torchvision:"):
        train, test = load_torchvision(config.source.split(":", 1)[1], config.path)
    else:
        train, test = _load_image_folders(config)
    for split in (train, test):
        if split is not None:
            memory.track(split.images, read=True)  # the sets data_processing is held to
    return train, test


def _load_image_folders(config: DatasetConfig) -> tuple[ImageSet, ImageSet | None]:
    """An image folder's training images and its official test split, listed first so that the size is known."""
    train_dir, test_dir = _split_folders(config.path)
    # Only the classes and images asked for are listed, so a full ImageNet folder with ImageNet-100's class list
    # decodes 100 classes.
    listed = lambda folder: list_image_folder(folder, config.max_per_class, config.seed, config.classes)  # noqa: E731
    train_list = listed(train_dir)
    test_list = listed(test_dir) if test_dir is not None else None
    if test_list is not None and test_list.class_names != train_list.class_names:
        raise DataSourceError(f"{test_dir} and {train_dir} hold different class folders")
    listings = [train_list] if test_list is None else [train_list, test_list]
    size = config.image_size if config.image_size is not None else _native_image_size(config, listings)
    read = lambda listing, crop: load_image_folder(listing, size, config.channels or 3, config.skip_corrupt, crop)
    return read(train_list, 1.0), (read(test_list, config.eval_crop or 1.0) if test_list is not None else None)


def _split_folders(path: Path) -> tuple[Path, Path | None]:
    """The training folder and the official test folder (None where the folder has no split of its own)."""
    # A folder whose only sub-folders are train/ and val/ or test/ has ImageNet's layout: keep its split. Any
    # other sub-folder makes them all classes (a "train" class among "bus" and "car", say).
    subfolders = path.iterdir() if path.is_dir() else ()
    folders = {p.name for p in subfolders if p.is_dir() and not p.name.startswith(".")}
    if "train" not in folders or not folders <= {"train", "val", "test"}:
        return path, None
    held_out = next((path / n for n in ("val", "test") if (path / n).is_dir()), None)
    return path / "train", held_out  # train/ alone: the test set is split off it, as for a plain folder


def _native_image_size(config: DatasetConfig, listings: list[FolderListing]) -> int:
    """``image_size: null`` for a folder: the side every image to be decoded shares, so nothing is resampled."""
    width, height = shared_image_size(config.path, listings, config.skip_corrupt)
    # The decoder resizes the shorter side to the target and centre-crops: the shorter side is the native resolution.
    size = min(width, height)
    if not IMAGE_SIZE_RANGE[0] <= size <= IMAGE_SIZE_RANGE[1]:
        raise DataSourceError(
            f"every image in {config.path} is {width}x{height}, outside dataset.image_size's range "
            f"{IMAGE_SIZE_RANGE[0]}-{IMAGE_SIZE_RANGE[1]}: set dataset.image_size"
        )
    shape = "the size" if width == height else f"the shorter side of the {width}x{height}"
    log.info("dataset.image_size: null -> %d px, %s every image in %s shares", size, shape, config.path)
    return size


def convert(images: ImageSet, image_size: int | None, channels: int | None) -> ImageSet:
    """The set resized and its channels converted (``convert_images``); the set itself where nothing changes."""
    data = convert_images(images.images, image_size, channels)
    return images if data is images.images else ImageSet(data, images.labels, images.class_names)


def convert_images(images: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    """uint8 images resized (``RESAMPLING``, antialiased) and their channels converted (1 -> 3 repeats grey, 3 -> 1
    takes ITU-R 601 luma), 4,096 at a time into the result: never a float copy of the whole set. ``images`` itself
    where both already match."""
    have = images.shape[1]
    channels = have if channels is None else channels
    size = tuple(images.shape[2:]) if image_size is None else (image_size, image_size)
    if (channels, size) == (have, tuple(images.shape[2:])):
        return images
    if channels != have and (channels, have) not in ((3, 1), (1, 3)):
        raise DataSourceError(f"cannot convert {have} channels to {channels}")
    converted = torch.empty((len(images), channels, *size), dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096]
        if channels == 3 and have == 1:
            chunk = chunk.expand(-1, 3, -1, -1)
        elif channels == 1 and have == 3:
            chunk = (chunk.float() * luma).sum(1, keepdim=True).round()
        if size != tuple(chunk.shape[2:]):
            chunk = F.interpolate(chunk.float(), size=size, mode=RESAMPLING, antialias=True).round()
        converted[start : start + len(chunk)] = chunk.clamp(0, 255).to(torch.uint8)
    return converted


def select_classes(images: ImageSet, classes: list[str] | None) -> ImageSet:
    """Keep only ``classes`` (names, or indices as strings), relabelled 0..k-1 in the order given."""
    if not classes:
        return images
    indices = class_indices(images.class_names, classes)
    remap = torch.full((images.num_classes,), -1, dtype=torch.int64)
    remap[torch.tensor(indices)] = torch.arange(len(indices))
    keep = remap[images.labels] >= 0
    return ImageSet(images.images[keep], remap[images.labels[keep]], tuple(images.class_names[i] for i in indices))


def cap_per_class(images: ImageSet, max_per_class: int | None, generator: torch.Generator) -> ImageSet:
    """At most ``max_per_class`` images of each class, a seeded random choice."""
    if max_per_class is None:
        return images
    order = torch.randperm(len(images), generator=generator)
    rank = _rank_within_class(images.labels[order], images.num_classes)
    keep = order[rank < max_per_class].sort().values
    return images.subset(keep)


def _rank_within_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """For each position, how many earlier positions hold the same label (vectorised, stable)."""
    one_hot = F.one_hot(labels, num_classes)
    return (one_hot.cumsum(0) - 1).gather(1, labels.unsqueeze(1)).squeeze(1)


def nested_subsets(images: ImageSet, fractions: list[float], generator: torch.Generator) -> dict[float, ImageSet]:
    """Stratified subsets, each inside every larger one: per class, the first ceil(fraction x class size) images
    (at least one) of one seeded shuffle. A fraction of 1 is the whole set, in its order."""
    indices = nested_subset_indices(images.labels, images.num_classes, fractions, generator)
    return {fraction: images.subset(index) for fraction, index in indices.items()}


def nested_subset_indices(
    labels: torch.Tensor, num_classes: int, fractions: list[float], generator: torch.Generator
) -> dict[float, torch.Tensor]:
    """The indices, in increasing order, of ``nested_subsets``' subsets of a set with these labels: only labels are
    read, so a job can name its subset without holding its images."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"subset fractions must lie in (0, 1], got {bad}")
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    rank = _rank_within_class(shuffled, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).double()
    indices = {}
    for fraction in fractions:
        size = (counts * fraction - 1e-9).ceil().long().clamp(min=1)  # 800 x 0.1 is 80, not 80.000...1
        indices[fraction] = order[rank < size[shuffled]].sort().values
    return indices


def stratified_split(
    labels: torch.Tensor, class_names: tuple[str, ...], fractions: dict[str, float], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """The indices of each part when every class is split by ``fractions`` (name -> share); the last name takes
    the remainder. Only labels are read: the caller copies each part's images once, from the whole set.

    Each part gets at least one image of every class, or the split fails naming the class that is too small.
    """
    counts = torch.bincount(labels, minlength=len(class_names))
    names = list(fractions)
    too_small = [f"{class_names[c]} ({int(n)} images)" for c, n in enumerate(counts.tolist()) if n < len(names)]
    if too_small:
        raise DataSourceError(
            f"too few images for a {len(names)}-way split ({', '.join(names)}) in class(es): {', '.join(too_small)}"
        )
    # Per class, the first share of a seeded shuffle goes to the first part, and so on.
    sizes = {}
    remaining = counts.clone()
    for i, name in enumerate(names[:-1]):
        size = (counts.double() * fractions[name]).floor().long().clamp(min=1)
        size = torch.minimum(size, remaining - (len(names) - 1 - i))  # leave one image for each later part
        sizes[name] = size
        remaining -= size
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    rank = _rank_within_class(shuffled, len(class_names))
    parts, start = {}, torch.zeros_like(counts)
    for name in names:
        end = start + sizes[name] if name in sizes else counts
        in_part = (rank >= start[shuffled]) & (rank < end[shuffled])
        parts[name] = order[in_part].sort().values
        start = end
    return parts


def prepare_splits(train: ImageSet, test: ImageSet | None, config: DatasetConfig) -> dict[str, ImageSet]:
    """Classes, caps, conversion and the seeded stratified split into generator pool, train, val and test."""
    generator = torch.Generator().manual_seed(config.seed)
    if config.source != "imagefolder":  # image folders were chosen and capped while listing, before decoding
        train = select_classes(train, config.classes)
        if test is not None:
            if test.class_names != train.class_names and not config.classes:
                raise DataSourceError("the source's test split names other classes than its training split")
            test = select_classes(test, config.classes or None)
        train = cap_per_class(train, config.max_per_class, generator)
    # Parts are found by index and each copied once from ``train``: never a copy of a copy, so at most the set
    # and its parts (twice its size) are in memory at once.
    rest, carved = torch.arange(len(train)), {}
    if test is None:
        fractions = {"test": config.split.test, "rest": 1.0}
        held_out = stratified_split(train.labels, train.class_names, fractions, generator)
        rest, carved["test"] = held_out["rest"], held_out["test"]
    fractions = {"generator_pool": config.split.generator_pool, "val": config.split.val, "train": 1.0}
    if config.split.generator_pool == 0.0:
        fractions.pop("generator_pool")
    parts = stratified_split(train.labels[rest], train.class_names, fractions, generator)
    indices = {name: rest[index] for name, index in parts.items()} | carved
    indices.setdefault("generator_pool", torch.zeros(0, dtype=torch.long))
    # With an evaluation crop (image folders only), the evaluation splits cut out of the training folder are decoded
    # again from their files with it; the official test folder was decoded with it.
    evaluation = {"val", "test"} if config.eval_crop is not None else set()
    splits = {
        name: train.decoded_again(index, config.eval_crop) if name in evaluation else train.subset(index)
        for name, index in indices.items()
    }
    splits.setdefault("test", test)
    converted = {name: convert(splits[name], config.image_size, config.channels) for name in SPLITS}
    for name, part in converted.items():
        log.info(
            "%s: %d images, %d classes, %s px, %d channel(s)",
            name,
            len(part),
            part.num_classes,
            "x".join(map(str, part.image_size)),
            part.channels,
        )
    return converted
