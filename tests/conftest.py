"""Shared test helpers: small image sets with a learnable class signal, and IDX files like Fashion-MNIST's."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from mind_the_gap.data.imageset import ImageSet

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# Tiny test models run fastest on one thread, and so stay fast when other work shares the cores.
torch.set_num_threads(1)


def striped_images(per_class: int, num_classes: int = 4, size: int = 16, channels: int = 1, seed: int = 0) -> ImageSet:
    """Noisy images whose class sets the direction and frequency of a stripe pattern: easy, but not trivial."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    grid = np.arange(size)
    images = np.empty((len(labels), channels, size, size), dtype=np.float32)
    for label in range(num_classes):
        frequency = 1 + label // 2
        wave = np.sin(2 * np.pi * frequency * grid / size)
        pattern = wave[None, :] if label % 2 == 0 else wave[:, None]
        images[labels == label] = np.broadcast_to(pattern, (size, size))
    images = images + rng.normal(0, 0.6, images.shape)
    pixels = np.clip((images + 1.5) / 3 * 255, 0, 255).astype(np.uint8)
    return ImageSet(
        torch.from_numpy(pixels),
        torch.from_numpy(labels.astype(np.int64)),
        tuple(f"class{i}" for i in range(num_classes)),
    )


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_fashion_mnist(directory: Path, train_per_class: int = 40, test_per_class: int = 10) -> None:
    """A small stand-in for the Fashion-MNIST IDX files: 10 classes of 28x28 striped images."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, per_class, seed in (("train", train_per_class, 0), ("t10k", test_per_class, 1)):
        images = striped_images(per_class, num_classes=10, size=28, seed=seed)
        order = np.random.default_rng(seed).permutation(len(images))
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images.images[order, 0].numpy())
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", images.labels[order].numpy())


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "fashion"
    write_fashion_mnist(directory)
    return directory


@pytest.fixture
def mlflow_in_tmp(tmp_path: Path):
    """MLflow runs of the test go to a database of its own."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(None)
