"""What a paper-shaped run needs: an ImageNet-layout folder of JPEGs, tiny Stable Diffusion and Stable unCLIP models
saved as local folders, and a conf environment that is `conf/paper` with only its sizes changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from diffusers import AutoencoderKL
from PIL import Image

from mind_the_gap.analysis.clip_judge import save_tiny_clip
from mind_the_gap.generators.diffusers_backends import save_tiny_stable_diffusion
from mind_the_gap.hooks import MEMORY_LOG_ENV

from .conftest import REPO, make_project

PAPER_CONF = REPO / "conf" / "paper"
PAPER_CLASSES: list[str] = yaml.safe_load((PAPER_CONF / "parameters.yml").read_text())["dataset"]["classes"]
CLASSES = PAPER_CLASSES[:4]
EXTRA_CLASS = "n01440764"  # tench: an ImageNet class outside ImageNet-100, whose folder must not be read
ENV = "paper_shaped"
# Every fourth JPEG is stored in each of these ways: what an ImageNet folder holds beside plain RGB files.
KINDS = ("rgb", "cmyk", "grey", "exif_rotated")
EXIF_ORIENTATION = 0x0112
ROTATE_TO_VIEW = 6  # "rotate 90 degrees clockwise to view": the pixels are stored turned a quarter counterclockwise


def _photo(label: int, index: int, rng: np.random.Generator) -> np.ndarray:
    """A non-square colour image whose class sets its stripes' direction, frequency and hue."""
    height, width = 104, 112 + 8 * (index % 3)
    frequency = 2 + label // 2
    axis = np.arange(width if label % 2 == 0 else height)
    wave = np.sin(2 * np.pi * frequency * axis / len(axis))
    pattern = np.broadcast_to(wave[None, :] if label % 2 == 0 else wave[:, None], (height, width))
    hue = np.roll(np.array([1.0, 0.5, 0.2]), label)
    image = pattern[..., None] * hue + rng.normal(0, 0.4, (height, width, 3))
    return np.clip((image + 1.5) / 3 * 255, 0, 255).astype(np.uint8)


def _save_jpeg(path: Path, pixels: np.ndarray, kind: str) -> None:
    image = Image.fromarray(pixels)
    if kind == "exif_rotated":
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = ROTATE_TO_VIEW
        Image.fromarray(np.ascontiguousarray(np.rot90(pixels))).save(path, exif=exif, quality=90)
        return
    converted = {"rgb": image, "cmyk": image.convert("CMYK"), "grey": image.convert("L")}[kind]
    converted.save(path, quality=90)


