"""Per-image random augmentation of a whole batch in one call.

torchvision.transforms.v2 draws one set of random parameters per call, so on a batched tensor every image
would get the same crop and flip. Here each image draws its own parameters and one ``grid_sample`` applies
them all, which keeps augmentation on the device and out of Python loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class BatchAugment:
    """Random flips, shifted crops, resized crops and brightness/contrast jitter for float images in [0, 1]."""

    def __init__(self, ops: Sequence[str], crop_padding: float = 0.125, resized_crop_scale=(0.35, 1.0)):
        unknown = set(ops) - {"flip", "crop", "resized_crop", "color"}
        if unknown:
            raise ValueError(f"unknown augmentation(s): {', '.join(sorted(unknown))}")
        self.ops = frozenset(ops)
        self.crop_padding = crop_padding
        self.scale = resized_crop_scale

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.ops:
            return images
        geometric = self.ops & {"flip", "crop", "resized_crop"}
        if geometric:
            images = self._geometric(images, generator)
        if "color" in self.ops:
            images = self._color(images, generator)
        return images

    def _uniform(self, n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator):
        return torch.rand(n, device=like.device, generator=generator) * (high - low) + low

    def _geometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        ones = torch.ones(n, device=images.device)
        scale = ones.clone()
        shift_x, shift_y = torch.zeros_like(ones), torch.zeros_like(ones)
        if "resized_crop" in self.ops:
            # Area share in [low, high]; the crop lies anywhere inside the image.
            scale = self._uniform(n, *self.scale, images, generator).sqrt()
            shift_x = (self._uniform(n, -1, 1, images, generator)) * (1 - scale)
            shift_y = (self._uniform(n, -1, 1, images, generator)) * (1 - scale)
        if "crop" in self.ops:
            # Integer pixel shifts, as RandomCrop(padding=p) makes them; zeros (black) fill the border.
            pad_x, pad_y = round(self.crop_padding * width), round(self.crop_padding * height)
            shift_x = (
                shift_x + torch.randint(-pad_x, pad_x + 1, (n,), device=images.device, generator=generator) * 2 / width
            )
            shift_y = (
                shift_y + torch.randint(-pad_y, pad_y + 1, (n,), device=images.device, generator=generator) * 2 / height
            )
        flip = ones
        if "flip" in self.ops:
            flip = torch.where(torch.rand(n, device=images.device, generator=generator) < 0.5, -ones, ones)
        theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = scale * flip
        theta[:, 1, 1] = scale
        theta[:, 0, 2] = shift_x
        theta[:, 1, 2] = shift_y
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        mode = "bilinear" if "resized_crop" in self.ops else "nearest"  # pure shifts and flips stay exact
        return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)

    def _color(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        brightness = self._uniform(n, 0.6, 1.4, images, generator).view(n, 1, 1, 1)
        contrast = self._uniform(n, 0.6, 1.4, images, generator).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * contrast + mean * brightness).clamp(0, 1)
