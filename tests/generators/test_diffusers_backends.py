"""The diffusers backends on tiny random-weight pipelines, loaded through the same from_pretrained path as a real
model id. Images are 32 px with 2 denoising steps, so every test runs in about a second on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mind_the_gap.generators.base import ImageRequest, image_seed
from mind_the_gap.generators.diffusers_backends import (
    SCHEDULERS,
    Img2ImgGenerator,
    ModelUnavailableError,
    StableDiffusionGenerator,
    UnclipGenerator,
    save_tiny_stable_diffusion,
)

TINY = {"steps": 2, "height": 32, "width": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_stable_diffusion(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def tiny_unclip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_stable_diffusion(tmp_path_factory.mktemp("models"), unclip=True))


def requests(count: int, init: torch.Tensor | None = None) -> list[ImageRequest]:
    return [
        ImageRequest(
            i % 2,
            f"class{i % 2}",
            i,
            image_seed(0, i % 2, i),
            f"a photo of a class{i % 2}",
            None if init is None else init[i],
        )
        for i in range(count)
    ]


def random_images(count: int, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, channels, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


def assert_batch_independent(whole: torch.Tensor, alone: torch.Tensor) -> None:
    # Batched float kernels may round differently for another batch size: allow one grey level.
    assert (whole.int() - alone.int()).abs().max() <= 1


def test_text_to_image_count_shape_dtype_and_determinism(tiny_sd: str):
    generator = StableDiffusionGenerator(tiny_sd, **TINY, output_size=16, channels=1, batch_size=3)
    batch = requests(5)
    images = generator.generate(batch)
    assert images.shape == (5, 1, 16, 16)
    assert images.dtype == torch.uint8
    assert torch.equal(images, generator.generate(batch))
    assert_batch_independent(images[[3, 1]], generator.generate([batch[3], batch[1]]))
    assert not torch.equal(images[0], images[2])  # different seeds, different images
    assert generator.generate([]).shape == (0, 1, 16, 16)


def test_describe_names_every_parameter_that_sets_the_images(tiny_sd: str):
    generator = StableDiffusionGenerator(
        tiny_sd, **TINY, scheduler="ddim", guidance_scale=3.0, negative_prompt="blurry", output_size=28, channels=1
    )
    assert generator.describe() == {
        "backend": "stable_diffusion",
        "model_id": tiny_sd,
        "scheduler": "ddim",
        "steps": 2,
        "guidance_scale": 3.0,
        "negative_prompt": "blurry",
        "height": 32,
        "width": 32,
        "output_size": 28,
        "channels": 1,
        "safety_checker": False,
        "dtype": "float32",
    }
    assert Img2ImgGenerator(tiny_sd, **TINY, strength=0.5).describe()["strength"] == 0.5


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_runs(tiny_sd: str, scheduler: str):
    generator = StableDiffusionGenerator(tiny_sd, **TINY, scheduler=scheduler, negative_prompt="blurry")
    images = generator.generate(requests(2))
    assert images.shape == (2, 3, 32, 32)
    if scheduler != "default":
        assert type(generator.pipeline.scheduler) is SCHEDULERS[scheduler][0]


def test_img2img_denoises_real_images(tiny_sd: str):
    init = random_images(3, channels=1, size=28)
    generator = Img2ImgGenerator(tiny_sd, **TINY, strength=0.5, output_size=28, channels=1, batch_size=2)
    images = generator.generate(requests(3, init))
    assert images.shape == (3, 1, 28, 28)
    assert images.dtype == torch.uint8
    assert torch.equal(images, generator.generate(requests(3, init)))
    assert_batch_independent(images[2:], generator.generate(requests(3, init)[2:]))


@pytest.mark.parametrize("channels", [1, 3])
def test_img2img_at_strength_zero_returns_the_real_image_without_loading_a_model(channels: int):
    init = random_images(4, channels=channels, size=28)
    generator = Img2ImgGenerator("/no/such/model", **TINY, strength=0.0, output_size=28, channels=channels)
    assert torch.equal(generator.generate(requests(4, init)), init)


def test_img2img_settings_are_checked(tiny_sd: str):
    with pytest.raises(ValueError, match="strength"):
        Img2ImgGenerator(tiny_sd, strength=1.5)
    with pytest.raises(ValueError, match="no denoising step"):
        Img2ImgGenerator(tiny_sd, **TINY, strength=0.2)
    with pytest.raises(ValueError, match="init_image"):
        Img2ImgGenerator(tiny_sd, **TINY, strength=0.5).generate(requests(1))


def test_unclip_makes_variations_of_real_images(tiny_unclip: str):
    init = random_images(3)
    generator = UnclipGenerator(tiny_unclip, **TINY, noise_level=10, output_size=16, batch_size=2)
    images = generator.generate(requests(3, init))
    assert images.shape == (3, 3, 16, 16)
    assert images.dtype == torch.uint8
    assert torch.equal(images, generator.generate(requests(3, init)))
    assert_batch_independent(images[2:], generator.generate(requests(3, init)[2:]))
    assert generator.describe()["noise_level"] == 10


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scheduler": "lms"}, "unknown scheduler 'lms'"),
        ({"height": 30}, "multiples of 8"),
        ({"channels": 2}, "1 or 3"),
        ({"steps": 0}, "steps >= 1"),
    ],
)
def test_bad_settings_are_named(settings: dict, message: str):
    with pytest.raises(ValueError, match=message):
        StableDiffusionGenerator("any", **settings)


def test_a_model_saved_only_in_fp16_loads_through_its_variant(tmp_path: Path):
    model_id = str(save_tiny_stable_diffusion(tmp_path, variant="fp16"))
    with pytest.raises(ModelUnavailableError, match="not a complete diffusers pipeline"):
        StableDiffusionGenerator(model_id, **TINY).generate(requests(1))
    generator = StableDiffusionGenerator(model_id, **TINY, variant="fp16")
    images = generator.generate(requests(2))
    assert images.shape == (2, 3, 32, 32)
    assert generator.pipeline.unet.dtype == torch.float32  # the CPU computes in float32 whatever the files hold
    assert generator.describe()["variant"] == "fp16"
    assert "variant" not in StableDiffusionGenerator(model_id, **TINY).describe()


def test_missing_local_folder_fails_at_once_saying_how_to_provide_weights(tmp_path: Path):
    for model_id in ("/no/such/stable-diffusion", str(tmp_path)):  # missing, and a folder without a pipeline
        started = time.perf_counter()
        with pytest.raises(ModelUnavailableError, match="local folder") as error:
            StableDiffusionGenerator(model_id, **TINY).generate(requests(1))
        assert time.perf_counter() - started < 30
        assert model_id in str(error.value)
        assert "\n" not in str(error.value)


def test_hub_model_offline_fails_fast_saying_how_to_provide_weights(tmp_path: Path):
    # A fresh process, so that huggingface_hub reads HF_HUB_OFFLINE and the empty cache at import as it would.
    code = (
        "from mind_the_gap.generators.diffusers_backends import StableDiffusionGenerator\n"
        "StableDiffusionGenerator('CompVis/stable-diffusion-v1-4', device='cpu').generate([])\n"  # loads nothing
        "StableDiffusionGenerator('CompVis/stable-diffusion-v1-4', device='cpu').pipeline\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - started < 30
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mind_the_gap.generators.diffusers_backends.ModelUnavailableError")
    assert "'CompVis/stable-diffusion-v1-4'" in last
    assert "HF_HUB_OFFLINE" in last
    assert "local folder" in last