def write_imagenet_folder(root: Path, train_per_class: int = 20, val_per_class: int = 6) -> Path:
    """``root/{train,val}/<wnid>/*.JPEG`` for ``CLASSES`` and ``EXTRA_CLASS``, in every one of ``KINDS``."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label, wnid in enumerate([*CLASSES, EXTRA_CLASS]):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for index in range(per_class):
                _save_jpeg(folder / f"{wnid}_{index}.JPEG", _photo(label, index, rng), KINDS[index % len(KINDS)])
    return root


def save_tiny_models(directory: Path) -> tuple[Path, Path, Path]:
    """Tiny random-weight Stable Diffusion (also what img2img loads) and Stable unCLIP pipelines, and a tiny CLIP (the
    levers' filtering judge), as local folders.

    Their autoencoder is replaced by one that, as Stable Diffusion's, has four blocks and so downsamples 8 times:
    128 px images denoise as 16 px latents, the UNet's own size, which makes 128 px the models' native resolution
    (512 px and 64 px latents in Stable Diffusion v1.4); the two-block one denoises 64 px latents, 16 times the work.
    """
    models = []
    for name, unclip in (("stable_diffusion", False), ("stable_unclip", True)):
        model = save_tiny_stable_diffusion(directory / name, unclip=unclip)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            autoencoder = AutoencoderKL(
                block_out_channels=(32,) * 4,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4,
                sample_size=128,
            )
        autoencoder.save_pretrained(model / "vae")
        models.append(model)
    return models[0], models[1], save_tiny_clip(directory / "clip")


def size_overlay(dataset: Path, stable_diffusion: Path, unclip: Path, clip: Path, device: str) -> dict[str, Any]:
    """What the paper-shaped environment changes in `conf/paper`: sizes, the device, and where the data and models
    are. The test module's docstring states each setting and why."""
    return {
        "training": {
            "epochs": 1,
            "warmup_epochs": 0,
            "batch_size": 16,
            "lr": 0.1 * 16 / 256,  # conf/paper's rate for batches of 256, scaled with the batch (linear scaling)
            "eval_batch_size": 32,
            "device": device,
            "allow_cpu": True,
        },
        "dataset": {"path": str(dataset), "image_size": 96, "classes": CLASSES},
        "baselines": {"seeds": [0, 1], "samples_per_class": 4},
        "layer_swap": {"seeds": [0], "cuts": [15]},
        "data_efficiency": {
            "seeds": [0],
            "fractions": [0.5],
            "last_units": [1, "all"],
            "learning_rate": {"fraction": 0.5, "grid": [1.0]},  # one candidate a arm: no extra students
        },
        "normalization": {"seeds": [0, 1], "analysis_images": 16, "probe_images": 16, "cka_batch_size": 8},
        "ablations": {
            "seeds": [0],
            "augmentation": {"policies": ["trivial_augment"], "sources": ["synthetic"]},
            "texture_shape": {"sources": ["synthetic"]},
            "oracle": {"reconstruction_strengths": [0.5], "unclip": True},
            "diversity": {"guidance_scales": [1.0, 2.0, 4.0], "spread_images": 8},
            "mixing": {"real_shares": [0.5]},
        },
        "levers": {"seeds": [0], "filtering": {"clip_model_id": str(clip)}},
        "stitching": {"seeds": [0, 1], "cuts": [15], "training": {"epochs": 1}},  # across the baselines' two seeds
        "generation": {
            "images_per_class": 12,
            "batch_size": 8,
            "model_id": str(stable_diffusion),
            "unclip_model_id": str(unclip),
            "steps": 4,
            "height": 128,
            "width": 128,
            "unclip_height": 128,
            "unclip_width": 128,
            "device": device,
            "allow_cpu": True,
        },
    }


def _merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` merged in, mapping by mapping; any other value of ``overlay`` replaces ``base``'s."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged


def write_environment(conf: Path, overlay: dict[str, Any], name: str = ENV) -> Path:
    """``conf/<name>``: every file of `conf/paper`, each parameters file with ``overlay``'s settings for the keys it
    holds merged in. Kedro reads one environment over `base`, and a top-level key may sit in one file of it only."""
    environment = conf / name
    shutil.copytree(PAPER_CONF, environment)
    left = dict(overlay)
    for path in sorted(environment.glob("parameters*.yml")):
        parameters = yaml.safe_load(path.read_text())
        mine = {key: left.pop(key) for key in list(left) if key in parameters}
        path.write_text(yaml.safe_dump(_merged(parameters, mine), sort_keys=False))
    if left:
        raise ValueError(f"conf/paper sets none of {sorted(left)}: the overlay only changes what conf/paper sets")
    return environment


def make_paper_shaped_project(root: Path, overlay: dict[str, Any]) -> Path:
    """A throw-away copy of the project with the paper-shaped environment ``ENV``."""
    project = make_project(root)
    write_environment(project / "conf", overlay)
    return project


def _command_and_environment(
    project: Path, arguments: tuple[str, ...], hf_home: Path, memory_log: Path | None, environment: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    variables = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "KEDRO_DISABLE_TELEMETRY": "true"}
    if memory_log is not None:
        variables[MEMORY_LOG_ENV] = str(memory_log)
    return [str(Path(sys.executable).with_name("kedro")), "run", "--env", ENV, *arguments], variables | environment


def kedro_run(
    project: Path,
    *arguments: str,
    hf_home: Path,
    memory_log: Path | None = None,
    environment: dict[str, str] | None = None,
    timeout: float = 900,
) -> str:
    """`kedro run --env ENV ...` in ``project`` as a user starts it, offline: its output, or an error ending in it.
    With ``memory_log``, each node's memory is appended to that file (``MIND_THE_GAP_MEMORY_LOG``); ``environment``
    adds variables (a launcher's RANK and WORLD_SIZE)."""
    command, variables = _command_and_environment(project, arguments, hf_home, memory_log, environment or {})
    result = subprocess.run(command, cwd=project, env=variables, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command[1:])} failed ({result.returncode}):\n{output[-6000:]}")
    return output


def kedro_run_killed(
    project: Path, *arguments: str, hf_home: Path, environment: dict[str, str], when: Callable[[], bool]
) -> None:
    """Start `kedro run --env ENV ...` and kill it (SIGKILL, as a lost machine or the out-of-memory killer would) as
    soon as ``when()`` holds; an error if the run ended before."""
    command, variables = _command_and_environment(project, arguments, hf_home, None, environment)
    process = subprocess.Popen(command, cwd=project, env=variables, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    while not when():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{' '.join(command[1:])} ended before it could be killed:\n{process.stderr.read()}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    process.stderr.close()
