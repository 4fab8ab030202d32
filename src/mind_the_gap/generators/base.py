"""What every generator backend takes and gives: one request per image, uint8 images back."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


def image_seed(base_seed: int, class_index: int, index: int) -> int:
    """The seed of one image, derived from the run's base seed, its class and its index in the class.

    A hash rather than arithmetic keeps seeds of neighbouring images and classes unrelated, and makes an image's
    seed independent of how many images are asked for, of batching and of sharding.
    """
    digest = hashlib.sha256(f"{base_seed}:{class_index}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class ImageRequest:
    """One image to generate."""

    class_index: int
    class_name: str
    index: int  # position of the image within its class
    seed: int
    prompt: str = ""
    init_image: torch.Tensor | None = None  # uint8 (C, H, W): the real image for img2img and unclip


class ImageGenerator(Protocol):
    """A generator backend. Images of one call come back in request order."""

    name: str

    def generate(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        """uint8 images of shape (len(requests), C, H, W); each depends only on its own request."""
        ...

    def describe(self) -> dict[str, Any]:
        """The parameters that determine the images (JSON-serialisable), recorded in the manifest and run key."""
        ...
