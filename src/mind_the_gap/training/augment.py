"""Per-image random augmentation of a whole batch in one call.

torchvision.transforms.v2 draws one set of random parameters per call, so on a batched tensor every image
would get the same crop and flip. Here each image draws its own parameters and one ``grid_sample`` applies
them all, which keeps augmentation on the device and out of Python loops.

The strong policies (RandAugment, TrivialAugment, AutoAugment) are kornia's. Kornia draws one operation per call
and its randomness from torch's global generator, so a batch is augmented in groups of ``POLICY_GROUP`` images, each
group drawing its own operation, under a global generator seeded from a generator on the host (the training run's own
on the CPU; on a GPU one beside it, since reading a seed back from the GPU would wait for it every step): runs stay
repeatable, and students trained in concurrent threads take turns. Kornia's crop and flip measured 5.6x slower than the
``grid_sample`` here (``benchmarks/bench_augment.py``), so those stay hand-written.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mind_the_gap.devices import GLOBAL_RNG

GEOMETRIC = ("flip", "crop", "resized_crop")
POLICIES = ("rand_augment", "trivial_augment", "auto_augment")
OPERATIONS = (*GEOMETRIC, "color", *POLICIES, "local_shuffle")
POLICY_GROUP = 16  # images per kornia draw: a batch of 128 sees 8 different operations
SHUFFLE_REFERENCE_SIDE = 28  # px: training.shuffle_patch is given for images of this side


class BatchAugment:
    """Random flips, shifted crops, resized crops, a strong policy, brightness/contrast jitter and local pixel
    shuffles for float images in [0, 1], applied in that order."""

    def __init__(
        self,
        ops: Sequence[str],
        crop_padding: float = 0.125,
        resized_crop_scale: tuple[float, float] = (0.35, 1.0),
        shuffle_patch: int = 2,
        shuffle_share: float = 0.5,
    ):
        unknown = set(ops) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown augmentation(s): {', '.join(sorted(unknown))} (known: {', '.join(OPERATIONS)})")
        policies = [op for op in ops if op in POLICIES]
        if len(policies) > 1:
            raise ValueError(f"augmentation takes one strong policy at most, got {', '.join(policies)}")
        self.ops = frozenset(ops)
        self.crop_padding = crop_padding
        self.scale = resized_crop_scale
        self.shuffle_patch, self.shuffle_share = shuffle_patch, shuffle_share
        self.policy = _kornia_policy(policies[0]) if policies else None

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, host_generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``images`` augmented with draws from ``generator``, on their device; the strong policy's seeds come from
        ``host_generator`` (by default ``generator``, which must then be on the host), so no draw waits for the
        device."""
        if not self.ops:
            return images
        if self.ops & set(GEOMETRIC):
            images = self._geometric(images, generator)
        if self.policy is not None:
            images = self._policy(images, generator if host_generator is None else host_generator)
        if "color" in self.ops:
            images = self._color(images, generator)
        if "local_shuffle" in self.ops:
            patch = shuffle_side(self.shuffle_patch, *images.shape[-2:])
            images = local_shuffle(images, patch, self.shuffle_share, generator)
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

    def _policy(self, images: torch.Tensor, host_generator: torch.Generator) -> torch.Tensor:
        if host_generator.device.type != "cpu":
            raise ValueError(
                f"a strong policy draws its seeds on the host, not from a generator on {host_generator.device}: "
                "pass a host_generator"
            )
        grey = images.shape[1] == 1  # kornia's colour operations want RGB: grey images go through as three equal
        rgb = images.expand(-1, 3, -1, -1) if grey else images
        seed = int(torch.randint(2**62, (), generator=host_generator))
        with GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = torch.cat([self.policy(group) for group in rgb.split(POLICY_GROUP)])
        return out.mean(1, keepdim=True) if grey else out

    def _color(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # As torchvision's ColorJitter: brightness scales every pixel, contrast blends with the image's mean grey.
        n = images.shape[0]
        brightness = self._uniform(n, 0.6, 1.4, images, generator).view(n, 1, 1, 1)
        contrast = self._uniform(n, 0.6, 1.4, images, generator).view(n, 1, 1, 1)
        images = (images * brightness).clamp(0, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * contrast + mean).clamp(0, 1)


def shuffle_side(patch: int, height: int, width: int) -> int:
    """The side in pixels of local_shuffle's squares on a ``height`` x ``width`` image, for ``patch`` px at
    ``SHUFFLE_REFERENCE_SIDE`` px: scaled with the shorter side, rounded, at least 2. Squares of 2 px scramble
    Fashion-MNIST's texture at 28 px but leave a 224 px photo's texture intact; scaled, they cover the same share of
    any image (16 px at 224)."""
    return max(2, round(patch * min(height, width) / SHUFFLE_REFERENCE_SIDE))


def local_shuffle(images: torch.Tensor, patch: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """PatchShuffle regularisation (Kang et al., 2017): in a ``share`` of the images, the pixels inside every
    ``patch`` x ``patch`` square are permuted at random (the same permutation across channels).

    It blurs local texture and keeps the global shape, so a student leans on shape. Rows and columns past the last
    whole square stay in place.
    """
    n, channels, height, width = images.shape
    rows, cols = height // patch, width // patch
    if patch < 2 or rows == 0 or cols == 0:
        raise ValueError(f"local_shuffle needs a patch of 2 px or more that fits a {height}x{width} image, got {patch}")
    body = images[:, :, : rows * patch, : cols * patch]
    # (n, c, rows, patch, cols, patch) -> (n, c, rows, cols, patch * patch): the pixels of each square in a row.
    squares = body.reshape(n, channels, rows, patch, cols, patch).permute(0, 1, 2, 4, 3, 5)
    squares = squares.reshape(n, channels, rows, cols, patch * patch)
    order = torch.rand(n, 1, rows, cols, patch * patch, device=images.device, generator=generator).argsort(-1)
    chosen = torch.rand(n, device=images.device, generator=generator) < share
    identity = torch.arange(patch * patch, device=images.device).expand_as(order)
    order = torch.where(chosen.view(n, 1, 1, 1, 1), order, identity).expand(-1, channels, -1, -1, -1)
    shuffled = squares.gather(-1, order).reshape(n, channels, rows, cols, patch, patch).permute(0, 1, 2, 4, 3, 5)
    out = images.clone()
    out[:, :, : rows * patch, : cols * patch] = shuffled.reshape(n, channels, rows * patch, cols * patch)
    return out


def _kornia_policy(name: str) -> torch.nn.Module:
    from kornia.augmentation import auto

    if name == "rand_augment":
        return auto.RandAugment(n=2, m=9)  # torchvision's defaults
    return auto.TrivialAugment() if name == "trivial_augment" else auto.AutoAugment(policy="imagenet")
