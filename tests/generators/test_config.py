"""The generation settings: each model at its native resolution, the GPU of a shard's process, and no silent CPU."""

from __future__ import annotations

import pytest
import torch

from mind_the_gap import devices
from mind_the_gap.generators.config import GenerationConfig, build_generator, shard_gpu


@pytest.mark.parametrize(("backend", "side"), [("stable_diffusion", 512), ("img2img", 512), ("unclip", 768)], ids=str)
def test_each_model_generates_at_its_native_resolution_then_at_the_real_size(backend: str, side: int):
    config = GenerationConfig(backend=backend, img2img_model="stable_diffusion", device="cpu")
    generator = build_generator(config, channels=3, image_size=224, class_diffusion_path=None)  # loads no weights
    described = generator.describe()
    assert (described["height"], described["width"]) == (side, side)
    assert described["output_size"] == 224


def test_the_native_resolutions_are_settings():
    unclip = GenerationConfig(backend="unclip", unclip_height=512, unclip_width=640, height=256, device="cpu")
    described = build_generator(unclip, channels=3, image_size=96, class_diffusion_path=None).describe()
    assert (described["height"], described["width"]) == (512, 640)


@pytest.mark.parametrize(
    ("shard", "environ", "gpus", "expected"),
    [
        ("3/4", {}, 2, 1),  # started by hand: shard i on GPU i mod the count
        ("2/4", {}, 2, 0),
        ("5/8", {}, 8, 5),
        ("3/4", {"LOCAL_RANK": "0"}, 2, 0),  # a launcher's process: its own GPU
        ("3/4", {}, 0, None),  # no GPU
        (None, {}, 4, None),  # no shard: device auto as it is
    ],
)
def test_a_shard_generates_on_its_own_gpu(shard: str | None, environ: dict[str, str], gpus: int, expected: int | None):
    assert shard_gpu(shard, environ, gpus) == expected


def test_an_explicit_shard_on_a_machine_of_several_gpus_takes_its_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert GenerationConfig(shard="6/8").for_this_process(environ={}).device == "cuda:2"
    assert GenerationConfig(shard="6/8", device="cuda:0").for_this_process(environ={}).device == "cuda:0"
    launched = {"WORLD_SIZE": "8", "RANK": "6", "LOCAL_RANK": "3"}
    assert GenerationConfig().for_this_process(environ=launched).model_dump(include={"shard", "device"}) == {
        "shard": "6/8",
        "device": "cuda:3",
    }


def test_without_a_gpu_generation_refuses_the_cpu_where_told(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_ANNOUNCED", set())
    config = GenerationConfig(backend="stable_diffusion", allow_cpu=False)
    with pytest.raises(ValueError, match="generation.device auto found no GPU .* generation.allow_cpu: false"):
        build_generator(config, channels=3, image_size=224, class_diffusion_path=None)
    allowed = build_generator(config.model_copy(update={"allow_cpu": True}), 3, 224, None)
    assert allowed.describe()["dtype"] == "float32"
